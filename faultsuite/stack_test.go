package faultsuite

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/jiraconnect/jiraconnect/egress"
	"github.com/jiraconnect/jiraconnect/seal"
)

// stack is one test's system: the Temporal server, the API and the worker as processes, the
// Postgres proxies in front of the API and the worker, and the simulators the test starts.
type stack struct {
	t      *testing.T
	dir    string
	logDir string

	temporal *process
	api      *process
	worker   *process
	// apis and workers are every API and worker process, the ones above first.
	apis, workers []*process
	apiURLs       []string
	procs         []*process // every process, in start order
	oauthSim      *simProc   // the OAuth app's simulator (stackOptions.oauth)

	pgAPI, pgWorker *pgProxy
	apiURL          string
	workerURL       string
	temporalAddr    string
	env             map[string]string // what the API, the worker and `orgs create` share

	tc client.Client
	db *pgxpool.Pool // the owner, directly (bypasses row-level security and the proxies)

	mu      sync.Mutex
	secrets []string // credentials that must never appear in logs or workflow histories
}

// stackOptions adjust a stack.
type stackOptions struct {
	// env adds variables for the API and the worker (e.g. FINDING_RECONCILE_INTERVAL).
	env map[string]string
	// oauth, when set, starts this Cloud simulator before the API and the workers and makes it
	// their Atlassian OAuth app (JIRA_OAUTH_*, JIRA_AUTH_URL, JIRA_API_URL).
	oauth *simSpec
	// moreAPIs and moreWorkers start that many further API and worker processes of the same
	// deployment (no Postgres proxy in front of them), as production runs replicas.
	moreAPIs, moreWorkers int
}

var migrateOnce sync.Once
var migrateErr error

// newStack starts Temporal, the API and the worker (simulators are started by the test).
func newStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	dir := t.TempDir()
	logDir := filepath.Join(dir, "logs")
	if d := os.Getenv("FAULTSUITE_LOG_DIR"); d != "" {
		logDir = filepath.Join(d, t.Name())
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, dir: dir, logDir: logDir}
	t.Cleanup(s.shutdown)

	// The schema is migrated by dbtest; `jiraconnect migrate` (as a release would run it) also
	// loads the control catalogue. Once per package.
	migrateOnce.Do(func() {
		migrateErr = s.runJiraconnect(map[string]string{"DATABASE_OWNER_URL": testDB.OwnerURL, "DATABASE_URL": testDB.AppURL}, "migrate")
	})
	if migrateErr != nil {
		t.Fatalf("jiraconnect migrate: %v", migrateErr)
	}

	pcfg, err := pgxpool.ParseConfig(testDB.OwnerURL)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	s.db = pool

	// Temporal, as its own process with its SQLite file in the test's directory.
	s.temporalAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	_, tport, _ := net.SplitHostPort(s.temporalAddr)
	s.temporal = newProcess(t, "temporal", binDev,
		[]string{"--temporal-only", "--data-dir", filepath.Join(dir, "temporal"), "--temporal-port", tport, "--ui-port", "0"},
		nil, filepath.Join(logDir, "temporal.log"), s.temporalReady)
	s.procs = append(s.procs, s.temporal)
	s.temporal.start(60 * time.Second)
	tc, err := client.DialContext(context.Background(), client.Options{HostPort: s.temporalAddr, Namespace: "default",
		Logger: tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))})
	if err != nil {
		t.Fatalf("dial temporal: %v", err)
	}
	s.tc = tc

	// The local keyring is created before the API and the worker start, so that both (and
	// `orgs create`) open the same master key instead of racing to create one each.
	keyring := filepath.Join(dir, "keyring")
	if _, err := seal.OpenLocalKeyring(keyring); err != nil {
		t.Fatal(err)
	}
	pgHost := pgHostPort(t)
	s.pgAPI, s.pgWorker = newPGProxy(t, pgHost), newPGProxy(t, pgHost)
	apiAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	workerAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	opsAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	s.apiURL, s.workerURL = "http://"+apiAddr, "http://"+workerAddr
	s.env = map[string]string{
		"TEMPORAL_ADDRESS":   s.temporalAddr,
		"TEMPORAL_NAMESPACE": "default",
		"API_ADDR":           apiAddr,
		"OPS_ADDR":           opsAddr,
		"WORKER_ADDR":        workerAddr,
		"PUBLIC_URL":         s.apiURL,
		"KMS_PROVIDER":       "local",
		"LOCAL_KEYRING_DIR":  keyring,
		// The simulator listens on loopback, which production's egress policy refuses.
		"JIRA_EGRESS_ALLOW": egress.Loopback,
		// The package's tests share one database: no supervisor pass restarts another test's
		// connections in this stack's Temporal.
		"SUPERVISOR_INTERVAL": "24h",
		// Debug logs are where a careless secret would show up first.
		"LOG_LEVEL":  "debug",
		"LOG_FORMAT": "json",
	}
	if opts.oauth != nil {
		s.oauthSim = s.startSim(*opts.oauth)
		s.env["JIRA_OAUTH_CLIENT_ID"], s.env["JIRA_OAUTH_CLIENT_SECRET"] = "jirasim-client", "jirasim-secret"
		s.env["JIRA_AUTH_URL"], s.env["JIRA_API_URL"] = s.oauthSim.URL, s.oauthSim.URL
	}
	for k, v := range opts.env {
		s.env[k] = v
	}
	s.api = newProcess(t, "api", binJiraconnect, []string{"api"}, s.envWith("DATABASE_URL", viaProxy(t, s.pgAPI)),
		filepath.Join(logDir, "api.log"), httpReady(s.apiURL+"/readyz"))
	s.worker = newProcess(t, "worker", binJiraconnect, []string{"worker"}, s.envWith("DATABASE_URL", viaProxy(t, s.pgWorker)),
		filepath.Join(logDir, "worker.log"), httpReady(s.workerURL+"/readyz"))
	s.apis, s.workers, s.apiURLs = []*process{s.api}, []*process{s.worker}, []string{s.apiURL}
	for i := range opts.moreAPIs {
		addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		name := fmt.Sprintf("api-%d", i+2)
		p := newProcess(t, name, binJiraconnect, []string{"api"}, s.envWith("DATABASE_URL", testDB.AppURL, "API_ADDR", addr,
			"OPS_ADDR", "127.0.0.1:"+strconv.Itoa(freePort(t))), filepath.Join(logDir, name+".log"), httpReady("http://"+addr+"/readyz"))
		s.apis, s.apiURLs = append(s.apis, p), append(s.apiURLs, "http://"+addr)
	}
	for i := range opts.moreWorkers {
		addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		name := fmt.Sprintf("worker-%d", i+2)
		s.workers = append(s.workers, newProcess(t, name, binJiraconnect, []string{"worker"}, s.envWith("DATABASE_URL", testDB.AppURL,
			"WORKER_ADDR", addr), filepath.Join(logDir, name+".log"), httpReady("http://"+addr+"/readyz")))
	}
	for _, p := range append(slices.Clone(s.apis), s.workers...) {
		s.procs = append(s.procs, p)
		p.start(60 * time.Second)
	}
	return s
}

