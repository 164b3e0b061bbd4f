package findingsync

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/google/uuid"
	"github.com/sqlc-dev/pqtype"

	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/findings"
)

// maxInboxCount bounds the count of pending inbox changes an inbox pass reports (Remaining): the
// caller only needs to know whether there are more, and counting stays cheap however far behind a
// connection is.
const maxInboxCount = 10000

// Delivery is an authenticated webhook delivery for the inbox of connection ConnectionID.
type Delivery struct {
	OrgID        uuid.UUID
	ConnectionID uuid.UUID
	// Source is the address the delivery came from (invalid: unknown).
	Source netip.Addr
	// Change is what the delivery reports (findings.ChangeFromWebhook); its DeliveryID is the
	// accept-once key.
	Change findings.IssueChange
}

// RecordDelivery stores a delivery in its connection's inbox (a webhook_deliveries row with the
// change's JSON), once per delivery id, in one short transaction that does nothing else: when it
// has committed the delivery is durable, and ApplyInbox will apply it. It reports whether the
// delivery was new (false: a redelivery, which changes nothing).
//
// It is a function of the database rather than a Service method because the API, which accepts
// deliveries, has no Jira client and needs none of the service's collaborators.
func RecordDelivery(ctx context.Context, d *db.DB, dl Delivery) (bool, error) {
	stored, err := json.Marshal(dl.Change)
	if err != nil {
		return false, fmt.Errorf("encode change of webhook delivery for connection %s: %w", dl.ConnectionID, err)
	}
	var inserted int64
	err = d.InOrg(ctx, dl.OrgID, func(q *dbq.Queries) error {
		var err error
		inserted, err = q.RecordWebhookDelivery(ctx, dbq.RecordWebhookDeliveryParams{
			OrgID: dl.OrgID, ConnectionID: dl.ConnectionID, DeliveryID: dl.Change.DeliveryID, SourceIp: inet(dl.Source), Change: stored})
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store webhook delivery for connection %s: %w", dl.ConnectionID, err)
	}
	return inserted > 0, nil
}

// inet converts an address for the inet column (invalid: NULL).
func inet(a netip.Addr) pqtype.Inet {
	if !a.IsValid() {
		return pqtype.Inet{}
	}
	a = a.Unmap()
	return pqtype.Inet{IPNet: net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}, Valid: true}
}

// ApplyInbox applies up to limit pending changes of the connection's webhook inbox (the rows
// RecordDelivery stored), in arrival order (seq). Each change is applied exactly as Apply applies
// it — the same echo suppression, ordering by Jira's time, requeueing and audit rows — in one
// transaction that also marks the row applied: a change applies exactly once even when the pass
// is retried, runs twice at the same time, or its worker dies mid-batch, since whatever did not
// commit is still pending and whatever did is no longer read. Changes about unlinked issues, and
// changes that cannot apply, are marked applied as well.
//
// Order: seq is drawn when a delivery is inserted, so two deliveries stored concurrently may
// commit — and be read — out of seq order. That is harmless: Apply orders by Jira's own time and
// ignores reports older than the last one applied.
//
// When the connection's finding sync is off, the pending changes have nothing to apply to and are
// marked applied (counted as ignored) in one statement, so the inbox does not grow.
//
// The result counts what the changes did and how many are still pending (Remaining, counted up to
// maxInboxCount); the caller runs another pass while it is not 0. Only ids, keys, statuses and
// counts are logged.
func (s *Service) ApplyInbox(ctx context.Context, scope findings.Scope, limit int) (InboxResult, error) {
	_, conn, err := s.load(ctx, scope)
	if err != nil {
		return InboxResult{}, err
	}
	var rows []dbq.PendingInboxChangesRow
	err = s.db.InOrg(ctx, scope.OrgID, func(q *dbq.Queries) error {
		var err error
		rows, err = q.PendingInboxChanges(ctx, dbq.PendingInboxChangesParams{ConnectionID: scope.ConnectionID, MaxRows: int32(limit)})
		return err
	})
	if err != nil {
		return InboxResult{}, fmt.Errorf("read webhook inbox: %w", err)
	}
	log := s.logger(scope)
	var res InboxResult
	if conn.Config.FindingSync == nil {
		err = s.skipInbox(ctx, scope, rows, &res)
	} else {
		in := inbound{s: s, scope: scope, cfg: *conn.Config.FindingSync, log: log}
		err = in.applyInbox(ctx, rows, &res)
	}
	if err != nil {
		return res, err
	}
	if res.Remaining, err = s.pendingInbox(ctx, scope); err != nil {
		return res, err
	}
	if len(rows) > 0 {
		log.Info("webhook inbox applied", slog.Int("changes", len(rows)), slog.Int("applied", res.Applied), slog.Int("echoes", res.Echoes),
			slog.Int("ignored", res.Ignored), slog.Int("requeued", res.Requeued), slog.Int("remaining", res.Remaining),
			slog.Bool("finding_sync", conn.Config.FindingSync != nil))
	}
	return res, nil
}

