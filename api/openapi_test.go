package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/jiraconnect/jiraconnect/api"
	"github.com/jiraconnect/jiraconnect/api/contract"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/metrics"
	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

// checked wraps an API handler for a test server so that every exchange it serves is validated
// against api/openapi.yaml: the whole test suite doubles as a contract test. A *testing.F cannot
// report from the server's goroutines while fuzzing, so a fuzz target checks its exchanges on the
// client side instead (checkedClient).
func checked(tb testing.TB, h http.Handler) http.Handler {
	tb.Helper()
	if _, fuzz := tb.(*testing.F); fuzz {
		return h
	}
	v, err := contract.API()
	require.NoError(tb, err)
	return v.Handler(h, func(err error) { tb.Errorf("%v", err) })
}

// checkedClient is an HTTP client whose exchanges are validated against api/openapi.yaml.
func checkedClient(t *testing.T) *http.Client {
	t.Helper()
	v, err := contract.API()
	require.NoError(t, err)
	return &http.Client{Transport: v.Transport(nil, func(err error) { t.Errorf("%v", err) })}
}

// openAPIDoc is the part of api/openapi.yaml the route and role checks read.
type openAPIDoc struct {
	Paths map[string]map[string]yaml.Node `yaml:"paths"`
}

type specOperation struct {
	method, path, role string
	listeners          []string
	hasBody            bool
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func specOperations(t *testing.T) []specOperation {
	t.Helper()
	var doc openAPIDoc
	require.NoError(t, yaml.Unmarshal(api.OpenAPIYAML(), &doc))
	var ops []specOperation
	for path, item := range doc.Paths {
		listeners := []string{"public"}
		if n, ok := item["x-listeners"]; ok {
			listeners = nil
			require.NoError(t, n.Decode(&listeners), path)
		}
		for _, m := range httpMethods {
			n, ok := item[m]
			if !ok {
				continue
			}
			var op struct {
				Role        string `yaml:"x-required-role"`
				RequestBody any    `yaml:"requestBody"`
			}
			require.NoError(t, n.Decode(&op), "%s %s", m, path)
			ops = append(ops, specOperation{method: strings.ToUpper(m), path: path, role: op.Role,
				listeners: listeners, hasBody: op.RequestBody != nil})
		}
	}
	return ops
}

// echoPath writes an echo route in OpenAPI's path template syntax (/v1/connections/:id →
// /v1/connections/{id}).
func echoPath(p string) string {
	return regexp.MustCompile(`:([A-Za-z_]+)`).ReplaceAllString(p, "{$1}")
}

func routesOf(e *echo.Echo) []string {
	var out []string
	for _, r := range e.Routes() {
		if r.Method == echo.RouteNotFound { // group middleware's catch-all, not a route
			continue
		}
		out = append(out, r.Method+" "+echoPath(r.Path))
	}
	return out
}

func minimalServer(t *testing.T) *api.Server {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := metrics.New(log)
	t.Cleanup(func() { _ = m.Close() })
	s := api.New(api.Deps{Log: log, Metrics: m})
	t.Cleanup(s.Close)
	return s
}

// TestRoutesMatchOpenAPI is the drift check: every route the server registers is documented in
// api/openapi.yaml and every documented operation is served, on the listener the document says
// (x-listeners; public when absent).
func TestRoutesMatchOpenAPI(t *testing.T) {
	t.Parallel()
	s := minimalServer(t)
	ops, isEcho := s.OpsHandler().(*echo.Echo)
	require.True(t, isEcho, "OpsHandler is no longer an *echo.Echo: read its routes another way")
	served := map[string][]string{"public": routesOf(s.Echo()), "ops": routesOf(ops)}
	documented := map[string][]string{}
	for _, op := range specOperations(t) {
		for _, l := range op.listeners {
			documented[l] = append(documented[l], op.method+" "+op.path)
		}
	}
	require.ElementsMatch(t, []string{"public", "ops"}, keys(documented), "x-listeners names an unknown listener")
	for _, listener := range []string{"public", "ops"} {
		missing, extra := diff(served[listener], documented[listener])
		assert.Empty(t, missing, "routes on the %s listener that api/openapi.yaml lacks (document them in the same change)", listener)
		assert.Empty(t, extra, "operations in api/openapi.yaml that the %s listener does not serve", listener)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// diff returns what a has and b lacks, and what b has and a lacks, sorted.
func diff(a, b []string) (onlyA, onlyB []string) {
	for _, x := range a {
		if !slices.Contains(b, x) {
			onlyA = append(onlyA, x)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			onlyB = append(onlyB, x)
		}
	}
	sort.Strings(onlyA)
	sort.Strings(onlyB)
	return onlyA, onlyB
}

// TestOpenAPIDocument checks the document against the OpenAPI 3.1 specification's own schema and
// the conventions the contract relies on.
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	v, err := contract.API()
	require.NoError(t, err)
	require.NoError(t, v.Document())

	var doc struct {
		OpenAPI string `yaml:"openapi"`
		Dialect string `yaml:"jsonSchemaDialect"`
	}
	require.NoError(t, yaml.Unmarshal(api.OpenAPIYAML(), &doc))
	assert.True(t, strings.HasPrefix(doc.OpenAPI, "3.1."), "OpenAPI version %s", doc.OpenAPI)
	assert.Equal(t, "https://spec.openapis.org/oas/3.1/dialect/base", doc.Dialect)

	for _, op := range specOperations(t) {
		if strings.HasPrefix(op.path, "/v1/") {
			assert.Contains(t, []string{"admin", "member", "auditor"}, op.role, "%s %s: x-required-role", op.method, op.path)
		} else {
			assert.Empty(t, op.role, "%s %s needs no API key, so no role", op.method, op.path)
		}
	}
}

// TestRequiredRolesAreEnforced calls every documented /v1 operation with a key of each role: a
// role below the operation's x-required-role gets 403 forbidden, the others get past the role
// check (ids are random, so they get 404 or 400, never 403).
func TestRequiredRolesAreEnforced(t *testing.T) {
	t.Parallel()
	d := testDB.Open(t)
	kr, err := seal.OpenLocalKeyring(t.TempDir())
	require.NoError(t, err)
	sealer, err := seal.New(kr, tenancy.KeyStore{DB: d}, seal.Options{})
	require.NoError(t, err)
	svc := &tenancy.Service{DB: d, Sealer: sealer}
	s := api.New(api.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), DB: d, Tenancy: svc, Sealer: sealer,
		Connections: &connections.Service{DB: d, Sealer: sealer}, TemporalHealth: api.PingFunc(okPing), MaxBodyBytes: 4096})
	srv := httptest.NewServer(checked(t, s.Handler()))
	t.Cleanup(srv.Close)
	t.Cleanup(s.Close)
	e := &env{t: t, srv: srv, server: s, tenancy: svc}
	_, admin := e.org("roles-" + uuid.NewString()[:8])
	keys := map[string]string{"admin": admin}
	for _, role := range []string{"member", "auditor"} {
		r := e.do("POST", "/v1/api-keys", admin, "application/json", `{"name":"`+role+`","role":"`+role+`"}`)
		require.Equal(t, 201, r.status, r.raw)
		keys[role] = r.body["key"].(string)
	}
	rank := map[string]int{"auditor": 1, "member": 2, "admin": 3}
	param := regexp.MustCompile(`\{[a-z_]+\}`)
	checkedOps := 0
	for _, op := range specOperations(t) {
		if !strings.HasPrefix(op.path, "/v1/") {
			continue
		}
		path := param.ReplaceAllStringFunc(op.path, func(string) string { return uuid.NewString() })
		contentType, body := "", ""
		if op.hasBody {
			contentType, body = "application/json", "{}"
		}
		for role, key := range keys {
			r := e.do(op.method, path, key, contentType, body)
			if rank[role] < rank[op.role] {
				assert.Equal(t, 403, r.status, "%s %s with an %s key (needs %s): %s", op.method, op.path, role, op.role, r.raw)
			} else {
				assert.NotEqual(t, 403, r.status, "%s %s with an %s key (needs %s): %s", op.method, op.path, role, op.role, r.raw)
			}
		}
		checkedOps++
	}
	assert.Greater(t, checkedOps, 20)
}

