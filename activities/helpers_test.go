package activities_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/db/dbtest"
	"github.com/jiraconnect/jiraconnect/egress"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jirasim"
	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, &testDB)) }

// lockedBuffer collects log output written concurrently (worker goroutines, the simulator).
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// harness is one organization with real Postgres, sealing and activities. Everything the
// activities, the connection service and the simulators log goes to logs, at debug level, so that
// tests can assert that no secret was ever logged.
type harness struct {
	t       *testing.T
	db      *db.DB
	sealer  *seal.Sealer
	conns   *connections.Service
	acts    *activities.Activities
	reg     *prometheus.Registry
	logs    *lockedBuffer
	log     *slog.Logger
	org     uuid.UUID
	secrets []string
	// results collects every activity result and error text, for the secret scan.
	results []string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	ctx := context.Background()
	d := testDB.Open(t)
	kr, err := seal.OpenLocalKeyring(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.New(kr, tenancy.KeyStore{DB: d}, seal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// The simulator listens on loopback, which the egress policy allows only when told to (as the
	// dev stack and the test harnesses do).
	allow, err := egress.ParseAllowList(egress.Loopback)
	if err != nil {
		t.Fatal(err)
	}
	conns := &connections.Service{DB: d, Sealer: sealer, Log: log, HTTPClient: egress.New(allow, egress.Options{}).HTTPClient()}
	reg := prometheus.NewRegistry()
	acts, err := activities.New(activities.Deps{DB: d, Connections: conns, Log: log, Version: "test-1.2.3", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	org, _, err := (&tenancy.Service{DB: d, Sealer: sealer}).CreateOrg(ctx, "Acme "+t.Name(), audit.Actor{Type: audit.ActorCLI, ID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, db: d, sealer: sealer, conns: conns, acts: acts, reg: reg, logs: logs, log: log, org: org.ID}
	t.Cleanup(h.assertNoSecrets)
	return h
}

// assertNoSecrets scans captured logs and every recorded activity result for the credentials the
// test seeded.
func (h *harness) assertNoSecrets() {
	logs := h.logs.String()
	all := strings.Join(h.results, "\n")
	for _, s := range h.secrets {
		if s == "" {
			continue
		}
		if strings.Contains(logs, s) {
			h.t.Errorf("a seeded secret appears in the captured logs")
		}
		if strings.Contains(all, s) {
			h.t.Errorf("a seeded secret appears in an activity result or error")
		}
	}
}

func startSim(t *testing.T, flavor jirasim.Flavor, log *slog.Logger) *jirasim.Server {
	t.Helper()
	srv := jirasim.NewServer(jirasim.Options{Flavor: flavor, Logger: log, RandSeed: 7})
	t.Cleanup(srv.Close)
	return srv
}

const adminEmail = "admin@example.com"

// connect stores a connection of kind to srv, with freshly issued simulator credentials, and
// returns its reference. cfg nil means the default configuration.
func (h *harness) connect(kind connections.Kind, srv *jirasim.Server, cfg *connections.Config) activities.ConnectionRef {
	h.t.Helper()
	creds, cloudID := h.issueCredentials(kind, srv)
	return h.store(kind, srv, creds, cloudID, cfg)
}

// issueCredentials has the simulator issue credentials of kind for its admin user.
func (h *harness) issueCredentials(kind connections.Kind, srv *jirasim.Server) (connections.Credentials, *string) {
	h.t.Helper()
	creds := connections.Credentials{Kind: kind}
	var cloudID *string
	switch kind {
	case connections.KindCloudToken:
		tok := srv.APIToken(adminEmail)
		h.secrets = append(h.secrets, tok)
		creds.Email, creds.APIToken = adminEmail, jira.NewSecret(tok)
	case connections.KindDataCenterPAT:
		pat := srv.PAT("admin")
		h.secrets = append(h.secrets, pat)
		creds.PAT = jira.NewSecret(pat)
	case connections.KindCloudOAuth:
		toks, err := srv.GrantOAuth(adminEmail, jirasim.ScopeReadWork, jirasim.ScopeReadUser, jirasim.ScopeOffline, jirasim.ScopeManageWebhook)
		if err != nil {
			h.t.Fatal(err)
		}
		h.secrets = append(h.secrets, toks.AccessToken, toks.RefreshToken)
		creds.Access, creds.Refresh = jira.NewSecret(toks.AccessToken), jira.NewSecret(toks.RefreshToken)
		creds.Expiry = srv.Now().Add(time.Duration(toks.ExpiresIn) * time.Second)
		cid := srv.CloudID()
		cloudID = &cid
		clientID, clientSecret := srv.OAuthClient()
		h.secrets = append(h.secrets, clientSecret)
		h.conns.OAuth = &jira.OAuthApp{
			ClientID: clientID, ClientSecret: jira.NewSecret(clientSecret), RedirectURL: "https://app.example.com/cb",
			AuthBaseURL: srv.URL, APIBaseURL: srv.URL, Logger: h.log, Now: srv.Now,
		}
	}
	return creds, cloudID
}

// store seals creds and inserts an active connection to srv.
func (h *harness) store(kind connections.Kind, srv *jirasim.Server, creds connections.Credentials, cloudID *string, cfg *connections.Config) activities.ConnectionRef {
	h.t.Helper()
	ctx := context.Background()
	id := uuid.New()
	sealed, err := connections.SealCredentials(ctx, h.sealer, h.org, id, creds)
	if err != nil {
		h.t.Fatal(err)
	}
	c := connections.DefaultConfig()
	if cfg != nil {
		c = *cfg
	}
	rawCfg, err := json.Marshal(c)
	if err != nil {
		h.t.Fatal(err)
	}
	err = h.db.InOrg(ctx, h.org, func(q *dbq.Queries) error {
		_, err := q.CreateConnection(ctx, dbq.CreateConnectionParams{
			ID: id, OrgID: h.org, Kind: string(kind), SiteUrl: srv.URL, CloudID: cloudID, Status: string(connections.StatusActive),
			Config: rawCfg, Scopes: []string{"read:jira-work"}, SealedCredentials: sealed, WorkflowID: "jira-connection/" + id.String(),
		})
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return activities.ConnectionRef{OrgID: h.org, ConnectionID: id}
}

// env returns a Temporal test activity environment with the activities registered, so activities
// run with real activity contexts (heartbeats, info).
func (h *harness) env() *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(sdklog.NewStructuredLogger(h.log))
	env := s.NewTestActivityEnvironment()
	h.acts.Register(env)
	return env
}

// sync runs SyncEvidence through the activity environment.
func (h *harness) sync(ref activities.ConnectionRef, seq int64) (activities.SyncResult, error) {
	h.t.Helper()
	in := activities.SyncInput{ConnectionRef: ref, Seq: seq, Trigger: "schedule",
		WorkflowID: "jira-connection/" + ref.ConnectionID.String(), RunID: "run-1"}
	val, err := h.env().ExecuteActivity(activities.NameSyncEvidence, in)
	var res activities.SyncResult
	if err == nil {
		if err := val.Get(&res); err != nil {
			h.t.Fatal(err)
		}
	}
	h.record(res, err)
	return res, err
}

// record keeps a result (and error text) for the secret scan.
func (h *harness) record(v any, err error) {
	b, _ := json.Marshal(v)
	h.results = append(h.results, string(b))
	if err != nil {
		h.results = append(h.results, err.Error())
	}
}

// appError extracts the ApplicationError an activity failed with.
func appError(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an ApplicationError", err, err)
	}
	return ae
}

// owner is a connection that sees past row-level security, for assertions.
func (h *harness) owner() *pgx.Conn { return testDB.Owner(h.t) }

func (h *harness) count(query string, args ...any) int {
	h.t.Helper()
	var n int
	if err := h.owner().QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		h.t.Fatalf("%s: %v", query, err)
	}
	return n
}

type runRow struct {
	ID         uuid.UUID
	Outcome    string
	JiraCalls  int
	Error      *string
	ErrorKind  *string
	StartedAt  time.Time
	FinishedAt *time.Time
	Attempts   int
	Trigger    string
}

func (h *harness) runs(connID uuid.UUID) []runRow {
	h.t.Helper()
	rows, err := h.owner().Query(context.Background(),
		`SELECT id, outcome, jira_calls, error, error_kind, started_at, finished_at, attempts, triggered_by FROM connector_runs
		 WHERE connection_id = $1 ORDER BY started_at, id`, connID)
	if err != nil {
		h.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (runRow, error) {
		var x runRow
		err := r.Scan(&x.ID, &x.Outcome, &x.JiraCalls, &x.Error, &x.ErrorKind, &x.StartedAt, &x.FinishedAt, &x.Attempts, &x.Trigger)
		return x, err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// jiraRequests counts the requests the simulator served to the REST API (OAuth token-endpoint
// traffic excluded), which is what a sync's call budget is about.
func jiraRequests(srv *jirasim.Server) int {
	n := 0
	for _, r := range srv.Requests() {
		if !strings.HasPrefix(r.Operation, "oauth.") {
			n++
		}
	}
	return n
}

func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabel(m, label, value) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// containsLog reports whether a JSON log line has message msg and attribute kind.
func containsLog(logs, msg, kind string) bool {
	for _, line := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		if m["msg"] == msg && m["kind"] == kind {
			return true
		}
	}
	return false
}

func ptrTo[T any](v T) *T { return &v }
