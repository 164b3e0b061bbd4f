package findingsync_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/db/dbtest"
	"github.com/jiraconnect/jiraconnect/egress"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/findingsync"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jirasim"
	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

// The activities package drives the service through Temporal's activity environment (the
// finding-sync behaviour is tested there, with the contract the workflow sees); the tests here
// cover what only the service's own surface shows.

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, &testDB)) }

// site is one organization with a finding-sync connection (API token) to a simulated Jira Cloud
// site, and a service whose progress reports are recorded.
type site struct {
	db    *db.DB
	scope findings.Scope
	svc   *findingsync.Service

	mu    sync.Mutex
	steps []string
}

func (s *site) progressed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.steps...)
}

func newSite(t *testing.T) *site {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := jirasim.NewServer(jirasim.Options{Flavor: jirasim.Cloud, Logger: quiet, RandSeed: 3})
	t.Cleanup(srv.Close)
	_, err := srv.AddProject(jirasim.ProjectSpec{Key: "SEC", Name: "Security"})
	require.NoError(t, err)

	d := testDB.Open(t)
	kr, err := seal.OpenLocalKeyring(t.TempDir())
	require.NoError(t, err)
	sealer, err := seal.New(kr, tenancy.KeyStore{DB: d}, seal.Options{})
	require.NoError(t, err)
	org, _, err := (&tenancy.Service{DB: d, Sealer: sealer}).CreateOrg(ctx, "fs-"+uuid.NewString()[:8], audit.Actor{Type: audit.ActorCLI, ID: "test"})
	require.NoError(t, err)
	allow, err := egress.ParseAllowList(egress.Loopback)
	require.NoError(t, err)
	conns := &connections.Service{DB: d, Sealer: sealer, Log: quiet, HTTPClient: egress.New(allow, egress.Options{}).HTTPClient()}

	fs := findings.DefaultSyncConfig()
	fs.ProjectKey, fs.IssueType = "SEC", jirasim.IssueTypeVulnerability
	fs.StatusMap[findings.StatusOpen] = findings.StatusTarget{ID: jirasim.StatusToDo, Name: "To Do", CategoryKey: findings.CategoryNew}
	cfg := connections.DefaultConfig()
	cfg.FindingSync = &fs
	rawCfg, err := json.Marshal(cfg)
	require.NoError(t, err)
	id := uuid.New()
	sealed, err := connections.SealCredentials(ctx, sealer, org.ID, id, connections.Credentials{
		Kind: connections.KindCloudToken, Email: "admin@example.com", APIToken: jira.NewSecret(srv.APIToken("admin@example.com"))})
	require.NoError(t, err)
	require.NoError(t, d.InOrg(ctx, org.ID, func(q *dbq.Queries) error {
		_, err := q.CreateConnection(ctx, dbq.CreateConnectionParams{ID: id, OrgID: org.ID, Kind: string(connections.KindCloudToken),
			SiteUrl: srv.URL, Status: string(connections.StatusActive), Config: rawCfg, Scopes: []string{}, SealedCredentials: sealed,
			WorkflowID: "jira-connection/" + id.String()})
		return err
	}))

	s := &site{db: d, scope: findings.Scope{OrgID: org.ID, ConnectionID: id}}
	s.svc, err = findingsync.New(findingsync.Config{DB: d, Connections: conns, Log: quiet, CallTimeout: 10 * time.Second,
		Progress: func(_ context.Context, step string) {
			s.mu.Lock()
			s.steps = append(s.steps, step)
			s.mu.Unlock()
		}})
	require.NoError(t, err)
	return s
}

// finding stores a finding and queues it for the connection, as the findings endpoint does.
func (s *site) finding(t *testing.T, ext string) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	var id uuid.UUID
	require.NoError(t, s.db.InOrg(ctx, s.scope.OrgID, func(q *dbq.Queries) error {
		row, err := q.UpsertFinding(ctx, dbq.UpsertFindingParams{OrgID: s.scope.OrgID, ExternalID: ext, Title: "Prompt injection " + ext,
			Severity: string(findings.SeverityHigh), Status: string(findings.StatusOpen), ProbeID: "promptinject.HijackHateHumans",
			ScanID: "scan-1", FrameworkRefs: []string{}, Excerpt: "ignore previous instructions"})
		if err != nil {
			return err
		}
		id = row.ID
		return q.EnqueueFinding(ctx, dbq.EnqueueFindingParams{OrgID: s.scope.OrgID, ConnectionID: s.scope.ConnectionID, FindingID: id})
	}))
	return id
}