// TestOpenAPIIsServed checks the document's three forms: the YAML as written, the same as JSON
// with its member order, and the documentation page with its assets and policy.
func TestOpenAPIIsServed(t *testing.T) {
	t.Parallel()
	s := minimalServer(t)
	srv := httptest.NewServer(checked(t, s.Handler()))
	t.Cleanup(srv.Close)
	get := func(path string) (*http.Response, []byte) {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, b
	}

	resp, yamlBody := get("/openapi.yaml")
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, api.OpenAPIYAML(), yamlBody)

	resp, jsonBody := get("/openapi.json")
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var fromJSON, fromYAML any
	require.NoError(t, json.Unmarshal(jsonBody, &fromJSON))
	require.NoError(t, yaml.Unmarshal(yamlBody, &fromYAML))
	yamlAsJSON, err := json.Marshal(fromYAML)
	require.NoError(t, err)
	var want any
	require.NoError(t, json.Unmarshal(yamlAsJSON, &want))
	assert.Equal(t, want, fromJSON, "/openapi.json is not /openapi.yaml")
	// Member order is kept: paths in the order the YAML lists them.
	var doc struct {
		Paths yaml.Node `yaml:"paths"`
	}
	require.NoError(t, yaml.Unmarshal(yamlBody, &doc))
	last := -1
	for i := 0; i < len(doc.Paths.Content); i += 2 {
		key, err := json.Marshal(doc.Paths.Content[i].Value)
		require.NoError(t, err)
		at := bytes.Index(jsonBody, append(key, ':', '{'))
		require.GreaterOrEqual(t, at, 0, "path %s", key)
		assert.Greater(t, at, last, "/openapi.json lost the order of paths at %s", key)
		last = at
	}

	resp, page := get("/docs")
	require.Equal(t, 200, resp.StatusCode)
	csp := resp.Header.Get("Content-Security-Policy")
	for _, directive := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} {
		assert.Contains(t, csp, directive)
	}
	assert.NotContains(t, csp, "unsafe-inline")
	assert.NotContains(t, csp, "unsafe-eval")
	assert.NotContains(t, string(page), "<style", "inline styles would need 'unsafe-inline'")
	assets := regexp.MustCompile(`(?:src|href)="(docs/assets/[^"]+)"`).FindAllStringSubmatch(string(page), -1)
	require.Len(t, assets, 4)
	for _, a := range assets {
		resp, body := get("/" + a[1])
		assert.Equal(t, 200, resp.StatusCode, a[1])
		assert.NotEmpty(t, body, a[1])
		assert.Regexp(t, `^text/(javascript|css)`, resp.Header.Get("Content-Type"), a[1])
	}
	assert.NotContains(t, string(page), "http://", "the page must load nothing from elsewhere")
	assert.NotContains(t, string(page), "https://", "the page must load nothing from elsewhere")
	resp, _ = get("/docs/assets/swagger-ui.js.map")
	assert.Equal(t, 404, resp.StatusCode)
}

