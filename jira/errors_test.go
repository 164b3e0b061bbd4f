package jira

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestErrorClassification(t *testing.T) {
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	tests := []struct {
		name       string
		route      string
		resp       canned
		call       func(c *Client) error
		kind       Kind
		retryAfter time.Duration
		reason     string
		contains   string
		absent     string
		fields     []string
	}{
		{name: "400 field error (recorded Cloud create)", route: "POST /rest/api/3/issue",
			resp: canned{status: 400, body: `{"errorMessages":[],"errors":{"issuetype":"issue type is required"}}`},
			call: create, kind: KindBadRequest, contains: "issuetype: issue type is required"},
		{name: "400 unknown custom field", route: "POST /rest/api/3/issue",
			resp: canned{status: 400, body: `{"errorMessages":[],"errors":{"customfield_10099":"Field 'customfield_10099' cannot be set. It is not on the appropriate screen, or unknown."}}`},
			call: create, kind: KindCustomFieldUnknown, fields: []string{"customfield_10099"}},
		{name: "403 on create", route: "POST /rest/api/3/issue",
			resp: canned{status: 403, body: `{"errorMessages":["You do not have permission to create issues in this project."],"errors":{}}`},
			call: create, kind: KindIssueCreateForbidden},
		{name: "403 elsewhere", route: "GET /rest/api/3/webhook",
			resp: canned{status: 403, body: `{"errorMessages":["The caller isn't an app."],"errors":{},"status":403}`},
			call: func(c *Client) error { _, err := c.ListWebhooks(context.Background()); return err }, kind: KindForbidden, contains: "The caller isn't an app."},
		{name: "404 issue", route: "GET /rest/api/3/issue/A-1",
			resp: canned{status: 404, body: `{"errorMessages":["Issue does not exist or you do not have permission to see it."],"errors":{}}`},
			call: getIssue, kind: KindNotFound, contains: "Issue does not exist"},
		{name: "404 custom field", route: "GET /rest/api/3/issue/A-1",
			resp: canned{status: 404, body: `{"errorMessages":["Custom field with id 'customfield_10050' does not exist"],"errors":{}}`},
			call: getIssue, kind: KindCustomFieldUnknown},
		{name: "410 removed search", route: "POST /rest/api/3/search/jql",
			resp: canned{status: 410, body: `{"errorMessages":["The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"]}`},
			call: search, kind: KindGone, contains: "has been removed"},
		{name: "409", route: "POST /rest/api/3/search/jql", resp: canned{status: 409, body: `{"errorMessages":["conflict"],"errors":{}}`}, call: search, kind: KindConflict},
		{name: "413", route: "POST /rest/api/3/search/jql", resp: canned{status: 413, body: `{"errorMessages":["limit"],"errors":{}}`}, call: search, kind: KindBadRequest},
		{name: "401 plain text with API token", route: "GET /rest/api/3/myself",
			resp: canned{status: 401, header: map[string]string{"Content-Type": "text/plain;charset=UTF-8"}, body: "Client must be authenticated to access this resource."},
			call: myself, kind: KindReauthRequired, contains: "non-JSON error body (text/plain, 53 bytes)", absent: "Client must be authenticated"},
		{name: "429 seconds", route: "POST /rest/api/3/search/jql",
			resp: canned{status: 429, header: map[string]string{"Retry-After": "7", "RateLimit-Reason": "jira-burst-based"}, body: ``},
			call: search, kind: KindRateLimited, retryAfter: 7 * time.Second, reason: "jira-burst-based"},
		{name: "429 http date", route: "POST /rest/api/3/search/jql",
			resp: canned{status: 429, header: map[string]string{"Retry-After": date}},
			call: search, kind: KindRateLimited, retryAfter: 90 * time.Second},
		{name: "429 beta headers", route: "POST /rest/api/3/search/jql",
			resp: canned{status: 429, header: map[string]string{"Beta-Retry-After": "12", "X-Beta-Ratelimit-Reason": "jira-quota-tenant-based"}},
			call: search, kind: KindRateLimited, retryAfter: 12 * time.Second, reason: "jira-quota-tenant-based"},
		{name: "429 without header", route: "POST /rest/api/3/search/jql", resp: canned{status: 429}, call: search, kind: KindRateLimited},
		{name: "503 with Retry-After", route: "POST /rest/api/3/search/jql",
			resp: canned{status: 503, header: map[string]string{"Retry-After": "30"}}, call: search, kind: KindRateLimited, retryAfter: 30 * time.Second},
		{name: "503 without Retry-After", route: "POST /rest/api/3/search/jql", resp: canned{status: 503}, call: search, kind: KindServer},
		{name: "500 html", route: "POST /rest/api/3/search/jql",
			resp: canned{status: 500, header: map[string]string{"Content-Type": "text/html"}, body: "<html><body>Oops <script>x</script></body></html>"},
			call: search, kind: KindServer, contains: "non-JSON error body (text/html"},
		{name: "302 to login", route: "GET /rest/api/3/myself",
			resp: canned{status: 302, header: map[string]string{"Location": "https://sso.example.com/login?next=x"}},
			call: myself, kind: KindConfig, contains: "unexpected redirect", absent: "sso.example.com"},
		// JSON that is not Jira's error shape is some other service's: described, not relayed.
		{name: "500 foreign json", route: "POST /rest/api/3/search/jql",
			resp: canned{status: 500, header: map[string]string{"Content-Type": "application/json"}, body: `{"status":"down","message":"redis at 10.1.2.3:6379 refused"}`},
			call: search, kind: KindServer, contains: "non-Jira error body (application/json", absent: "10.1.2.3"},
		{name: "404 plain text banner", route: "GET /rest/api/3/myself",
			resp: canned{status: 404, header: map[string]string{"Content-Type": "text/plain"}, body: "404 page not found (internal-admin v2.3.1)"},
			call: myself, kind: KindNotFound, contains: "non-JSON error body (text/plain", absent: "internal-admin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFixtureServer(t, map[string]canned{tt.route: tt.resp})
			c := newTestClient(t, Cloud, fs.URL, nil)
			err := tt.call(c)
			var je *Error
			if !errors.As(err, &je) {
				t.Fatalf("err = %v (%T)", err, err)
			}
			if je.Kind != tt.kind || KindOf(err) != tt.kind {
				t.Errorf("kind = %q, want %q (%v)", je.Kind, tt.kind, err)
			}
			if tt.retryAfter != 0 && (je.RetryAfter < tt.retryAfter-2*time.Second || je.RetryAfter > tt.retryAfter) {
				t.Errorf("RetryAfter = %v, want %v", je.RetryAfter, tt.retryAfter)
			}
			if tt.retryAfter == 0 && je.RetryAfter != 0 {
				t.Errorf("RetryAfter = %v, want 0", je.RetryAfter)
			}
			if je.RateLimitReason != tt.reason {
				t.Errorf("reason = %q, want %q", je.RateLimitReason, tt.reason)
			}
			if tt.contains != "" && !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("error %q does not contain %q", err, tt.contains)
			}
			if tt.absent != "" && strings.Contains(err.Error(), tt.absent) {
				t.Errorf("error %q contains %q", err, tt.absent)
			}
			if tt.fields != nil && strings.Join(je.CustomFields(), ",") != strings.Join(tt.fields, ",") {
				t.Errorf("custom fields = %v", je.CustomFields())
			}
			if !errors.Is(err, kindSentinel(tt.kind)) {
				t.Errorf("errors.Is(err, %s) is false", tt.kind)
			}
			if strings.Contains(err.Error(), "<script>") || strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("error text not sanitized: %q", err)
			}
			if got := Retryable(err); got != (tt.kind == KindRateLimited || tt.kind == KindServer || tt.kind == KindConflict) {
				t.Errorf("Retryable = %v for %s", got, tt.kind)
			}
		})
	}
}

