package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"

	"github.com/jackc/pgx/v5"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
)

// LoadConnection returns what the workflow needs to schedule a connection. A revoked connection,
// and one that does not exist (in this org), come back as Revoked: true rather than as an error:
// both mean the workflow has nothing left to do and should end.
func (a *Activities) LoadConnection(ctx context.Context, ref ConnectionRef) (ConnectionSnapshot, error) {
	if err := validRef(ref); err != nil {
		return ConnectionSnapshot{}, activityError(ctx, err)
	}
	conn, err := a.conns.Get(ctx, ref.OrgID, ref.ConnectionID)
	if errors.Is(err, connections.ErrNotFound) {
		return ConnectionSnapshot{Status: string(connections.StatusRevoked), Revoked: true}, nil
	}
	if err != nil {
		return ConnectionSnapshot{}, activityError(ctx, err)
	}
	snap := ConnectionSnapshot{
		Status:         string(conn.Status),
		Revoked:        !connections.Live(conn.Status, conn.DeletedAt != nil),
		SyncCadence:    conn.Config.SyncCadence.D(),
		StaleThreshold: conn.Config.StaleThreshold.D(),
		FindingSync:    conn.Config.FindingSync != nil,
		LastSuccessAt:  utcPtr(conn.LastSuccessAt),
		CreatedAt:      conn.CreatedAt.UTC(),
		LastSyncAt:     utcPtr(conn.LastSyncAt),
		Stale:          conn.Stale,
		LastError:      conn.LastError,
		LastErrorKind:  conn.LastErrorKind,
	}
	if snap.Revoked {
		return snap, nil
	}
	err = a.db.InOrg(ctx, ref.OrgID, func(q *dbq.Queries) error {
		run, err := q.LatestSyncRun(ctx, dbq.LatestSyncRunParams{ConnectionID: ref.ConnectionID, KeyPrefix: syncKeyPrefix(conn.WorkflowID)})
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		snap.LastSync = &SyncRunRecord{Seq: run.Seq, Outcome: run.Outcome, Trigger: run.TriggeredBy}
		return nil
	})
	if err != nil {
		return ConnectionSnapshot{}, activityError(ctx, fmt.Errorf("load latest sync run of connection %s: %w", ref.ConnectionID, err))
	}
	return snap, nil
}

// connectionAction keeps audit action names of state changes in the connection namespace.
var connectionAction = regexp.MustCompile(`^connection\.[a-z][a-z0-9_]*$`)

// SetConnectionState mirrors the workflow's view of the connection (status, stale flag, next,
// last and last successful sync, last error) into its row for the API, and writes an audit row
// when Action is set.
//
// A revoked (or missing) connection is never touched: revoke is final, and a state update racing
// with it must not resurrect the row, so the call is then a no-op (also for status "revoked").
// Status "revoked" on a live connection is refused: revocation goes through RevokeCleanup, which
// also destroys the credentials.
//
// Idempotency: the row update is a plain overwrite, and the audit row is skipped when the newest
// audit row about this connection already records the same action with the same status and stale
// flag — which is what a retried attempt would find. Distinct events (stale, recovered, stale
// again) are still all recorded, because each differs from the one before it.
func (a *Activities) SetConnectionState(ctx context.Context, in StateUpdate) error {
	if err := validRef(in.ConnectionRef); err != nil {
		return activityError(ctx, err)
	}
	switch connections.Status(in.Status) {
	case connections.StatusPendingAuth, connections.StatusActive, connections.StatusNeedsReauth, connections.StatusRevoked:
	default:
		return activityError(ctx, failure.InvalidInput(fmt.Sprintf("unknown status %q", in.Status)))
	}
	if in.Action != "" && !connectionAction.MatchString(in.Action) {
		return activityError(ctx, failure.InvalidInput(fmt.Sprintf("action %q must look like connection.<event>", in.Action)))
	}
	var lastError, lastErrorKind *string
	if in.LastError != "" {
		lastError = ptr(failure.Truncate(in.LastError, failure.MaxText))
	}
	if in.LastErrorKind != "" {
		lastErrorKind = ptr(in.LastErrorKind)
	}
	skipped, audited := false, false
	err := a.db.InOrg(ctx, in.OrgID, func(q *dbq.Queries) error {
		before, err := connections.LockLive(ctx, q, in.ConnectionID)
		if errors.Is(err, connections.ErrNotFound) || errors.Is(err, connections.ErrRevoked) {
			skipped = true
			return nil
		}
		if err != nil {
			return err
		}
		if in.Status == string(connections.StatusRevoked) {
			// Mirroring "revoked" onto an already revoked row (above) is a harmless no-op; onto a
			// live row it would leave credentials behind, so it is refused.
			return failure.InvalidInput("status revoked is set by RevokeCleanup, not SetConnectionState")
		}
		if _, err := q.SetConnectionState(ctx, dbq.SetConnectionStateParams{
			ID: in.ConnectionID, Status: in.Status, Stale: in.Stale, NextSyncAt: utcPtr(in.NextSyncAt),
			LastSyncAt: utcPtr(in.LastSyncAt), LastSuccessAt: utcPtr(in.LastSuccessAt),
			LastError: lastError, LastErrorKind: lastErrorKind,
		}); err != nil {
			return fmt.Errorf("update connection state: %w", err)
		}
		if in.Action == "" {
			return nil
		}
		meta := map[string]any{"status": in.Status, "stale": in.Stale, "previous_status": before.Status}
		if in.LastErrorKind != "" {
			meta["last_error_kind"] = in.LastErrorKind
		}
		dup, err := sameAsLatestAudit(ctx, q, in)
		if err != nil || dup {
			return err
		}
		audited = true
		_, err = audit.Record(ctx, q, audit.Entry{
			OrgID: in.OrgID, Actor: audit.Actor{Type: audit.ActorWorkflow, ID: before.WorkflowID}, Action: in.Action,
			TargetType: "connection", TargetID: in.ConnectionID.String(), Metadata: meta,
		})
		return err
	})
	if err != nil {
		return activityError(ctx, fmt.Errorf("set state of connection %s: %w", in.ConnectionID, err))
	}
	log := a.logger(in.ConnectionRef)
	switch {
	case skipped:
		log.Info("connection state not mirrored: connection is revoked or gone", slog.String("status", in.Status))
	case audited:
		log.Info("connection state changed", slog.String("action", in.Action), slog.String("status", in.Status), slog.Bool("stale", in.Stale))
	}
	return nil
}

// sameAsLatestAudit reports whether the newest audit row about the connection already records in.
func sameAsLatestAudit(ctx context.Context, q *dbq.Queries, in StateUpdate) (bool, error) {
	last, err := q.LatestConnectionAudit(ctx, in.ConnectionID.String())
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read latest audit row: %w", err)
	}
	if last.Action != in.Action || !last.Metadata.Valid {
		return false, nil
	}
	var m struct {
		Status string `json:"status"`
		Stale  bool   `json:"stale"`
	}
	if err := json.Unmarshal(last.Metadata.RawMessage, &m); err != nil {
		return false, nil
	}
	return m.Status == in.Status && m.Stale == in.Stale, nil
}
