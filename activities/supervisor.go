package activities

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
)

// Statuses of a connection workflow's latest run, as ConnectionWorkflows.Describe reports them.
const (
	WorkflowRunning        = "running"
	WorkflowCompleted      = "completed"
	WorkflowFailed         = "failed"
	WorkflowCanceled       = "canceled"
	WorkflowTerminated     = "terminated"
	WorkflowContinuedAsNew = "continued_as_new"
	WorkflowTimedOut       = "timed_out"
	// WorkflowNotFound: Temporal knows no run of the workflow id — never started, or deleted (by
	// an operator, or by the namespace's retention once the run had closed).
	WorkflowNotFound = "not_found"
)

// WorkflowStart names a connection whose workflow is to be started, with its stored status and
// stale flag (the workflow's initial search attributes).
type WorkflowStart struct {
	OrgID        uuid.UUID
	ConnectionID uuid.UUID
	// Status is the connection's stored status; empty means active.
	Status string
	Stale  bool
}

// WorkflowRun is what Temporal says about the latest run of a connection's workflow.
type WorkflowRun struct {
	// Status is one of the Workflow* statuses.
	Status string
	RunID  string
	// CloseTime is when a closed run closed (zero while running or when not found).
	CloseTime time.Time
}

// ConnectionWorkflows is the Temporal side of the connection supervisor. workflowclient.Client
// implements it; it is the same starter the API uses, so a workflow the supervisor starts is
// started exactly like one the API starts.
type ConnectionWorkflows interface {
	// StartConnection starts the connection's workflow and reports whether this call started a
	// run: false, without error, when a run is already running (a concurrent start won) or
	// the id may not be reused (the previous run completed).
	StartConnection(ctx context.Context, s WorkflowStart) (started bool, err error)
	// Describe reports the latest run of the connection's workflow from the workflow's own
	// state (current, one history read).
	Describe(ctx context.Context, connectionID uuid.UUID) (WorkflowRun, error)
	// Running reports which of the connections have a running workflow, from the visibility
	// store (one query for the batch, eventually consistent); it is given at most
	// SuperviseBatch ids.
	Running(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]bool, error)
}

// WithWorkflows returns a copy of the activities whose SuperviseConnections uses w. The worker
// sets it once it has a Temporal client; activities without it fail SuperviseConnections with a
// configuration error and are otherwise unchanged.
func (a *Activities) WithWorkflows(w ConnectionWorkflows) *Activities {
	c := *a
	c.workflows = w
	return &c
}

// errNoWorkflowClient: SuperviseConnections ran on activities without WithWorkflows.
var errNoWorkflowClient = failure.Misconfigured("the connection supervisor has no Temporal client on this worker (Activities.WithWorkflows)")

// Supervision bounds.
const (
	// SuperviseBatch is how many connections one page handles: one Postgres query and one
	// visibility query per page.
	SuperviseBatch = 100
	// DefaultSuperviseLimit bounds the connections one SuperviseConnections call examines, so a
	// large fleet is many short activities (each resumable from its cursor) rather than one long
	// one.
	DefaultSuperviseLimit = 500
	// DefaultSupervisorMaxStarts bounds the workflows one supervisor pass starts. Each start costs
	// a workflow task, a load and a state mirror, and a connection with finding sync also
	// re-registers its webhooks and reconciles (Jira calls), so a fleet that lost every
	// workflow at once comes back at this many per pass (12,000 an hour at the default 5-minute
	// interval) instead of in one burst.
	DefaultSupervisorMaxStarts = 1000
	// FailedRunRestartDelay is how long after a workflow failed the supervisor waits before
	// starting it again. A connection workflow fails only on an error it cannot retry (its stored
	// connection is unusable), which a restart rarely fixes; the delay keeps such a connection
	// from being restarted (and audited) every pass, while still trying again every hour.
	FailedRunRestartDelay = time.Hour
	// supervisorCallTimeout bounds one Temporal or Postgres call of the supervisor.
	supervisorCallTimeout = 15 * time.Second
)

// ActionWorkflowRestarted is the audit action of a workflow the supervisor started again.
const ActionWorkflowRestarted = "connection.workflow_restarted"

// SupervisorActor is the audit actor of the supervisor's actions.
var SupervisorActor = audit.Actor{Type: audit.ActorSystem, ID: "supervisor"}

// SupervisorCursor is where a supervisor pass stands: organizations in id order, and within one,
// connections in (created_at, id) order. The zero value is the beginning.
type SupervisorCursor struct {
	OrgID        uuid.UUID `json:"org_id"`
	CreatedAt    time.Time `json:"created_at"`
	ConnectionID uuid.UUID `json:"connection_id"`
}