func create(c *Client) error {
	_, err := c.CreateIssue(context.Background(), IssueInput{Project: "A", IssueType: "Bug", Summary: "s"})
	return err
}
func getIssue(c *Client) error { _, err := c.GetIssue(context.Background(), "A-1"); return err }
func search(c *Client) error {
	_, err := c.Search(context.Background(), SearchRequest{JQL: "project = A"})
	return err
}
func myself(c *Client) error { _, err := c.Myself(context.Background()); return err }

func TestTransportErrors(t *testing.T) {
	// A server that accepts and immediately closes connections.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.Close()
		}
	}()
	c := newTestClient(t, Cloud, "http://"+ln.Addr().String(), nil)
	err = myself(c)
	if KindOf(err) != KindTransport || !Retryable(err) {
		t.Fatalf("err = %v", err)
	}
	assertNoSecret(t, "transport error", err.Error(), testToken)

	// A slow server and a context deadline: the deadline is honoured and matchable.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	c = newTestClient(t, Cloud, slow.URL, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.Myself(ctx)
	if KindOf(err) != KindTransport || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	// Without a context deadline the client's own timeout applies.
	c2, _ := New(Config{Flavor: Cloud, BaseURL: slow.URL, Auth: APIToken(testEmail, NewSecret(testToken)), RequestTimeout: 50 * time.Millisecond})
	if _, err = c2.Myself(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("default timeout err = %v", err)
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    map[string]string
		want time.Duration
	}{
		{map[string]string{"Retry-After": "5"}, 5 * time.Second},
		{map[string]string{"Retry-After": "0.5"}, 500 * time.Millisecond},
		{map[string]string{"Retry-After": "-3"}, 0},
		{map[string]string{"Retry-After": "soon", "Beta-Retry-After": "4"}, 4 * time.Second},
		{map[string]string{"Retry-After": now.Add(time.Minute).Format(http.TimeFormat)}, time.Minute},
		{map[string]string{"Retry-After": now.Add(-time.Minute).Format(http.TimeFormat)}, 0},
		{map[string]string{"Retry-After": "999999999"}, 24 * time.Hour},
		{map[string]string{"Retry-After": "NaN"}, 0},
		{map[string]string{}, 0},
	} {
		h := http.Header{}
		for k, v := range tc.h {
			h.Set(k, v)
		}
		if got := retryAfter(h, now); got != tc.want {
			t.Errorf("retryAfter(%v) = %v, want %v", tc.h, got, tc.want)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	auth := APIToken(testEmail, NewSecret(testToken))
	for name, cfg := range map[string]Config{
		"no flavor":       {BaseURL: "https://x.atlassian.net", Auth: auth},
		"no auth":         {Flavor: Cloud, BaseURL: "https://x.atlassian.net"},
		"no base":         {Flavor: Cloud, Auth: auth},
		"ftp base":        {Flavor: Cloud, BaseURL: "ftp://x", Auth: auth},
		"userinfo":        {Flavor: Cloud, BaseURL: "https://bot:" + testToken + "@x.atlassian.net", Auth: auth},
		"query":           {Flavor: Cloud, BaseURL: "https://x.atlassian.net/?token=" + testToken, Auth: auth},
		"oauth on site":   {Flavor: Cloud, BaseURL: "https://x.atlassian.net", Auth: OAuth(nil)},
		"oauth on DC":     {Flavor: DataCenter, BaseURL: "https://jira.example.com", Auth: OAuth(nil)},
		"bad site url":    {Flavor: Cloud, BaseURL: "https://x.atlassian.net", SiteURL: "javascript:x", Auth: auth},
		"relative base":   {Flavor: Cloud, BaseURL: "/rest", Auth: auth},
		"unparsable base": {Flavor: Cloud, BaseURL: "https://x\x7f", Auth: auth},
	} {
		_, err := New(cfg)
		if KindOf(err) != KindConfig {
			t.Errorf("%s: err = %v", name, err)
			continue
		}
		assertNoSecret(t, name, err.Error(), testToken)
	}
	c, err := New(Config{Flavor: DataCenter, BaseURL: "https://jira.example.com/jira/", Auth: PAT(NewSecret("x"))})
	if err != nil || c.fullPath("/myself") != "/jira/rest/api/2/myself" || c.BrowseURL("A-1") != "https://jira.example.com/jira/browse/A-1" {
		t.Errorf("context path handling: %v %q", err, c.fullPath("/myself"))
	}
}

func TestInvalidReferencesNeverReachJira(t *testing.T) {
	fs := newFixtureServer(t, nil)
	c := newTestClient(t, Cloud, fs.URL, nil)
	ctx := context.Background()
	for _, key := range []string{"", "../../myself", "A-1/transitions", "A-1?x=1", "A B-1", "-1", "A-", "1A-2"} {
		if _, err := c.GetIssue(ctx, key); KindOf(err) != KindConfig {
			t.Errorf("GetIssue(%q) err = %v", key, err)
		}
		if _, err := c.Transitions(ctx, key); KindOf(err) != KindConfig {
			t.Errorf("Transitions(%q) err = %v", key, err)
		}
	}
	if _, err := c.IssueTypes(ctx, "A/../B"); KindOf(err) != KindConfig {
		t.Errorf("IssueTypes err = %v", err)
	}
	if _, err := c.CreateFields(ctx, "A", "1/../2"); KindOf(err) != KindConfig {
		t.Errorf("CreateFields err = %v", err)
	}
	if _, err := c.Search(ctx, SearchRequest{JQL: " "}); KindOf(err) != KindConfig {
		t.Errorf("empty JQL err = %v", err)
	}
	if _, err := c.Search(ctx, SearchRequest{JQL: "a = b", ReconcileIssues: make([]int64, 51)}); KindOf(err) != KindConfig {
		t.Errorf("reconcile limit err = %v", err)
	}
	if len(fs.requests()) != 0 {
		t.Errorf("requests reached the server: %+v", fs.requests())
	}
}

func TestStatsConcurrency(t *testing.T) {
	var s CallStats
	done := make(chan bool)
	for range 8 {
		go func() {
			for range 1000 {
				s.Record("a")
				_ = s.Total()
			}
			done <- true
		}()
	}
	for range 8 {
		<-done
	}
	if s.Total() != 8000 || s.ByOp()["a"] != 8000 {
		t.Fatalf("stats = %v", s.ByOp())
	}
	m := s.ByOp()
	m["a"] = 0
	if s.ByOp()["a"] != 8000 {
		t.Fatal("ByOp returned internal map")
	}
	var nilStats *CallStats
	nilStats.Record("x")
	if nilStats.Total() != 0 || len(nilStats.ByOp()) != 0 {
		t.Fatal("nil stats")
	}
}

// --- secrets ---

func TestSecretRedaction(t *testing.T) {
	const raw = "super-secret-token-123456"
	s := NewSecret(raw)
	type holder struct {
		Public  Secret
		private Secret
		Tokens  Tokens
	}
	h := holder{Public: s, private: s, Tokens: Tokens{Access: s, Refresh: s, Expiry: time.Unix(0, 0)}}
	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
		outputs = append(outputs, fmt.Sprintf(verb, s), fmt.Sprintf(verb, h), fmt.Sprintf(verb, &h), fmt.Sprintf(verb, []Secret{s}), fmt.Sprintf(verb, map[string]Secret{"k": s}))
	}
	outputs = append(outputs, fmt.Sprint(s), fmt.Sprintln(h), s.String(), s.GoString())
	j, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, string(j))
	var buf bytes.Buffer
	for _, handler := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
		l := slog.New(handler)
		l.Info("msg", "secret", s, "holder", h, slog.Any("tokens", h.Tokens), slog.Group("g", "s", s))
	}
	outputs = append(outputs, buf.String())
	for _, o := range outputs {
		assertNoSecret(t, "formatted secret", o, raw)
	}
	if !strings.Contains(fmt.Sprint(s), "[REDACTED]") || s.Reveal() != raw || !s.Equal(NewSecret(raw)) || NewSecret("").String() != "" {
		t.Error("Secret accessors")
	}
	var zero Secret
	if !zero.IsZero() || zero.Reveal() != "" {
		t.Error("zero secret")
	}
	// Auth values and configs print no credential either.
	for _, a := range []Auth{APIToken("bot@example.com", s), PAT(s)} {
		cfg := Config{Flavor: Cloud, BaseURL: "https://x.atlassian.net", Auth: a}
		for _, verb := range []string{"%v", "%+v", "%#v"} {
			assertNoSecret(t, "auth", fmt.Sprintf(verb, a)+fmt.Sprintf(verb, cfg), raw)
		}
	}
	app := OAuthApp{ClientID: "id", ClientSecret: s}
	for _, verb := range []string{"%v", "%+v", "%#v"} {
		assertNoSecret(t, "oauth app", fmt.Sprintf(verb, app), raw)
	}
}