// shutdown stops everything (SIGTERM: every process must stop cleanly) and, when the test failed,
// prints the tail of every log.
func (s *stack) shutdown() {
	if s.t.Failed() {
		for _, p := range s.procs {
			s.t.Log(p.tail(60))
		}
	}
	// Simulators, worker and API first, Temporal last, so nothing logs errors about a missing
	// server while stopping.
	for i := len(s.procs) - 1; i >= 0; i-- {
		if p := s.procs[i]; p != s.temporal {
			p.stop(30 * time.Second)
		}
	}
	if s.tc != nil {
		s.tc.Close()
	}
	if s.temporal != nil {
		s.temporal.stop(30 * time.Second)
	}
	for _, p := range []*pgProxy{s.pgAPI, s.pgWorker} {
		if p != nil {
			p.close()
		}
	}
	for _, p := range s.procs {
		for _, c := range p.unexpectedExits() {
			s.t.Error(c)
		}
	}
	if s.db != nil {
		s.db.Close()
	}
}

func (s *stack) envWith(kv ...string) map[string]string {
	out := make(map[string]string, len(s.env)+len(kv)/2)
	for k, v := range s.env {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// temporalReady: the dev stack printed its ready line (the frontend accepts connections).
func (s *stack) temporalReady(ctx context.Context) error {
	if !strings.Contains(s.temporal.logSinceLastStart(), "temporal ready on") {
		return fmt.Errorf("no ready line yet")
	}
	return nil
}

// waitTemporalHealthy waits until the frontend answers a health check.
func (s *stack) waitTemporalHealthy(timeout time.Duration) {
	s.t.Helper()
	eventually(s.t, "temporal health check", timeout, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := s.tc.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err == nil, fmt.Sprint(err)
	})
}

func httpReady(u string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		code, err := httpStatus(ctx, u)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("GET %s: %d", u, code)
		}
		return nil
	}
}

