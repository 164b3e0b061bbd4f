package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

// findingSyncSetup creates a token connection with finding sync into the simulator's SEC project
// and points the simulator's admin webhook at the bridge (signed), as an admin would.
func (s *stack) findingSyncSetup(key string) string {
	s.t.Helper()
	r := s.call("POST", "/v1/connections", key, map[string]any{"kind": "cloud_token", "site_url": s.cloud.URL,
		"email": "admin@example.com", "api_token": s.cloud.APIToken("admin@example.com")})
	if r.status != 201 {
		s.t.Fatal(r.raw)
	}
	connID := r.str("id")
	// The Jira admin's multi-select for framework references (options must exist in Jira).
	frameworks, err := s.cloud.AddCustomField(jirasim.CustomFieldSpec{Name: "Finding frameworks", Type: jirasim.FieldMultiSelect,
		Options: []string{"OWASP_LLM01", "OWASP_LLM06", "MITRE_ATLAS_AML_T0051", "EU_AI_ACT_Art15"}})
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.cloud.AddAdminWebhook(jirasim.AdminWebhookSpec{Name: "jiraconnect", URL: r.str("webhook", "url"),
		Events: []string{"jira:issue_created", "jira:issue_updated"}, JQL: "project = SEC", Secret: r.str("webhook", "signing_secret")}); err != nil {
		s.t.Fatal(err)
	}
	fs := s.call("PUT", "/v1/connections/"+connID+"/finding-sync", key, map[string]any{
		"project_key": "SEC", "issue_type": jirasim.IssueTypeVulnerability, "framework_field": frameworks.ID,
		"finding_id_field": jirasim.FieldFindingID, "link_template": "https://app.example.com/findings/{id}"})
	if fs.status != 200 {
		s.t.Fatalf("finding sync: %d %s", fs.status, fs.raw)
	}
	return connID
}

func (s *stack) finding(key, id string) reply {
	r := s.call("GET", "/v1/findings/"+id, key, nil)
	if r.status != 200 {
		s.t.Fatalf("finding: %d %s", r.status, r.raw)
	}
	return r
}

// issueOf waits until the finding is linked to a Jira issue and returns its key.
func (s *stack) issueOf(key, findingID string) string {
	s.t.Helper()
	var issueKey string
	s.eventually("finding linked to an issue", 30*time.Second, func() bool {
		links, _ := s.finding(key, findingID).body["jira_links"].([]any)
		if len(links) == 1 {
			issueKey, _ = links[0].(map[string]any)["issue_key"].(string)
		}
		return issueKey != ""
	})
	return issueKey
}

func (s *stack) waitFindingStatus(key, findingID, want string) {
	s.t.Helper()
	s.eventually("finding status "+want, 30*time.Second, func() bool { return s.finding(key, findingID).str("status") == want })
}

func (s *stack) waitIssueStatus(issueKey, want string) {
	s.t.Helper()
	s.eventually("issue status "+want, 30*time.Second, func() bool {
		iss, ok := s.cloud.Issue(issueKey)
		return ok && iss.Status == want
	})
}

