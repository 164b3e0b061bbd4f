package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/sqlc-dev/pqtype"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/evidence"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/jira"
)

// SyncKey is the idempotency key of a connection's seq-th sync: "<workflow id>/sync/<seq>". It is
// stable across activity retries, workflow runs and continue-as-new (the workflow id and the
// carried sequence number do not change), which is what lets retries update one connector_runs
// row instead of adding rows.
func SyncKey(workflowID string, seq int64) string {
	return syncKeyPrefix(workflowID) + strconv.FormatInt(seq, 10)
}

// syncKeyPrefix is what every SyncKey of the workflow starts with.
func syncKeyPrefix(workflowID string) string { return workflowID + "/sync/" }

// runReport is stored in connector_runs.report.
type runReport struct {
	Outcome     string                `json:"outcome"`
	Types       []evidence.TypeReport `json:"types,omitempty"`
	NewEvidence int                   `json:"new_evidence"`
	Observed    int                   `json:"observed"`
	// CallsByOperation is this attempt's Jira calls per client operation.
	CallsByOperation map[string]int `json:"calls_by_operation,omitempty"`
	// Checks are the steps of a connection test.
	Checks []Check `json:"checks,omitempty"`
}

// SyncEvidence performs one evidence sync of a connection: a fixed number of Jira calls whatever
// the site's size (project count, total and open ticket counts, the resolved-security-ticket
// sample, and the security-remediation counts and searches: 12 with the default configuration;
// see collector.collect), then one Postgres transaction that stores new evidence (deduplicated by
// fingerprint), one observation per item for this run, the run's outcome, the connection's sync
// timestamps and an audit row.
//
// Outcomes: success (every evidence type fresh), partial (some types have no data, e.g. one Jira
// answer was malformed or a count was zero), no_data (the fetches worked but prove nothing). A
// sync where no part could be fetched at all fails the attempt as transient instead: there is
// nothing to record, and trying again may get a proper answer.
//
// Errors are temporal.ApplicationErrors of the failure package's types (failure.Classify). Every
// failed attempt leaves its error on the run, which stays "running" until a later attempt finishes
// it or the workflow gives up and calls RecordSyncFailure.
func (a *Activities) SyncEvidence(ctx context.Context, in SyncInput) (SyncResult, error) {
	if err := validRef(in.ConnectionRef); err != nil {
		return SyncResult{}, activityError(ctx, err)
	}
	if in.WorkflowID == "" || in.Seq < 0 {
		return SyncResult{}, activityError(ctx, failure.InvalidInput("workflow_id and a non-negative seq are required"))
	}
	log := a.logger(in.ConnectionRef).With(slog.Int64("seq", in.Seq), slog.String("trigger", in.Trigger))
	run, err := a.startRun(ctx, in.ConnectionRef, RunKindSync, SyncKey(in.WorkflowID, in.Seq), in.WorkflowID, in.RunID, in.Trigger)
	if err != nil {
		return SyncResult{}, activityError(ctx, err)
	}
	log = log.With(slog.String("run_id", run.ID.String()))
	if run.Outcome != "running" {
		// The run finished in an earlier attempt whose completion never reached Temporal (a
		// worker crash after commit): answer from the row instead of syncing again.
		log.Info("evidence sync already finished; replaying its result", slog.String("outcome", run.Outcome))
		return replayResult(run)
	}

	stats := &jira.CallStats{}
	res, err := a.sync(ctx, in, run, stats, log)
	if err != nil {
		f := failure.Classify(err)
		a.recordAttemptError(ctx, run.ID, in.OrgID, f, stats.Total())
		a.syncs.WithLabelValues(f.Type).Inc()
		log.Warn("evidence sync attempt failed", slog.String("error_type", f.Type), slog.String("error", f.Message),
			slog.Int("jira_calls", stats.Total()), slog.Int("attempt", attempt(ctx)))
		return SyncResult{}, activityError(ctx, err)
	}
	a.syncs.WithLabelValues(res.Outcome).Inc()
	log.Info("evidence sync finished", slog.String("outcome", res.Outcome), slog.Int("new_evidence", res.NewEvidence),
		slog.Int("observed", res.Observed), slog.Int("jira_calls", res.JiraCalls))
	return res, nil
}

