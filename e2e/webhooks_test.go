package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// issueUpdated is a jira:issue_updated body in the shape Jira sends (see jira/webhook/testdata).
func issueUpdated(issueID, key, statusID, statusName, category string, ts int64) []byte {
	body := map[string]any{
		"timestamp": ts, "webhookEvent": "jira:issue_updated", "issue_event_type_name": "issue_generic",
		"user": map[string]any{"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Ann Analyst"},
		"issue": map[string]any{"id": issueID, "key": key, "self": "https://x.atlassian.net/rest/api/2/issue/" + issueID,
			"fields": map[string]any{"status": map[string]any{"id": statusID, "name": statusName,
				"statusCategory": map[string]any{"id": 3, "key": category, "name": "Done"}}}},
		"changelog": map[string]any{"id": "10228", "items": []any{map[string]any{"field": "status", "fieldtype": "jira", "fieldId": "status",
			"from": "3", "fromString": "In Progress", "to": statusID, "toString": statusName}}},
	}
	b, _ := json.Marshal(body)
	return b
}

type hookResp struct {
	status int
	code   string
}

func (s *stack) deliver(url string, body []byte, headers map[string]string) hookResp {
	s.t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var b struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
		Status string `json:"status"`
	}
	_ = json.Unmarshal(raw, &b)
	code := b.Error.Code
	if code == "" {
		code = b.Status
	}
	return hookResp{resp.StatusCode, code}
}

func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// The webhook bridge authenticates before it looks at the payload and accepts each delivery once.
func TestWebhookBridgeAuthenticatesAndDedupes(t *testing.T) {
	s := newStack(t)
	key := s.org("hooks")
	r := s.call("POST", "/v1/connections", key, map[string]any{"kind": "cloud_token", "site_url": s.cloud.URL,
		"email": "admin@example.com", "api_token": s.cloud.APIToken("admin@example.com")})
	if r.status != 201 {
		t.Fatal(r.raw)
	}
	connID := r.str("id")
	hookURL := r.str("webhook", "url")
	signing := r.str("webhook", "signing_secret")
	if !strings.Contains(hookURL, "/webhooks/jira/"+connID+"/") || signing == "" {
		t.Fatalf("webhook details: %s", r.raw)
	}
	// GET never shows the secrets again.
	if g := s.call("GET", "/v1/connections/"+connID, key, nil); strings.Contains(g.raw, signing) || strings.Contains(g.raw, hookURL) {
		t.Fatal("secrets shown after creation")
	}
	body := issueUpdated("10001", "SEC-1", "10002", "Done", "done", 1700000000000)
	ok := map[string]string{"X-Hub-Signature": sign(signing, body), "X-Atlassian-Webhook-Identifier": "delivery-1"}
	cases := []struct {
		name    string
		url     string
		body    []byte
		headers map[string]string
		status  int
		code    string
	}{
		{"wrong secret", hookURL[:strings.LastIndex(hookURL, "/")+1] + "not-the-secret", body, ok, 401, "invalid_webhook_secret"},
		{"unknown connection", s.api + "/webhooks/jira/7b0c1f5e-6a51-4f0e-9a43-2a3f5d1c9e10/x", body, ok, 404, "not_found"},
		{"missing signature", hookURL, body, map[string]string{"X-Atlassian-Webhook-Identifier": "d"}, 401, "invalid_signature"},
		{"bad signature", hookURL, body, map[string]string{"X-Hub-Signature": sign("other", body)}, 401, "invalid_signature"},
		{"sha1 signature", hookURL, body, map[string]string{"X-Hub-Signature": "sha1=" + strings.Repeat("0", 40)}, 401, "invalid_signature"},
		{"oversized", hookURL, bytes.Repeat([]byte("x"), 2<<20), ok, 413, "body_too_large"},
		{"malformed", hookURL, []byte(`{"webhookEvent":`), map[string]string{"X-Hub-Signature": sign(signing, []byte(`{"webhookEvent":`))}, 400, "invalid_payload"},
	}
	for _, c := range cases {
		if got := s.deliver(c.url, c.body, c.headers); got.status != c.status || got.code != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, got.status, got.code, c.status, c.code)
		}
	}
	if got := s.deliver(hookURL, body, ok); got.status != 202 || got.code != "accepted" {
		t.Fatalf("valid delivery: %+v", got)
	}
	// Jira retries and duplicates deliveries: the same identifier is accepted once.
	for range 3 {
		if got := s.deliver(hookURL, body, ok); got.status != 200 || got.code != "duplicate" {
			t.Fatalf("duplicate delivery: %+v", got)
		}
	}
	var stored int
	if err := testDB.Owner(t).QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries WHERE connection_id = $1`, connID).Scan(&stored); err != nil || stored != 1 {
		t.Fatalf("deliveries stored: %d %v", stored, err)
	}
	// Rotating the secret invalidates the old URL.
	rot := s.call("POST", "/v1/connections/"+connID+"/webhook-secret", key, nil)
	if rot.status != 200 || rot.str("webhook", "url") == hookURL {
		t.Fatalf("rotate: %s", rot.raw)
	}
	if got := s.deliver(hookURL, body, ok); got.status != 401 {
		t.Fatalf("old URL after rotation: %+v", got)
	}
	// A revoked connection's webhook answers 404.
	s.call("DELETE", "/v1/connections/"+connID, key, nil)
	if got := s.deliver(rot.str("webhook", "url"), body, map[string]string{"X-Hub-Signature": sign(rot.str("webhook", "signing_secret"), body)}); got.status != 404 {
		t.Fatalf("revoked connection: %+v", got)
	}
}

func TestWebhookSourceAllowlist(t *testing.T) {
	s := newStackWith(t, map[string]string{"WEBHOOK_ALLOWED_CIDRS": "10.20.0.0/16", "TRUSTED_PROXIES": "127.0.0.1/32"})
	key := s.org("allowlist")
	r := s.call("POST", "/v1/connections", key, map[string]any{"kind": "datacenter_pat", "site_url": s.dc.URL, "pat": s.dc.PAT("admin")})
	if r.status != 201 {
		t.Fatal(r.raw)
	}
	hookURL, signing := r.str("webhook", "url"), r.str("webhook", "signing_secret")
	body := issueUpdated("10001", "SEC-1", "10002", "Done", "done", 1700000000000)
	sig := sign(signing, body)
	// Direct from loopback (a trusted proxy without a forwarded address): not in the allowlist.
	if got := s.deliver(hookURL, body, map[string]string{"X-Hub-Signature": sig}); got.status != 403 || got.code != "source_not_allowed" {
		t.Fatalf("loopback source: %+v", got)
	}
	// Through the trusted proxy from an allowed address.
	if got := s.deliver(hookURL, body, map[string]string{"X-Hub-Signature": sig, "X-Forwarded-For": "10.20.3.4"}); got.status != 202 {
		t.Fatalf("allowed forwarded source: %+v", got)
	}
	// A spoofed chain: the right-most untrusted hop decides, not the left-most claim.
	if got := s.deliver(hookURL, body, map[string]string{"X-Hub-Signature": sig, "X-Forwarded-For": "10.20.3.4, 198.51.100.7"}); got.status != 403 {
		t.Fatalf("spoofed forwarded chain: %+v", got)
	}
}
