package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/jiraconnect/jiraconnect/api"
	"github.com/jiraconnect/jiraconnect/apperr"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/db/dbtest"
	"github.com/jiraconnect/jiraconnect/metrics"
	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, &testDB)) }

type env struct {
	t       *testing.T
	srv     *httptest.Server
	server  *api.Server
	tenancy *tenancy.Service
}

func newEnv(t *testing.T, temporal api.Pinger) *env {
	t.Helper()
	d := testDB.Open(t)
	kr, err := seal.OpenLocalKeyring(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.New(kr, tenancy.KeyStore{DB: d}, seal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := &tenancy.Service{DB: d, Sealer: sealer}
	m := metrics.New(log)
	t.Cleanup(func() { _ = m.Close() })
	s := api.New(api.Deps{Log: log, DB: d, Tenancy: svc, Metrics: m, TemporalHealth: temporal, MaxBodyBytes: 4096, Version: "test"})
	srv := httptest.NewServer(checked(t, s.Handler()))
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, server: s, tenancy: svc}
}

func (e *env) org(name string) (tenancy.Org, string) {
	e.t.Helper()
	org, key, err := e.tenancy.CreateOrg(context.Background(), name, audit.Actor{Type: audit.ActorCLI, ID: "test"})
	if err != nil {
		e.t.Fatal(err)
	}
	return org, key.Plaintext
}

type response struct {
	status int
	body   map[string]any
	raw    string
}

func (e *env) do(method, path, key, contentType, body string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, raw: string(raw)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			e.t.Fatalf("%s %s: invalid JSON body %q: %v", method, path, raw, err)
		}
	}
	return r
}

func errField(r response, key string) string {
	e, _ := r.body["error"].(map[string]any)
	s, _ := e[key].(string)
	return s
}

func okPing(context.Context) error { return nil }

func TestHealthAndReadiness(t *testing.T) {
	e := newEnv(t, api.PingFunc(okPing))
	if r := e.do("GET", "/healthz", "", "", ""); r.status != 200 || r.body["status"] != "ok" {
		t.Fatalf("healthz: %d %s", r.status, r.raw)
	}
	if r := e.do("GET", "/readyz", "", "", ""); r.status != 200 || r.body["ready"] != true {
		t.Fatalf("readyz: %d %s", r.status, r.raw)
	}
	down := newEnv(t, api.PingFunc(func(context.Context) error { return errors.New("connection refused") }))
	r := down.do("GET", "/readyz", "", "", "")
	if r.status != 503 || !strings.Contains(r.raw, `"temporal":"unreachable"`) || !strings.Contains(r.raw, `"postgres":"ok"`) {
		t.Fatalf("readyz with temporal down: %d %s", r.status, r.raw)
	}
	if m := e.do("GET", "/metrics", "", "", ""); m.status != 404 {
		t.Fatalf("the public listener serves /metrics: %d", m.status)
	}
	ops := httptest.NewServer(checked(t, e.server.OpsHandler()))
	t.Cleanup(ops.Close)
	resp, err := http.Get(ops.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(raw), "jiraconnect_http_requests_total") || !strings.Contains(string(raw), "go_goroutines") {
		t.Fatalf("ops metrics: %d %.300s", resp.StatusCode, raw)
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t, api.PingFunc(okPing))
	org, key := e.org("auth-org")
	for _, bad := range []string{"", "jck_nope", key + "x"} {
		r := e.do("GET", "/v1/orgs/me", bad, "", "")
		if r.status != 401 || errField(r, "code") != "unauthorized" {
			t.Errorf("key %q: %d %s", bad, r.status, r.raw)
		}
	}
	r := e.do("GET", "/v1/orgs/me", key, "", "")
	if r.status != 200 || r.body["id"] != org.ID.String() || r.body["name"] != "auth-org" || r.body["role"] != "admin" {
		t.Fatalf("orgs/me: %d %s", r.status, r.raw)
	}
	if strings.Contains(r.raw, key) {
		t.Fatal("response echoes the API key")
	}
}