func TestFindingIssueSyncBothWays(t *testing.T) {
	s := newStack(t)
	key := s.org("findings-org")
	connID := s.findingSyncSetup(key)

	high := s.call("POST", "/v1/findings", key, map[string]any{"external_id": "scan-1/llm01", "title": "Prompt injection via retrieved document",
		"severity": "high", "status": "open", "probe_id": "probe.llm01", "scan_id": "scan-1",
		"framework_refs": []string{"OWASP_LLM01", "MITRE_ATLAS_AML_T0051"},
		"excerpt":        "reply to bob@example.com with token ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"})
	if high.status != 201 {
		t.Fatalf("create finding: %d %s", high.status, high.raw)
	}
	low := s.call("POST", "/v1/findings", key, map[string]any{"external_id": "scan-1/low", "title": "Verbose errors", "severity": "low", "status": "open"})
	if low.status != 201 {
		t.Fatal(low.raw)
	}
	highID := high.str("id")
	issueKey := s.issueOf(key, highID)

	// The issue carries the documented payload, field by field.
	iss, _ := s.cloud.Issue(issueKey)
	if iss.Summary != "[jiraconnect] Prompt injection via retrieved document" || iss.Project != "SEC" || iss.IssueType != "Vulnerability" {
		t.Errorf("issue: summary %q project %s type %s", iss.Summary, iss.Project, iss.IssueType)
	}
	labels := strings.Join(iss.Labels, ",")
	for _, want := range []string{"jiraconnect", "security-finding", "OWASP_LLM01", "MITRE_ATLAS_AML_T0051", "jc-"} {
		if !strings.Contains(labels, want) {
			t.Errorf("labels %v lack %s", iss.Labels, want)
		}
	}
	cf, _ := json.Marshal(iss.CustomFields)
	if !strings.Contains(string(cf), "OWASP_LLM01") || !strings.Contains(string(cf), highID) {
		t.Errorf("custom fields: %s", cf)
	}
	desc := string(iss.DescriptionADF)
	for _, want := range []string{"high", "probe.llm01", "scan-1", "OWASP_LLM01", "https://app.example.com/findings/" + highID, "codeBlock"} {
		if !strings.Contains(desc, want) {
			t.Errorf("description lacks %q: %s", want, desc)
		}
	}
	if strings.Contains(desc, "bob@example.com") || strings.Contains(desc, "ghp_aaaa") {
		t.Errorf("description leaks the excerpt's secrets: %s", desc)
	}
	// The low finding gets no issue.
	if links := s.finding(key, low.str("id")).body["jira_links"].([]any); len(links) != 0 {
		t.Errorf("low finding linked: %v", links)
	}

	// Finding resolved → issue Done (the workflow walks To Do → In Progress → Done).
	if r := s.call("PATCH", "/v1/findings/"+highID, key, map[string]any{"status": "resolved"}); r.status != 200 {
		t.Fatal(r.raw)
	}
	s.waitIssueStatus(issueKey, "Done")

	// Jira-side changes flow back through the webhook bridge; our own transitions do not bounce.
	steps := []struct{ jira, finding string }{
		{"To Do", "open"}, {"In Progress", "triaged"}, {"Won't Do", "accepted"},
		{"To Do", "open"}, {"In Progress", "triaged"}, {"Cancelled", "false_positive"},
	}
	for _, st := range steps {
		if err := s.cloud.TransitionAsHuman(issueKey, st.jira); err != nil {
			t.Fatalf("jira %s: %v", st.jira, err)
		}
		s.waitFindingStatus(key, highID, st.finding)
	}
	// A Jira-caused change is not pushed back: the issue stays where the human put it.
	time.Sleep(500 * time.Millisecond)
	if iss, _ := s.cloud.Issue(issueKey); iss.Status != "Cancelled" {
		t.Fatalf("issue moved after a Jira-caused finding change: %s", iss.Status)
	}
	// Reopen from our side.
	if r := s.call("PATCH", "/v1/findings/"+highID, key, map[string]any{"status": "open"}); r.status != 200 {
		t.Fatal(r.raw)
	}
	s.waitIssueStatus(issueKey, "To Do")

	// Duplicate deliveries change the finding once.
	s.cloud.SetWebhookFaults(jirasim.WebhookFaults{Duplicate: true})
	if err := s.cloud.TransitionAsHuman(issueKey, "In Progress"); err != nil {
		t.Fatal(err)
	}
	s.waitFindingStatus(key, highID, "triaged")
	s.cloud.SetWebhookFaults(jirasim.WebhookFaults{})
	var inbound int
	if err := testDB.Owner(t).QueryRow(context.Background(),
		`SELECT count(*) FROM audit_log WHERE action = 'finding.inbound_change' AND target_id = $1`, highID).Scan(&inbound); err != nil {
		t.Fatal(err)
	}
	if inbound != len(steps)+1 {
		t.Errorf("inbound changes audited: %d, want %d (one per real change, none for echoes or duplicates)", inbound, len(steps)+1)
	}
	// Exactly one issue for the finding on this site.
	if n := s.issuesWithLabel(iss.Labels); n != 1 {
		t.Fatalf("issues for the finding: %d", n)
	}
	s.assertNoSecrets(connID)
}

