package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

// testIssues returns the simulator's SEC issues that carry the connection test's label.
func (s *stack) testIssues() []jirasim.Issue {
	var out []jirasim.Issue
	for i := 1; i <= s.cloud.IssueCount()+5; i++ {
		if iss, ok := s.cloud.Issue("SEC-" + itoa(i)); ok && slices.Contains(iss.Labels, activities.TestIssueLabel) {
			out = append(out, iss)
		}
	}
	return out
}

// POST /v1/connections/{id}/test on a finding-sync connection runs the finding checks through the
// API, Temporal and the worker: each test creates one synthetic issue, labelled with its run, and
// moves it to Done; nothing about it reaches findings.
func TestConnectionTestWithFindingSync(t *testing.T) {
	s := newStack(t)
	key := s.org("test-findings")
	connID := s.findingSyncSetup(key)
	// A finding with its issue, which the test issues must never be taken for.
	f := s.call("POST", "/v1/findings", key, map[string]any{"external_id": "tc-1", "title": "Tool misuse", "severity": "high", "status": "open"})
	if f.status != 201 {
		t.Fatal(f.raw)
	}
	findingIssue := s.issueOf(key, f.str("id"))

	want := []string{activities.CheckCredentials, activities.CheckMyself, activities.CheckProjectVisibility, activities.CheckSearchPermission,
		activities.CheckResolvedJQL, activities.CheckFindingProject, activities.CheckFindingIssueType, activities.CheckFindingFields,
		activities.CheckFindingTransitions, activities.CheckFindingTestIssue, activities.CheckFindingTestTransition}
	for round := 1; round <= 2; round++ {
		tr := s.call("POST", "/v1/connections/"+connID+"/test", key, nil)
		if tr.status != 200 || tr.body["ok"] != true {
			t.Fatalf("test %d: %d %s", round, tr.status, tr.raw)
		}
		checks, _ := tr.body["checks"].([]any)
		var names []string
		details := map[string]string{}
		for _, c := range checks {
			m := c.(map[string]any)
			name, _ := m["name"].(string)
			names = append(names, name)
			details[name], _ = m["detail"].(string)
			if m["ok"] != true {
				t.Errorf("test %d: check %v", round, m)
			}
		}
		if !slices.Equal(names, want) {
			t.Fatalf("test %d: checks %v", round, names)
		}
		// The default status map names "Open", which this site calls "To Do".
		if d := details[activities.CheckFindingTransitions]; !strings.Contains(d, `open → "To Do" (no status is named "Open"; the only status of category new)`) {
			t.Errorf("transitions detail %q", d)
		}

		issues := s.testIssues()
		if len(issues) != round {
			t.Fatalf("after test %d: %d test issues", round, len(issues))
		}
		latest := issues[len(issues)-1]
		if latest.Status != "Done" || !strings.Contains(details[activities.CheckFindingTestTransition], latest.Key) {
			t.Fatalf("test issue %s in %s; detail %q", latest.Key, latest.Status, details[activities.CheckFindingTestTransition])
		}
		// The issue is labelled with the test's run.
		var runID string
		for _, r := range s.runs(key, connID) {
			if r["kind"] == "test" && runID == "" {
				runID, _ = r["id"].(string)
				if r["outcome"] != "success" {
					t.Errorf("test run %v", r)
				}
			}
		}
		if !slices.Contains(latest.Labels, activities.TestIssueLabel+"-"+runID) {
			t.Errorf("test issue labels %v, run %s", latest.Labels, runID)
		}
		// The test wrote to Jira on a person's request: the audit log says who, and which issue.
		var meta map[string]any
		var actorType string
		if err := testDB.Owner(t).QueryRow(context.Background(), `SELECT actor_type, metadata FROM audit_log
			WHERE action = 'connection.test' AND target_id = $1 ORDER BY id DESC LIMIT 1`, connID).Scan(&actorType, &meta); err != nil {
			t.Fatalf("test %d: no connection.test audit row: %v", round, err)
		}
		if actorType != "api_key" || meta["outcome"] != "passed" || meta["test_issue_key"] != latest.Key {
			t.Errorf("test %d audited as %s %v, want api_key, passed, %s", round, actorType, meta, latest.Key)
		}
	}

	// The test issues' webhooks (created, moved to Done) reach the bridge and change nothing: the
	// finding keeps its status and its one issue, and the connection has no error.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.cloud.FlushWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	var links, inbound int
	if err := testDB.Owner(t).QueryRow(context.Background(), `SELECT (SELECT count(*) FROM finding_issue_links WHERE connection_id = $1),
		(SELECT count(*) FROM audit_log WHERE action = 'finding.inbound_change'
		   AND org_id = (SELECT org_id FROM connections WHERE id = $1))`, connID).Scan(&links, &inbound); err != nil {
		t.Fatal(err)
	}
	if links != 1 || inbound != 0 {
		t.Errorf("after connection tests: %d finding links, %d inbound changes", links, inbound)
	}
	if got := s.finding(key, f.str("id")); got.str("status") != "open" || s.issueOf(key, f.str("id")) != findingIssue {
		t.Errorf("finding after connection tests: %s", got.raw)
	}
	if c := s.call("GET", "/v1/connections/"+connID, key, nil); c.str("last_error") != "" {
		t.Errorf("connection error after the tests: %s", c.raw)
	}
	s.assertNoSecrets(connID)
}
