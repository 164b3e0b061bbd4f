package e2e

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// runs returns the connection's runs, newest first.
func (s *stack) runs(key, connID string) []map[string]any {
	r := s.call("GET", "/v1/connections/"+connID+"/runs", key, nil)
	if r.status != 200 {
		s.t.Fatalf("runs: %d %s", r.status, r.raw)
	}
	var out []map[string]any
	for _, x := range r.body["runs"].([]any) {
		out = append(out, x.(map[string]any))
	}
	return out
}

// waitSuccessfulSyncs waits until the connection has n finished successful syncs.
func (s *stack) waitSuccessfulSyncs(key, connID string, n int) []map[string]any {
	s.t.Helper()
	var runs []map[string]any
	s.eventually("successful syncs", 30*time.Second, func() bool {
		runs = s.runs(key, connID)
		ok := 0
		for _, r := range runs {
			if r["kind"] == "sync" && (r["outcome"] == "success" || r["outcome"] == "partial") {
				ok++
			}
		}
		return ok >= n
	})
	return runs
}

func (s *stack) evidence(key, query string) []map[string]any {
	r := s.call("GET", "/v1/evidence?limit=200&"+query, key, nil)
	if r.status != 200 {
		s.t.Fatalf("evidence: %d %s", r.status, r.raw)
	}
	var out []map[string]any
	for _, x := range r.body["evidence"].([]any) {
		out = append(out, x.(map[string]any))
	}
	return out
}

func TestTokenConnectionSyncsEvidenceAndCoverage(t *testing.T) {
	s := newStack(t)
	key := s.org("token-org")
	apiToken := s.cloud.APIToken("admin@example.com")
	r := s.call("POST", "/v1/connections", key, map[string]any{
		"kind": "cloud_token", "site_url": s.cloud.URL, "email": "admin@example.com", "api_token": apiToken,
	})
	if r.status != 201 || r.str("status") != "active" || r.str("workflow_id") != "jira-connection/"+r.str("id") {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	if strings.Contains(r.raw, apiToken) {
		t.Fatal("response contains the API token")
	}
	connID := r.str("id")
	runs := s.waitSuccessfulSyncs(key, connID, 1)

	// Operators find the workflow in the Temporal UI by its search attributes.
	org := s.call("GET", "/v1/orgs/me", key, nil).str("id")
	query := workflows.AttrOrgID.GetName() + " = '" + org + "' AND " + workflows.AttrConnectionStatus.GetName() +
		" = 'active' AND " + workflows.AttrStale.GetName() + " = false"
	s.eventually("workflow visible by search attributes", 20*time.Second, func() bool {
		resp, err := s.tc.ListWorkflow(s.ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query})
		return err == nil && len(resp.GetExecutions()) == 1 && resp.GetExecutions()[0].GetExecution().GetWorkflowId() == "jira-connection/"+connID
	})
	if calls := runs[0]["jira_calls"].(float64); calls != defaultSyncCalls {
		t.Errorf("first sync made %v Jira calls, want %d", calls, defaultSyncCalls)
	}
	first := s.evidence(key, "connection="+connID)
	types := map[string]int{}
	for _, e := range first {
		types[e["type"].(string)]++
	}
	for _, typ := range []string{"jira.project_inventory", "jira.ticket_volume", "jira.security_ticket_sample", "jira.resolved_security_ticket", "jira.security_remediation"} {
		if types[typ] == 0 {
			t.Errorf("no %s evidence after a sync: %v", typ, types)
		}
	}
	// Coverage: at least the change-management controls are covered by fresh evidence.
	cov := s.call("GET", "/v1/coverage", key, nil)
	if cov.status != 200 || cov.body["Covered"] == nil && cov.body["covered"] == nil {
		t.Fatalf("coverage: %d %s", cov.status, cov.raw)
	}
	if !strings.Contains(cov.raw, `"soc2.cc8.1"`) {
		t.Fatalf("coverage lacks soc2.cc8.1: %s", cov.raw)
	}

	// The same content synced again: no new evidence rows, one more observation each.
	if r := s.call("POST", "/v1/connections/"+connID+"/sync", key, nil); r.status != 202 {
		t.Fatalf("sync now: %d %s", r.status, r.raw)
	}
	s.waitSuccessfulSyncs(key, connID, 2)
	second := s.evidence(key, "connection="+connID)
	if len(second) != len(first) {
		t.Fatalf("evidence rows after identical second sync: %d, want %d", len(second), len(first))
	}
	for _, e := range second {
		if e["observations"].(float64) != 2 {
			t.Errorf("evidence %s has %v observations, want 2", e["type"], e["observations"])
		}
	}
	// Filters: by control and by type.
	if ev := s.evidence(key, "control=soc2.cc8.1"); len(ev) != 2 {
		t.Errorf("control filter soc2.cc8.1: %d rows, want project inventory + ticket volume", len(ev))
	}
	if ev := s.evidence(key, "type=jira.project_inventory"); len(ev) != 1 {
		t.Errorf("type filter: %d rows", len(ev))
	}
	if r := s.call("GET", "/v1/evidence?type=bogus", key, nil); r.status != 400 || r.str("error", "field") != "type" {
		t.Errorf("bad type filter: %d %s", r.status, r.raw)
	}
}