func (a *Activities) sync(ctx context.Context, in SyncInput, run dbq.ConnectorRun, stats *jira.CallStats, log *slog.Logger) (SyncResult, error) {
	heartbeat(ctx, "load connection")
	client, conn, err := a.conns.Client(ctx, in.OrgID, in.ConnectionID, stats)
	if err != nil {
		if conn.Kind == connections.KindCloudOAuth && a.conns.OAuth == nil {
			return SyncResult{}, failure.ErrOAuthNotConfigured
		}
		return SyncResult{}, err
	}
	revoked := a.notRevoked(in.ConnectionRef)
	c := &collector{client: client, conn: conn, callTimeout: a.callTimeout, guard: func(ctx context.Context, step string) error {
		heartbeat(ctx, step)
		if err := ctx.Err(); err != nil {
			return err
		}
		return revoked(ctx)
	}}
	collectedAt := a.now().UTC()
	raw, err := c.collect(ctx, collectedAt)
	if err != nil {
		return SyncResult{}, err
	}
	raw.ConnectorVersion = a.version
	items, report, err := buildItems(raw)
	if err != nil {
		return SyncResult{}, err
	}
	if len(items) == 0 {
		return SyncResult{}, fmt.Errorf("no part of the sync could be fetched: %s", reasons(report))
	}
	heartbeat(ctx, "store evidence")
	if err := ctx.Err(); err != nil {
		return SyncResult{}, err
	}

	outcome := outcomeOf(report.Outcome)
	rep := runReport{Outcome: outcome, Types: report.Types, Observed: len(items), CallsByOperation: stats.ByOp()}
	var finished dbq.ConnectorRun
	err = a.db.InOrg(ctx, in.OrgID, func(q *dbq.Queries) error {
		// Revoke takes the same lock: evidence is never written after a revoke committed, even by
		// a sync whose Jira calls were already done.
		if _, err := connections.LockLive(ctx, q, in.ConnectionID); err != nil {
			return err
		}
		// A sync that sees an item again within the stale threshold extends its span of
		// continuous observation; see ObserveEvidence.
		within := pgtype.Interval{Microseconds: conn.Config.EffectiveStaleThreshold().Microseconds(), Valid: true}
		for _, it := range items {
			created, err := storeItem(ctx, q, in.OrgID, in.ConnectionID, run.ID, collectedAt, within, it)
			if err != nil {
				return err
			}
			if created {
				rep.NewEvidence++
			}
		}
		reportJSON, err := json.Marshal(rep)
		if err != nil {
			return fmt.Errorf("encode run report: %w", err)
		}
		var errText *string
		if outcome != OutcomeSuccess {
			errText = ptr(failure.Truncate(reasons(report), failure.MaxText))
		}
		completedAt := a.now().UTC()
		finished, err = q.FinishConnectorRun(ctx, dbq.FinishConnectorRunParams{
			ID: run.ID, Outcome: outcome, FinishedAt: &completedAt, Error: errText,
			JiraCalls: int32(stats.Total()), Report: pqtype.NullRawMessage{RawMessage: reportJSON, Valid: true},
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return errors.New("the run was finished or failed by a concurrent attempt")
		}
		if err != nil {
			return fmt.Errorf("finish run %s: %w", run.ID, err)
		}
		if err := q.RecordConnectionSync(ctx, dbq.RecordConnectionSyncParams{
			ID: in.ConnectionID, SyncedAt: &completedAt, Succeeded: countsAsSuccess(outcome),
		}); err != nil {
			return fmt.Errorf("record sync on connection: %w", err)
		}
		_, err = audit.Record(ctx, q, audit.Entry{
			OrgID: in.OrgID, Actor: workflowActor(in.WorkflowID), Action: "connection.sync",
			TargetType: "connection", TargetID: in.ConnectionID.String(),
			Metadata: map[string]any{
				"run_id": run.ID.String(), "seq": in.Seq, "trigger": in.Trigger, "outcome": outcome,
				"new_evidence": rep.NewEvidence, "observed": rep.Observed, "jira_calls": finished.JiraCalls,
			},
		})
		return err
	})
	if err != nil {
		return SyncResult{}, err
	}
	if outcome != OutcomeSuccess {
		log.Info("evidence sync produced incomplete evidence", slog.String("outcome", outcome), slog.String("reasons", reasons(report)))
	}
	return SyncResult{
		ConnectorRunID: run.ID, Outcome: outcome, JiraCalls: int(finished.JiraCalls),
		NewEvidence: rep.NewEvidence, Observed: rep.Observed, CompletedAt: derefTime(finished.FinishedAt),
	}, nil
}

// storeItem writes one evidence item (if its content is new) and this run's observation of it,
// extending the item's span of observations when the last one is at most within ago. It reports
// whether a new evidence row was created.
func storeItem(ctx context.Context, q *dbq.Queries, orgID, connID, runID uuid.UUID, observedAt time.Time, within pgtype.Interval, it evidence.Item) (bool, error) {
	fp, err := evidence.Fingerprint(connID, it)
	if err != nil {
		return false, fmt.Errorf("fingerprint %s evidence %q: %w", it.Type, it.Subject, err)
	}
	payload, err := evidence.CanonicalPayload(it.Payload)
	if err != nil {
		return false, fmt.Errorf("encode %s evidence %q: %w", it.Type, it.Subject, err)
	}
	prov, err := json.Marshal(it.Provenance)
	if err != nil {
		return false, fmt.Errorf("encode provenance of %s evidence %q: %w", it.Type, it.Subject, err)
	}
	created := true
	id, err := q.InsertEvidence(ctx, dbq.InsertEvidenceParams{
		OrgID: orgID, ConnectionID: connID, Type: string(it.Type), Subject: it.Subject,
		Payload: payload, Fingerprint: fp, Provenance: prov,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		// Same content as an existing row: evidence is immutable, so observe that row again.
		created = false
		id, err = q.EvidenceIDByFingerprint(ctx, fp)
	}
	if err != nil {
		return false, fmt.Errorf("store %s evidence %q: %w", it.Type, it.Subject, err)
	}
	if err := q.ObserveEvidence(ctx, dbq.ObserveEvidenceParams{
		OrgID: orgID, EvidenceID: id, RunID: runID, ObservedAt: observedAt, CountsAsEvidence: it.CountsAsEvidence(), Within: within,
	}); err != nil {
		return false, fmt.Errorf("record observation of %s evidence %q: %w", it.Type, it.Subject, err)
	}
	return created, nil
}

// connectionInOrg checks that the connection exists in the transaction's org. Foreign keys are
// checked without row-level security, so a run or alert referencing another org's connection
// would otherwise be accepted; this lookup runs under RLS.
func connectionInOrg(ctx context.Context, q *dbq.Queries, connID uuid.UUID) error {
	_, err := q.GetConnection(ctx, connID)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("connection %s: %w", connID, connections.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("look up connection %s: %w", connID, err)
	}
	return nil
}

// startRun creates or re-enters the connector run of key.
func (a *Activities) startRun(ctx context.Context, ref ConnectionRef, kind, key, workflowID, runID, trigger string) (dbq.ConnectorRun, error) {
	var run dbq.ConnectorRun
	err := a.db.InOrg(ctx, ref.OrgID, func(q *dbq.Queries) error {
		if err := connectionInOrg(ctx, q, ref.ConnectionID); err != nil {
			return err
		}
		var err error
		run, err = q.UpsertConnectorRun(ctx, dbq.UpsertConnectorRunParams{
			OrgID: ref.OrgID, ConnectionID: ref.ConnectionID, Kind: kind, IdempotencyKey: key,
			WorkflowID: workflowID, RunID: runID, TriggeredBy: trigger,
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return failure.InvalidInput(fmt.Sprintf("run key %q belongs to another connection or run kind", key))
		}
		return err
	})
	if err != nil {
		return dbq.ConnectorRun{}, fmt.Errorf("start run %s: %w", key, err)
	}
	return run, nil
}

// recordAttemptError leaves a failed attempt's error on its run. It runs on a context detached
// from the activity's, because the most important case is the attempt that was cancelled.
func (a *Activities) recordAttemptError(ctx context.Context, runID, orgID uuid.UUID, f failure.Failure, calls int) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := a.db.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		return q.RecordRunAttemptError(ctx, dbq.RecordRunAttemptErrorParams{
			ID: runID, Error: &f.Message, ErrorKind: &f.Type, JiraCalls: int32(calls),
		})
	})
	if err != nil {
		a.log.Error("record failed sync attempt on its run", slog.String("run_id", runID.String()), slog.String("err", err.Error()))
	}
}

