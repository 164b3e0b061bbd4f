package faultsuite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
)

// The security suite probes the real API process as a tenant turned attacker would: hostile
// input on every endpoint that takes a body, and attaches racing an approval. Each probe must be
// refused as expected and write nothing; the suite prints a table of probes tried, refused as
// expected and rows written (which must be 0), and fails on any deviation. `make securitysuite`
// runs it alone with the table on the terminal.

// probe is one hostile request and what the API must answer.
type probe struct {
	group        string
	name         string
	method, path string
	key          string
	// body is sent byte for byte, so invalid UTF-8, duplicate members and raw control characters
	// reach the server as an attacker would send them.
	body        string
	contentType string // default application/json when body is set
	status      int    // the status the API must answer
	field       string // the field its error must name ("" when none is named)
	code        string // the error code it must carry ("" when any will do)
	// leaks are texts the answer must not contain (internal addresses, banners, redirect targets).
	leaks []string
}

// tally is one group's line of the table.
type tally struct {
	tried, refused, written int
	failures                []string
}

// securityReport collects the tallies of every group, in the order the groups first appear.
type securityReport struct {
	mu     sync.Mutex
	order  []string
	groups map[string]*tally
}

func (r *securityReport) group(name string) *tally {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.groups == nil {
		r.groups = map[string]*tally{}
	}
	g, ok := r.groups[name]
	if !ok {
		g = &tally{}
		r.groups[name] = g
		r.order = append(r.order, name)
	}
	return g
}

func (r *securityReport) record(group string, refused bool, written int, failure string) {
	g := r.group(group)
	r.mu.Lock()
	defer r.mu.Unlock()
	g.tried++
	if refused {
		g.refused++
	}
	g.written += written
	if failure != "" {
		g.failures = append(g.failures, failure)
	}
}

// table renders the report; it also returns whether every probe behaved.
func (r *securityReport) table() (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "group\tprobes tried\trefused as expected\trows written (must be 0)\t")
	ok := true
	var tried, refused, written int
	for _, name := range r.order {
		g := r.groups[name]
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t\n", name, g.tried, g.refused, g.written)
		tried, refused, written = tried+g.tried, refused+g.refused, written+g.written
		ok = ok && g.tried == g.refused && g.written == 0 && len(g.failures) == 0
	}
	fmt.Fprintf(w, "total\t%d\t%d\t%d\t\n", tried, refused, written)
	_ = w.Flush()
	for _, name := range r.order {
		for _, f := range r.groups[name].failures {
			fmt.Fprintf(&b, "  %s: %s\n", name, f)
		}
	}
	return b.String(), ok
}

// orgRows digests every row of every tenant table of one organization (updated_at and
// last_used_at left out: authentication touches the latter at most once a minute), so that a
// probe's writes are counted whatever table they hit.
func (s *stack) orgRows(orgID uuid.UUID) map[string]bool {
	s.t.Helper()
	ctx := context.Background()
	rows, err := s.db.Query(ctx, `SELECT table_name FROM information_schema.columns
		WHERE table_schema = 'public' AND column_name = 'org_id' ORDER BY table_name`)
	if err != nil {
		s.t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			s.t.Fatal(err)
		}
		tables = append(tables, t)
	}
	rows.Close()
	out := map[string]bool{}
	for _, table := range tables {
		q := fmt.Sprintf(`SELECT md5((to_jsonb(t) - 'updated_at' - 'last_used_at')::text) FROM %q t WHERE org_id = $1`, table)
		r, err := s.db.Query(ctx, q, orgID)
		if err != nil {
			s.t.Fatalf("digest %s: %v", table, err)
		}
		for r.Next() {
			var d string
			if err := r.Scan(&d); err != nil {
				s.t.Fatal(err)
			}
			out[table+":"+d] = true
		}
		r.Close()
		if err := r.Err(); err != nil {
			s.t.Fatal(err)
		}
	}
	return out
}

// quiesce waits until the organization's rows stop changing (the connection's workflow finishes
// what enabling finding sync set off), so that the probes' counts are theirs alone.
func (s *stack) quiesce(orgID uuid.UUID) {
	s.t.Helper()
	prev := s.orgRows(orgID)
	stable := 0
	eventually(s.t, "the organization's rows to settle", 60*time.Second, func() (bool, string) {
		time.Sleep(time.Second)
		cur := s.orgRows(orgID)
		if rowsChanged(prev, cur) == 0 {
			stable++
		} else {
			stable = 0
		}
		prev = cur
		return stable >= 3, "rows still changing"
	})
}