// SuperviseInput asks SuperviseConnections to continue a pass from Cursor.
type SuperviseInput struct {
	Cursor SupervisorCursor `json:"cursor"`
	// Limit bounds the connections this call examines (0: DefaultSuperviseLimit).
	Limit int `json:"limit,omitempty"`
	// MaxStarts bounds the workflows this call starts (0: DefaultSupervisorMaxStarts).
	MaxStarts int `json:"max_starts,omitempty"`
}

// SupervisorInput configures one pass of SupervisorWorkflow (the schedule passes the zero value:
// the defaults). Operators may edit it in the schedule's action in the Temporal UI.
type SupervisorInput struct {
	// Limit is the connections examined per activity (0: DefaultSuperviseLimit).
	Limit int `json:"limit,omitempty"`
	// MaxStarts is the workflows started per pass (0: DefaultSupervisorMaxStarts).
	MaxStarts int `json:"max_starts,omitempty"`
}

// SuperviseResult reports a SuperviseConnections call, or a whole pass (summed).
type SuperviseResult struct {
	// Next is where the next call continues; nil when the pass has examined every organization.
	Next *SupervisorCursor `json:"next,omitempty"`
	// Orgs is the organizations whose connections were all examined (by this call, or by the
	// call that finished them: summed over a pass, each organization once).
	Orgs int `json:"orgs"`
	// Checked is the active and needs_reauth connections examined.
	Checked int `json:"checked"`
	// Restarted is the workflows started (each with a connection.workflow_restarted audit row).
	Restarted int `json:"restarted"`
	// AlreadyRunning: listed as not running by visibility, but running when described or when
	// started (visibility lag, or the API or another pass started it meanwhile).
	AlreadyRunning int `json:"already_running"`
	// Skipped: no longer active or needs_reauth when re-checked (revoked meanwhile).
	Skipped int `json:"skipped"`
	// Refused: the previous run completed, which a connection workflow does only when its
	// connection is revoked, so Temporal refuses a new run; logged for an operator.
	Refused int `json:"refused"`
	// Deferred: the previous run failed less than FailedRunRestartDelay ago.
	Deferred int `json:"deferred"`
	// Failed: a Temporal or Postgres error for one connection (logged; the next pass tries again).
	Failed int `json:"failed"`
}

// Add sums r into s (s.Next is left as it is).
func (s *SuperviseResult) Add(r SuperviseResult) {
	s.Orgs += r.Orgs
	s.Checked += r.Checked
	s.Restarted += r.Restarted
	s.AlreadyRunning += r.AlreadyRunning
	s.Skipped += r.Skipped
	s.Refused += r.Refused
	s.Deferred += r.Deferred
	s.Failed += r.Failed
}