// A server (or proxy) that echoes the request's Authorization header into its error body must
// not get the credential into our error strings: Jira-shaped error JSON is kept with the
// credential redacted, and any other body is only described, its redacted excerpt logged.
func TestErrorsScrubEchoedCredentials(t *testing.T) {
	echo := func(jsonBody bool) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := r.Header.Get("Authorization")
			_, cred, _ := strings.Cut(h, " ")
			text := fmt.Sprintf("bad request with header %s (credential %s)", h, cred)
			if jsonBody {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				_ = json.NewEncoder(w).Encode(map[string]any{"errorMessages": []string{text}, "errors": map[string]string{}})
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, text)
		}))
	}
	for _, jsonBody := range []bool{true, false} {
		srv := echo(jsonBody)
		defer srv.Close()
		var logs bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		for _, cfg := range []Config{
			{Flavor: Cloud, BaseURL: srv.URL, Auth: APIToken(testEmail, NewSecret(testToken)), Logger: logger},
			{Flavor: DataCenter, BaseURL: srv.URL, Auth: PAT(NewSecret(testToken)), Logger: logger},
		} {
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Myself(context.Background())
			if KindOf(err) != KindBadRequest {
				t.Fatalf("err = %v", err)
			}
			basic := "Basic " // the base64 of email:token must be scrubbed too
			msg := err.Error()
			if jsonBody != strings.Contains(msg, "[REDACTED]") {
				t.Errorf("json body %v: redaction marker in %q", jsonBody, msg)
			}
			if !jsonBody && (strings.Contains(msg, "bad request with header") || !strings.Contains(msg, "non-JSON error body (text/plain")) {
				t.Errorf("a non-Jira body reached the error: %q", msg)
			}
			assertNoSecret(t, "echoed error", msg, testToken)
			if i := strings.Index(msg, basic); i >= 0 && !strings.HasPrefix(msg[i+len(basic):], "[REDACTED]") {
				t.Errorf("basic credential not scrubbed: %q", msg)
			}
			for _, verb := range []string{"%v", "%+v", "%#v"} {
				assertNoSecret(t, "formatted error", fmt.Sprintf(verb, err), testToken)
			}
		}
		assertNoSecret(t, "logs", logs.String(), testToken)
		if !jsonBody && (!strings.Contains(logs.String(), "non-Jira error body") || !strings.Contains(logs.String(), "[REDACTED]")) {
			t.Errorf("the non-Jira body's redacted excerpt is not logged: %s", logs.String())
		}
	}
}