func httpStatus(ctx context.Context, u string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// runJiraconnect runs a one-shot jiraconnect command and returns an error with its output.
func (s *stack) runJiraconnect(env map[string]string, args ...string) error {
	_, err := s.outputJiraconnect(env, args...)
	return err
}

func (s *stack) outputJiraconnect(env map[string]string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binJiraconnect, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("jiraconnect %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// org is an organization and its first admin key.
type org struct {
	id  uuid.UUID
	key string
}

var orgLine = regexp.MustCompile(`organization: .* \(([0-9a-f-]{36})\)\nadmin API key \(shown once, store it now\): (\S+)`)

// newOrg creates an organization with `jiraconnect orgs create`, as an operator would (logged in
// as the application role, like the API and the worker).
func (s *stack) newOrg(name string) org {
	s.t.Helper()
	out, err := s.outputJiraconnect(s.envWith("DATABASE_URL", testDB.AppURL), "orgs", "create", "--name", name)
	if err != nil {
		s.t.Fatal(err)
	}
	m := orgLine.FindStringSubmatch(out)
	if m == nil {
		s.t.Fatalf("orgs create printed %q", out)
	}
	s.addSecret(m[2])
	return org{id: uuid.MustParse(m[1]), key: m[2]}
}

func (s *stack) addSecret(v ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range v {
		if x != "" {
			s.secrets = append(s.secrets, x)
		}
	}
}

// reply is an API answer.
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

var apiHTTP = &http.Client{Timeout: 90 * time.Second}

// call calls the (first) API; transport errors are returned, not fatal (the API may be down on
// purpose).
func (s *stack) call(method, path, key string, body any) (reply, error) {
	return s.callAt(s.apiURL, method, path, key, body)
}

// callAt calls the API process at base with body encoded as JSON.
func (s *stack) callAt(base, method, path, key string, body any) (reply, error) {
	var rd io.Reader
	contentType := ""
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return reply{}, err
		}
		rd, contentType = bytes.NewReader(b), "application/json"
	}
	return s.send(base, method, path, key, contentType, rd)
}

// send issues one request exactly as given (the security probes send bodies no encoder would).
func (s *stack) send(base, method, path, key, contentType string, body io.Reader) (reply, error) {
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		return reply{}, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := apiHTTP.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	r := reply{status: resp.StatusCode, raw: string(raw)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(raw, &r.body)
	}
	return r, nil
}

// mustCall calls the API and fails the test unless the status is want.
func (s *stack) mustCall(method, path, key string, body any, want int) reply {
	s.t.Helper()
	r, err := s.call(method, path, key, body)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	if r.status != want {
		s.t.Fatalf("%s %s: %d %s (want %d)", method, path, r.status, r.raw, want)
	}
	return r
}

// connection is a connection the test created.
type connection struct {
	id  uuid.UUID
	sim *simProc
}

// connectToken creates a cloud_token connection to a Cloud simulator.
func (s *stack) connectToken(o org, sim *simProc) connection {
	s.t.Helper()
	token := sim.apiToken("admin@example.com")
	s.addSecret(token)
	return s.connect(o, sim, map[string]any{"kind": "cloud_token", "site_url": sim.URL, "email": "admin@example.com", "api_token": token,
		"config": map[string]any{"sample_size": 10}})
}

// connectPAT creates a datacenter_pat connection to a Data Center simulator.
func (s *stack) connectPAT(o org, sim *simProc) connection {
	s.t.Helper()
	pat := sim.pat("admin")
	s.addSecret(pat)
	return s.connect(o, sim, map[string]any{"kind": "datacenter_pat", "site_url": sim.URL, "pat": pat,
		"config": map[string]any{"sample_size": 10}})
}

func (s *stack) connect(o org, sim *simProc, body map[string]any) connection {
	s.t.Helper()
	r := s.mustCall("POST", "/v1/connections", o.key, body, http.StatusCreated)
	// The webhook URL carries its secret in the last path segment; both are shown once.
	if u, err := url.Parse(r.str("webhook", "url")); err == nil && u.Path != "" {
		s.addSecret(u.Path[strings.LastIndex(u.Path, "/")+1:])
	}
	s.addSecret(r.str("webhook", "signing_secret"))
	return connection{id: uuid.MustParse(r.str("id")), sim: sim}
}

// connectConcurrently creates n connections at once (the first syncs start together, as for a
// fleet onboarded in one go).
func (s *stack) connectConcurrently(n int, connect func() connection) []connection {
	s.t.Helper()
	out := make([]connection, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = connect()
		}()
	}
	wg.Wait()
	if s.t.Failed() {
		s.t.FailNow()
	}
	return out
}

// enableFindingSync configures finding sync into the simulator's SEC project (validated by the API
// against createmeta). No webhook is registered: Jira-side changes arrive by reconciliation only.
func (s *stack) enableFindingSync(o org, c connection) {
	s.t.Helper()
	s.mustCall("PUT", "/v1/connections/"+c.id.String()+"/finding-sync", o.key,
		map[string]any{"project_key": "SEC", "issue_type": "10005", "link_template": "https://app.example.com/findings/{id}"}, http.StatusOK)
}