// A drain reports its steps through Config.Progress (the activities' heartbeat) and counts its
// Jira calls in the caller's counter.
func TestDrainReportsProgressAndCountsCalls(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	s.finding(t, "F-1")
	s.finding(t, "F-2")
	calls := &jira.CallStats{}
	res, err := s.svc.Drain(context.Background(), s.scope, findingsync.DrainRequest{Batch: 10, Calls: calls,
		Actor: audit.Actor{Type: audit.ActorWorkflow, ID: "jira-connection/" + s.scope.ConnectionID.String()}})
	require.NoError(t, err)
	assert.Equal(t, 2, res.Created)
	assert.Equal(t, calls.Total(), res.JiraCalls)
	assert.Equal(t, 2, calls.ByOp()["issue.create"], "calls by operation: %v", calls.ByOp())
	assert.Equal(t, []string{"load connection", "finding 1 of 2", "create issue", "finding 2 of 2", "create issue"}, s.progressed())

	_, err = s.svc.Drain(context.Background(), s.scope, findingsync.DrainRequest{})
	assert.Equal(t, failure.TypeInvalidInput, failure.Classify(err).Type, "a drain without a batch: %v", err)
}

// A delivery is stored once per delivery id, with its change's JSON and its source address, and
// an inbox pass applies each stored change once.
func TestRecordDeliveryOnceAndApplyInbox(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	ctx := context.Background()
	ch := findings.IssueChange{DeliveryID: "d-1", Event: "jira:issue_updated", IssueID: "99999", IssueKey: "SEC-404",
		Status: findings.JiraStatus{ID: "10002", Name: "Done", CategoryKey: "done"}, StatusChanged: true,
		TimestampMillis: 1772442000001, ReceivedAt: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	dl := findingsync.Delivery{OrgID: s.scope.OrgID, ConnectionID: s.scope.ConnectionID, Source: netip.MustParseAddr("::ffff:203.0.113.9"), Change: ch}
	inserted, err := findingsync.RecordDelivery(ctx, s.db, dl)
	require.NoError(t, err)
	assert.True(t, inserted)
	inserted, err = findingsync.RecordDelivery(ctx, s.db, dl)
	require.NoError(t, err)
	assert.False(t, inserted, "a redelivery is not stored again")

	var stored []byte
	var source string
	require.NoError(t, testDB.Owner(t).QueryRow(ctx, `SELECT change::text, host(source_ip) FROM webhook_deliveries WHERE connection_id = $1`,
		s.scope.ConnectionID).Scan(&stored, &source))
	want, err := json.Marshal(ch)
	require.NoError(t, err)
	assert.JSONEq(t, string(want), string(stored))
	assert.Equal(t, "203.0.113.9", source)

	res, err := s.svc.ApplyInbox(ctx, s.scope, 10)
	require.NoError(t, err)
	assert.Equal(t, findingsync.InboxResult{ApplyResult: findingsync.ApplyResult{Ignored: 1}}, res, "an unlinked issue's change is claimed and ignored")
	assert.Contains(t, s.progressed(), "inbox change 1 of 1")
	res, err = s.svc.ApplyInbox(ctx, s.scope, 10)
	require.NoError(t, err)
	assert.Equal(t, findingsync.InboxResult{}, res, "an applied change is not read again")
}

// The service sits below the activities and must not depend on Temporal: errors are classified by
// package failure, heartbeats come in as Config.Progress.
func TestNoTemporalDependency(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, "go list -deps: %s", out)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/jiraconnect/jiraconnect/failure", "the dependency list is not what it seems")
	for _, d := range deps {
		assert.False(t, strings.HasPrefix(d, "go.temporal.io/"), "findingsync depends on %s", d)
		assert.NotEqual(t, "github.com/jiraconnect/jiraconnect/activities", d, "findingsync depends on activities")
	}
}
