package main

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
	"os"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/jiraconnect/jiraconnect/app"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/config"
	"github.com/jiraconnect/jiraconnect/db/dbtest"
	"github.com/jiraconnect/jiraconnect/devstack"
	"github.com/jiraconnect/jiraconnect/egress"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

// StackOptions chooses which parts of the system a scenario runs. Everything runs in this process
// except what a scenario starts itself from Stack.Env (e.g. a worker process whose memory it
// measures).
type StackOptions struct {
	// Temporal starts the dev stack's embedded Temporal server (SQLite file in the work dir).
	Temporal bool
	// API and Worker run the production API and worker wiring in-process (both need Temporal).
	API, Worker bool
	// Env overrides configuration variables (see config.Vars()).
	Env map[string]string
	// Sim configures the Jira simulator (Cloud unless Flavor says otherwise); its Logger is
	// replaced by a quiet one.
	Sim jirasim.Options
	// Seed, when Projects > 0, seeds the simulator before anything connects.
	Seed jirasim.SeedSpec
}

// Stack is a running system for one scenario: a fresh Postgres database, the Jira simulator over
// loopback HTTP, and optionally the dev stack's Temporal server, the API and a worker.
type Stack struct {
	Core     *app.Core
	TC       client.Client // nil without Temporal
	Sim      *jirasim.Server
	DB       *dbtest.Database
	Temporal *devstack.Temporal
	// API is the API's base URL ("" without API); Key the bench organization's admin API key.
	API string
	Key string
	// Dir is the stack's private directory (Temporal SQLite file, keyring).
	Dir string

	env    map[string]string
	http   *http.Client
	cancel context.CancelFunc
	done   []chan error
}

