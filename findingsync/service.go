package findingsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/jira"
)

// DefaultSearchConsistencyWindow is how long Jira Cloud's search may lag behind a create. A create
// request whose outcome is unknown (response lost, worker killed) is only considered not to have
// happened when a marker search made at least this long (plus the per-call timeout, the longest the
// request itself could still have been in flight) after the request finds nothing.
const DefaultSearchConsistencyWindow = 30 * time.Second

// Audit actions written by finding sync.
const (
	ActionIssueCreated  = "finding.issue_created"
	ActionPush          = "finding.push"
	ActionPushFailed    = "finding.push_failed"
	ActionInboundChange = "finding.inbound_change"
)

// Progress is told, between the steps of a long call, what the call is doing. The activities pass
// their heartbeat. It must return quickly.
type Progress func(ctx context.Context, step string)

// Config holds the collaborators and settings of a Service.
type Config struct {
	DB *db.DB
	// Connections loads connections and builds their Jira clients. It must be the process-wide
	// instance: it owns the single-flight OAuth token sources.
	Connections *connections.Service
	Log         *slog.Logger
	// Now is the clock of queue due times, pushes and reconciliation marks; time.Now when nil.
	Now func() time.Time
	// CallTimeout bounds one Jira call (a move through several transitions gets twice as long).
	// Required: the caller's deadline is that of the whole pass.
	CallTimeout time.Duration
	// SearchConsistencyWindow overrides DefaultSearchConsistencyWindow.
	SearchConsistencyWindow time.Duration
	// PublicURL is the externally reachable base URL of the API (PUBLIC_URL). Dynamic webhooks
	// deliver to <PublicURL>/webhooks/jira/<connection id>/<secret>; without it RegisterWebhooks
	// fails with a configuration error.
	PublicURL string
	// Progress receives progress reports; none are sent when it is nil.
	Progress Progress
}

// Service is finding sync for every connection of every organization. It holds no per-connection
// state, so one value serves all of them concurrently.
type Service struct {
	db           *db.DB
	conns        *connections.Service
	log          *slog.Logger
	now          func() time.Time
	callTimeout  time.Duration
	searchWindow time.Duration
	publicURL    string
	progress     Progress
}

// New validates c and returns the service.
func New(c Config) (*Service, error) {
	switch {
	case c.DB == nil:
		return nil, errors.New("findingsync: no database")
	case c.Connections == nil:
		return nil, errors.New("findingsync: no connection service")
	case c.CallTimeout <= 0:
		return nil, errors.New("findingsync: no Jira call timeout")
	}
	s := &Service{db: c.DB, conns: c.Connections, log: c.Log, now: c.Now, callTimeout: c.CallTimeout,
		searchWindow: c.SearchConsistencyWindow, publicURL: c.PublicURL, progress: c.Progress}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.searchWindow <= 0 {
		s.searchWindow = DefaultSearchConsistencyWindow
	}
	if s.progress == nil {
		s.progress = func(context.Context, string) {}
	}
	return s, nil
}

// logger returns the base logger with the connection's identifiers attached.
func (s *Service) logger(scope findings.Scope) *slog.Logger {
	return s.log.With(slog.String("org_id", scope.OrgID.String()), slog.String("connection_id", scope.ConnectionID.String()))
}

// load loads the connection row (for the finding-sync columns the Connection type does not carry)
// and its parsed configuration. A revoked or missing connection is connections.ErrRevoked /
// connections.ErrNotFound.
func (s *Service) load(ctx context.Context, scope findings.Scope) (dbq.Connection, connections.Connection, error) {
	var row dbq.Connection
	err := s.db.InOrg(ctx, scope.OrgID, func(q *dbq.Queries) error {
		var err error
		row, err = connections.RequireLive(ctx, q, scope.ConnectionID)
		return err
	})
	if err != nil {
		return dbq.Connection{}, connections.Connection{}, err
	}
	conn, err := connections.FromRow(row)
	if err != nil {
		return dbq.Connection{}, connections.Connection{}, fmt.Errorf("connection %s configuration: %w: %w", scope.ConnectionID, failure.ErrBadConfig, err)
	}
	return row, conn, nil
}

// client builds the connection's Jira client, counting its calls in calls. connections.Service
// reports an OAuth connection on a worker without an OAuth app as an untyped error; it is
// failure.ErrOAuthNotConfigured here.
func (s *Service) client(ctx context.Context, scope findings.Scope, conn connections.Connection, calls *jira.CallStats) (*jira.Client, error) {
	client, _, err := s.conns.Client(ctx, scope.OrgID, scope.ConnectionID, calls)
	if err != nil {
		if conn.Kind == connections.KindCloudOAuth && s.conns.OAuth == nil {
			return nil, failure.ErrOAuthNotConfigured
		}
		return nil, err
	}
	return client, nil
}

// callCtx bounds one Jira call (n call timeouts for a call that may make several requests).
func (s *Service) callCtx(ctx context.Context, n int) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, time.Duration(n)*s.callTimeout)
}
