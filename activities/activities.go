package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/worker"

	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findingsync"
)

// Activity names as registered with the worker. They equal the method names, which is also the
// name the SDK derives when a workflow passes a method value (a.SyncEvidence), so workflows may use
// either form.
const (
	NameLoadConnection     = "LoadConnection"
	NameSyncEvidence       = "SyncEvidence"
	NameRecordSyncFailure  = "RecordSyncFailure"
	NameSetConnectionState = "SetConnectionState"
	NameOpenAlert          = "OpenAlert"
	NameResolveAlert       = "ResolveAlert"
	NameTestConnection     = "TestConnection"
	NameRevokeCleanup      = "RevokeCleanup"
	NameRetentionPurge     = "RetentionPurge"
	// NameSuperviseConnections is the connection supervisor's activity (supervisor.go).
	NameSuperviseConnections = "SuperviseConnections"
)

// DefaultJiraCallTimeout bounds one Jira call of a sync or test. The activity context's deadline
// is the whole StartToClose timeout, which the jira client would otherwise use for a single call;
// a per-call bound keeps the time between two heartbeats below the heartbeat timeout, so a hung
// call fails the attempt instead of silently eating the whole activity budget.
const DefaultJiraCallTimeout = 30 * time.Second

// Deps are the collaborators of the activities.
type Deps struct {
	DB *db.DB
	// Connections loads connections and builds their Jira clients. It must be the process-wide
	// instance: it owns the single-flight OAuth token sources.
	Connections *connections.Service
	Log         *slog.Logger
	// Version is the connector version written into evidence provenance (app.Version).
	Version string
	// Now is the clock for collected-at, observation and run timestamps; time.Now when nil.
	Now func() time.Time
	// Registerer, when set, receives the activities' metrics (see Collectors). Leave it nil to
	// register Collectors() yourself, e.g. with metrics.Metrics.Register.
	Registerer prometheus.Registerer
	// JiraCallTimeout overrides DefaultJiraCallTimeout.
	JiraCallTimeout time.Duration
	// PublicURL is the externally reachable base URL of the API (PUBLIC_URL). Dynamic webhooks
	// deliver to <PublicURL>/webhooks/jira/<connection id>/<secret>; without it RegisterWebhooks
	// fails with a configuration error.
	PublicURL string
	// SearchConsistencyWindow overrides findingsync.DefaultSearchConsistencyWindow: how long after
	// a create request whose outcome is unknown Jira's search may still miss the issue (see
	// findingsync.Service.Drain).
	SearchConsistencyWindow time.Duration
}

// Activities implements every activity of the connection workflow. Create it with New; one value
// serves all connections of all orgs concurrently (it holds no per-connection state).
type Activities struct {
	db          *db.DB
	conns       *connections.Service
	log         *slog.Logger
	version     string
	now         func() time.Time
	callTimeout time.Duration
	// findingSync is the service behind the finding-sync activities (findingsync.go).
	findingSync *findingsync.Service
	// workflows serves the connection supervisor (supervisor.go); set by WithWorkflows.
	workflows ConnectionWorkflows

	alertsOpened   *prometheus.CounterVec
	alertsResolved *prometheus.CounterVec
	syncs          *prometheus.CounterVec
	restarts       *prometheus.CounterVec
}

// New validates deps and returns the activities.
func New(d Deps) (*Activities, error) {
	switch {
	case d.DB == nil:
		return nil, errors.New("activities: no database")
	case d.Connections == nil:
		return nil, errors.New("activities: no connection service")
	case d.Version == "":
		return nil, errors.New("activities: no connector version (it is recorded in evidence provenance)")
	}
	a := &Activities{
		db: d.DB, conns: d.Connections, log: d.Log, version: d.Version, now: d.Now, callTimeout: d.JiraCallTimeout,
		alertsOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jiraconnect_alerts_opened_total",
			Help: "Alerts opened, by kind. Opening an alert that is already open is not counted.",
		}, []string{"kind"}),
		alertsResolved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jiraconnect_alerts_resolved_total",
			Help: "Alerts resolved, by kind. Resolving an alert that is not open is not counted.",
		}, []string{"kind"}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jiraconnect_evidence_syncs_total",
			Help: "Evidence sync attempts by outcome (success, partial, no_data) or error type.",
		}, []string{"result"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jiraconnect_connection_workflows_restarted_total",
			Help: "Connection workflows the supervisor started again, by the previous run's status (terminated, failed, timed_out, canceled, not_found).",
		}, []string{"previous_status"}),
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.callTimeout <= 0 {
		a.callTimeout = DefaultJiraCallTimeout
	}
	fs, err := findingsync.New(findingsync.Config{
		DB: d.DB, Connections: d.Connections, Log: a.log, Now: a.now, CallTimeout: a.callTimeout,
		SearchConsistencyWindow: d.SearchConsistencyWindow, PublicURL: d.PublicURL, Progress: heartbeat,
	})
	if err != nil {
		return nil, fmt.Errorf("activities: %w", err)
	}
	a.findingSync = fs
	if d.Registerer != nil {
		for _, c := range a.Collectors() {
			if err := d.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("activities: register metrics: %w", err)
			}
		}
	}
	return a, nil
}

