package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sqlc-dev/pqtype"
	"go.temporal.io/sdk/activity"

	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/findingsync"
	"github.com/jiraconnect/jiraconnect/jira"
)

// The finding-sync activities adapt the findingsync service to Temporal: they validate their
// input, report progress as heartbeats, classify errors into the contract's types and, for the
// drain, record its connector_runs row. What they do, and why it is exactly once and echo-safe,
// is documented on the service's methods.

// Activity names of finding sync.
const (
	NameDrainFindingQueue     = "DrainFindingQueue"
	NameApplyJiraChanges      = "ApplyJiraChanges"
	NameApplyInboxChanges     = "ApplyInboxChanges"
	NameReconcileLinkedIssues = "ReconcileLinkedIssues"
	NameRegisterWebhooks      = "RegisterWebhooks"
	NameRefreshWebhooks       = "RefreshWebhooks"
)

// RunKindFindingPush is the connector_runs kind of a drain that called Jira.
const RunKindFindingPush = "finding_push"

// DrainFindingQueue pushes up to in.Max due items of the connection's finding queue to Jira
// (findingsync.Service.Drain: each matching finding's issue created exactly once, statuses pushed
// without echoes, Jira's failures handled per item by kind). Re-authorization, revocation and
// Postgres failures fail the activity. A drain that called Jira records one connector_runs row
// (kind finding_push) whatever its outcome.
func (a *Activities) DrainFindingQueue(ctx context.Context, in DrainInput) (DrainResult, error) {
	if err := validRef(in.ConnectionRef); err != nil {
		return DrainResult{}, activityError(ctx, err)
	}
	if in.Max < 0 || in.Seq < 0 {
		return DrainResult{}, activityError(ctx, failure.InvalidInput("max and seq must not be negative"))
	}
	batch := in.Max
	if batch == 0 {
		batch = DefaultDrainBatch
	}
	calls := &jira.CallStats{}
	started := a.now().UTC()
	res, err := a.findingSync.Drain(ctx, scopeOf(in.ConnectionRef), findingsync.DrainRequest{
		Batch: min(batch, MaxDrainBatch), Actor: workflowActor(workflowIDOf(ctx, in.WorkflowID, in.ConnectionRef)), Calls: calls,
	})
	if calls.Total() > 0 {
		a.recordDrainRun(ctx, in, started, res, calls, err)
	}
	if err != nil {
		f := failure.Classify(err)
		a.logger(in.ConnectionRef).Warn("finding queue drain failed", slog.String("error_type", f.Type), slog.String("error", f.Message),
			slog.Int("jira_calls", res.JiraCalls), slog.Int("attempt", attempt(ctx)))
		return DrainResult{}, activityError(ctx, err)
	}
	return res, nil
}

// ApplyJiraChanges applies issue changes handed over by the workflow, in delivery order
// (findingsync.Service.Apply).
func (a *Activities) ApplyJiraChanges(ctx context.Context, in ApplyInput) (ApplyResult, error) {
	if len(in.Changes) > MaxApplyChanges {
		return ApplyResult{}, activityError(ctx, failure.InvalidInput(fmt.Sprintf("at most %d changes per call", MaxApplyChanges)))
	}
	return serve(ctx, in.ConnectionRef, func(ctx context.Context, scope findings.Scope) (ApplyResult, error) {
		return a.findingSync.Apply(ctx, scope, in.Changes)
	})
}

// ApplyInboxChanges applies up to in.Max pending changes of the connection's webhook inbox, each
// exactly once (findingsync.Service.ApplyInbox), and reports how many are still pending.
func (a *Activities) ApplyInboxChanges(ctx context.Context, in InboxInput) (InboxResult, error) {
	limit := in.Max
	if limit <= 0 {
		limit = DefaultInboxBatch
	}
	if limit > MaxApplyChanges {
		return InboxResult{}, activityError(ctx, failure.InvalidInput(fmt.Sprintf("at most %d changes per call", MaxApplyChanges)))
	}
	return serve(ctx, in.ConnectionRef, func(ctx context.Context, scope findings.Scope) (InboxResult, error) {
		return a.findingSync.ApplyInbox(ctx, scope, limit)
	})
}

// ReconcileLinkedIssues pulls the recently updated issues of the configured project and applies
// the linked ones' statuses, so that a lost webhook still converges
// (findingsync.Service.Reconcile).
func (a *Activities) ReconcileLinkedIssues(ctx context.Context, ref ConnectionRef) (ReconcileResult, error) {
	return serve(ctx, ref, a.findingSync.Reconcile)
}

// RegisterWebhooks registers the connection's dynamic webhook, replacing any earlier one
// (findingsync.Service.RegisterWebhooks). Token and PAT connections are Skipped.
func (a *Activities) RegisterWebhooks(ctx context.Context, ref ConnectionRef) (WebhookResult, error) {
	return serve(ctx, ref, a.findingSync.RegisterWebhooks)
}

