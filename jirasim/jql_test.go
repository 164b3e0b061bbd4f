package jirasim

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestParseJQL(t *testing.T) {
	tests := []struct {
		jql     string
		bounded bool
		order   int
		err     string // substring of the error; "" means success
	}{
		{jql: "", bounded: false},
		{jql: "ORDER BY created DESC", bounded: false, order: 1},
		{jql: "project = SEC", bounded: true},
		{jql: `project in (SEC, "APPSEC") AND issuetype in (Bug, Vulnerability) AND labels in (security) AND statusCategory = Done AND resolved >= -30d ORDER BY resolved DESC`, bounded: true, order: 1},
		{jql: "NOT (status = Done OR status = 'In Progress') AND labels IS NOT EMPTY", bounded: true},
		{jql: "project = SEC && labels != x || !(key = SEC-1)", bounded: true},
		{jql: `summary ~ "say \"hi\" \\ now"`, bounded: true},
		{jql: "created >= startOfDay(-1d) AND updated <= now()", bounded: true},
		{jql: "cf[10100] in ('SOC 2 CC8.1') ORDER BY key ASC, created DESC", bounded: true, order: 2},
		{jql: "resolution IS EMPTY AND priority NOT IN (Low, Lowest)", bounded: true},
		{jql: "project = SEC ORDER BY a, b, c, d, e, f, g, h", err: "at most 7"},
		{jql: "project = SEC AND", err: "Expecting a field name at the end of the query"},
		{jql: "project SEC", err: "Expecting operator but got 'SEC'"},
		{jql: `summary ~ "open`, err: "has not been completed"},
		{jql: "project = OR", err: "You must surround 'OR' in quotation marks"},
		{jql: "(project = SEC", err: "Expecting ')' before the end of the query"},
		{jql: "project in SEC", err: "Expecting '(' but got 'SEC'"},
		{jql: "labels is foo", err: "Expecting 'EMPTY'"},
		{jql: "project = SEC project = X", err: "Expecting either 'OR' or 'AND'"},
		{jql: `summary ~ "bad \q escape"`, err: "escape sequence"},
		{jql: "ORDER created", err: "Expecting 'BY'"},
		{jql: "status WAS Done", err: "not supported"},
		{jql: strings.Repeat("(", 200) + "project = SEC" + strings.Repeat(")", 200), err: "nested too deeply"},
	}
	for _, tc := range tests {
		q, err := parseJQL(tc.jql)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseJQL(%q) error = %v, want containing %q", tc.jql, err, tc.err)
			}
			var je *JQLError
			if err != nil && !errors.As(err, &je) {
				t.Errorf("parseJQL(%q) error type %T", tc.jql, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseJQL(%q): %v", tc.jql, err)
			continue
		}
		if (q.where != nil) != tc.bounded || len(q.orderBy) != tc.order {
			t.Errorf("parseJQL(%q): bounded=%v order=%d", tc.jql, q.where != nil, len(q.orderBy))
		}
	}
	q, err := parseJQL(`summary ~ "say \"hi\" \\ now"`)
	if err != nil {
		t.Fatal(err)
	}
	if got := q.where.(clauseNode).values[0].text; got != `say "hi" \ now` {
		t.Fatalf("unescaped %q", got)
	}
}