// Collectors returns the Prometheus collectors of the activities. Open alerts across all workers
// are sum(jiraconnect_alerts_opened_total) - sum(jiraconnect_alerts_resolved_total) per kind; a
// per-process gauge would be wrong as soon as a second worker runs.
func (a *Activities) Collectors() []prometheus.Collector {
	return []prometheus.Collector{a.alertsOpened, a.alertsResolved, a.syncs, a.restarts}
}

// Register adds every activity to r under its Name* constant. Methods are registered one by one
// (not as a struct) so that helpers such as Register and Collectors are never mistaken for
// activities.
func (a *Activities) Register(r worker.ActivityRegistry) {
	for name, fn := range map[string]any{
		NameLoadConnection:     a.LoadConnection,
		NameSyncEvidence:       a.SyncEvidence,
		NameRecordSyncFailure:  a.RecordSyncFailure,
		NameSetConnectionState: a.SetConnectionState,
		NameOpenAlert:          a.OpenAlert,
		NameResolveAlert:       a.ResolveAlert,
		NameTestConnection:     a.TestConnection,
		NameRevokeCleanup:      a.RevokeCleanup,
		NameRetentionPurge:     a.RetentionPurge,

		NameSuperviseConnections: a.SuperviseConnections,

		NameResealOrgSecrets:     a.ResealOrgSecrets,
		NameRetireOrgKeyVersions: a.RetireOrgKeyVersions,
		NameRotateDueOrgKeys:     a.RotateDueOrgKeys,
		NameRewrapOrgKeys:        a.RewrapOrgKeys,

		NameDrainFindingQueue:     a.DrainFindingQueue,
		NameApplyJiraChanges:      a.ApplyJiraChanges,
		NameApplyInboxChanges:     a.ApplyInboxChanges,
		NameReconcileLinkedIssues: a.ReconcileLinkedIssues,
		NameRegisterWebhooks:      a.RegisterWebhooks,
		NameRefreshWebhooks:       a.RefreshWebhooks,
	} {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

// heartbeatGrace is how long an attempt runs before it heartbeats. Each heartbeat the SDK sends
// is a write to the workflow's state on the Temporal server, and most attempts (a sync's four
// calls, a drain of a few findings) finish well within it; a fleet-wide burst of syncs then costs
// no heartbeat writes at all. Cancellation (a revoke) reaches an attempt only through a heartbeat
// response, so it is noticed at most this much later; the revoke still waits until the attempt
// has stopped (WaitForCancellation), so no Jira call can follow it.
const heartbeatGrace = time.Second

// heartbeat records progress when running as a Temporal activity, once the attempt has run for
// heartbeatGrace. The API also calls some activities directly (RevokeCleanup for a connection
// without a workflow), where there is no heartbeat to send; the SDK panics on a non-activity
// context, hence the check.
func heartbeat(ctx context.Context, step string) {
	if !activity.IsActivity(ctx) {
		return
	}
	info := activity.GetInfo(ctx)
	if info.IsLocalActivity {
		return
	}
	// StartedTime is the server's clock. A worker clock behind it gives a negative age: heartbeat
	// then, rather than stay silent for as long as the skew (and into the heartbeat timeout).
	if age := time.Since(info.StartedTime); age >= 0 && age < heartbeatGrace {
		return
	}
	activity.RecordHeartbeat(ctx, step)
}

// logger returns the base logger with the connection's identifiers attached.
func (a *Activities) logger(ref ConnectionRef) *slog.Logger {
	return a.log.With(slog.String("org_id", ref.OrgID.String()), slog.String("connection_id", ref.ConnectionID.String()))
}

func validRef(ref ConnectionRef) error {
	if ref.OrgID == uuid.Nil || ref.ConnectionID == uuid.Nil {
		return failure.InvalidInput("org_id and connection_id are required")
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// attempt is the activity's attempt number (1 outside Temporal), for log lines.
func attempt(ctx context.Context) int {
	if activity.IsActivity(ctx) {
		return int(activity.GetInfo(ctx).Attempt)
	}
	return 1
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.UTC()
	return &v
}