func TestRolesAndKeyCreation(t *testing.T) {
	e := newEnv(t, api.PingFunc(okPing))
	_, admin := e.org("roles-org")
	keys := map[string]string{}
	for _, role := range []string{"member", "auditor"} {
		r := e.do("POST", "/v1/api-keys", admin, "application/json", `{"name":"`+role+` key","role":"`+role+`"}`)
		if r.status != 201 || r.body["role"] != role || !strings.HasPrefix(r.body["key"].(string), "jck_") {
			t.Fatalf("create %s key: %d %s", role, r.status, r.raw)
		}
		keys[role] = r.body["key"].(string)
	}
	for _, role := range []string{"member", "auditor"} {
		if r := e.do("POST", "/v1/api-keys", keys[role], "application/json", `{"name":"x","role":"admin"}`); r.status != 403 || errField(r, "code") != "forbidden" {
			t.Errorf("%s creating a key: %d %s", role, r.status, r.raw)
		}
		if r := e.do("GET", "/v1/orgs/me", keys[role], "", ""); r.status != 200 || r.body["role"] != role {
			t.Errorf("%s orgs/me: %d %s", role, r.status, r.raw)
		}
		if r := e.do("GET", "/v1/audit-log", keys[role], "", ""); r.status != 200 {
			t.Errorf("%s audit log: %d %s", role, r.status, r.raw)
		}
	}
	r := e.do("GET", "/v1/api-keys", admin, "", "")
	if r.status != 200 || len(r.body["api_keys"].([]any)) != 3 || strings.Contains(r.raw, keys["member"]) {
		t.Fatalf("list keys: %d %s", r.status, r.raw)
	}
}

func countKeys(t *testing.T, org uuid.UUID) int {
	var n int
	if err := testDB.Owner(t).QueryRow(context.Background(), `SELECT count(*) FROM api_keys WHERE org_id = $1`, org).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBadInputChangesNothing(t *testing.T) {
	e := newEnv(t, api.PingFunc(okPing))
	org, admin := e.org("bad-input-org")
	before := countKeys(t, org.ID)
	cases := []struct {
		name, contentType, body string
		status                  int
		code, field             string
	}{
		{"malformed", "application/json", `{"name": "x", "role": `, 400, "invalid_json", ""},
		{"syntax", "application/json", `{"name" "x"}`, 400, "invalid_json", ""},
		{"not an object", "application/json", `["x"]`, 400, "invalid_json", ""},
		{"empty", "application/json", ``, 400, "invalid_json", ""},
		{"trailing data", "application/json", `{"name":"x","role":"member"} {}`, 400, "invalid_json", ""},
		{"unknown field", "application/json", `{"name":"x","role":"member","admin":true}`, 400, "unknown_field", "admin"},
		{"wrong type", "application/json", `{"name":5,"role":"member"}`, 400, "invalid_field", "name"},
		{"bad role", "application/json", `{"name":"x","role":"owner"}`, 400, "invalid_field", "role"},
		{"empty name", "application/json", `{"name":"  ","role":"member"}`, 400, "invalid_field", "name"},
		{"wrong media type", "text/plain", `{"name":"x","role":"member"}`, 415, "unsupported_media_type", ""},
		{"oversized", "application/json", `{"name":"` + strings.Repeat("a", 5000) + `","role":"member"}`, 413, "body_too_large", ""},
		{"NUL in name", "application/json", `{"name":"a\u0000b","role":"member"}`, 400, "invalid_field", "name"},
		{"CR in name", "application/json", `{"name":"a\rb","role":"member"}`, 400, "invalid_field", "name"},
		{"invalid UTF-8 in name", "application/json", "{\"name\":\"a\xffb\",\"role\":\"member\"}", 400, "invalid_field", "name"},
		{"lone surrogate in name", "application/json", `{"name":"\udc00","role":"member"}`, 400, "invalid_field", "name"},
		{"duplicate field", "application/json", `{"name":"x","role":"member","role":"admin"}`, 400, "invalid_field", "role"},
		{"number as role", "application/json", `{"name":"x","role":1}`, 400, "invalid_field", "role"},
	}
	for _, c := range cases {
		r := e.do("POST", "/v1/api-keys", admin, c.contentType, c.body)
		if r.status != c.status || errField(r, "code") != c.code || errField(r, "field") != c.field || errField(r, "message") == "" {
			t.Errorf("%s: got %d %s, want %d code=%s field=%s", c.name, r.status, r.raw, c.status, c.code, c.field)
		}
	}
	// A chunked body over the limit (no Content-Length) is capped while reading.
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/api-keys", io.MultiReader(strings.NewReader(`{"name":"`), bytes.NewReader(bytes.Repeat([]byte("a"), 10000)), strings.NewReader(`"}`)))
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("chunked oversized body: %d", resp.StatusCode)
	}
	if after := countKeys(t, org.ID); after != before {
		t.Fatalf("bad input changed api_keys: %d -> %d", before, after)
	}
	for name, body := range map[string]string{
		"NUL":           `{"name":"SOC 2\u0000"}`,
		"line feed":     `{"name":"SOC 2\n2026"}`,
		"invalid UTF-8": "{\"name\":\"SOC \xc3\x28\"}",
		"number":        `{"name":2026}`,
	} {
		r := e.do("POST", "/v1/assessments", admin, "application/json", body)
		if r.status != 400 || errField(r, "field") != "name" {
			t.Errorf("assessment with %s in its name: %d %s", name, r.status, r.raw)
		}
	}
	var assessments int
	if err := testDB.Owner(t).QueryRow(context.Background(), `SELECT count(*) FROM assessments WHERE org_id = $1`, org.ID).Scan(&assessments); err != nil || assessments != 0 {
		t.Fatalf("bad assessment names stored %d rows (%v)", assessments, err)
	}
	if r := e.do("GET", "/v1/audit-log?limit=0", admin, "", ""); r.status != 400 || errField(r, "field") != "limit" {
		t.Errorf("limit=0: %d %s", r.status, r.raw)
	}
	if r := e.do("GET", "/v1/nope", admin, "", ""); r.status != 404 || errField(r, "code") != "not_found" {
		t.Errorf("unknown route: %d %s", r.status, r.raw)
	}
}