// evalSim builds a small site with known issues for semantic JQL tests.
func evalSim(t *testing.T) *Sim {
	t.Helper()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	s := New(Options{Now: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { _ = s.Close() })
	for _, k := range []string{"SEC", "OPS"} {
		if _, err := s.AddProject(ProjectSpec{Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	add := func(spec IssueSpec) {
		spec.Silent = true
		if _, err := s.AddIssue(spec); err != nil {
			t.Fatal(err)
		}
	}
	day := 24 * time.Hour
	add(IssueSpec{Project: "SEC", IssueType: "Bug", Summary: "SQL injection", Labels: []string{"security"}, Status: "Done", Created: now.Add(-40 * day), Resolved: now.Add(-2 * day), Priority: "High"}) // SEC-1
	add(IssueSpec{Project: "SEC", IssueType: "Vulnerability", Summary: "XSS", Labels: []string{"security", "web"}, Status: "Won't Do", Created: now.Add(-39 * day), Resolved: now.Add(-45 * day)})       // SEC-2 (resolved long ago)
	add(IssueSpec{Project: "SEC", IssueType: "Task", Summary: "rotate keys", Status: "In Progress", Created: now.Add(-10 * day)})                                                                        // SEC-3
	add(IssueSpec{Project: "OPS", IssueType: "Bug", Summary: "disk full", Labels: []string{"ops"}, Created: now.Add(-5 * day)})                                                                          // OPS-1
	add(IssueSpec{Project: "OPS", IssueType: "Bug", Summary: "quoted \"name\"", Status: "Cancelled", Created: now.Add(-1 * day), Resolved: now.Add(-1 * time.Hour),
		CustomFields: map[string]json.RawMessage{FieldFrameworkReferences: json.RawMessage(`[{"value":"SOC 2 CC8.1"}]`), FieldFindingID: json.RawMessage(`"F-77"`)}}) // OPS-2
	return s
}

func TestJQLSemantics(t *testing.T) {
	s := evalSim(t)
	tests := []struct {
		jql  string
		want string // comma-separated keys in result order
	}{
		{"project = SEC", "SEC-1,SEC-2,SEC-3"},
		{"project != SEC", "OPS-1,OPS-2"},
		{"project in (SEC, OPS) AND issuetype = Bug", "SEC-1,OPS-1,OPS-2"},
		{"statusCategory = Done", "SEC-1,SEC-2,OPS-2"},
		{"statusCategory != done", "SEC-3,OPS-1"},
		{`statusCategory = "In Progress"`, "SEC-3"},
		{"statusCategory = new", "OPS-1"},
		{`status = "Won't Do" OR status = 10002`, "SEC-2"},
		{"labels = security", "SEC-1,SEC-2"},
		{"labels != security", "OPS-1"},
		{"labels not in (security, ops)", ""},
		{"labels IS EMPTY", "SEC-3,OPS-2"},
		{"labels in (web, ops)", "SEC-2,OPS-1"},
		{"resolution IS EMPTY", "SEC-3,OPS-1"},
		{"resolution = Unresolved", "SEC-3,OPS-1"},
		{"resolution != Done", "SEC-2,OPS-2"},
		{"resolved >= -30d", "SEC-1,OPS-2"},
		{"resolved >= -30d AND labels = security AND statusCategory = Done ORDER BY resolved DESC", "SEC-1"},
		{"statusCategory = Done ORDER BY resolved DESC", "OPS-2,SEC-1,SEC-2"},
		{"created >= -7d", "OPS-1,OPS-2"},
		{`created >= "2026-03-05" AND created < "2026-03-09 12:00"`, "OPS-1"},
		{"created > startOfDay(-2d)", "OPS-2"},
		{"updated <= now() AND project = OPS", "OPS-1,OPS-2"},
		{"priority = High", "SEC-1"},
		{"NOT project = SEC", "OPS-1,OPS-2"},
		{"key = SEC-2 OR issuekey = OPS-1", "SEC-2,OPS-1"},
		{"key in (SEC-3, OPS-2) ORDER BY key ASC", "OPS-2,SEC-3"},
		{"project = SEC ORDER BY created DESC", "SEC-3,SEC-2,SEC-1"},
		{"summary ~ injection", "SEC-1"},
		{`summary ~ "\"name\""`, "OPS-2"},
		{"cf[10100] = 'SOC 2 CC8.1'", "OPS-2"},
		{"customfield_10100 is EMPTY AND project = OPS", "OPS-1"},
		{`"Framework references" in ("SOC 2 CC8.1")`, "OPS-2"},
		{"cf[10102] ~ F-77", "OPS-2"},
		{"reporter = currentUser() AND project = OPS", "OPS-1,OPS-2"},
		{"assignee is EMPTY AND project = OPS", "OPS-1,OPS-2"},
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, tc := range tests {
		cq, err := compileJQL(tc.jql, compileCtx{st: s.st, now: s.Now(), me: s.admin + 1})
		if err != nil {
			t.Errorf("compile %q: %v", tc.jql, err)
			continue
		}
		page, _ := s.searchLocked(cq, nil, 0, 100)
		var keys []string
		for _, idx := range page {
			keys = append(keys, s.st.issueKey(idx))
		}
		if got := strings.Join(keys, ","); got != tc.want {
			t.Errorf("%q → %s, want %s", tc.jql, got, tc.want)
		}
		if n := s.countLocked(cq, nil); n != len(keys) {
			t.Errorf("%q: count %d but search returned %d", tc.jql, n, len(keys))
		}
	}
	for _, bad := range []struct{ jql, msg string }{
		{"project = NOPE", "The value 'NOPE' does not exist for the field 'project'."},
		{"status = Closed", "The value 'Closed' does not exist for the field 'status'."},
		{"foo = bar", "Field 'foo' does not exist or you do not have permission to view it."},
		{"created >= yesterday", "Date value 'yesterday' for field 'created' is invalid."},
		{"status ~ Done", "The operator '~' is not supported by the 'status' field."},
		{"key = SEC-99", "An issue with key 'SEC-99' does not exist for field 'key'."},
		{"cf[10100] = HIPAA", "The option 'HIPAA' for field 'cf[10100]' does not exist."},
		{"project = SEC ORDER BY labels", "Field 'labels' does not support sorting."},
		{"created > nextMonth()", "Unable to find JQL function"},
	} {
		_, err := compileJQL(bad.jql, compileCtx{st: s.st, now: s.Now()})
		if err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("%q error %v, want %q", bad.jql, err, bad.msg)
		}
	}
}

func TestWebhookJQLSubset(t *testing.T) {
	s := evalSim(t)
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, ok := range []string{"project = SEC", "project IN (SEC, OPS) AND issuetype != Bug", "status = Done AND issueKey = SEC-1"} {
		if _, err := compileJQL(ok, compileCtx{st: s.st, now: s.Now(), webhook: true}); err != nil {
			t.Errorf("%q rejected: %v", ok, err)
		}
	}
	for _, bad := range []string{"labels = security", "statusCategory = Done", "resolved >= -1d", "project ~ SEC"} {
		if _, err := compileJQL(bad, compileCtx{st: s.st, now: s.Now(), webhook: true}); err == nil {
			t.Errorf("%q accepted as a dynamic webhook filter", bad)
		}
	}
}

func FuzzParseJQL(f *testing.F) {
	for _, seed := range []string{
		"project = SEC", `summary ~ "a \"b\""`, "labels in (a, b) ORDER BY created DESC", "NOT (a = b OR c != d)",
		"created >= -30d", "cf[10100] is not EMPTY", "((((", `"unterminated`, "a in ()", "x = f(1, '2')", "\\u0041", "&&||!",
	} {
		f.Add(seed)
	}
	s := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer func() { _ = s.Close() }()
	if _, err := s.AddProject(ProjectSpec{Key: "SEC"}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, jql string) {
		q, err := parseJQL(jql)
		if err != nil {
			var je *JQLError
			if !errors.As(err, &je) {
				t.Fatalf("non-JQL error type %T", err)
			}
			return
		}
		_ = q
		s.mu.RLock()
		defer s.mu.RUnlock()
		cq, err := compileJQL(jql, compileCtx{st: s.st, now: s.Now()})
		if err != nil {
			return
		}
		s.countLocked(cq, nil)
		s.searchLocked(cq, nil, 0, 10)
	})
}