func TestDataCenterPATConnection(t *testing.T) {
	s := newStack(t)
	key := s.org("dc-org")
	pat := s.dc.PAT("admin")
	r := s.call("POST", "/v1/connections", key, map[string]any{"kind": "datacenter_pat", "site_url": s.dc.URL, "pat": pat,
		"config": map[string]any{"sync_cadence": "12h", "stale_threshold": "36h", "sample_size": 10}})
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	connID := r.str("id")
	s.waitSuccessfulSyncs(key, connID, 1)
	got := s.call("GET", "/v1/connections/"+connID, key, nil)
	if got.str("config", "sync_cadence") != "12h0m0s" || got.body["last_success_at"] == nil || got.str("kind") != "datacenter_pat" {
		t.Fatalf("connection: %s", got.raw)
	}
}

func TestOAuthConnectFlow(t *testing.T) {
	s := newStack(t)
	key := s.org("oauth-org")
	otherKey := s.org("other-org")
	r := s.call("POST", "/v1/connections", key, map[string]any{"kind": "cloud_oauth", "site_url": s.cloud.URL})
	if r.status != 201 || r.str("status") != "pending_auth" {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	connID := r.str("id")
	authURL, err := url.Parse(r.str("authorize_url"))
	if err != nil {
		t.Fatal(err)
	}
	q := authURL.Query()
	if q.Get("audience") != "api.atlassian.com" || q.Get("prompt") != "consent" || q.Get("response_type") != "code" {
		t.Errorf("authorize url: %s", authURL)
	}
	if got := q.Get("scope"); got != "read:jira-work read:jira-user offline_access" {
		t.Errorf("scopes %q: only the minimum for evidence sync may be requested", got)
	}
	callback := consent(t, authURL.String())

	// Another org's key cannot complete this org's consent, and that attempt does not burn it.
	if r := s.callURL("GET", callback, otherKey); r.status != 400 || r.str("error", "code") != "invalid_state" {
		t.Fatalf("foreign-org callback: %d %s", r.status, r.raw)
	}
	done := s.callURL("GET", callback, "")
	if done.status != 200 || done.str("status") != "connected" || done.str("connection", "status") != "active" || done.str("connection", "cloud_id") != s.cloud.CloudID() {
		t.Fatalf("callback: %d %s", done.status, done.raw)
	}
	// The state is single-use.
	if r := s.callURL("GET", callback, ""); r.status != 400 || r.str("error", "code") != "invalid_state" {
		t.Fatalf("reused state: %d %s", r.status, r.raw)
	}
	s.waitSuccessfulSyncs(key, connID, 1)

	// An expired state is refused.
	r = s.call("POST", "/v1/connections/"+connID+"/reauth", key, map[string]any{})
	if r.status != 200 || r.str("authorize_url") == "" {
		t.Fatalf("reauth: %d %s", r.status, r.raw)
	}
	expired := consent(t, r.str("authorize_url"))
	if _, err := testDB.Owner(t).Exec(context.Background(), `UPDATE oauth_states SET expires_at = now() - interval '1 second' WHERE consumed_at IS NULL`); err != nil {
		t.Fatal(err)
	}
	if r := s.callURL("GET", expired, ""); r.status != 400 || r.str("error", "code") != "invalid_state" {
		t.Fatalf("expired state: %d %s", r.status, r.raw)
	}
	for _, bad := range []string{"/api/integrations/jira/callback", "/api/integrations/jira/callback?state=forged&code=x"} {
		if r := s.call("GET", bad, "", nil); r.status != 400 {
			t.Errorf("%s: %d %s", bad, r.status, r.raw)
		}
	}
	s.assertNoSecrets(connID)
}

// consent follows the simulator's /authorize redirect and returns our callback URL.
func consent(t *testing.T, authorizeURL string) string {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authorizeURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %d", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

func (s *stack) callURL(method, full, key string) reply {
	u, err := url.Parse(full)
	if err != nil {
		s.t.Fatal(err)
	}
	return s.call(method, u.RequestURI(), key, nil)
}

func TestBadConnectionInputChangesNothing(t *testing.T) {
	s := newStack(t)
	key := s.org("bad-input")
	token := s.cloud.APIToken("admin@example.com")
	cases := []struct {
		body        map[string]any
		status      int
		code, field string
	}{
		{map[string]any{"kind": "jira_server", "site_url": s.cloud.URL}, 400, "invalid_field", "kind"},
		{map[string]any{"kind": "cloud_token", "site_url": "not a url", "email": "a@b.c", "api_token": token}, 400, "invalid_field", "site_url"},
		// Plain http only to destinations the operator listed in JIRA_EGRESS_ALLOW.
		{map[string]any{"kind": "cloud_token", "site_url": "http://example.atlassian.net", "email": "a@b.c", "api_token": token}, 400, "egress_denied", "site_url"},
		{map[string]any{"kind": "cloud_token", "site_url": "https://u:p@x.atlassian.net", "email": "a@b.c", "api_token": token}, 400, "invalid_field", "site_url"},
		{map[string]any{"kind": "cloud_token", "site_url": s.cloud.URL, "email": "admin@example.com"}, 400, "invalid_field", "api_token"},
		{map[string]any{"kind": "cloud_token", "site_url": s.cloud.URL, "email": "admin@example.com", "api_token": "wrong"}, 400, "credentials_rejected", "api_token"},
		{map[string]any{"kind": "cloud_token", "site_url": s.cloud.URL, "email": "admin@example.com", "api_token": token, "config": map[string]any{"sync_cadence": "1s"}}, 400, "invalid_field", "config.sync_cadence"},
		{map[string]any{"kind": "cloud_token", "site_url": s.cloud.URL, "email": "admin@example.com", "api_token": token, "config": map[string]any{"sync_cadence": "soon"}}, 400, "invalid_field", "config.sync_cadence"},
		{map[string]any{"kind": "cloud_token", "site_url": s.cloud.URL, "email": "admin@example.com", "api_token": token, "config": map[string]any{"stale_threshold": "30m"}}, 400, "invalid_field", "config.stale_threshold"},
		{map[string]any{"kind": "cloud_token", "site_url": s.cloud.URL, "email": "admin@example.com", "api_token": token, "config": map[string]any{"sample_size": 0}}, 400, "invalid_field", "config.sample_size"},
		{map[string]any{"kind": "datacenter_pat", "site_url": s.dc.URL, "pat": "not-a-pat"}, 400, "credentials_rejected", "pat"},
		// Checked before anything is written: no connection, sealed secret or audit row appears.
		{map[string]any{"kind": "cloud_token", "site_url": s.cloud.URL, "email": "admin@example.com", "api_token": token, "finding_sync": true}, 400, "invalid_field", "finding_sync"},
		{map[string]any{"kind": "datacenter_pat", "site_url": s.dc.URL, "pat": s.dc.PAT("admin") + "\u0000"}, 400, "invalid_field", "pat"},
		{map[string]any{"kind": "datacenter_pat", "site_url": s.dc.URL, "pat": s.dc.PAT("admin") + "\r"}, 400, "invalid_field", "pat"},
		{map[string]any{"kind": "cloud_token", "site_url": s.cloud.URL, "email": "admin@example.com\u0000", "api_token": token}, 400, "invalid_field", "email"},
		{map[string]any{"kind": "cloud_token", "site_url": s.cloud.URL, "email": "admin@example.com", "api_token": token, "finding_sync": "true"}, 400, "invalid_field", "finding_sync"},
	}
	for i, c := range cases {
		r := s.call("POST", "/v1/connections", key, c.body)
		if r.status != c.status || r.str("error", "code") != c.code || (c.field != "" && r.str("error", "field") != c.field) {
			t.Errorf("case %d: %d %s, want %d %s %s", i, r.status, r.raw, c.status, c.code, c.field)
		}
		if strings.Contains(r.raw, token) {
			t.Errorf("case %d echoes the token", i)
		}
	}
	if r := s.call("GET", "/v1/connections", key, nil); len(r.body["connections"].([]any)) != 0 {
		t.Fatalf("bad input created connections: %s", r.raw)
	}
	var n int
	if err := testDB.Owner(t).QueryRow(context.Background(), `SELECT count(*) FROM connections c JOIN organizations o ON o.id = c.org_id WHERE o.name = 'bad-input'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("connections stored: %d %v", n, err)
	}
	if err := testDB.Owner(t).QueryRow(context.Background(), `SELECT count(*) FROM audit_log a JOIN organizations o ON o.id = a.org_id
		WHERE o.name = 'bad-input' AND a.action LIKE 'connection.%'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("connection audit rows written for refused requests: %d %v", n, err)
	}
}

func TestCrossTenantIsolationAndRevoke(t *testing.T) {
	s := newStack(t)
	keyA, keyB := s.org("tenant-a"), s.org("tenant-b")
	r := s.call("POST", "/v1/connections", keyA, map[string]any{"kind": "cloud_token", "site_url": s.cloud.URL,
		"email": "admin@example.com", "api_token": s.cloud.APIToken("admin@example.com")})
	if r.status != 201 {
		t.Fatal(r.raw)
	}
	connID := r.str("id")
	s.waitSuccessfulSyncs(keyA, connID, 1)

	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/connections/" + connID}, {"PATCH", "/v1/connections/" + connID}, {"DELETE", "/v1/connections/" + connID},
		{"POST", "/v1/connections/" + connID + "/sync"}, {"POST", "/v1/connections/" + connID + "/test"},
		{"POST", "/v1/connections/" + connID + "/reauth"}, {"GET", "/v1/connections/" + connID + "/runs"},
	} {
		var body any
		if c.method == "PATCH" || strings.HasSuffix(c.path, "/reauth") {
			body = map[string]any{}
		}
		if r := s.call(c.method, c.path, keyB, body); r.status != 404 {
			t.Errorf("org B %s %s: %d %s", c.method, c.path, r.status, r.raw)
		}
	}
	for _, path := range []string{"/v1/connections", "/v1/evidence", "/v1/alerts", "/v1/evidence?connection=" + connID} {
		r := s.call("GET", path, keyB, nil)
		for _, k := range []string{"connections", "evidence", "alerts"} {
			if list, ok := r.body[k].([]any); ok && len(list) != 0 {
				t.Errorf("org B %s sees %d %s", path, len(list), k)
			}
		}
	}

	// Test connection answers each check.
	tr := s.call("POST", "/v1/connections/"+connID+"/test", keyA, nil)
	if tr.status != 200 || tr.body["ok"] != true {
		t.Fatalf("test: %d %s", tr.status, tr.raw)
	}

	evidenceBefore := len(s.evidence(keyA, "connection="+connID))
	r = s.call("DELETE", "/v1/connections/"+connID, keyA, nil)
	if r.status != 200 || r.str("status") != "revoked" || r.body["revoked_at"] == nil {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	var sealed []byte
	var deleted *time.Time
	if err := testDB.Owner(t).QueryRow(context.Background(), `SELECT sealed_credentials, deleted_at FROM connections WHERE id = $1`, connID).Scan(&sealed, &deleted); err != nil {
		t.Fatal(err)
	}
	if sealed != nil || deleted == nil {
		t.Fatalf("after revoke: credentials=%d bytes deleted_at=%v", len(sealed), deleted)
	}
	if after := len(s.evidence(keyA, "connection="+connID)); after != evidenceBefore || after == 0 {
		t.Fatalf("evidence after revoke: %d, before %d", after, evidenceBefore)
	}
	if len(s.runs(keyA, connID)) == 0 {
		t.Fatal("runs not listed after revoke")
	}
	desc, err := s.tc.DescribeWorkflowExecution(s.ctx, "jira-connection/"+connID, "")
	if err != nil {
		t.Fatal(err)
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Fatalf("workflow after revoke: %s", st)
	}
	if r := s.call("POST", "/v1/connections/"+connID+"/sync", keyA, nil); r.status != 409 {
		t.Fatalf("sync after revoke: %d %s", r.status, r.raw)
	}
	s.assertNoSecrets(connID)
}

// assertNoSecrets scans every payload of every workflow history in the namespace and all
// captured logs for the connection's credentials (read back by unsealing them directly, or from
// the simulator for revoked connections).
func (s *stack) assertNoSecrets(connIDs ...string) {
	s.t.Helper()
	var secrets []string
	secrets = append(secrets, s.cloud.APIToken("admin@example.com"), s.dc.PAT("admin"))
	for _, id := range connIDs {
		cid := uuid.MustParse(id)
		var orgID uuid.UUID
		var kind string
		var sealed []byte
		if err := testDB.Owner(s.t).QueryRow(s.ctx, `SELECT org_id, kind, sealed_credentials FROM connections WHERE id = $1`, cid).Scan(&orgID, &kind, &sealed); err != nil {
			s.t.Fatal(err)
		}
		if len(sealed) > 0 {
			creds, err := connections.OpenCredentials(s.ctx, s.core.Sealer, orgID, cid, connections.Kind(kind), sealed)
			if err != nil {
				s.t.Fatal(err)
			}
			for _, sec := range []jira.Secret{creds.Access, creds.Refresh, creds.APIToken, creds.PAT} {
				if !sec.IsZero() {
					secrets = append(secrets, sec.Reveal())
				}
			}
		}
	}
	list, err := s.tc.ListWorkflow(s.ctx, &workflowservice.ListWorkflowExecutionsRequest{})
	if err != nil {
		s.t.Fatal(err)
	}
	if len(list.GetExecutions()) == 0 {
		s.t.Fatal("no workflows to scan")
	}
	for _, ex := range list.GetExecutions() {
		it := s.tc.GetWorkflowHistory(s.ctx, ex.GetExecution().GetWorkflowId(), ex.GetExecution().GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				s.t.Fatal(err)
			}
			raw := ev.String()
			for _, sec := range secrets {
				if strings.Contains(raw, sec) {
					s.t.Fatalf("workflow %s history event %d contains a credential", ex.GetExecution().GetWorkflowId(), ev.GetEventId())
				}
			}
		}
	}
	logs := s.logs.String()
	if len(logs) == 0 {
		s.t.Fatal("no logs captured")
	}
	for _, sec := range secrets {
		if strings.Contains(logs, sec) {
			s.t.Fatal("captured logs contain a credential")
		}
	}
}