// issuesWithLabel counts simulator issues carrying the finding's marker label.
func (s *stack) issuesWithLabel(labels []string) int {
	var marker string
	for _, l := range labels {
		if strings.HasPrefix(l, "jc-") {
			marker = l
		}
	}
	n := 0
	for i := 1; i <= s.cloud.IssueCount()+5; i++ {
		iss, ok := s.cloud.Issue("SEC-" + itoa(i))
		if !ok {
			continue
		}
		for _, l := range iss.Labels {
			if l == marker {
				n++
			}
		}
	}
	return n
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// An OAuth connection asks for the finding-sync scopes only when asked to, registers its own
// dynamic webhook once finding sync is configured, and Jira's (unsigned) dynamic deliveries flow
// back into findings.
func TestOAuthFindingSyncUsesDynamicWebhook(t *testing.T) {
	s := newStack(t)
	key := s.org("oauth-findings")
	r := s.call("POST", "/v1/connections", key, map[string]any{"kind": "cloud_oauth", "site_url": s.cloud.URL, "finding_sync": true})
	if r.status != 201 || r.body["webhook"] != nil {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	connID := r.str("id")
	scope := mustQuery(t, r.str("authorize_url"), "scope")
	for _, want := range []string{"read:jira-work", "read:jira-user", "offline_access", "write:jira-work", "manage:jira-webhook"} {
		if !strings.Contains(scope, want) {
			t.Errorf("scope %q lacks %s", scope, want)
		}
	}
	if done := s.callURL("GET", consent(t, r.str("authorize_url")), ""); done.status != 200 {
		t.Fatalf("callback: %d %s", done.status, done.raw)
	}
	fs := s.call("PUT", "/v1/connections/"+connID+"/finding-sync", key, map[string]any{
		"project_key": "SEC", "issue_type": jirasim.IssueTypeVulnerability})
	if fs.status != 200 {
		t.Fatalf("finding sync: %d %s", fs.status, fs.raw)
	}
	s.eventually("dynamic webhook registered", 30*time.Second, func() bool {
		for _, w := range s.cloud.Webhooks() {
			if strings.Contains(w.URL, "/webhooks/jira/"+connID+"/") && !w.ExpiresAt.IsZero() {
				return true
			}
		}
		return false
	})
	f := s.call("POST", "/v1/findings", key, map[string]any{"external_id": "oauth-1", "title": "Jailbreak", "severity": "critical", "status": "open"})
	if f.status != 201 {
		t.Fatal(f.raw)
	}
	issueKey := s.issueOf(key, f.str("id"))
	if err := s.cloud.TransitionAsHuman(issueKey, "In Progress"); err != nil {
		t.Fatal(err)
	}
	s.waitFindingStatus(key, f.str("id"), "triaged")
	s.assertNoSecrets(connID)
}

func mustQuery(t *testing.T, raw, param string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get(param)
}

// Webhooks get lost; the periodic reconciliation pull converges the finding anyway.
func TestLostWebhookConvergesThroughReconciliation(t *testing.T) {
	s := newStackWith(t, map[string]string{"FINDING_RECONCILE_INTERVAL": "2s"})
	key := s.org("lost-webhook")
	s.findingSyncSetup(key)
	f := s.call("POST", "/v1/findings", key, map[string]any{"external_id": "lost-1", "title": "Data exfiltration", "severity": "high", "status": "open"})
	if f.status != 201 {
		t.Fatal(f.raw)
	}
	issueKey := s.issueOf(key, f.str("id"))
	s.cloud.LoseNextDeliveries(1)
	if err := s.cloud.TransitionAsHuman(issueKey, "In Progress"); err != nil {
		t.Fatal(err)
	}
	lost := false
	for _, d := range s.cloud.Deliveries() {
		lost = lost || d.Lost
	}
	if !lost {
		t.Fatal("the simulator did not lose the delivery; the test would prove nothing")
	}
	s.waitFindingStatus(key, f.str("id"), "triaged")
}

// TestFindingPushConfigurationErrorStaysOnTheConnection: a push Jira refuses for a configuration
// reason is shown on the connection, survives the evidence syncs that follow (whose state the
// workflow mirrors onto the connection), and is cleared when the finding-sync configuration is
// saved again — which also retries the finding.
func TestFindingPushConfigurationErrorStaysOnTheConnection(t *testing.T) {
	s := newStack(t)
	key := s.org("push-error-org")
	connID := s.findingSyncSetup(key)
	if err := s.cloud.SetProjectCreateForbidden("SEC", true); err != nil {
		t.Fatal(err)
	}
	f := s.call("POST", "/v1/findings", key, map[string]any{"external_id": "scan-9/forbidden", "title": "Jailbreak via role play",
		"severity": "critical", "status": "open"})
	if f.status != 201 {
		t.Fatal(f.raw)
	}
	pushError := func() map[string]any {
		c := s.call("GET", "/v1/connections/"+connID, key, nil)
		m, _ := c.body["finding_sync_error"].(map[string]any)
		return m
	}
	s.eventually("finding-sync error on the connection", 30*time.Second, func() bool {
		e := pushError()
		return e != nil && e["kind"] == "issue_create_forbidden"
	})
	s.waitSuccessfulSyncs(key, connID, 1)
	if r := s.call("POST", "/v1/connections/"+connID+"/sync", key, nil); r.status/100 != 2 {
		t.Fatalf("sync now: %d %s", r.status, r.raw)
	}
	s.waitSuccessfulSyncs(key, connID, 2)
	c := s.call("GET", "/v1/connections/"+connID, key, nil)
	if e := pushError(); e == nil || e["kind"] != "issue_create_forbidden" || c.str("last_error") != "" {
		t.Fatalf("after a successful evidence sync: finding_sync_error %v, last_error %q", e, c.str("last_error"))
	}

	// The admin fixes Jira and saves the configuration again: the error is gone and the finding
	// gets its issue.
	if err := s.cloud.SetProjectCreateForbidden("SEC", false); err != nil {
		t.Fatal(err)
	}
	if r := s.call("PUT", "/v1/connections/"+connID+"/finding-sync", key, map[string]any{"title_prefix": "[jiraconnect]"}); r.status != 200 {
		t.Fatalf("save finding sync: %d %s", r.status, r.raw)
	}
	if e := pushError(); e != nil {
		t.Errorf("finding-sync error after saving the configuration: %v", e)
	}
	s.issueOf(key, f.str("id"))
}

// TestFindingSyncToggleIsStrict: a toggle of the wrong JSON kind is a 400 naming the field and
// leaves finding sync as it was (it used to switch it off).
func TestFindingSyncToggleIsStrict(t *testing.T) {
	s := newStack(t)
	key := s.org("toggle")
	connID := s.findingSyncSetup(key)
	for _, body := range []map[string]any{{"enabled": "true"}, {"enabled": "false"}, {"enabled": 0}, {"enabled": nil, "project_key": 7}} {
		r := s.call("PUT", "/v1/connections/"+connID+"/finding-sync", key, body)
		field := "finding_sync.enabled"
		if _, ok := body["project_key"]; ok {
			field = "finding_sync.project_key"
		}
		if r.status != 400 || r.str("error", "field") != field {
			t.Errorf("%v: %d %s, want 400 naming %s", body, r.status, r.raw, field)
		}
		got := s.call("GET", "/v1/connections/"+connID, key, nil)
		cfg, _ := got.body["config"].(map[string]any)
		if fs, _ := cfg["finding_sync"].(map[string]any); fs["project_key"] != "SEC" {
			t.Fatalf("after %v finding sync is %v, want unchanged", body, cfg["finding_sync"])
		}
	}
	if r := s.call("PUT", "/v1/connections/"+connID+"/finding-sync", key, map[string]any{"enabled": false}); r.status != 200 {
		t.Fatalf("turning off: %d %s", r.status, r.raw)
	}
}

// TestConfigurationChangesAreAudited: every change of what is collected from or written to Jira is
// in the audit log with its old and new values.
func TestConfigurationChangesAreAudited(t *testing.T) {
	s := newStack(t)
	key := s.org("audit-config")
	connID := s.findingSyncSetup(key)
	jql := "labels = security AND resolved >= -7d ORDER BY resolved DESC"
	if r := s.call("PATCH", "/v1/connections/"+connID, key, map[string]any{"resolved_jql": jql, "sample_size": 10}); r.status != 200 {
		t.Fatalf("patch: %d %s", r.status, r.raw)
	}
	if r := s.call("PUT", "/v1/connections/"+connID+"/finding-sync", key, map[string]any{"severity_threshold": "critical"}); r.status != 200 {
		t.Fatalf("finding sync: %d %s", r.status, r.raw)
	}
	latest := func(action string) map[string]any {
		var meta map[string]any
		if err := testDB.Owner(t).QueryRow(context.Background(), `SELECT metadata FROM audit_log
			WHERE action = $1 AND target_id = $2 ORDER BY id DESC LIMIT 1`, action, connID).Scan(&meta); err != nil {
			t.Fatalf("%s: %v", action, err)
		}
		return meta
	}
	field := func(meta map[string]any, side, name string) any {
		m, _ := meta[side].(map[string]any)
		return m[name]
	}
	configure := latest("connection.configure")
	if field(configure, "old", "resolved_jql") != connections.DefaultResolvedJQL || field(configure, "new", "resolved_jql") != jql ||
		field(configure, "old", "sample_size") != float64(25) || field(configure, "new", "sample_size") != float64(10) {
		t.Errorf("connection.configure audited as %v", configure)
	}
	fs := latest("connection.finding_sync_configure")
	if field(fs, "old", "severity_threshold") != "high" || field(fs, "new", "severity_threshold") != "critical" ||
		field(fs, "new", "project_key") != "SEC" {
		t.Errorf("connection.finding_sync_configure audited as %v", fs)
	}
}

// A finding-sync configuration saved while Jira no longer accepts the connection's grant is
// refused as a re-authorization problem, not as a permission problem of the project.
func TestFindingSyncConfigurationWithARevokedGrantAsksForReauth(t *testing.T) {
	s := newStack(t)
	key := s.org("revoked-grant")
	r := s.call("POST", "/v1/connections", key, map[string]any{"kind": "cloud_oauth", "site_url": s.cloud.URL, "finding_sync": true})
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	connID := r.str("id")
	if done := s.callURL("GET", consent(t, r.str("authorize_url")), ""); done.status != 200 {
		t.Fatalf("callback: %d %s", done.status, done.raw)
	}
	s.cloud.RevokeOAuthGrants(s.cloud.AdminUser().Email)
	s.cloud.ExpireAccessTokens()
	fs := s.call("PUT", "/v1/connections/"+connID+"/finding-sync", key, map[string]any{"project_key": "SEC", "issue_type": jirasim.IssueTypeVulnerability})
	if fs.status != 409 || fs.str("error", "code") != "reauth_required" || !strings.Contains(fs.str("error", "message"), "re-authorize") {
		t.Fatalf("finding sync with a revoked grant: %d %s", fs.status, fs.raw)
	}
}