// createFindings posts n high, open findings (4 at a time) and returns their ids.
func (s *stack) createFindings(o org, prefix string, n int) []uuid.UUID {
	s.t.Helper()
	ids := make([]uuid.UUID, n)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 4 {
				r, err := s.call("POST", "/v1/findings", o.key, map[string]any{"external_id": fmt.Sprintf("%s-%03d", prefix, i),
					"title": fmt.Sprintf("Finding %s %d", prefix, i), "severity": "high", "status": "open",
					"framework_refs": []string{"OWASP_LLM01"}})
				if err != nil || r.status != http.StatusCreated {
					s.t.Errorf("create finding %d: %v %d %s", i, err, r.status, r.raw)
					return
				}
				ids[i] = uuid.MustParse(r.str("id"))
			}
		}()
	}
	wg.Wait()
	if s.t.Failed() {
		s.t.FailNow()
	}
	return ids
}

// syncNow asks for a sync and returns its sequence number.
func (s *stack) syncNow(o org, c connection) int64 {
	s.t.Helper()
	r := s.mustCall("POST", "/v1/connections/"+c.id.String()+"/sync", o.key, nil, http.StatusAccepted)
	seq, ok := r.body["sync_seq"].(float64)
	if !ok {
		s.t.Fatalf("sync now: %s", r.raw)
	}
	return int64(seq)
}

// syncKey is the connector_runs idempotency key of a connection's seq-th sync.
func syncKey(c connection, seq int64) string {
	return "jira-connection/" + c.id.String() + "/sync/" + strconv.FormatInt(seq, 10)
}

// runOutcome returns the outcome of a sync run ("" when it does not exist yet) and its attempts.
func (s *stack) runOutcome(o org, key string) (string, int) {
	s.t.Helper()
	var outcome string
	var attempts int
	err := s.db.QueryRow(context.Background(), `SELECT outcome, attempts FROM connector_runs WHERE org_id = $1 AND idempotency_key = $2`,
		o.id, key).Scan(&outcome, &attempts)
	if err != nil && !strings.Contains(err.Error(), "no rows") {
		s.t.Fatal(err)
	}
	return outcome, attempts
}

// count runs a count query.
func (s *stack) count(query string, args ...any) int {
	s.t.Helper()
	var n int
	if err := s.db.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		s.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// linkedCount is the number of findings linked to an issue on a connection.
func (s *stack) linkedCount(c connection) int {
	return s.count(`SELECT count(*) FROM finding_issue_links WHERE connection_id = $1 AND state = 'linked'`, c.id)
}

// runningRuns lists the org's connector runs that have not finished.
func (s *stack) runningRuns(o org) []string {
	s.t.Helper()
	rows, err := s.db.Query(context.Background(), `SELECT idempotency_key FROM connector_runs WHERE org_id = $1 AND outcome = 'running' ORDER BY idempotency_key`, o.id)
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			s.t.Fatal(err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
	return out
}

// workflowRunID returns the current run of a connection's workflow and whether it is running.
func (s *stack) workflowRunID(c connection) (string, bool) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	d, err := s.tc.DescribeWorkflowExecution(ctx, "jira-connection/"+c.id.String(), "")
	if err != nil {
		s.t.Fatalf("describe workflow of %s: %v", c.id, err)
	}
	info := d.GetWorkflowExecutionInfo()
	return info.GetExecution().GetRunId(), info.GetStatus().String() == "Running"
}

// eventually polls cond every 250ms until it holds, failing the test after timeout with cond's
// last explanation.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, detail)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// pgHostPort is the test Postgres server's address.
func pgHostPort(t *testing.T) string {
	u, err := url.Parse(testDB.OwnerURL)
	if err != nil {
		t.Fatal(err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5432")
	}
	return host
}

// viaProxy is the application's login URL of the test database with the proxy as the server.
func viaProxy(t *testing.T, p *pgProxy) string {
	u, err := url.Parse(testDB.AppURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.addr()
	return u.String()
}

// waitReadyAgain waits until the API and the worker answer /readyz with 200 after an outage (of
// what, for the failure message), and fails the test if either process died meanwhile.
func (s *stack) waitReadyAgain(t *testing.T, timeout time.Duration, what string) {
	t.Helper()
	eventually(t, "api and worker ready again", timeout, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a, _ := httpStatus(ctx, s.apiURL+"/readyz")
		w, _ := httpStatus(ctx, s.workerURL+"/readyz")
		return a == http.StatusOK && w == http.StatusOK, fmt.Sprintf("api %d, worker %d", a, w)
	})
	if !s.api.running() || !s.worker.running() {
		t.Fatalf("the API or the worker died while %s", what)
	}
}