// RecordSyncFailure marks a sync run failed for good (the workflow calls it when SyncEvidence
// failed with a non-retryable error or ran out of retries), stores the error on the connection
// and writes a connection.sync_failed audit row. It is idempotent: only a running run changes, so a
// second call (or a call after the run finished) changes nothing and writes no second audit row.
// If no attempt ever started the run, a failed run row is created so the failure stays visible.
func (a *Activities) RecordSyncFailure(ctx context.Context, in SyncFailure) error {
	if err := validRef(in.ConnectionRef); err != nil {
		return activityError(ctx, err)
	}
	if in.WorkflowID == "" || in.Seq < 0 || in.ErrorType == "" {
		return activityError(ctx, failure.InvalidInput("workflow_id, a non-negative seq and error_type are required"))
	}
	msg := failure.Truncate(in.Message, failure.MaxText)
	now := a.now().UTC()
	changed := false
	err := a.db.InOrg(ctx, in.OrgID, func(q *dbq.Queries) error {
		if err := connectionInOrg(ctx, q, in.ConnectionID); err != nil {
			return err
		}
		row, err := q.FailConnectorRun(ctx, dbq.FailConnectorRunParams{
			OrgID: in.OrgID, ConnectionID: in.ConnectionID, Kind: RunKindSync, IdempotencyKey: SyncKey(in.WorkflowID, in.Seq),
			WorkflowID: in.WorkflowID, RunID: in.RunID, FinishedAt: &now, Error: msg, ErrorKind: &in.ErrorType,
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // already final
		}
		if err != nil {
			return fmt.Errorf("fail run: %w", err)
		}
		changed = true
		stored := msg
		if row.Error != nil {
			stored = *row.Error
		}
		if err := q.RecordConnectionError(ctx, dbq.RecordConnectionErrorParams{
			ID: in.ConnectionID, LastError: &stored, LastErrorKind: &in.ErrorType,
		}); err != nil {
			return fmt.Errorf("record error on connection: %w", err)
		}
		_, err = audit.Record(ctx, q, audit.Entry{
			OrgID: in.OrgID, Actor: workflowActor(in.WorkflowID), Action: "connection.sync_failed",
			TargetType: "connection", TargetID: in.ConnectionID.String(),
			Metadata: map[string]any{"run_id": row.ID.String(), "seq": in.Seq, "error_type": in.ErrorType},
		})
		return err
	})
	if err != nil {
		return activityError(ctx, fmt.Errorf("record sync failure of connection %s: %w", in.ConnectionID, err))
	}
	if changed {
		a.logger(in.ConnectionRef).Warn("evidence sync failed", slog.Int64("seq", in.Seq),
			slog.String("error_type", in.ErrorType), slog.String("error", msg))
	}
	return nil
}

// replayResult answers a finished run from its row.
func replayResult(run dbq.ConnectorRun) (SyncResult, error) {
	if run.Outcome == OutcomeFailed || run.Outcome == "running" {
		return SyncResult{}, fmt.Errorf("run %s is %s, not finished", run.ID, run.Outcome)
	}
	var rep runReport
	if run.Report.Valid {
		if err := json.Unmarshal(run.Report.RawMessage, &rep); err != nil {
			return SyncResult{}, fmt.Errorf("decode report of run %s: %w", run.ID, err)
		}
	}
	return SyncResult{
		ConnectorRunID: run.ID, Outcome: run.Outcome, JiraCalls: int(run.JiraCalls),
		NewEvidence: rep.NewEvidence, Observed: rep.Observed, CompletedAt: derefTime(run.FinishedAt),
	}, nil
}

// outcomeOf maps the evidence report's outcome to the run outcome.
func outcomeOf(o evidence.Outcome) string {
	switch o {
	case evidence.OutcomeComplete:
		return OutcomeSuccess
	case evidence.OutcomePartial:
		return OutcomePartial
	}
	return OutcomeNoData
}

// countsAsSuccess: success and partial mean the connection answered, which is what staleness
// measures; no_data does not.
func countsAsSuccess(outcome string) bool {
	return outcome == OutcomeSuccess || outcome == OutcomePartial
}

// reasons summarises the evidence types without data, for the run's error column and logs.
func reasons(r evidence.Report) string {
	var parts []string
	for _, t := range r.Types {
		if t.Outcome != evidence.OutcomeComplete {
			parts = append(parts, string(t.Type)+": "+t.Reason)
		}
	}
	return strings.Join(parts, "; ")
}

func workflowActor(workflowID string) audit.Actor {
	return audit.Actor{Type: audit.ActorWorkflow, ID: workflowID}
}

func derefTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
