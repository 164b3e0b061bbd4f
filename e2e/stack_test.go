package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/server/temporaltest"

	"github.com/jiraconnect/jiraconnect/api/contract"
	"github.com/jiraconnect/jiraconnect/app"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/config"
	"github.com/jiraconnect/jiraconnect/egress"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

// stack is the whole system in one test: a real Temporal server, the real app wiring (API and
// worker as they run in production), a fresh Postgres database and Jira simulators over HTTP.
type stack struct {
	t     *testing.T
	ctx   context.Context
	core  *app.Core
	tc    client.Client
	api   string
	cloud *jirasim.Server
	dc    *jirasim.Server
	logs  *syncBuffer

	// client validates every exchange with the API against api/openapi.yaml (api/contract).
	client *http.Client
}

// syncBuffer captures every log line of the stack, so tests can scan them for secrets.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newStack(t *testing.T) *stack { return newStackWith(t, nil) }

// newStackWith starts a stack with extra environment variables (e.g. WEBHOOK_ALLOWED_CIDRS) and
// assembly options (e.g. the egress policy's resolver).
func newStackWith(t *testing.T, extra map[string]string, opts ...app.Option) *stack {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cloud := jirasim.NewServer(jirasim.Options{Flavor: jirasim.Cloud, Logger: quiet, RandSeed: 1})
	t.Cleanup(cloud.Close)
	dc := jirasim.NewServer(jirasim.Options{Flavor: jirasim.DataCenter, Logger: quiet, RandSeed: 2})
	t.Cleanup(dc.Close)
	for _, sim := range []*jirasim.Server{cloud, dc} {
		if _, err := sim.Seed(7, jirasim.SeedSpec{Projects: 5, Issues: 300, SecurityShare: 0.3, ResolvedRecentShare: 0.5}); err != nil {
			t.Fatal(err)
		}
	}
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	apiAddr, opsAddr, workerAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	clientID, secret := cloud.OAuthClient()
	env := map[string]string{
		"DATABASE_URL":             testDB.AppURL,
		"DATABASE_OWNER_URL":       testDB.OwnerURL,
		"TEMPORAL_ADDRESS":         ts.GetFrontendHostPort(),
		"TEMPORAL_NAMESPACE":       ts.GetDefaultNamespace(),
		"API_ADDR":                 apiAddr,
		"OPS_ADDR":                 opsAddr,
		"WORKER_ADDR":              workerAddr,
		"PUBLIC_URL":               "http://" + apiAddr,
		"LOCAL_KEYRING_DIR":        t.TempDir(),
		"LOG_LEVEL":                "debug",
		"JIRA_OAUTH_CLIENT_ID":     clientID,
		"JIRA_OAUTH_CLIENT_SECRET": secret,
		"JIRA_AUTH_URL":            cloud.URL,
		"JIRA_API_URL":             cloud.URL,
		// The simulators listen on loopback, which production's egress policy refuses.
		"JIRA_EGRESS_ALLOW": egress.Loopback,
		// Every test of the package shares its database; a supervisor pass on its own would
		// restart earlier tests' connections in this test's Temporal. Tests trigger it instead.
		"SUPERVISOR_INTERVAL": "24h",
	}
	for k, v := range extra {
		env[k] = v
	}
	cfg, err := config.LoadFrom(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	if err := app.SyncCatalogue(ctx, cfg.DatabaseOwnerURL); err != nil {
		t.Fatal(err)
	}
	core, err := app.NewCore(ctx, cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), opts...)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := core.DialTemporal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// E2E_MANUAL_WORKER (a test switch, not a configuration variable) leaves the worker to the
	// test, which starts and stops it to simulate crashes.
	manual := extra["E2E_MANUAL_WORKER"] == "1"
	done := make(chan error, 2)
	go func() { done <- core.RunAPI(ctx, tc) }()
	if manual {
		done <- nil
	} else {
		go func() { done <- core.RunWorker(ctx, tc) }()
	}
	t.Cleanup(func() {
		if path := os.Getenv("E2E_LOG_FILE"); path != "" {
			_ = os.WriteFile(path, []byte(logs.String()), 0o600)
		}
		if t.Failed() {
			out := logs.String()
			if len(out) > 20000 {
				out = out[len(out)-20000:]
			}
			t.Logf("stack logs (tail):\n%s", out)
		}
		cancel()
		for range 2 {
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Error("stack did not stop")
			}
		}
		tc.Close()
		core.Close()
	})
	spec, err := contract.API()
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: spec.Transport(nil, func(err error) { t.Errorf("%v", err) })}
	s := &stack{t: t, ctx: ctx, core: core, tc: tc, api: "http://" + apiAddr, client: client, cloud: cloud, dc: dc, logs: logs}
	s.eventually("api ready", 20*time.Second, func() bool {
		code, _ := get(t, s.api+"/readyz", "")
		return code == 200
	})
	return s
}

// org creates an organization and returns its admin key.
func (s *stack) org(name string) string {
	s.t.Helper()
	_, key, err := s.core.Tenancy.CreateOrg(s.ctx, name, audit.Actor{Type: audit.ActorCLI, ID: "e2e"})
	if err != nil {
		s.t.Fatal(err)
	}
	return key.Plaintext
}

type reply struct {
	status int
	body   map[string]any
	raw    string
}

func (r reply) str(path ...string) string {
	var v any = r.body
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

func (s *stack) call(method, path, key string, body any) reply {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.api+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, raw: string(raw)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(raw, &r.body)
	}
	return r
}

func (s *stack) eventually(what string, timeout time.Duration, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