func TestInvalidOptionIsNotUnknownField(t *testing.T) {
	fs := newFixtureServer(t, map[string]canned{"POST /rest/api/3/issue": {status: 400, body: `{"errorMessages":[],"errors":{"customfield_10100":"Option value 'SOC2' is not valid"}}`}})
	err := create(newTestClient(t, Cloud, fs.URL, nil))
	var je *Error
	if !errors.As(err, &je) || je.Kind != KindBadRequest || strings.Join(je.CustomFields(), ",") != "customfield_10100" {
		t.Fatalf("err = %v", err)
	}
}

// A body cut short after the headers (Content-Length promises more) is a transport error, which
// activities retry, not a malformed response.
func TestBodyCutShort(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hj, ok := w.(http.Hijacker)
		if !ok {
			t.Error("no hijacker")
			return
		}
		conn, buf, err := hj.Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"count\":")
		_ = buf.Flush()
		_ = conn.Close()
	}))
	defer srv.Close()
	c := newTestClient(t, Cloud, srv.URL, nil)
	_, err := c.ApproximateCount(context.Background(), "project = A")
	var je *Error
	if !errors.As(err, &je) || je.Kind != KindTransport || je.Status != 200 || !Retryable(err) {
		t.Fatalf("err = %v", err)
	}
}
