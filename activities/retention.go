package activities

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
)

// retentionBatch bounds one delete transaction, so that a large purge neither holds locks for
// long nor builds one huge transaction, and a cancelled purge keeps the batches it finished.
const retentionBatch = 1000

// WebhookDedupeWindow is how long an applied webhook delivery is kept after it arrived: its row is
// the accept-once record that turns a redelivery into a no-op, and Jira Cloud redelivers for up to
// 30 minutes (JIRA-NOTES.md §6.4). A week keeps that guarantee with a wide margin; after it, the
// row would only grow the table, which takes one row per delivery.
const WebhookDedupeWindow = 7 * 24 * time.Hour

// RetentionPurge deletes, in every organization, evidence that is older than the retention window
// and that nothing needs any more: created before now-OlderThan, not observed since then, and not
// attached to any assessment (see the PurgeEvidenceBatch query for why these are the rules).
//
// Evidence attached to an approved assessment is also protected by a database trigger; the query
// never selects it, so the purge does not depend on the trigger firing (which would abort the
// batch). Each batch is deleted in its own transaction together with an evidence.retention_purge
// audit row naming the count, so every deletion is audited even if the pass is interrupted, and a
// retry simply continues. Organizations with nothing to purge get no audit row.
//
// It also deletes applied webhook deliveries older than WebhookDedupeWindow (pending ones never):
// transport records, not evidence, so they are counted in the result and the log, not audited.
func (a *Activities) RetentionPurge(ctx context.Context, in RetentionInput) (RetentionResult, error) {
	if in.OlderThan < MinRetention {
		return RetentionResult{}, activityError(ctx, failure.InvalidInput(fmt.Sprintf("retention window %s is shorter than the minimum %s", in.OlderThan, MinRetention)))
	}
	now := a.now().UTC()
	res := RetentionResult{Cutoff: now.Add(-in.OlderThan)}
	orgs, err := a.db.System().ListOrganizationIDs(ctx)
	if err != nil {
		return RetentionResult{}, activityError(ctx, fmt.Errorf("retention: list organizations: %w", err))
	}
	res.Orgs = len(orgs)
	for _, org := range orgs {
		heartbeat(ctx, "retention "+org.String())
		if err := ctx.Err(); err != nil {
			return RetentionResult{}, err
		}
		n, err := a.purgeOrg(ctx, org, res.Cutoff)
		res.Purged += n
		if n > 0 {
			res.OrgsPurged++
		}
		if err != nil {
			return RetentionResult{}, activityError(ctx, fmt.Errorf("retention in organization %s: %w", org, err))
		}
		d, err := a.purgeDeliveries(ctx, org, now.Add(-WebhookDedupeWindow))
		res.DeliveriesPurged += d
		if err != nil {
			return RetentionResult{}, activityError(ctx, fmt.Errorf("webhook delivery retention in organization %s: %w", org, err))
		}
		r, err := a.discardRevokedInbox(ctx, org)
		res.RevokedInboxDiscarded += r
		if err != nil {
			return RetentionResult{}, activityError(ctx, fmt.Errorf("revoked webhook inbox cleanup in organization %s: %w", org, err))
		}
	}
	res.CompletedAt = a.now().UTC()
	a.log.Info("retention pass finished", slog.Time("cutoff", res.Cutoff), slog.Int("orgs", res.Orgs),
		slog.Int("orgs_purged", res.OrgsPurged), slog.Int64("purged", res.Purged), slog.Int64("deliveries_purged", res.DeliveriesPurged))
	return res, nil
}

