package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
)

// maxInboxCount bounds the count of pending inbox changes an inbox pass reports (Remaining): the
// workflow only needs to know whether there are more, and counting stays cheap however far
// behind a connection is.
const maxInboxCount = 10000

// ApplyInboxChanges applies the pending changes of the connection's webhook inbox
// (webhook_deliveries rows the bridge stored with their parsed change), at most in.Max of them, in
// arrival order (seq). Each change is applied exactly as ApplyJiraChanges applies it — the same
// echo suppression, ordering by Jira's time, requeueing and audit rows — in one transaction that
// also marks the row applied (applyChange's claim): a change applies exactly once even when the
// pass is retried, runs twice at the same time, or its worker dies mid-batch, since whatever did
// not commit is still pending and whatever did is no longer read. Changes about unlinked issues,
// and changes that cannot apply, are marked applied as well.
//
// Order: seq is drawn when the bridge inserts a delivery, so two deliveries stored concurrently
// may commit — and be read — out of seq order. That is harmless: applyChange orders by Jira's own
// time and ignores reports older than the last one applied.
//
// When the connection's finding sync is off, the pending changes have nothing to apply to and are
// marked applied (counted as ignored) in one statement, so the inbox does not grow.
//
// The result counts what the changes did and how many are still pending (Remaining, counted up to
// maxInboxCount); the workflow runs another pass while it is not 0. Only ids, keys, statuses and
// counts are logged.
func (a *Activities) ApplyInboxChanges(ctx context.Context, in InboxInput) (InboxResult, error) {
	if err := validRef(in.ConnectionRef); err != nil {
		return InboxResult{}, activityError(ctx, err)
	}
	limit := in.Max
	if limit <= 0 {
		limit = DefaultInboxBatch
	}
	if limit > MaxApplyChanges {
		return InboxResult{}, activityError(ctx, failure.InvalidInput(fmt.Sprintf("at most %d changes per call", MaxApplyChanges)))
	}
	ref := in.ConnectionRef
	_, conn, err := a.findingSyncConnection(ctx, ref)
	if err != nil {
		return InboxResult{}, activityError(ctx, err)
	}
	var rows []dbq.PendingInboxChangesRow
	err = a.db.InOrg(ctx, ref.OrgID, func(q *dbq.Queries) error {
		var err error
		rows, err = q.PendingInboxChanges(ctx, dbq.PendingInboxChangesParams{ConnectionID: ref.ConnectionID, MaxRows: int32(limit)})
		return err
	})
	if err != nil {
		return InboxResult{}, activityError(ctx, fmt.Errorf("read webhook inbox: %w", err))
	}
	log := a.logger(ref)
	var res InboxResult
	if conn.Config.FindingSync == nil {
		if len(rows) > 0 {
			var n int64
			last := rows[len(rows)-1].Seq
			err := a.db.InOrg(ctx, ref.OrgID, func(q *dbq.Queries) error {
				var err error
				n, err = q.MarkInboxAppliedThrough(ctx, dbq.MarkInboxAppliedThroughParams{ConnectionID: ref.ConnectionID, Seq: last})
				return err
			})
			if err != nil {
				return res, activityError(ctx, fmt.Errorf("mark webhook inbox through %d applied: %w", last, err))
			}
			res.Ignored = int(n)
		}
	} else {
		cfg := *conn.Config.FindingSync
		for i, row := range rows {
			if i%20 == 0 {
				heartbeat(ctx, fmt.Sprintf("inbox change %d of %d", i+1, len(rows)))
			}
			if err := ctx.Err(); err != nil {
				return res, activityError(ctx, err)
			}
			var ch findings.IssueChange
			if err := json.Unmarshal(row.Change, &ch); err != nil {
				// The bridge never stores such a change; an unreadable one cannot apply, and must
				// not hold up the rest of the inbox: it is claimed and counted as ignored.
				log.Warn("unreadable webhook inbox change; marked applied", slog.Int64("seq", row.Seq))
				ch = findings.IssueChange{}
			}
			if ch.DeliveryID == "" {
				ch.DeliveryID = row.DeliveryID
			}
			seq := row.Seq
			claim := func(q *dbq.Queries) (bool, error) {
				n, err := q.MarkInboxApplied(ctx, dbq.MarkInboxAppliedParams{ConnectionID: ref.ConnectionID, Seq: seq})
				if err != nil {
					return false, fmt.Errorf("mark webhook inbox change %d applied: %w", seq, err)
				}
				return n == 1, nil
			}
			out, err := a.applyChange(ctx, ref, cfg, ch, sourceWebhook, log, claim)
			if err != nil {
				return res, activityError(ctx, err)
			}
			count(&res.ApplyResult, out)
		}
	}
	var remaining int64
	err = a.db.InOrg(ctx, ref.OrgID, func(q *dbq.Queries) error {
		var err error
		remaining, err = q.CountPendingInbox(ctx, dbq.CountPendingInboxParams{ConnectionID: ref.ConnectionID, MaxRows: maxInboxCount})
		return err
	})
	if err != nil {
		return res, activityError(ctx, fmt.Errorf("count webhook inbox: %w", err))
	}
	res.Remaining = int(remaining)
	if len(rows) > 0 {
		log.Info("webhook inbox applied", slog.Int("changes", len(rows)), slog.Int("applied", res.Applied), slog.Int("echoes", res.Echoes),
			slog.Int("ignored", res.Ignored), slog.Int("requeued", res.Requeued), slog.Int("remaining", res.Remaining),
			slog.Bool("finding_sync", conn.Config.FindingSync != nil))
	}
	return res, nil
}