// RefreshWebhooks extends the connection's dynamic webhooks before Jira's 30-day expiry, or
// registers them again when Jira no longer knows them (findingsync.Service.RefreshWebhooks).
func (a *Activities) RefreshWebhooks(ctx context.Context, ref ConnectionRef) (WebhookResult, error) {
	return serve(ctx, ref, a.findingSync.RefreshWebhooks)
}

// serve is the adapter of a finding-sync call about one connection: it checks the reference,
// calls the service for the connection and classifies its error (failure.Classify) into the
// contract's ApplicationError. Progress already reaches the heartbeat through the service's
// Config.Progress. With an error, the result is what the service reported so far (Temporal drops
// it; a direct caller may read it).
func serve[R any](ctx context.Context, ref ConnectionRef, call func(context.Context, findings.Scope) (R, error)) (R, error) {
	if err := validRef(ref); err != nil {
		var zero R
		return zero, activityError(ctx, err)
	}
	res, err := call(ctx, scopeOf(ref))
	return res, activityError(ctx, err)
}

// scopeOf is the connection a finding is synced through.
func scopeOf(ref ConnectionRef) findings.Scope {
	return findings.Scope{OrgID: ref.OrgID, ConnectionID: ref.ConnectionID}
}

// workflowIDOf is the workflow on whose behalf an activity acts (audit actor, run rows): the
// given id, else the calling workflow's, else the connection's conventional workflow id.
func workflowIDOf(ctx context.Context, given string, ref ConnectionRef) string {
	if given != "" {
		return given
	}
	if activity.IsActivity(ctx) {
		if id := activity.GetInfo(ctx).WorkflowExecution.ID; id != "" {
			return id
		}
	}
	return "jira-connection/" + ref.ConnectionID.String()
}

// drainRunKey is the idempotency key of a drain's connector_runs row ("" when none can be formed,
// e.g. a direct call outside Temporal without a workflow id).
func drainRunKey(ctx context.Context, in DrainInput) (key, workflowID, runID string) {
	if in.WorkflowID != "" {
		return in.WorkflowID + "/" + RunKindFindingPush + "/" + strconv.FormatInt(in.Seq, 10), in.WorkflowID, in.RunID
	}
	if !activity.IsActivity(ctx) {
		return "", "", ""
	}
	info := activity.GetInfo(ctx)
	wf := info.WorkflowExecution
	return wf.ID + "/" + RunKindFindingPush + "/" + wf.RunID + "/" + info.ActivityID, wf.ID, wf.RunID
}

// drainReport is stored in connector_runs.report of a finding_push run.
type drainReport struct {
	Created          int            `json:"created"`
	Transitions      int            `json:"transitions"`
	Unchanged        int            `json:"unchanged"`
	Failed           int            `json:"failed"`
	Delayed          int            `json:"delayed"`
	RateLimited      bool           `json:"rate_limited,omitempty"`
	CallsByOperation map[string]int `json:"calls_by_operation,omitempty"`
}

// recordDrainRun writes the drain's connector_runs row, from started to now on the same clock:
// two statements in one transaction, and nothing at all for a drain that did not call Jira. Its failure is logged, not returned: the
// pushes themselves are already committed and must not be retried because of bookkeeping.
func (a *Activities) recordDrainRun(ctx context.Context, in DrainInput, started time.Time, res DrainResult, stats *jira.CallStats, runErr error) {
	key, workflowID, runID := drainRunKey(ctx, in)
	if key == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	outcome := OutcomeSuccess
	if res.Failed > 0 || res.Delayed > 0 {
		outcome = OutcomePartial
	}
	var errText, errKind *string
	if runErr != nil {
		f := failure.Classify(runErr)
		outcome, errText, errKind = OutcomeFailed, &f.Message, &f.Type
	}
	rep, err := json.Marshal(drainReport{Created: res.Created, Transitions: res.Transitions, Unchanged: res.Unchanged,
		Failed: res.Failed, Delayed: res.Delayed, RateLimited: res.RateLimited, CallsByOperation: stats.ByOp()})
	if err == nil {
		now := a.now().UTC()
		err = a.db.InOrg(ctx, in.OrgID, func(q *dbq.Queries) error {
			run, err := q.UpsertConnectorRun(ctx, dbq.UpsertConnectorRunParams{
				OrgID: in.OrgID, ConnectionID: in.ConnectionID, Kind: RunKindFindingPush, IdempotencyKey: key,
				WorkflowID: workflowID, RunID: runID, TriggeredBy: "findings", StartedAt: &started,
			})
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("run key %q belongs to another connection or run kind", key)
			}
			if err != nil {
				return err
			}
			if run.Outcome != OutcomeRunning {
				return nil // recorded by an earlier attempt whose completion was lost
			}
			_, err = q.FinishConnectorRun(ctx, dbq.FinishConnectorRunParams{
				ID: run.ID, Outcome: outcome, FinishedAt: &now, Error: errText, ErrorKind: errKind,
				JiraCalls: int32(stats.Total()), Report: pqtype.NullRawMessage{RawMessage: rep, Valid: true},
			})
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			return err
		})
	}
	if err != nil {
		a.logger(in.ConnectionRef).Error("record finding push run", slog.String("err", err.Error()))
	}
}