// skipInbox marks the read rows applied without applying them (finding sync is off).
func (s *Service) skipInbox(ctx context.Context, scope findings.Scope, rows []dbq.PendingInboxChangesRow, res *InboxResult) error {
	if len(rows) == 0 {
		return nil
	}
	var n int64
	last := rows[len(rows)-1].Seq
	err := s.db.InOrg(ctx, scope.OrgID, func(q *dbq.Queries) error {
		var err error
		n, err = q.MarkInboxAppliedThrough(ctx, dbq.MarkInboxAppliedThroughParams{ConnectionID: scope.ConnectionID, Seq: last})
		return err
	})
	if err != nil {
		return fmt.Errorf("mark webhook inbox through %d applied: %w", last, err)
	}
	res.Ignored = int(n)
	return nil
}

// applyInbox applies the read rows in order, each claimed in the transaction that applies it.
func (in inbound) applyInbox(ctx context.Context, rows []dbq.PendingInboxChangesRow, res *InboxResult) error {
	for i, row := range rows {
		if i%progressEvery == 0 {
			in.s.progress(ctx, fmt.Sprintf("inbox change %d of %d", i+1, len(rows)))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var ch findings.IssueChange
		if err := json.Unmarshal(row.Change, &ch); err != nil {
			// RecordDelivery never stores such a change; an unreadable one cannot apply, and must
			// not hold up the rest of the inbox: it is claimed and counted as ignored.
			in.log.Warn("unreadable webhook inbox change; marked applied", slog.Int64("seq", row.Seq))
			ch = findings.IssueChange{}
		}
		if ch.DeliveryID == "" {
			ch.DeliveryID = row.DeliveryID
		}
		out, err := in.apply(ctx, ch, sourceWebhook, in.claimInbox(ctx, row.Seq))
		if err != nil {
			return err
		}
		res.count(out)
	}
	return nil
}

// claimInbox marks inbox row seq applied, reporting whether it was still pending.
func (in inbound) claimInbox(ctx context.Context, seq int64) claimFunc {
	return func(q *dbq.Queries) (bool, error) {
		n, err := q.MarkInboxApplied(ctx, dbq.MarkInboxAppliedParams{ConnectionID: in.scope.ConnectionID, Seq: seq})
		if err != nil {
			return false, fmt.Errorf("mark webhook inbox change %d applied: %w", seq, err)
		}
		return n == 1, nil
	}
}

// pendingInbox counts the connection's pending inbox changes, up to maxInboxCount.
func (s *Service) pendingInbox(ctx context.Context, scope findings.Scope) (int, error) {
	var remaining int64
	err := s.db.InOrg(ctx, scope.OrgID, func(q *dbq.Queries) error {
		var err error
		remaining, err = q.CountPendingInbox(ctx, dbq.CountPendingInboxParams{ConnectionID: scope.ConnectionID, MaxRows: maxInboxCount})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("count webhook inbox: %w", err)
	}
	return int(remaining), nil
}