// SuperviseConnections makes sure every active and needs_reauth connection has a running
// workflow — "no active connection without a running workflow, ever": a workflow start that
// failed after the connection was committed, or a workflow terminated or failed behind the
// service's back, would otherwise leave a connection that never syncs and never goes stale. It
// continues a pass from in.Cursor over every organization's connections (pending_auth and
// revoked ones are never looked at), examines at most in.Limit of them, starts at most
// in.MaxStarts workflows, and returns where the next call continues.
//
// For each page of SuperviseBatch connections (one Postgres query in the organization's
// transaction, under RLS): one visibility query lists which of their workflows run. Each
// connection listed as not running is described (visibility lags, Describe does not); if its
// latest run is indeed closed or missing, the connection's status is read again — a connection
// revoked meanwhile is left alone — and its workflow is started with the API's own starter
// (ConnectionWorkflows.StartConnection), which loads the connection's state from Postgres and
// carries on from it (a needs_reauth connection keeps waiting for re-authorization). A start
// that finds the workflow running (a concurrent start by the API) is a success. Each start writes
// a connection.workflow_restarted audit row (actor system/supervisor) naming the previous run's
// status: terminated, failed, timed_out, canceled or not_found.
//
// Cost: per pass, one Postgres page query and one visibility query per SuperviseBatch
// connections, plus one Describe per connection whose workflow visibility does not list as
// running (normally none) and one start per lost workflow. At a 5-minute interval a fleet of
// 100,000 connections is 1,000 visibility queries and 1,000 page queries per pass — a few per
// second. Describing every connection instead (the simpler check) would be a history-service read
// per connection per pass, 330 a second at that size, which is where it would break. This
// design breaks later: a pass's history grows by one activity per DefaultSuperviseLimit
// connections (about 12,000 events at a million connections, under Temporal's 50,000-event
// limit), and a visibility store that lags by more than the interval only delays the repair.
func (a *Activities) SuperviseConnections(ctx context.Context, in SuperviseInput) (SuperviseResult, error) {
	if a.workflows == nil {
		return SuperviseResult{}, activityError(ctx, errNoWorkflowClient)
	}
	if in.Limit < 0 || in.MaxStarts < 0 {
		return SuperviseResult{}, activityError(ctx, failure.InvalidInput("limit and max_starts must not be negative"))
	}
	limit, maxStarts := in.Limit, in.MaxStarts
	if limit == 0 {
		limit = DefaultSuperviseLimit
	}
	if maxStarts == 0 {
		maxStarts = DefaultSupervisorMaxStarts
	}
	orgs, err := a.db.System().ListOrganizationIDs(ctx)
	if err != nil {
		return SuperviseResult{}, activityError(ctx, fmt.Errorf("supervisor: list organizations: %w", err))
	}
	slices.SortFunc(orgs, func(x, y uuid.UUID) int { return bytes.Compare(x[:], y[:]) })
	var res SuperviseResult
	for _, org := range orgs {
		if bytes.Compare(org[:], in.Cursor.OrgID[:]) < 0 {
			continue
		}
		cur := SupervisorCursor{OrgID: org}
		if org == in.Cursor.OrgID {
			cur = in.Cursor
		}
		for {
			page := min(SuperviseBatch, limit-res.Checked)
			if page <= 0 || res.Restarted >= maxStarts {
				res.Next = &cur
				return a.supervised(res), nil
			}
			var rows []dbq.ListSupervisedConnectionsRow
			err := a.db.InOrg(ctx, org, func(q *dbq.Queries) error {
				var err error
				rows, err = q.ListSupervisedConnections(ctx, dbq.ListSupervisedConnectionsParams{
					AfterCreatedAt: cur.CreatedAt, AfterID: cur.ConnectionID, PageSize: int32(page),
				})
				return err
			})
			if err != nil {
				return res, activityError(ctx, fmt.Errorf("supervisor: list connections of organization %s: %w", org, err))
			}
			if err := a.supervisePage(ctx, org, rows, maxStarts, &res, &cur); err != nil {
				return res, activityError(ctx, err)
			}
			heartbeat(ctx, "supervise "+org.String())
			if err := ctx.Err(); err != nil {
				return res, err
			}
			if len(rows) < page && res.Restarted < maxStarts {
				res.Orgs++ // the organization is done
				break
			}
		}
	}
	return a.supervised(res), nil
}

// supervised logs the end of a call that did something worth saying and returns res.
func (a *Activities) supervised(res SuperviseResult) SuperviseResult {
	if res.Restarted+res.Refused+res.Failed > 0 {
		a.log.Info("connection supervisor", slog.Int("checked", res.Checked), slog.Int("restarted", res.Restarted),
			slog.Int("already_running", res.AlreadyRunning), slog.Int("skipped", res.Skipped), slog.Int("refused", res.Refused),
			slog.Int("deferred", res.Deferred), slog.Int("failed", res.Failed), slog.Bool("pass_done", res.Next == nil))
	}
	return res
}

// supervisePage handles one page of an organization's connections and moves cur past every
// connection it handled. It stops early once maxStarts workflows were started. Only a failure
// that concerns the whole page (the visibility query) is returned.
func (a *Activities) supervisePage(ctx context.Context, org uuid.UUID, rows []dbq.ListSupervisedConnectionsRow,
	maxStarts int, res *SuperviseResult, cur *SupervisorCursor) error {
	if len(rows) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	rctx, cancel := context.WithTimeout(ctx, supervisorCallTimeout)
	running, err := a.workflows.Running(rctx, ids)
	cancel()
	if err != nil {
		return fmt.Errorf("supervisor: which workflows run in organization %s: %w", org, err)
	}
	for _, r := range rows {
		if res.Restarted >= maxStarts {
			return nil
		}
		res.Checked++
		cur.CreatedAt, cur.ConnectionID = r.CreatedAt, r.ID
		if running[r.ID] {
			continue
		}
		heartbeat(ctx, "supervise "+r.ID.String())
		a.superviseOne(ctx, ConnectionRef{OrgID: org, ConnectionID: r.ID}, res)
	}
	return nil
}

