package jira

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
)

// canned is one canned response of fixtureServer.
type canned struct {
	status int
	header map[string]string
	body   string
}

// fixtureServer answers "METHOD /path" with canned responses (real Jira payload shapes) and
// records what it received. It exists for decoding tests of shapes the simulator does not
// reproduce byte for byte; behaviour tests run against the simulator.
type fixtureServer struct {
	*httptest.Server
	mu     sync.Mutex
	routes map[string]canned
	got    []recorded
}

type recorded struct {
	method, path, query, auth, body string
}

func newFixtureServer(t *testing.T, routes map[string]canned) *fixtureServer {
	t.Helper()
	fs := &fixtureServer{routes: routes}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fs.mu.Lock()
		fs.got = append(fs.got, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), string(b)})
		c, ok := fs.routes[r.Method+" "+r.URL.Path]
		fs.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"errorMessages":["no fixture for `+r.Method+` `+r.URL.Path+`"],"errors":{}}`)
			return
		}
		if c.header["Content-Type"] == "" {
			w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		}
		for k, v := range c.header {
			w.Header().Set(k, v)
		}
		if c.status == 0 {
			c.status = http.StatusOK
		}
		w.WriteHeader(c.status)
		_, _ = io.WriteString(w, c.body)
	}))
	t.Cleanup(fs.Close)
	return fs
}

func (fs *fixtureServer) requests() []recorded {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]recorded(nil), fs.got...)
}

func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const (
	testEmail = "bot@example.com"
	testToken = "ATATT3xFfGF0-test-api-token-value-0123456789"
)

func newTestClient(t *testing.T, flavor Flavor, base string, stats *CallStats) *Client {
	t.Helper()
	var auth Auth = APIToken(testEmail, NewSecret(testToken))
	if flavor == DataCenter {
		auth = PAT(NewSecret(testToken))
	}
	c, err := New(Config{Flavor: flavor, BaseURL: base, Auth: auth, Stats: stats})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func assertNoSecret(t *testing.T, what, s string, secrets ...string) {
	t.Helper()
	for _, sec := range secrets {
		if sec != "" && strings.Contains(s, sec) {
			t.Fatalf("%s leaks a secret: %s", what, s)
		}
	}
}