// rowsChanged counts rows present in one digest and not the other (added, removed or changed).
func rowsChanged(before, after map[string]bool) int {
	n := 0
	for k := range after {
		if !before[k] {
			n++
		}
	}
	for k := range before {
		if !after[k] {
			n++
		}
	}
	return n
}

// sendProbe issues a probe's request exactly as written.
func (s *stack) sendProbe(p probe) (reply, error) {
	var body io.Reader
	ct := p.contentType
	if p.body != "" {
		body = strings.NewReader(p.body)
		if ct == "" {
			ct = "application/json"
		}
	}
	return s.send(s.apiURL, p.method, p.path, p.key, ct, body)
}

// runProbes sends each probe alone and checks its answer and that the organization's rows are
// exactly as before it.
func (s *stack) runProbes(rep *securityReport, orgID uuid.UUID, probes []probe) {
	for _, p := range probes {
		before := s.orgRows(orgID)
		r, err := s.sendProbe(p)
		written := rowsChanged(before, s.orgRows(orgID))
		failure := ""
		switch {
		case err != nil:
			failure = fmt.Sprintf("%s: %v", p.name, err)
		case r.status != p.status:
			failure = fmt.Sprintf("%s: answered %d %.300s, want %d", p.name, r.status, r.raw, p.status)
		case p.field != "" && r.str("error", "field") != p.field:
			failure = fmt.Sprintf("%s: error names field %q, want %q (%.200s)", p.name, r.str("error", "field"), p.field, r.raw)
		case p.code != "" && r.str("error", "code") != p.code:
			failure = fmt.Sprintf("%s: error code %q, want %q (%.200s)", p.name, r.str("error", "code"), p.code, r.raw)
		case r.str("error", "message") == "":
			failure = fmt.Sprintf("%s: no error message (%.200s)", p.name, r.raw)
		}
		for _, leak := range p.leaks {
			if strings.Contains(r.raw, leak) {
				failure = strings.TrimPrefix(failure+"; ", "; ") + fmt.Sprintf("%s: the answer reveals %q", p.name, leak)
			}
		}
		if written > 0 {
			failure = strings.TrimPrefix(failure+"; ", "; ") + fmt.Sprintf("%s: wrote %d rows", p.name, written)
		}
		rep.record(p.group, failure == "", written, failure)
	}
}

// TestSecuritySuite drives the real API process with hostile input and races.
func TestSecuritySuite(t *testing.T) {
	t.Parallel()
	// The simulators listen on 127.0.0.1, the only address the egress policy admits here; the rest
	// of loopback stands for the internal network an attacker aims at.
	s := newStack(t, stackOptions{env: map[string]string{"JIRA_EGRESS_ALLOW": "127.0.0.1"}})
	sim := s.startSim(simSpec{name: "jira-security", flavor: "cloud", issues: 200})
	dcSim := s.startSim(simSpec{name: "jira-security-dc", flavor: "datacenter", issues: 20})
	o := s.newOrg("security")
	token := sim.apiToken("admin@example.com")
	pat := dcSim.pat("admin")
	s.addSecret(token, pat)
	c := s.connect(o, sim, map[string]any{"kind": "cloud_token", "site_url": sim.URL, "email": "admin@example.com",
		"api_token": token, "config": map[string]any{"sample_size": 25}})
	eventually(t, "the first sync", 60*time.Second, func() (bool, string) {
		n := s.count(`SELECT count(*) FROM connector_runs WHERE connection_id = $1 AND kind = 'sync' AND outcome = 'success'`, c.id)
		return n > 0, "no successful sync yet"
	})
	s.enableFindingSync(o, c)
	f := s.mustCall("POST", "/v1/findings", o.key, map[string]any{"external_id": "sec-1", "title": "Prompt injection",
		"severity": "low", "status": "open"}, http.StatusCreated)
	conn := "/v1/connections/" + c.id.String()

	s.quiesce(o.id)
	rep := &securityReport{}
	s.egressProbes(rep, o, conn, token, pat)
	s.runProbes(rep, o.id, hostileInputProbes(o.key, conn, "/v1/findings/"+f.str("id"), sim.URL, dcSim.URL, token, pat))
	s.approvalRaces(rep, o, c.id)
	s.keyProbes(rep, o)

	table, ok := rep.table()
	t.Logf("security suite:\n%s", table)
	if dir := os.Getenv("FAULTSUITE_LOG_DIR"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "securitysuite.txt"), []byte(table), 0o644)
	}
	if !ok {
		t.Errorf("security probes misbehaved:\n%s", table)
	}
	s.checkLogs()
}