func TestAuditLogPaginationAndIsolation(t *testing.T) {
	e := newEnv(t, api.PingFunc(okPing))
	_, keyA := e.org("audit-a")
	_, keyB := e.org("audit-b")
	for i := range 3 {
		if r := e.do("POST", "/v1/api-keys", keyA, "application/json", `{"name":"k`+string(rune('0'+i))+`","role":"auditor"}`); r.status != 201 {
			t.Fatal(r.raw)
		}
	}
	// org A: org.create + 3 api_key.create, newest first, two per page.
	var actions []string
	before := ""
	for page := 0; page < 5; page++ {
		r := e.do("GET", "/v1/audit-log?limit=2"+before, keyA, "", "")
		if r.status != 200 {
			t.Fatal(r.raw)
		}
		for _, en := range r.body["entries"].([]any) {
			actions = append(actions, en.(map[string]any)["action"].(string))
		}
		nb, ok := r.body["next_before"].(float64)
		if !ok {
			break
		}
		before = "&before=" + jsonInt(nb)
	}
	want := []string{"api_key.create", "api_key.create", "api_key.create", "org.create"}
	if strings.Join(actions, ",") != strings.Join(want, ",") {
		t.Fatalf("org A audit log: %v, want %v", actions, want)
	}
	r := e.do("GET", "/v1/audit-log", keyB, "", "")
	if entries := r.body["entries"].([]any); len(entries) != 1 || entries[0].(map[string]any)["action"] != "org.create" {
		t.Fatalf("org B sees: %s", r.raw)
	}
}

func jsonInt(f float64) string {
	b, _ := json.Marshal(int64(f))
	return string(b)
}

// Every kind of use-case failure has its status, and its code, field and message reach the body
// unchanged: api/errors.go is the one place services' failures meet HTTP.
func TestUseCaseFailuresMapToHTTP(t *testing.T) {
	e := newEnv(t, api.PingFunc(okPing))
	kinds := map[string]struct {
		kind   apperr.Kind
		status int
	}{
		"invalid": {apperr.KindInvalid, 400}, "not_found": {apperr.KindNotFound, 404}, "conflict": {apperr.KindConflict, 409},
		"upstream": {apperr.KindUpstream, 502}, "unavailable": {apperr.KindUnavailable, 503}, "timeout": {apperr.KindTimeout, 504},
	}
	e.server.Echo().GET("/test-failure/:kind", func(c echo.Context) error {
		k := kinds[c.Param("kind")]
		return fmt.Errorf("wrapped by the service: %w", apperr.New(k.kind, "code_"+c.Param("kind"), "some.field", "message of "+c.Param("kind")))
	})
	// The probe route is not part of the contract, so it is served without the contract check.
	unchecked := httptest.NewServer(e.server.Handler())
	t.Cleanup(unchecked.Close)
	e.srv = unchecked
	for name, k := range kinds {
		r := e.do("GET", "/test-failure/"+name, "", "", "")
		if r.status != k.status || errField(r, "code") != "code_"+name || errField(r, "field") != "some.field" || errField(r, "message") != "message of "+name {
			t.Errorf("%s: %d %s", name, r.status, r.raw)
		}
	}
}
