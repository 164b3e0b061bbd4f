package jirasim_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/jirasim"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startSim(t *testing.T, opts jirasim.Options) *jirasim.Server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	srv := jirasim.NewServer(opts)
	t.Cleanup(srv.Close)
	return srv
}

// auth is how a test request authenticates.
type auth func(*http.Request)

func basic(user, secret string) auth {
	return func(r *http.Request) {
		r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+secret)))
	}
}

func bearer(tok string) auth {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func noAuth(*http.Request) {}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %d body %q: %v", r.status, r.body, err)
	}
	return m
}

func (r resp) errorMessages(t *testing.T) []any {
	t.Helper()
	m := r.json(t)
	msgs, _ := m["errorMessages"].([]any)
	return msgs
}

func (r resp) fieldErrors(t *testing.T) map[string]any {
	t.Helper()
	m := r.json(t)
	errs, _ := m["errors"].(map[string]any)
	return errs
}

func decodeInto(t *testing.T, r resp, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %d body %q: %v", r.status, r.body, err)
	}
}

func call(t *testing.T, method, u string, a auth, body any) resp {
	t.Helper()
	r, err := tryCall(method, u, a, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	return r
}

func tryCall(method, u string, a auth, body any) (resp, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return resp{}, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return resp{}, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	a(req)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}
	res, err := client.Do(req)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return resp{status: res.StatusCode, header: res.Header}, err
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}, nil
}

func wantStatus(t *testing.T, r resp, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status = %d, want %d; body %s", r.status, want, r.body)
	}
}

// cloudFixture is a Cloud site with a SEC project and an API token for the admin.
type cloudFixture struct {
	srv   *jirasim.Server
	token string
	a     auth
}

func newCloud(t *testing.T, opts jirasim.Options) cloudFixture {
	t.Helper()
	opts.Flavor = jirasim.Cloud
	srv := startSim(t, opts)
	if _, err := srv.AddProject(jirasim.ProjectSpec{Key: "SEC", Name: "Security"}); err != nil {
		t.Fatal(err)
	}
	tok := srv.APIToken("admin@example.com")
	return cloudFixture{srv: srv, token: tok, a: basic("admin@example.com", tok)}
}

func (f cloudFixture) v3(path string) string { return f.srv.URL + "/rest/api/3/" + path }

// oauthLogin runs the full browser-less 3LO flow and returns the token pair.
func oauthLogin(t *testing.T, srv *jirasim.Server, scopes string) map[string]any {
	t.Helper()
	id, secret := srv.OAuthClient()
	q := url.Values{"audience": {"api.atlassian.com"}, "client_id": {id}, "scope": {scopes}, "redirect_uri": {"https://app.example.com/cb"},
		"state": {"st-1"}, "response_type": {"code"}, "prompt": {"consent"}}
	r := call(t, "GET", srv.URL+"/authorize?"+q.Encode(), noAuth, nil)
	wantStatus(t, r, http.StatusFound)
	loc, err := url.Parse(r.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if loc.Query().Get("state") != "st-1" || loc.Query().Get("code") == "" {
		t.Fatalf("redirect %s lacks code/state", loc)
	}
	tr := call(t, "POST", srv.URL+"/oauth/token", noAuth, map[string]string{
		"grant_type": "authorization_code", "client_id": id, "client_secret": secret, "code": loc.Query().Get("code"), "redirect_uri": "https://app.example.com/cb"})
	wantStatus(t, tr, http.StatusOK)
	return tr.json(t)
}

func adfDoc(text string) map[string]any {
	return map[string]any{"type": "doc", "version": 1, "content": []any{
		map[string]any{"type": "paragraph", "content": []any{map[string]any{"type": "text", "text": text}}},
	}}
}

func newHTTPServer(h http.Handler) *httptest.Server { return httptest.NewServer(h) }
