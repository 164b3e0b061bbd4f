package findingsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
)

// Sources of an inbound report, as audited.
const (
	sourceWebhook   = "webhook"
	sourceReconcile = "reconcile"
)

// progressEvery is how many inbound changes are applied between two progress reports.
const progressEvery = 20

// inboundOutcome classifies what one change did.
type inboundOutcome int

const (
	inboundIgnored inboundOutcome = iota
	inboundEcho
	inboundApplied
	inboundRequeued
	// inboundDone: the inbox change was already applied by another transaction (a concurrent or
	// earlier attempt); nothing was done. Counted as ignored.
	inboundDone
)

// count adds one change's outcome to res.
func (res *ApplyResult) count(out inboundOutcome) {
	switch out {
	case inboundApplied:
		res.Applied++
	case inboundEcho:
		res.Echoes++
	case inboundRequeued:
		res.Requeued++
	default:
		res.Ignored++
	}
}

// Apply applies issue changes reported by Jira (webhook deliveries, in delivery order) to the
// linked findings. Each change is one transaction, with the link row locked:
//
//   - Changes about issues that are not linked to a finding of this connection are ignored.
//   - findings.DecideInbound orders by Jira's time (older than the last report → ignored; the
//     same report again → ignored, so duplicate deliveries apply once), recognises the echo of the
//     connector's own transition, and maps the status (Done → resolved, Won't Do → accepted,
//     Cancelled → false_positive, In Progress → triaged, reopened → open).
//   - While the link awaits the echo of a push to X, a report of another status is superseded by
//     the push when the push is still pending (queued) or the report is not newer than the push:
//     these are the intermediate statuses of a multi-hop move, or changes that the push
//     overwrote. A newer report (a person moved the issue after the push) is a real change.
//   - A report that does not say the status changed (issue_created, other field edits,
//     reconciliation) and shows the status Jira was last known to be in carries no news and
//     changes nothing — in particular it never reverts a platform change whose push is pending.
//   - When the finding's own status change (by the API) is newer than Jira's report, the finding
//     keeps its status and is queued again so that the issue follows it (Requeued).
//   - Otherwise the finding takes the mapped status with status_source 'jira' (which
//     DecideOutbound never pushes back), the link records the report, and a
//     finding.inbound_change audit row is written.
//
// Every accepted report updates the link's last Jira status and time. With finding sync off,
// every change is ignored. Only ids, keys and statuses are logged.
func (s *Service) Apply(ctx context.Context, scope findings.Scope, changes []findings.IssueChange) (ApplyResult, error) {
	_, conn, err := s.load(ctx, scope)
	if err != nil {
		return ApplyResult{}, err
	}
	var res ApplyResult
	if conn.Config.FindingSync == nil {
		res.Ignored = len(changes)
		return res, nil
	}
	in := inbound{s: s, scope: scope, cfg: *conn.Config.FindingSync, log: s.logger(scope)}
	for i, ch := range changes {
		if i%progressEvery == 0 {
			s.progress(ctx, fmt.Sprintf("change %d of %d", i+1, len(changes)))
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		out, err := in.apply(ctx, ch, sourceWebhook, nil)
		if err != nil {
			return res, err
		}
		res.count(out)
	}
	return res, nil
}

// inbound applies reports to the findings of one connection with finding sync on.
type inbound struct {
	s     *Service
	scope findings.Scope
	cfg   findings.SyncConfig
	log   *slog.Logger
}

// claimFunc marks, inside the transaction that applies a report, the inbox row the report came
// from as applied, and says whether the row was still pending.
type claimFunc func(q *dbq.Queries) (pending bool, err error)

// apply applies one report in one transaction (shared by Apply, ApplyInbox and Reconcile); source
// is what the audit row names.
//
// claim, when not nil, runs first in that transaction. If the inbox row was no longer pending,
// another transaction applied it (inboundDone) and nothing else happens; otherwise the report's
// effect commits with the mark or not at all, so an inbox change applies exactly once however
// often a pass is retried or interrupted. A report that cannot apply (no issue, no status) is
// still claimed.
func (in inbound) apply(ctx context.Context, ch findings.IssueChange, source string, claim claimFunc) (inboundOutcome, error) {
	at := ch.At()
	applicable := ch.IssueID != "" && !ch.Status.IsZero() && !at.IsZero()
	if !applicable && claim == nil {
		return inboundIgnored, nil
	}
	out := inboundIgnored
	var applied appliedChange
	err := in.s.db.InOrg(ctx, in.scope.OrgID, func(q *dbq.Queries) error {
		if claim != nil {
			pending, err := claim(q)
			if err != nil {
				return err
			}
			if !pending {
				out = inboundDone
				return nil
			}
		}
		if !applicable {
			return nil
		}
		var err error
		out, applied, err = in.report(ctx, q, ch, at, source)
		return err
	})
	if err != nil {
		return inboundIgnored, fmt.Errorf("apply change of issue %s: %w", ch.IssueID, err)
	}
	if out == inboundApplied {
		in.log.Info("Jira change applied to finding", slog.String("finding_id", applied.link.FindingID.String()), slog.String("issue_key", applied.key),
			slog.String("from", string(applied.from)), slog.String("to", string(applied.to)), slog.String("source", source))
	}
	return out, nil
}

// appliedChange is what an applied report changed, for the log line written after it committed.
type appliedChange struct {
	link     dbq.FindingIssueLink
	key      string
	from, to findings.Status
}

// report applies Jira's report that issue ch.IssueID was in status ch.Status at Jira's time at,
// inside the transaction q, in the steps Apply describes.
func (in inbound) report(ctx context.Context, q *dbq.Queries, ch findings.IssueChange, at time.Time, source string) (inboundOutcome, appliedChange, error) {
	link, ok, err := in.lockLinkOfIssue(ctx, q, ch.IssueID)
	if err != nil || !ok {
		return inboundIgnored, appliedChange{}, err
	}
	row, err := q.GetFinding(ctx, link.FindingID)
	if err != nil {
		return inboundIgnored, appliedChange{}, fmt.Errorf("load finding %s: %w", link.FindingID, err)
	}
	ls := linkStateOf(link)
	// The link was found by issue id, which survives key changes (an issue moved to another
	// project); compare under the link's own key.
	d := findings.DecideInbound(in.cfg, findings.Status(row.Status), ls, findings.IssueStatusChange{IssueKey: ls.IssueKey, To: ch.Status, At: at})
	switch d.Outcome {
	case findings.InboundInvalid, findings.InboundOtherIssue, findings.InboundStale, findings.InboundDuplicate:
		return inboundIgnored, appliedChange{}, nil
	}
	if superseded, err := in.supersededByPush(ctx, q, link, ls, ch.Status, at); err != nil || superseded {
		return inboundEcho, appliedChange{}, err
	}
	record := func(inboundAt time.Time) error { return in.recordReport(ctx, q, link, ch.Status, inboundAt) }
	switch d.Outcome {
	case findings.InboundEcho:
		// The echo ends the wait even when Jira's clock is behind ours.
		return inboundEcho, appliedChange{}, record(laterOf(at, ls.LastPushedAt))
	case findings.InboundInSync, findings.InboundUnmapped:
		return inboundIgnored, appliedChange{}, record(at)
	case findings.InboundApply:
	default:
		return inboundIgnored, appliedChange{}, nil
	}
	if !ch.StatusChanged && !ls.LastJiraStatus.IsZero() && ch.Status.Same(ls.LastJiraStatus) {
		return inboundIgnored, appliedChange{}, record(at) // no news about the status
	}
	if row.StatusSource == sourceAPI && row.StatusChangedAt.After(at) {
		// The finding changed after Jira's report: it wins, and the issue must follow it.
		if err := record(at); err != nil {
			return inboundIgnored, appliedChange{}, err
		}
		return inboundRequeued, appliedChange{}, in.requeue(ctx, q, link)
	}
	if err := in.setStatus(ctx, q, link, ls.IssueKey, row, d.Status, ch, at, source); err != nil {
		return inboundIgnored, appliedChange{}, err
	}
	return inboundApplied, appliedChange{link: link, key: ls.IssueKey, from: findings.Status(row.Status), to: d.Status}, nil
}

// lockLinkOfIssue locks the link of the connection's finding whose issue has the given id. ok is
// false when the issue is not ours, or its finding's issue is still being created.
func (in inbound) lockLinkOfIssue(ctx context.Context, q *dbq.Queries, issueID string) (link dbq.FindingIssueLink, ok bool, err error) {
	link, err = q.LockLinkByIssue(ctx, dbq.LockLinkByIssueParams{ConnectionID: in.scope.ConnectionID, IssueID: &issueID})
	if errors.Is(err, pgx.ErrNoRows) {
		return link, false, nil
	}
	if err != nil {
		return link, false, fmt.Errorf("look up link of issue %s: %w", issueID, err)
	}
	return link, link.State == linkLinked, nil
}

// supersededByPush reports whether a report of status, at Jira's time at, is overtaken by the
// connector's own push that the link awaits the echo of: it reports another status, and the push
// is still queued or the report is not newer than the push.
func (in inbound) supersededByPush(ctx context.Context, q *dbq.Queries, link dbq.FindingIssueLink, ls findings.LinkState, status findings.JiraStatus, at time.Time) (bool, error) {
	if !ls.AwaitingEcho || status.Same(ls.LastPushedStatus) {
		return false, nil
	}
	pending, err := q.QueueItemPending(ctx, dbq.QueueItemPendingParams{ConnectionID: in.scope.ConnectionID, FindingID: link.FindingID})
	if err != nil {
		return false, fmt.Errorf("check queue of finding %s: %w", link.FindingID, err)
	}
	return pending || !at.After(ls.LastPushedAt), nil
}

// recordReport stores the report on the link: Jira's status and its time.
func (in inbound) recordReport(ctx context.Context, q *dbq.Queries, link dbq.FindingIssueLink, status findings.JiraStatus, at time.Time) error {
	name := status.Name
	return q.SetLinkInbound(ctx, dbq.SetLinkInboundParams{JiraStatus: &name, InboundAt: &at, FindingID: link.FindingID, ConnectionID: in.scope.ConnectionID})
}

// requeue queues the finding for a push, so that its issue follows the finding's newer status.
func (in inbound) requeue(ctx context.Context, q *dbq.Queries, link dbq.FindingIssueLink) error {
	return q.RequeueFinding(ctx, dbq.RequeueFindingParams{OrgID: in.scope.OrgID, ConnectionID: in.scope.ConnectionID, FindingID: link.FindingID, At: in.s.now().UTC()})
}

// setStatus gives the finding the status Jira's report maps to (status_source 'jira', which is
// never pushed back), records the report on the link and audits the change.
func (in inbound) setStatus(ctx context.Context, q *dbq.Queries, link dbq.FindingIssueLink, key string, row dbq.Finding, to findings.Status,
	ch findings.IssueChange, at time.Time, source string) error {
	if _, err := q.SetFindingStatus(ctx, dbq.SetFindingStatusParams{Status: string(to), Source: sourceJira, ID: link.FindingID}); err != nil {
		return fmt.Errorf("set status of finding %s: %w", link.FindingID, err)
	}
	if err := in.recordReport(ctx, q, link, ch.Status, at); err != nil {
		return err
	}
	meta := map[string]any{
		"connection_id": in.scope.ConnectionID.String(), "issue_key": key, "issue_id": ch.IssueID,
		"from": row.Status, "to": string(to), "jira_status": ch.Status.Name, "source": source,
	}
	if ch.DeliveryID != "" {
		meta["delivery_id"] = failure.Truncate(ch.DeliveryID, 200)
	}
	_, err := audit.Record(ctx, q, audit.Entry{
		OrgID: in.scope.OrgID, Actor: audit.Actor{Type: audit.ActorJira, ID: key}, Action: ActionInboundChange,
		TargetType: "finding", TargetID: link.FindingID.String(), Metadata: meta,
	})
	return err
}