// hostileInputProbes are bodies that must be refused with a 4xx naming the field, on every
// endpoint that takes one.
func hostileInputProbes(key, conn, finding, cloudURL, dcURL, token, pat string) []probe {
	const g = "hostile input (§4)"
	token = jsonEscape(token)
	create := func(name, body, field string) probe {
		return probe{group: g, name: "create connection: " + name, method: "POST", path: "/v1/connections", key: key,
			body: body, status: http.StatusBadRequest, field: field}
	}
	tokenBody := func(extra string) string {
		return `{"kind":"cloud_token","site_url":"` + cloudURL + `","email":"admin@example.com","api_token":"` + token + `"` + extra + `}`
	}
	patBody := func(p string) string {
		return `{"kind":"datacenter_pat","site_url":"` + dcURL + `","pat":"` + p + `"}`
	}
	bad := func(name, method, path, body, field string) probe {
		return probe{group: g, name: name, method: method, path: path, key: key, body: body, status: http.StatusBadRequest, field: field}
	}
	return []probe{
		create("finding_sync on a token connection", tokenBody(`,"finding_sync":true`), "finding_sync"),
		create("finding_sync as a string", tokenBody(`,"finding_sync":"true"`), "finding_sync"),
		create("NUL in a PAT", patBody(jsonEscape(pat)+`\u0000`), "pat"),
		create("CR in a PAT", patBody(jsonEscape(pat)+`\r`), "pat"),
		create("line feed in an API token", `{"kind":"cloud_token","site_url":"`+cloudURL+`","email":"admin@example.com","api_token":"`+token+`\n"}`, "api_token"),
		create("invalid UTF-8 in the email", `{"kind":"cloud_token","site_url":"`+cloudURL+"\",\"email\":\"adm\xffin@example.com\",\"api_token\":\""+token+`"}`, "email"),
		create("lone surrogate in the email", `{"kind":"cloud_token","site_url":"`+cloudURL+`","email":"\udc00@example.com","api_token":"`+token+`"}`, "email"),
		create("NUL in the site URL", `{"kind":"cloud_token","site_url":"`+cloudURL+`\u0000","email":"admin@example.com","api_token":"`+token+`"}`, "site_url"),
		create("duplicate kind", `{"kind":"cloud_oauth","kind":"cloud_token","site_url":"`+cloudURL+`","email":"admin@example.com","api_token":"`+token+`"}`, "kind"),
		create("cadence that is not a duration", tokenBody(`,"config":{"sync_cadence":"daily"}`), "config.sync_cadence"),
		create("sample size as a string", tokenBody(`,"config":{"sample_size":"25"}`), "config.sample_size"),
		create("unknown member", tokenBody(`,"role":"admin"`), "role"),
		create("differently cased member", `{"Kind":"cloud_token","site_url":"`+cloudURL+`"}`, "Kind"),
		bad("finding sync: enabled as the string true", "PUT", conn+"/finding-sync", `{"enabled":"true"}`, "finding_sync.enabled"),
		bad("finding sync: enabled as the string false", "PUT", conn+"/finding-sync", `{"enabled":"false"}`, "finding_sync.enabled"),
		bad("finding sync: enabled as 0", "PUT", conn+"/finding-sync", `{"enabled":0}`, "finding_sync.enabled"),
		bad("finding sync: NUL in the project key", "PUT", conn+"/finding-sync", `{"project_key":"SEC\u0000"}`, "finding_sync.project_key"),
		bad("finding sync: line feed in a label", "PUT", conn+"/finding-sync", `{"labels":["a\nb"]}`, "finding_sync.labels[0]"),
		bad("configure: cadence that is not a duration", "PATCH", conn, `{"sync_cadence":"1 day"}`, "sync_cadence"),
		bad("configure: NUL in the JQL", "PATCH", conn, `{"resolved_jql":"labels = x\u0000"}`, "resolved_jql"),
		bad("configure: sample size as a boolean", "PATCH", conn, `{"sample_size":true}`, "sample_size"),
		bad("re-auth: CR in the API token", "POST", conn+"/reauth", `{"email":"admin@example.com","api_token":"`+token+`\r"}`, "api_token"),
		bad("API key: NUL in the name", "POST", "/v1/api-keys", `{"name":"ci\u0000","role":"member"}`, "name"),
		bad("API key: CR in the name", "POST", "/v1/api-keys", `{"name":"ci\r","role":"member"}`, "name"),
		bad("API key: invalid UTF-8 in the name", "POST", "/v1/api-keys", "{\"name\":\"c\xc3\x28i\",\"role\":\"member\"}", "name"),
		bad("API key: role as a number", "POST", "/v1/api-keys", `{"name":"ci","role":1}`, "role"),
		bad("assessment: NUL in the name", "POST", "/v1/assessments", `{"name":"SOC 2\u0000"}`, "name"),
		bad("finding: NUL in the title", "POST", "/v1/findings", `{"external_id":"x-1","title":"a\u0000","severity":"high","status":"open"}`, "title"),
		bad("finding: line feed in the title", "POST", "/v1/findings", `{"external_id":"x-1","title":"a\nb","severity":"high","status":"open"}`, "title"),
		bad("finding: escape character in the excerpt", "POST", "/v1/findings", `{"external_id":"x-1","title":"a","severity":"high","status":"open","excerpt":"\u001b[31m"}`, "excerpt"),
		bad("finding: invalid UTF-8 in the external id", "POST", "/v1/findings", "{\"external_id\":\"x\xfe1\",\"title\":\"a\",\"severity\":\"high\",\"status\":\"open\"}", "external_id"),
		bad("finding: framework references as a string", "POST", "/v1/findings", `{"external_id":"x-1","title":"a","severity":"high","status":"open","framework_refs":"OWASP_LLM01"}`, "framework_refs"),
		bad("finding: status with NUL", "PATCH", finding, `{"status":"resolved\u0000"}`, "status"),
		bad("finding: trailing data", "PATCH", finding, `{"status":"resolved"} {"status":"open"}`, ""),
		{group: g, name: "wrong media type", method: "POST", path: "/v1/api-keys", key: key, body: `{"name":"ci","role":"member"}`,
			contentType: "text/plain", status: http.StatusUnsupportedMediaType},
		{group: g, name: "oversized body", method: "POST", path: "/v1/findings", key: key,
			body:   `{"external_id":"x-1","title":"a","severity":"high","status":"open","excerpt":"` + strings.Repeat("a", 2<<20) + `"}`,
			status: http.StatusRequestEntityTooLarge},
	}
}