// superviseOne starts the workflow of a connection that visibility does not list as running, if
// it is indeed not running and the connection still needs one. Its errors are counted and
// logged: one connection's trouble must not stop the pass for the others.
func (a *Activities) superviseOne(ctx context.Context, ref ConnectionRef, res *SuperviseResult) {
	log := a.logger(ref)
	prev, err := a.describe(ctx, ref.ConnectionID)
	if err != nil {
		res.Failed++
		log.Warn("supervisor: describe connection workflow", slog.String("err", err.Error()))
		return
	}
	switch prev.Status {
	case WorkflowRunning, WorkflowContinuedAsNew:
		res.AlreadyRunning++
		return
	case WorkflowCompleted:
		// Completed means revoked; the re-check below normally finds the row revoked. An active
		// row with a completed workflow needs an operator: Temporal will not start the id again.
		res.Refused++
		log.Warn("supervisor: connection is not revoked but its workflow completed; it cannot be started again",
			slog.String("previous_run_id", prev.RunID))
		return
	case WorkflowFailed:
		if since := a.now().Sub(prev.CloseTime); since < FailedRunRestartDelay {
			res.Deferred++
			log.Debug("supervisor: workflow failed recently; restart deferred", slog.Duration("since", since))
			return
		}
	}
	// Read the connection again: the page may be minutes old, and a connection revoked since
	// must not come back. (A revoke that commits after this read still wins: the new workflow
	// reads the revoked row at its first load and ends, and the API signals it to revoke.)
	var conn dbq.Connection
	err = a.db.InOrg(ctx, ref.OrgID, func(q *dbq.Queries) error {
		var err error
		conn, err = q.GetConnection(ctx, ref.ConnectionID)
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		res.Skipped++
		return
	}
	if err != nil {
		res.Failed++
		log.Warn("supervisor: re-read connection", slog.String("err", err.Error()))
		return
	}
	if conn.DeletedAt != nil || (conn.Status != string(connections.StatusActive) && conn.Status != string(connections.StatusNeedsReauth)) {
		res.Skipped++
		return
	}
	sctx, cancel := context.WithTimeout(ctx, supervisorCallTimeout)
	started, err := a.workflows.StartConnection(sctx, WorkflowStart{OrgID: ref.OrgID, ConnectionID: ref.ConnectionID, Status: conn.Status, Stale: conn.Stale})
	cancel()
	if err != nil {
		res.Failed++
		log.Warn("supervisor: start connection workflow", slog.String("err", err.Error()))
		return
	}
	if !started {
		now, err := a.describe(ctx, ref.ConnectionID)
		switch {
		case err == nil && now.Status == WorkflowRunning:
			res.AlreadyRunning++ // a concurrent start (the API) won the race
		case err == nil:
			res.Refused++
			log.Warn("supervisor: Temporal refused to start the connection's workflow", slog.String("previous_status", now.Status))
		default:
			res.Failed++
			log.Warn("supervisor: describe connection workflow after a refused start", slog.String("err", err.Error()))
		}
		return
	}
	res.Restarted++
	a.restarts.WithLabelValues(prev.Status).Inc()
	meta := map[string]any{"previous_status": prev.Status, "status": conn.Status, "stale": conn.Stale}
	if prev.RunID != "" {
		meta["previous_run_id"] = prev.RunID
	}
	if !prev.CloseTime.IsZero() {
		meta["previous_closed_at"] = prev.CloseTime.UTC().Format(time.RFC3339)
	}
	err = a.db.InOrg(ctx, ref.OrgID, func(q *dbq.Queries) error {
		_, err := audit.Record(ctx, q, audit.Entry{OrgID: ref.OrgID, Actor: SupervisorActor, Action: ActionWorkflowRestarted,
			TargetType: "connection", TargetID: ref.ConnectionID.String(), Metadata: meta})
		return err
	})
	if err != nil {
		// The workflow runs; only the record of the restart is missing, which the log keeps.
		res.Failed++
		log.Error("supervisor: workflow restarted but its audit row was not written", slog.String("previous_status", prev.Status),
			slog.String("err", err.Error()))
		return
	}
	log.Info("supervisor: connection workflow restarted", slog.String("previous_status", prev.Status), slog.String("status", conn.Status))
}

func (a *Activities) describe(ctx context.Context, connID uuid.UUID) (WorkflowRun, error) {
	ctx, cancel := context.WithTimeout(ctx, supervisorCallTimeout)
	defer cancel()
	return a.workflows.Describe(ctx, connID)
}
