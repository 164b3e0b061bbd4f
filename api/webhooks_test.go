package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/jiraconnect/jiraconnect/api"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/metrics"
	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/tenancy"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// hookEnv is the webhook bridge on real Postgres, with a Temporal client stand-in.
type hookEnv struct {
	tb     testing.TB
	db     *db.DB
	org    uuid.UUID
	server *api.Server
	srv    *httptest.Server
}

const hookSecret = "test-url-secret"

func newHookEnv(tb testing.TB, temporal client.Client, log *slog.Logger) *hookEnv {
	tb.Helper()
	d := testDB.Open(tb)
	kr, err := seal.OpenLocalKeyring(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	sealer, err := seal.New(kr, tenancy.KeyStore{DB: d}, seal.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	svc := &tenancy.Service{DB: d, Sealer: sealer}
	org, _, err := svc.CreateOrg(context.Background(), "hooks-"+uuid.NewString()[:8], audit.Actor{Type: audit.ActorCLI, ID: "test"})
	if err != nil {
		tb.Fatal(err)
	}
	m := metrics.New(log)
	tb.Cleanup(func() { _ = m.Close() })
	server := api.New(api.Deps{Log: log, DB: d, Tenancy: svc, Metrics: m, Sealer: sealer,
		Connections: &connections.Service{DB: d, Sealer: sealer}, Temporal: temporal})
	srv := httptest.NewServer(checked(tb, server.Handler()))
	tb.Cleanup(func() {
		srv.Close()
		server.Close()
	})
	return &hookEnv{tb: tb, db: d, org: org.ID, server: server, srv: srv}
}

// connection stores an active connection without a signing secret and returns its webhook URL.
func (e *hookEnv) connection() (uuid.UUID, string) {
	e.tb.Helper()
	connID := uuid.New()
	err := e.db.InOrg(context.Background(), e.org, func(q *dbq.Queries) error {
		_, err := q.CreateConnection(context.Background(), dbq.CreateConnectionParams{ID: connID, OrgID: e.org, Kind: "cloud_token",
			SiteUrl: "https://x.atlassian.net", Status: "active", Config: []byte(`{}`), Scopes: []string{}, SealedCredentials: []byte{1},
			WebhookSecretHash: connections.HashURLSecret(hookSecret), WorkflowID: workflows.WorkflowID(connID)})
		return err
	})
	if err != nil {
		e.tb.Fatal(err)
	}
	return connID, e.srv.URL + "/webhooks/jira/" + connID.String() + "/" + hookSecret
}

// pending counts the connection's inbox changes not yet applied.
func (e *hookEnv) pending(tb testing.TB, connID uuid.UUID) int {
	tb.Helper()
	var n int64
	err := e.db.InOrg(context.Background(), e.org, func(q *dbq.Queries) error {
		var err error
		n, err = q.CountPendingInbox(context.Background(), dbq.CountPendingInboxParams{ConnectionID: connID, MaxRows: math.MaxInt32})
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return int(n)
}

// post delivers body (safe from any goroutine: a failed request is status 0). The client
// timeout only guards against a hang.
func (e *hookEnv) post(url, deliveryID string, body []byte) (int, string) {
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		e.tb.Errorf("request: %v", err)
		return 0, ""
	}
	req.Header.Set("Content-Type", "application/json")
	if deliveryID != "" {
		req.Header.Set("X-Atlassian-Webhook-Identifier", deliveryID)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		e.tb.Errorf("delivery %s: %v", deliveryID, err)
		return 0, ""
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var b struct {
		Status string `json:"status"`
	}
	_ = json.Unmarshal(raw, &b)
	return resp.StatusCode, b.Status
}

func issueUpdated(issueID string, ts int64) []byte {
	return fmt.Appendf(nil, `{"timestamp":%d,"webhookEvent":"jira:issue_updated","issue":{"id":%q,"key":"SEC-1","fields":{"status":{"id":"3","name":"Done","statusCategory":{"key":"done"}}}},"changelog":{"items":[{"field":"status","from":"1","to":"3","fromString":"To Do","toString":"Done"}]}}`, ts, issueID)
}

// stuckTemporal is a Temporal that accepts a signal and never answers until released (or the
// caller gives up): the situation in which the bridge used to hold a pooled Postgres connection
// in an open transaction. Every other call panics through the nil embedded client.
type stuckTemporal struct {
	client.Client
	release chan struct{}
	calls   atomic.Int64
	called  chan string // the workflow id of each signal, as it starts

	mu          sync.Mutex
	inFlight    map[string]int
	maxInFlight int
}

func newStuckTemporal() *stuckTemporal {
	return &stuckTemporal{release: make(chan struct{}), called: make(chan string, 1000), inFlight: map[string]int{}}
}

func (c *stuckTemporal) SignalWorkflow(ctx context.Context, workflowID, runID, name string, arg any) error {
	if name != workflows.SignalInboxNudge || runID != "" || arg != nil {
		panic(fmt.Sprintf("unexpected signal %q %q %v", name, runID, arg))
	}
	c.mu.Lock()
	c.inFlight[workflowID]++
	c.maxInFlight = max(c.maxInFlight, c.inFlight[workflowID])
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.inFlight[workflowID]--
		c.mu.Unlock()
	}()
	c.calls.Add(1)
	c.called <- workflowID
	select {
	case <-c.release:
		return serviceerror.NewUnavailable("temporal is unavailable")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// idleInTransaction counts the database's sessions that sit in an open transaction.
func idleInTransaction(t *testing.T) int {
	t.Helper()
	var n int
	err := testDB.Owner(t).QueryRow(context.Background(),
		`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWebhookAcceptedWhileTemporalIsStuck: with Temporal not answering, the bridge still stores
// and accepts every delivery — far more than the connection pool holds — without any Postgres
// session left in a transaction; the doorbell is rung once for the connection while the others
// coalesce, exactly once more when that signal ends, and shutdown cancels a signal in flight.
func TestWebhookAcceptedWhileTemporalIsStuck(t *testing.T) {
	temporal := newStuckTemporal()
	var logs strings.Builder
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), nil))
	e := newHookEnv(t, temporal, log)
	connID, url := e.connection()

	const deliveries = 60 // several times the test pool's size
	var wg sync.WaitGroup
	statuses := make([]int, deliveries)
	for i := range deliveries {
		wg.Go(func() {
			statuses[i], _ = e.post(url, fmt.Sprintf("delivery-%d", i), issueUpdated(fmt.Sprint(10000+i), 1700000000000+int64(i)))
		})
	}
	wg.Wait()
	for i, st := range statuses {
		if st != http.StatusAccepted {
			t.Fatalf("delivery %d answered %d while Temporal is stuck", i, st)
		}
	}
	if n := e.pending(t, connID); n != deliveries {
		t.Errorf("%d deliveries stored, want %d", n, deliveries)
	}
	// A redelivery is still a duplicate.
	if st, status := e.post(url, "delivery-7", issueUpdated("10007", 1700000000007)); st != http.StatusOK || status != "duplicate" {
		t.Errorf("redelivery: %d %s", st, status)
	}
	<-temporal.called // the doorbell rang (asynchronously)
	if n := idleInTransaction(t); n != 0 {
		t.Errorf("%d Postgres sessions idle in transaction while a signal is stuck", n)
	}
	if n := temporal.calls.Load(); n != 1 {
		t.Errorf("%d signals in flight for one connection, want 1 (the rest coalesce)", n)
	}

	close(temporal.release) // Temporal answers (with an error): exactly one more nudge follows
	e.server.WaitNudgesIdle()
	if n := temporal.calls.Load(); n != 2 {
		t.Errorf("%d signals after release, want 2", n)
	}
	if temporal.maxInFlight != 1 {
		t.Errorf("%d signals in flight at once for one connection", temporal.maxInFlight)
	}
	logMu.Lock()
	got := logs.String()
	logMu.Unlock()
	if !strings.Contains(got, "webhook inbox nudge failed") || !strings.Contains(got, connID.String()) {
		t.Errorf("the failed nudge is not logged with its connection id:\n%s", got)
	}
	if strings.Contains(got, "SEC-1") || strings.Contains(got, "To Do") {
		t.Errorf("delivery content in the logs:\n%s", got)
	}

	// Shutdown cancels a signal in flight; later deliveries are still stored and accepted.
	stuck := newStuckTemporal()
	e2 := newHookEnv(t, stuck, log)
	conn2, url2 := e2.connection()
	if st, _ := e2.post(url2, "a", issueUpdated("10001", 1700000000001)); st != http.StatusAccepted {
		t.Fatalf("delivery: %d", st)
	}
	<-stuck.called
	e2.server.Close() // returns once the stuck signal was cancelled
	if st, _ := e2.post(url2, "b", issueUpdated("10002", 1700000000002)); st != http.StatusAccepted {
		t.Fatalf("delivery after close: %d", st)
	}
	if n := stuck.calls.Load(); n != 1 || e2.pending(t, conn2) != 2 {
		t.Errorf("after close: %d signals, %d pending", n, e2.pending(t, conn2))
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