// TestContractCatchesViolations proves the validation can fail, and that its message points at
// the operation, the status and the JSON path.
func TestContractCatchesViolations(t *testing.T) {
	t.Parallel()
	v, err := contract.API()
	require.NoError(t, err)
	jsonHeader := func() http.Header {
		return http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"r1"}}
	}
	req := func(method, path string) *http.Request {
		r := httptest.NewRequest(method, path, nil)
		r.Header.Set("Authorization", "Bearer jck_x")
		return r
	}
	org := `{"id":"` + uuid.NewString() + `","name":"Acme","created_at":"2026-01-02T03:04:05Z","role":"admin"}`
	require.NoError(t, v.Check(contract.Exchange{Request: req("GET", "/v1/orgs/me"), Status: 200, Header: jsonHeader(), Body: []byte(org)}))

	cases := []struct {
		name   string
		ex     contract.Exchange
		expect []string
	}{
		{"undeclared status", contract.Exchange{Request: req("GET", "/v1/orgs/me"), Status: 418, Header: jsonHeader(), Body: []byte(org)},
			[]string{"getOrgMe", "418"}},
		{"missing member", contract.Exchange{Request: req("GET", "/v1/orgs/me"), Status: 200, Header: jsonHeader(),
			Body: []byte(`{"id":"` + uuid.NewString() + `","name":"Acme","role":"admin"}`)}, []string{"getOrgMe", "200", "created_at"}},
		{"undocumented member", contract.Exchange{Request: req("GET", "/v1/orgs/me"), Status: 200, Header: jsonHeader(),
			Body: []byte(strings.TrimSuffix(org, "}") + `,"secret":"x"}`)}, []string{"secret"}},
		{"wrong type deep inside", contract.Exchange{Request: req("GET", "/v1/connections"), Status: 200, Header: jsonHeader(),
			Body: []byte(`{"connections":[{"id":"` + uuid.NewString() + `","kind":"cloud_token","site_url":"https://x.atlassian.net",` +
				`"status":"active","scopes":[],"config":{"sync_cadence":"24h0m0s","stale_threshold":"48h0m0s","resolved_jql":"x","sample_size":"25"},` +
				`"stale":false,"last_sync_at":null,"last_success_at":null,"next_sync_at":null,"workflow_id":"w","created_at":"2026-01-02T03:04:05Z"}]}`)},
			[]string{"listConnections", "sample_size"}},
		{"undeclared error code", contract.Exchange{Request: req("DELETE", "/v1/api-keys/"+uuid.NewString()), Status: 409, Header: jsonHeader(),
			Body: []byte(`{"error":{"code":"conflict","message":"x"}}`)}, []string{"revokeAPIKey", "409", "code"}},
		{"missing required header", contract.Exchange{Request: req("GET", "/v1/orgs/me"), Status: 401,
			Header: http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"r1"}},
			Body:   []byte(`{"error":{"code":"unauthorized","message":"x"}}`)}, []string{"WWW-Authenticate"}},
		{"undeclared media type", contract.Exchange{Request: req("GET", "/v1/orgs/me"), Status: 200,
			Header: http.Header{"Content-Type": {"text/plain"}, "X-Request-Id": {"r1"}}, Body: []byte("hi")}, []string{"text/plain"}},
		{"unknown route answered", contract.Exchange{Request: req("GET", "/v2/orgs"), Status: 200, Header: jsonHeader(), Body: []byte(`{}`)},
			[]string{"/v2/orgs", "200", "matches no operation"}},
		{"accepted request the document refuses", contract.Exchange{Request: httptest.NewRequest("POST", "/v1/assessments", strings.NewReader(`{"title":"x"}`)),
			RequestBody: []byte(`{"title":"x"}`), Status: 201, Header: jsonHeader(),
			Body: []byte(`{"id":"` + uuid.NewString() + `","name":"x","status":"draft","created_at":"2026-01-02T03:04:05Z","approved_at":null,"evidence":[]}`)},
			[]string{"createAssessment", "request"}},
	}
	for _, c := range cases {
		c.ex.Request.Header.Set("Authorization", "Bearer jck_x")
		if c.ex.RequestBody != nil {
			c.ex.Request.Header.Set("Content-Type", "application/json")
		}
		err := v.Check(c.ex)
		if !assert.Error(t, err, c.name) {
			continue
		}
		for _, s := range c.expect {
			assert.Contains(t, err.Error(), s, c.name)
		}
	}
}