// purgeOrg deletes one organization's expired evidence in batches and returns how many rows went.
// Each batch writes an evidence.retention_purge audit row in its own transaction.
func (a *Activities) purgeOrg(ctx context.Context, orgID uuid.UUID, cutoff time.Time) (int64, error) {
	total, err := a.inBatches(ctx, orgID, "retention", func(q *dbq.Queries) (int64, error) {
		rows, err := q.PurgeEvidenceBatch(ctx, dbq.PurgeEvidenceBatchParams{Cutoff: cutoff, BatchSize: retentionBatch})
		if err != nil {
			return 0, fmt.Errorf("delete expired evidence: %w", err)
		}
		n := len(rows)
		if n == 0 {
			return 0, nil
		}
		byType := map[string]int{}
		conns := map[uuid.UUID]bool{}
		for _, r := range rows {
			byType[r.Type]++
			conns[r.ConnectionID] = true
		}
		_, err = audit.Record(ctx, q, audit.Entry{
			OrgID: orgID, Actor: audit.Actor{Type: audit.ActorSystem, ID: "retention"}, Action: "evidence.retention_purge",
			TargetType: "organization", TargetID: orgID.String(),
			Metadata: map[string]any{"purged": n, "by_type": byType, "connections": len(conns), "cutoff": cutoff.Format(time.RFC3339)},
		})
		if err != nil {
			return 0, err
		}
		return int64(n), nil
	})
	if total > 0 {
		a.log.Info("expired evidence purged", slog.String("org_id", orgID.String()), slog.Int64("purged", total))
	}
	return total, err
}

// purgeDeliveries deletes one organization's spent webhook deliveries received before cutoff, in
// batches, and returns how many rows went.
func (a *Activities) purgeDeliveries(ctx context.Context, orgID uuid.UUID, cutoff time.Time) (int64, error) {
	total, err := a.inBatches(ctx, orgID, "webhook retention", func(q *dbq.Queries) (int64, error) {
		n, err := q.PurgeWebhookDeliveriesBatch(ctx, dbq.PurgeWebhookDeliveriesBatchParams{Cutoff: cutoff, BatchSize: retentionBatch})
		if err != nil {
			return 0, fmt.Errorf("delete spent webhook deliveries: %w", err)
		}
		return n, nil
	})
	if total > 0 {
		a.log.Info("spent webhook deliveries purged", slog.String("org_id", orgID.String()), slog.Int64("purged", total))
	}
	return total, err
}

// discardRevokedInbox deletes the pending webhook changes of one organization's revoked connections
// (nothing will ever apply them), in batches, each audited as webhook_inbox.discard.
func (a *Activities) discardRevokedInbox(ctx context.Context, orgID uuid.UUID) (int64, error) {
	return a.inBatches(ctx, orgID, "revoked inbox cleanup", func(q *dbq.Queries) (int64, error) {
		conns, err := q.DiscardRevokedInboxBatch(ctx, retentionBatch)
		if err != nil {
			return 0, fmt.Errorf("delete pending webhook changes of revoked connections: %w", err)
		}
		if len(conns) == 0 {
			return 0, nil
		}
		byConn := map[string]int{}
		for _, c := range conns {
			byConn[c.String()]++
		}
		_, err = audit.Record(ctx, q, audit.Entry{
			OrgID: orgID, Actor: audit.Actor{Type: audit.ActorSystem, ID: "retention"}, Action: "webhook_inbox.discard",
			TargetType: "organization", TargetID: orgID.String(),
			Metadata: map[string]any{"discarded": len(conns), "by_connection": byConn, "reason": "connection revoked"},
		})
		return int64(len(conns)), err
	})
}

// inBatches runs batch, each call in its own transaction in the organization, until a call
// deletes fewer than retentionBatch rows, and returns the rows deleted. Between batches it
// heartbeats and stops when cancelled; the batches already committed stay done.
func (a *Activities) inBatches(ctx context.Context, orgID uuid.UUID, step string, batch func(q *dbq.Queries) (int64, error)) (int64, error) {
	var total int64
	for {
		var n int64
		err := a.db.InOrg(ctx, orgID, func(q *dbq.Queries) error {
			var err error
			n, err = batch(q)
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < retentionBatch {
			return total, nil
		}
		heartbeat(ctx, step+" "+orgID.String())
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}