// jsonEscape escapes a credential for a hand-written JSON string (credentials are URL-safe).
func jsonEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// approvalRaces races 24 attaches against one approval, ten times: every attach lands before the
// approval (200, frozen with it) or after it (409 assessment_approved); the approval answers with,
// freezes and audits exactly the same set.
func (s *stack) approvalRaces(rep *securityReport, o org, connID uuid.UUID) {
	const g = "attach vs approve (§3)"
	var evidence []string
	rows, err := s.db.Query(context.Background(), `SELECT id::text FROM evidence WHERE connection_id = $1 ORDER BY id`, connID)
	if err != nil {
		s.t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			s.t.Fatal(err)
		}
		evidence = append(evidence, id)
	}
	rows.Close()
	attaches := min(24, len(evidence)-1)
	if attaches < 8 {
		s.t.Fatalf("only %d evidence rows to race with", len(evidence))
	}
	for trial := range 10 {
		created := s.mustCall("POST", "/v1/assessments", o.key, map[string]any{"name": fmt.Sprintf("race %d", trial)}, http.StatusCreated)
		path := "/v1/assessments/" + created.str("id")
		s.mustCall("POST", path+"/evidence", o.key, map[string]any{"evidence_ids": evidence[:1]}, http.StatusOK)
		start := make(chan struct{})
		var wg sync.WaitGroup
		results := make([]reply, attaches)
		errs := make([]error, attaches)
		for i := range attaches {
			wg.Go(func() {
				<-start
				results[i], errs[i] = s.call("POST", path+"/evidence", o.key, map[string]any{"evidence_ids": []string{evidence[i+1]}})
			})
		}
		var approved reply
		var approveErr error
		wg.Go(func() {
			<-start
			approved, approveErr = s.call("POST", path+"/approve", o.key, nil)
		})
		close(start)
		wg.Wait()

		want := []string{evidence[0]}
		for i, r := range results {
			name := fmt.Sprintf("trial %d attach %d", trial, i)
			switch {
			case errs[i] != nil:
				rep.record(g, false, 0, fmt.Sprintf("%s: %v", name, errs[i]))
			case r.status == http.StatusOK:
				want = append(want, evidence[i+1])
				rep.record(g, true, 0, "")
			case r.status == http.StatusConflict && r.str("error", "code") == "assessment_approved":
				rep.record(g, true, 0, "")
			default:
				rep.record(g, false, 0, fmt.Sprintf("%s: %d %.200s", name, r.status, r.raw))
			}
		}
		name := fmt.Sprintf("trial %d approval", trial)
		if approveErr != nil || approved.status != http.StatusOK {
			rep.record(g, false, 0, fmt.Sprintf("%s: %v %d %.200s", name, approveErr, approved.status, approved.raw))
			continue
		}
		frozen := anyStrings(approved.body["evidence"])
		var stored []string
		var audited int
		if err := s.db.QueryRow(context.Background(), `SELECT array(SELECT evidence_id::text FROM assessment_evidence WHERE assessment_id = $1),
			(SELECT (metadata->>'evidence')::int FROM audit_log WHERE action = 'assessment.approve' AND target_id = $1::text)`,
			uuid.MustParse(created.str("id"))).Scan(&stored, &audited); err != nil {
			s.t.Fatal(err)
		}
		slices.Sort(want)
		sort.Strings(frozen)
		sort.Strings(stored)
		// Rows the approver never saw count as written behind the approval's back.
		unseen := len(stored) - len(frozen)
		switch {
		case !slices.Equal(frozen, want):
			rep.record(g, false, 0, fmt.Sprintf("%s answered %d evidence, %d attaches landed", name, len(frozen), len(want)))
		case !slices.Equal(stored, frozen):
			rep.record(g, false, max(unseen, 1), fmt.Sprintf("%s froze %d, the assessment holds %d", name, len(frozen), len(stored)))
		case audited != len(frozen):
			rep.record(g, false, 0, fmt.Sprintf("%s audited %d, froze %d", name, audited, len(frozen)))
		default:
			rep.record(g, true, 0, "")
		}
	}
}

func anyStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// keyProbes: a revoked key is refused at its very next request, an expired one once its expiry
// passes, the last admin key is not revoked by accident, and none of these refusals writes.
func (s *stack) keyProbes(rep *securityReport, o org) {
	const g = "API key lifecycle (§2)"
	member := s.mustCall("POST", "/v1/api-keys", o.key, map[string]any{"name": "ci", "role": "member"}, http.StatusCreated)
	memberKey, memberID := member.str("key"), member.str("id")
	s.addSecret(memberKey)
	s.mustCall("GET", "/v1/findings", memberKey, nil, http.StatusOK)
	s.mustCall("DELETE", "/v1/api-keys/"+memberID, o.key, nil, http.StatusOK)
	short := s.mustCall("POST", "/v1/api-keys", o.key, map[string]any{"name": "short-lived", "role": "auditor", "expires_in": "1s"}, http.StatusCreated)
	s.addSecret(short.str("key"))
	time.Sleep(1500 * time.Millisecond)

	var admins []string
	keys := s.mustCall("GET", "/v1/api-keys", o.key, nil, http.StatusOK)
	list, _ := keys.body["api_keys"].([]any)
	for _, k := range list {
		m, _ := k.(map[string]any)
		if m["role"] == "admin" && m["state"] == "active" {
			admins = append(admins, fmt.Sprint(m["id"]))
		}
	}
	if len(admins) != 1 {
		s.t.Fatalf("want one active admin key, have %v", admins)
	}
	s.quiesce(o.id)
	s.runProbes(rep, o.id, []probe{
		{group: g, name: "revoked key, at once", method: "GET", path: "/v1/findings", key: memberKey, status: http.StatusUnauthorized},
		{group: g, name: "revoked key, writing", method: "POST", path: "/v1/findings", key: memberKey,
			body: `{"external_id":"k-1","title":"a","severity":"high","status":"open"}`, status: http.StatusUnauthorized},
		{group: g, name: "expired key", method: "GET", path: "/v1/findings", key: short.str("key"), status: http.StatusUnauthorized},
		{group: g, name: "revoking the last admin key without force", method: "DELETE", path: "/v1/api-keys/" + admins[0], key: o.key, status: http.StatusConflict},
		{group: g, name: "force that is not a boolean", method: "DELETE", path: "/v1/api-keys/" + admins[0] + "?force=yes", key: o.key, status: http.StatusBadRequest, field: "force"},
		{group: g, name: "expiry in the past", method: "POST", path: "/v1/api-keys", key: o.key,
			body: `{"name":"x","role":"member","expires_at":"2020-01-01T00:00:00Z"}`, status: http.StatusBadRequest, field: "expires_at"},
		{group: g, name: "both expiry forms", method: "POST", path: "/v1/api-keys", key: o.key,
			body: `{"name":"x","role":"member","expires_in":"1h","expires_at":"2099-01-01T00:00:00Z"}`, status: http.StatusBadRequest, field: "expires_at"},
	})
}

