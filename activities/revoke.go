package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/jira"
)

// RevokeCleanup disconnects a connection for good:
//
//  1. best effort, it deletes the connection's dynamic webhooks in Jira (OAuth connections that
//     recorded webhook ids) while the credentials still exist — a failure is logged and the ids
//     stay recorded, because revoking must never depend on Jira being reachable;
//  2. in one transaction it marks the connection revoked (status, deleted_at, sealed credentials
//     and webhook secrets cleared), ends its runs still in flight (failed, kind revoked: their
//     activities are cancelled with the connection), deletes its pending webhook changes (no
//     workflow will apply them; their count is in the audit row), resolves its open alerts and
//     writes the connection.revoke audit row (and one alert.resolve row per alert);
//  3. it drops the process's cached OAuth token source of the connection.
//
// Evidence, runs and audit rows stay. Calling it again is harmless: the connection stays revoked,
// nothing is resolved twice and no second connection.revoke row is written. The API also calls it
// directly (outside Temporal) for connections that have no workflow.
func (a *Activities) RevokeCleanup(ctx context.Context, in RevokeInput) error {
	if err := validRef(in.ConnectionRef); err != nil {
		return activityError(ctx, err)
	}
	actor, err := revokeActor(in)
	if err != nil {
		return activityError(ctx, err)
	}
	log := a.logger(in.ConnectionRef)

	var row dbq.Connection
	err = a.db.InOrg(ctx, in.OrgID, func(q *dbq.Queries) error {
		var err error
		row, err = q.GetConnection(ctx, in.ConnectionID)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("connection %s: %w", in.ConnectionID, connections.ErrNotFound)
		}
		return err
	})
	if err != nil {
		return activityError(ctx, fmt.Errorf("revoke: load connection: %w", err))
	}

	webhooksDeleted := false
	if row.DeletedAt == nil && len(row.DynamicWebhookIds) > 0 {
		heartbeat(ctx, "delete webhooks")
		if err := a.deleteWebhooks(ctx, in.ConnectionRef, row.DynamicWebhookIds); err != nil {
			log.Warn("revoke: dynamic webhooks could not be deleted; they expire in Jira within 30 days",
				slog.Int("webhooks", len(row.DynamicWebhookIds)), slog.String("err", err.Error()))
		} else {
			webhooksDeleted = true
		}
	}

	heartbeat(ctx, "revoke")
	now := a.now().UTC()
	var resolved []dbq.ResolveConnectionAlertsRow
	var discarded int64
	transitioned := false
	err = a.db.InOrg(ctx, in.OrgID, func(q *dbq.Queries) error {
		before, err := q.LockConnection(ctx, in.ConnectionID)
		if err != nil {
			return fmt.Errorf("lock connection: %w", err)
		}
		transitioned = before.DeletedAt == nil || before.Status != string(connections.StatusRevoked) || len(before.SealedCredentials) > 0
		if _, err := q.RevokeConnection(ctx, in.ConnectionID); err != nil {
			return fmt.Errorf("revoke connection: %w", err)
		}
		if webhooksDeleted {
			if err := q.ClearDynamicWebhooks(ctx, in.ConnectionID); err != nil {
				return fmt.Errorf("clear webhook ids: %w", err)
			}
		}
		if _, err := q.FailRunsInFlight(ctx, dbq.FailRunsInFlightParams{FinishedAt: &now, ErrorKind: ptr(failure.TypeRevoked), ConnectionID: in.ConnectionID}); err != nil {
			return fmt.Errorf("end runs in flight: %w", err)
		}
		if discarded, err = q.DiscardPendingInbox(ctx, in.ConnectionID); err != nil {
			return fmt.Errorf("discard the pending webhook inbox: %w", err)
		}
		resolved, err = q.ResolveConnectionAlerts(ctx, dbq.ResolveConnectionAlertsParams{ConnectionID: in.ConnectionID, ResolvedAt: &now})
		if err != nil {
			return fmt.Errorf("resolve alerts: %w", err)
		}
		for _, r := range resolved {
			if _, err := audit.Record(ctx, q, audit.Entry{
				OrgID: in.OrgID, Actor: actor, Action: "alert.resolve", TargetType: "connection", TargetID: in.ConnectionID.String(),
				Metadata: map[string]any{"alert_id": r.ID.String(), "kind": r.Kind, "reason": "connection revoked"},
			}); err != nil {
				return err
			}
		}
		if !transitioned {
			return nil
		}
		_, err = audit.Record(ctx, q, audit.Entry{
			OrgID: in.OrgID, Actor: actor, Action: "connection.revoke", TargetType: "connection", TargetID: in.ConnectionID.String(),
			Metadata: map[string]any{
				"previous_status": before.Status, "resolved_alerts": len(resolved),
				"webhooks_deleted": webhooksDeleted, "webhooks_recorded": len(before.DynamicWebhookIds),
				"pending_webhook_changes_discarded": discarded,
			},
		})
		return err
	})
	if err != nil {
		return activityError(ctx, fmt.Errorf("revoke connection %s: %w", in.ConnectionID, err))
	}
	a.conns.Forget(in.ConnectionID)
	for _, r := range resolved {
		a.alertsResolved.WithLabelValues(r.Kind).Inc()
	}
	if transitioned {
		log.Info("connection revoked", slog.Int("resolved_alerts", len(resolved)), slog.Bool("webhooks_deleted", webhooksDeleted),
			slog.String("actor_type", string(actor.Type)))
	}
	return nil
}

// deleteWebhooks removes the connection's dynamic webhooks in Jira.
func (a *Activities) deleteWebhooks(ctx context.Context, ref ConnectionRef, ids []int64) error {
	client, conn, err := a.conns.Client(ctx, ref.OrgID, ref.ConnectionID, nil)
	if err != nil {
		return err
	}
	if conn.Kind != connections.KindCloudOAuth {
		return fmt.Errorf("%s connections have no dynamic webhooks", conn.Kind)
	}
	callCtx, cancel := context.WithTimeout(ctx, a.callTimeout)
	defer cancel()
	if err := client.DeleteWebhooks(callCtx, ids); err != nil && jira.KindOf(err) != jira.KindNotFound {
		return err
	}
	return nil
}

// revokeActor maps the input's actor to an audit actor; an empty actor is the system.
func revokeActor(in RevokeInput) (audit.Actor, error) {
	switch t := audit.ActorType(in.ActorType); t {
	case "":
		return audit.Actor{Type: audit.ActorSystem, ID: in.ActorID}, nil
	case audit.ActorAPIKey, audit.ActorSystem, audit.ActorWorkflow, audit.ActorCLI:
		return audit.Actor{Type: t, ID: in.ActorID}, nil
	}
	return audit.Actor{}, failure.InvalidInput(fmt.Sprintf("unknown actor type %q", in.ActorType))
}