// StartStack starts what opts asks for. Close stops it and drops the database.
func StartStack(ctx context.Context, b *Bench, opts StackOptions) (_ *Stack, err error) {
	s := &Stack{http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.Dir, err = os.MkdirTemp(b.WorkDir, "stack-"); err != nil {
		return nil, fmt.Errorf("stack dir: %w", err)
	}
	simOpts := opts.Sim
	simOpts.Logger = b.Quiet
	if simOpts.RandSeed == 0 {
		simOpts.RandSeed = 1
	}
	s.Sim = jirasim.NewServer(simOpts)
	if opts.Seed.Projects > 0 {
		if _, err := s.Sim.Seed(7, opts.Seed); err != nil {
			return nil, fmt.Errorf("seed simulator: %w", err)
		}
	}
	if s.DB, err = dbtest.Create(ctx); err != nil {
		return nil, fmt.Errorf("create bench database: %w", err)
	}

	apiAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	workerAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	opsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	clientID, secret := s.Sim.OAuthClient()
	s.env = map[string]string{
		"DATABASE_URL":             s.DB.AppURL,
		"DATABASE_OWNER_URL":       s.DB.OwnerURL,
		"API_ADDR":                 apiAddr,
		"OPS_ADDR":                 opsAddr,
		"WORKER_ADDR":              workerAddr,
		"PUBLIC_URL":               "http://" + apiAddr,
		"LOCAL_KEYRING_DIR":        s.Dir,
		"LOG_LEVEL":                "warn",
		"DATABASE_MAX_CONNS":       "40",
		"JIRA_OAUTH_CLIENT_ID":     clientID,
		"JIRA_OAUTH_CLIENT_SECRET": secret,
		"JIRA_AUTH_URL":            s.Sim.URL,
		"JIRA_API_URL":             s.Sim.URL,
		// The simulator listens on loopback, which production's egress policy refuses.
		egress.EnvVar: egress.Loopback,
		// A scenario's figures are its own: no supervisor pass runs in the middle of them.
		"SUPERVISOR_INTERVAL": "24h",
	}
	if opts.Temporal {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		if s.Temporal, err = devstack.StartTemporal(devstack.TemporalOptions{DataDir: s.Dir, FrontendPort: port, Namespace: "default",
			// The server's warnings (e.g. at shutdown) would interleave with the table on stdout.
			LogLevel: "fatal"}); err != nil {
			return nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = devstack.WaitReady(rctx, s.Temporal.HostPort)
		cancel()
		if err != nil {
			return nil, err
		}
		s.env["TEMPORAL_ADDRESS"] = s.Temporal.HostPort
		s.env["TEMPORAL_NAMESPACE"] = "default"
	}
	for k, v := range opts.Env {
		s.env[k] = v
	}
	cfg, err := config.LoadFrom(func(k string) (string, bool) { v, ok := s.env[k]; return v, ok })
	if err != nil {
		return nil, err
	}
	if err := app.SyncCatalogue(ctx, cfg.DatabaseOwnerURL); err != nil {
		return nil, err
	}
	if s.Core, err = app.NewCore(ctx, cfg, b.Quiet); err != nil {
		return nil, err
	}
	_, key, err := s.Core.Tenancy.CreateOrg(ctx, "bench", audit.Actor{Type: audit.ActorCLI, ID: "bench"})
	if err != nil {
		return nil, fmt.Errorf("create bench org: %w", err)
	}
	s.Key = key.Plaintext
	if opts.Temporal {
		if s.TC, err = s.Core.DialTemporal(ctx); err != nil {
			return nil, err
		}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	run := func(f func(context.Context, client.Client) error) {
		ch := make(chan error, 1)
		s.done = append(s.done, ch)
		go func() { ch <- f(runCtx, s.TC) }()
	}
	if opts.API {
		if s.TC == nil {
			return nil, errors.New("the API needs Temporal: set StackOptions.Temporal")
		}
		run(s.Core.RunAPI)
		s.API = "http://" + apiAddr
		if err := waitHTTP(ctx, s.API+"/readyz", 30*time.Second); err != nil {
			return nil, err
		}
	}
	if opts.Worker {
		if s.TC == nil {
			return nil, errors.New("the worker needs Temporal: set StackOptions.Temporal")
		}
		run(s.Core.RunWorker)
		if err := waitHTTP(ctx, "http://"+workerAddr+"/readyz", 30*time.Second); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Env is the stack's configuration as environment variables, for processes a scenario starts
// itself (e.g. `jiraconnect worker`).
func (s *Stack) Env() []string {
	out := os.Environ()
	for k, v := range s.env {
		out = append(out, k+"="+v)
	}
	return out
}

// TemporalStoreBytes is the size of the Temporal SQLite store (with its write-ahead log).
func (s *Stack) TemporalStoreBytes() int64 {
	var n int64
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if fi, err := os.Stat(filepath.Join(s.Dir, "temporal.sqlite"+suffix)); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// Close stops the API and worker, Temporal and the simulator, and drops the database.
func (s *Stack) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	for _, ch := range s.done {
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
		}
	}
	if s.TC != nil {
		s.TC.Close()
	}
	if s.Core != nil {
		s.Core.Close()
	}
	if s.Temporal != nil {
		_ = s.Temporal.Stop()
	}
	if s.Sim != nil {
		s.Sim.Close()
	}
	if s.DB != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_ = s.DB.Drop(ctx)
		cancel()
	}
	if s.Dir != "" {
		_ = os.RemoveAll(s.Dir)
	}
}

// Call sends a JSON request to the API with the bench org's key and decodes a JSON answer into
// out (when non-nil). A status outside 2xx is an error carrying the body.
func (s *Stack) Call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.API+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.Key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(raw))
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// Connection is a connection created through the API.
type Connection struct {
	ID      string `json:"id"`
	Webhook struct {
		URL           string `json:"url"`
		SigningSecret string `json:"signing_secret"`
	} `json:"webhook"`
}

// StartFindingSyncStack starts the whole system (Temporal, API, worker) with one token connection
// whose finding sync pushes into the simulator's SEC project. Close the stack when done.
func StartFindingSyncStack(ctx context.Context, b *Bench, opts StackOptions) (*Stack, Connection, error) {
	opts.Temporal, opts.API, opts.Worker = true, true, true
	s, err := StartStack(ctx, b, opts)
	if err != nil {
		return nil, Connection{}, err
	}
	conn, err := s.CreateTokenConnection(ctx)
	if err == nil {
		err = s.EnableFindingSync(ctx, conn)
	}
	if err != nil {
		s.Close()
		return nil, Connection{}, err
	}
	return s, conn, nil
}

// CreateTokenConnection connects the simulator's site admin with an API token (cloud_token).
func (s *Stack) CreateTokenConnection(ctx context.Context) (Connection, error) {
	var c Connection
	err := s.Call(ctx, "POST", "/v1/connections", map[string]any{"kind": "cloud_token", "site_url": s.Sim.URL,
		"email": "admin@example.com", "api_token": s.Sim.APIToken("admin@example.com")}, &c)
	return c, err
}

// EnableFindingSync turns on finding sync into the simulator's SEC project, with a framework
// multi-select created on first use, and registers the signed admin webhook that points at the
// connection's bridge URL (as a Jira admin would).
func (s *Stack) EnableFindingSync(ctx context.Context, c Connection) error {
	fieldID := ""
	for _, f := range s.Sim.CustomFields() {
		if f.Name == "Finding frameworks" {
			fieldID = f.ID
		}
	}
	if fieldID == "" {
		f, err := s.Sim.AddCustomField(jirasim.CustomFieldSpec{Name: "Finding frameworks", Type: jirasim.FieldMultiSelect,
			Options: []string{"OWASP_LLM01", "OWASP_LLM06", "MITRE_ATLAS_AML_T0051", "EU_AI_ACT_Art15"}})
		if err != nil {
			return fmt.Errorf("add framework field: %w", err)
		}
		fieldID = f.ID
	}
	if _, err := s.Sim.AddAdminWebhook(jirasim.AdminWebhookSpec{Name: "jiraconnect " + c.ID, URL: c.Webhook.URL,
		Events: []string{"jira:issue_created", "jira:issue_updated"}, JQL: "project = SEC", Secret: c.Webhook.SigningSecret}); err != nil {
		return fmt.Errorf("register admin webhook: %w", err)
	}
	return s.Call(ctx, "PUT", "/v1/connections/"+c.ID+"/finding-sync", map[string]any{
		"project_key": "SEC", "issue_type": jirasim.IssueTypeVulnerability, "framework_field": fieldID,
		"finding_id_field": jirasim.FieldFindingID, "link_template": "https://app.example.com/findings/{id}"}, nil)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("reserve port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freeAddr() (string, error) {
	p, err := freePort()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", p), nil
}

// waitHTTP polls url until it answers 200 or the timeout passes.
func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s", url, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// quietLogger discards everything; scenarios log their progress through Bench.Log instead.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