// egressProbes: a tenant cannot make the server reach the internal network. Every hostile site URL
// is refused before anything is stored or sent (the canary on 127.0.0.2 must never be contacted),
// and a site that redirects inward is not followed and not named.
func (s *stack) egressProbes(rep *securityReport, o org, conn, token, pat string) {
	const g = "egress / SSRF (§1)"
	var hits sync.Map
	hit := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			hits.Store(name, true)
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, "internal admin console — token store at /secrets")
		})
	}
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		s.t.Fatalf("listen on 127.0.0.2 (the canary): %v", err)
	}
	canary := &http.Server{Handler: hit("127.0.0.2"), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = canary.Serve(ln) }()
	s.t.Cleanup(func() { _ = canary.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	// A Jira-looking site on the admitted address that redirects to the canary.
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, fmt.Sprintf("http://127.0.0.2:%d/secret-admin", port), http.StatusFound)
	}))
	s.t.Cleanup(redirector.Close)

	token, pat = jsonEscape(token), jsonEscape(pat)
	var probes []probe
	hostile := []string{
		fmt.Sprintf("http://127.0.0.2:%d", port),
		fmt.Sprintf("http://[::1]:%d", port),
		fmt.Sprintf("http://[::ffff:127.0.0.2]:%d", port),
		fmt.Sprintf("http://2130706434:%d", port), // 127.0.0.2 in decimal
		fmt.Sprintf("http://0x7f.0.0.2:%d", port),
		fmt.Sprintf("http://0177.0.0.2:%d", port),
		fmt.Sprintf("http://127.2:%d", port),
		"https://169.254.169.254",
		"https://[fd00:ec2::254]",
		"https://[fe80::1%25eth0]",
		"https://10.0.0.5",
		"https://172.16.0.1",
		"https://192.168.1.1",
		"https://100.64.0.1",
		"https://0.0.0.0",
		"https://224.0.0.1",
		"https://[::]",
		"https://[64:ff9b::a9fe:a9fe]", // NAT64 form of 169.254.169.254
	}
	for _, site := range hostile {
		probes = append(probes,
			probe{group: g, name: "token connection to " + site, method: "POST", path: "/v1/connections", key: o.key,
				body:   `{"kind":"cloud_token","site_url":"` + site + `","email":"admin@example.com","api_token":"` + token + `"}`,
				status: http.StatusBadRequest, field: "site_url", leaks: []string{"internal admin console", "dial tcp", "connection refused"}},
			probe{group: g, name: "PAT connection to " + site, method: "POST", path: "/v1/connections", key: o.key,
				body:   `{"kind":"datacenter_pat","site_url":"` + site + `","pat":"` + pat + `"}`,
				status: http.StatusBadRequest, field: "site_url", leaks: []string{"internal admin console", "dial tcp", "connection refused"}})
	}
	probes = append(probes, probe{group: g, name: "a site that redirects to an internal address", method: "POST", path: "/v1/connections", key: o.key,
		body:   `{"kind":"datacenter_pat","site_url":"` + redirector.URL + `","pat":"` + pat + `"}`,
		status: http.StatusBadGateway, code: "jira_unreachable", leaks: []string{"127.0.0.2", "secret-admin", strconv.Itoa(port)}})
	s.runProbes(rep, o.id, probes)
	hits.Range(func(k, _ any) bool {
		rep.record(g, false, 0, fmt.Sprintf("the canary at %v was contacted", k))
		return true
	})
}
