package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jira/jql"
)

// MaxApplyChanges bounds the changes of one ApplyJiraChanges call.
const MaxApplyChanges = 500

// Reconciliation bounds: at most reconcilePages search pages of reconcilePageSize issues per pass
// (so at most 10 Jira calls and 1,000 issues); reconcileOverlap re-reads a little of the previous
// window, because Jira's updated times and search visibility are not exactly our clock.
const (
	reconcilePages    = 10
	reconcilePageSize = 100
	reconcileOverlap  = 5 * time.Minute
)

// Sources of an inbound observation.
const (
	sourceWebhook   = "webhook"
	sourceReconcile = "reconcile"
)

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

// ApplyJiraChanges applies issue changes reported by Jira (webhook deliveries, in delivery order)
// to the linked findings. Each change is one transaction, with the link row locked:
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
// Every accepted report updates the link's last Jira status and time. Only ids, keys and
// statuses are logged.
func (a *Activities) ApplyJiraChanges(ctx context.Context, in ApplyInput) (ApplyResult, error) {
	if err := validRef(in.ConnectionRef); err != nil {
		return ApplyResult{}, activityError(ctx, err)
	}
	if len(in.Changes) > MaxApplyChanges {
		return ApplyResult{}, activityError(ctx, failure.InvalidInput(fmt.Sprintf("at most %d changes per call", MaxApplyChanges)))
	}
	_, conn, err := a.findingSyncConnection(ctx, in.ConnectionRef)
	if err != nil {
		return ApplyResult{}, activityError(ctx, err)
	}
	var res ApplyResult
	if conn.Config.FindingSync == nil {
		res.Ignored = len(in.Changes)
		return res, nil
	}
	cfg := *conn.Config.FindingSync
	log := a.logger(in.ConnectionRef)
	for i, ch := range in.Changes {
		if i%20 == 0 {
			heartbeat(ctx, fmt.Sprintf("change %d of %d", i+1, len(in.Changes)))
		}
		if err := ctx.Err(); err != nil {
			return res, activityError(ctx, err)
		}
		out, err := a.applyChange(ctx, in.ConnectionRef, cfg, ch, sourceWebhook, log, nil)
		if err != nil {
			return res, activityError(ctx, err)
		}
		count(&res, out)
	}
	return res, nil
}

func count(res *ApplyResult, out inboundOutcome) {
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

// applyChange applies one report in one transaction (shared by webhooks, the webhook inbox and
// reconciliation).
//
// claim, when not nil, runs first in that transaction: it marks the inbox row the report came
// from as applied and says whether the row was still pending. If it was not, another transaction
// applied it (inboundDone) and nothing else happens; otherwise the report's effect commits with
// the mark or not at all, so an inbox change applies exactly once however often a pass is retried
// or interrupted. A report that cannot apply (no issue, no status) is still claimed.
func (a *Activities) applyChange(ctx context.Context, ref ConnectionRef, cfg findings.SyncConfig, ch findings.IssueChange, source string, log *slog.Logger,
	claim func(q *dbq.Queries) (bool, error)) (inboundOutcome, error) {
	at := ch.At()
	status := ch.Status
	applicable := ch.IssueID != "" && !status.IsZero() && !at.IsZero()
	if !applicable && claim == nil {
		return inboundIgnored, nil
	}
	out := inboundIgnored
	var applied struct {
		finding  uuid.UUID
		key      string
		from, to findings.Status
	}
	err := a.db.InOrg(ctx, ref.OrgID, func(q *dbq.Queries) error {
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
		issueID := ch.IssueID
		link, err := q.LockLinkByIssue(ctx, dbq.LockLinkByIssueParams{ConnectionID: ref.ConnectionID, IssueID: &issueID})
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // not an issue of ours
		}
		if err != nil {
			return fmt.Errorf("look up link of issue %s: %w", issueID, err)
		}
		if link.State != linkLinked {
			return nil
		}
		row, err := q.GetFinding(ctx, link.FindingID)
		if err != nil {
			return fmt.Errorf("load finding %s: %w", link.FindingID, err)
		}
		ls := linkStateOf(link)
		// The link was found by issue id, which survives key changes (an issue moved to another
		// project); compare under the link's own key.
		d := findings.DecideInbound(cfg, findings.Status(row.Status), ls, findings.IssueStatusChange{IssueKey: ls.IssueKey, To: status, At: at})
		switch d.Outcome {
		case findings.InboundInvalid, findings.InboundOtherIssue, findings.InboundStale, findings.InboundDuplicate:
			return nil
		}
		if ls.AwaitingEcho && !status.Same(ls.LastPushedStatus) {
			pending, err := q.QueueItemPending(ctx, dbq.QueueItemPendingParams{ConnectionID: ref.ConnectionID, FindingID: link.FindingID})
			if err != nil {
				return fmt.Errorf("check queue of finding %s: %w", link.FindingID, err)
			}
			if pending || !at.After(ls.LastPushedAt) {
				out = inboundEcho // superseded by the connector's own push
				return nil
			}
		}
		record := func(inboundAt time.Time) error {
			name := status.Name
			return q.SetLinkInbound(ctx, dbq.SetLinkInboundParams{JiraStatus: &name, InboundAt: &inboundAt, FindingID: link.FindingID, ConnectionID: ref.ConnectionID})
		}
		switch d.Outcome {
		case findings.InboundEcho:
			out = inboundEcho
			// The echo ends the wait even when Jira's clock is behind ours.
			return record(laterOf(at, ls.LastPushedAt))
		case findings.InboundInSync, findings.InboundUnmapped:
			return record(at)
		case findings.InboundApply:
		default:
			return nil
		}
		if !ch.StatusChanged && !ls.LastJiraStatus.IsZero() && status.Same(ls.LastJiraStatus) {
			return record(at) // no news about the status
		}
		if row.StatusSource == sourceAPI && row.StatusChangedAt.After(at) {
			// The finding changed after Jira's report: it wins, and the issue must follow it.
			if err := record(at); err != nil {
				return err
			}
			out = inboundRequeued
			return q.RequeueFinding(ctx, dbq.RequeueFindingParams{OrgID: ref.OrgID, ConnectionID: ref.ConnectionID, FindingID: link.FindingID, At: a.now().UTC()})
		}
		if _, err := q.SetFindingStatus(ctx, dbq.SetFindingStatusParams{Status: string(d.Status), Source: sourceJira, ID: link.FindingID}); err != nil {
			return fmt.Errorf("set status of finding %s: %w", link.FindingID, err)
		}
		if err := record(at); err != nil {
			return err
		}
		meta := map[string]any{
			"connection_id": ref.ConnectionID.String(), "issue_key": ls.IssueKey, "issue_id": ch.IssueID,
			"from": row.Status, "to": string(d.Status), "jira_status": status.Name, "source": source,
		}
		if ch.DeliveryID != "" {
			meta["delivery_id"] = failure.Truncate(ch.DeliveryID, 200)
		}
		if _, err := audit.Record(ctx, q, audit.Entry{
			OrgID: ref.OrgID, Actor: audit.Actor{Type: audit.ActorJira, ID: ls.IssueKey}, Action: ActionInboundChange,
			TargetType: "finding", TargetID: link.FindingID.String(), Metadata: meta,
		}); err != nil {
			return err
		}
		out = inboundApplied
		applied.finding, applied.key, applied.from, applied.to = link.FindingID, ls.IssueKey, findings.Status(row.Status), d.Status
		return nil
	})
	if err != nil {
		return inboundIgnored, fmt.Errorf("apply change of issue %s: %w", ch.IssueID, err)
	}
	if out == inboundApplied {
		log.Info("Jira change applied to finding", slog.String("finding_id", applied.finding.String()), slog.String("issue_key", applied.key),
			slog.String("from", string(applied.from)), slog.String("to", string(applied.to)), slog.String("source", source))
	}
	return out, nil
}

// ReconcileLinkedIssues pulls the issues of the configured project changed since the previous
// pass (connections.reconciled_at minus a small overlap; on the first pass since the oldest link
// was created) and applies each linked issue's current status exactly like ApplyJiraChanges, with
// the issue's updated time as the report's time. So a lost webhook still converges.
//
// The window is expressed relative to Jira's own clock ("updated >= -Nm"), which is independent
// of the time zone Jira interprets absolute dates in. Bound: at most 10 search pages of 100 issues
// (10 Jira calls, 1,000 issues) per pass, ordered by updated time; when the bound is reached the
// pass records the last updated time it saw, and the next pass continues from there (Truncated).
// Limitation: the search covers the whole project, so a project shared with many unrelated issues
// spends the bound on them, and a burst of more than 1,000 updates within one minute cannot be
// paged past (no id cursor survives between passes) — the rest of that minute is skipped.
func (a *Activities) ReconcileLinkedIssues(ctx context.Context, ref ConnectionRef) (ReconcileResult, error) {
	if err := validRef(ref); err != nil {
		return ReconcileResult{}, activityError(ctx, err)
	}
	log := a.logger(ref)
	row, conn, err := a.findingSyncConnection(ctx, ref)
	if err != nil {
		return ReconcileResult{}, activityError(ctx, err)
	}
	if conn.Config.FindingSync == nil {
		return ReconcileResult{}, nil
	}
	cfg := *conn.Config.FindingSync
	start := a.now().UTC()
	var since time.Time
	if row.ReconciledAt != nil {
		since = row.ReconciledAt.UTC()
	} else {
		var oldest []time.Time
		err := a.db.InOrg(ctx, ref.OrgID, func(q *dbq.Queries) error {
			var err error
			oldest, err = q.OldestLinkCreatedAt(ctx, ref.ConnectionID)
			return err
		})
		if err != nil {
			return ReconcileResult{}, activityError(ctx, fmt.Errorf("find oldest link: %w", err))
		}
		if len(oldest) == 0 {
			// Nothing linked yet: nothing to reconcile, and nothing before now ever will be.
			if err := a.setReconciledAt(ctx, ref, start); err != nil {
				return ReconcileResult{}, activityError(ctx, err)
			}
			return ReconcileResult{}, nil
		}
		since = oldest[0].UTC()
	}
	minutes := int(math.Ceil(start.Sub(since.Add(-reconcileOverlap)).Minutes()))
	minutes = max(minutes, 1)
	query, err := jql.Query{
		Where:   jql.And(jql.Eq("project", cfg.ProjectKey), jql.GreaterEq("updated", jql.Relative(-minutes, 'm'))),
		OrderBy: []jql.Order{jql.Asc("updated"), jql.Asc("id")},
	}.Build()
	if err != nil {
		return ReconcileResult{}, activityError(ctx, fmt.Errorf("%w: reconciliation query: %v", failure.ErrBadConfig, err))
	}

	stats := &jira.CallStats{}
	client, _, err := a.conns.Client(ctx, ref.OrgID, ref.ConnectionID, stats)
	if err != nil {
		if conn.Kind == connections.KindCloudOAuth && a.conns.OAuth == nil {
			err = failure.ErrOAuthNotConfigured
		}
		return ReconcileResult{}, activityError(ctx, err)
	}
	var res ReconcileResult
	var apply ApplyResult
	mark := start
	var lastUpdated time.Time
	token := ""
	seen := map[string]bool{}
	for page := 0; ; page++ {
		if page == reconcilePages {
			res.Truncated = true
			break
		}
		heartbeat(ctx, fmt.Sprintf("reconcile page %d", page+1))
		if err := ctx.Err(); err != nil {
			return res, activityError(ctx, err)
		}
		callCtx, cancel := context.WithTimeout(ctx, a.callTimeout)
		p, err := client.Search(callCtx, jira.SearchRequest{JQL: query, Fields: []string{"status", "updated"}, MaxResults: reconcilePageSize, PageToken: token})
		cancel()
		if err != nil {
			f := failure.Classify(err)
			log.Warn("reconciliation search failed", slog.String("error_type", f.Type), slog.String("error", f.Message))
			return ReconcileResult{}, activityError(ctx, err)
		}
		if err := a.reconcilePage(ctx, ref, cfg, p.Issues, &res, &apply, &lastUpdated, log); err != nil {
			return ReconcileResult{}, activityError(ctx, err)
		}
		if p.IsLast || p.NextPageToken == "" {
			break
		}
		if seen[p.NextPageToken] {
			return ReconcileResult{}, activityError(ctx, &jira.Error{Kind: jira.KindMalformedResponse, Op: "search", Detail: "search returned a page token it already returned"})
		}
		seen[p.NextPageToken] = true
		token = p.NextPageToken
	}
	if res.Truncated {
		// Continue from the last issue seen: the next pass's window begins at lastUpdated (the
		// recorded time minus the overlap), which may lie after now when the updates are recent.
		// The window has minute granularity, so when it would not move forward by a minute (more
		// than a pass's worth of updates within one minute) the pass gives up on the rest of it.
		next := lastUpdated.Add(reconcileOverlap)
		if !lastUpdated.IsZero() && next.After(since.Add(time.Minute)) {
			mark = next
		} else {
			log.Warn("reconciliation window holds more updated issues than one pass reads; skipping the rest of it",
				slog.Int("examined", res.Examined))
		}
	}
	if err := a.setReconciledAt(ctx, ref, mark); err != nil {
		return ReconcileResult{}, activityError(ctx, err)
	}
	res.Applied, res.Requeued, res.JiraCalls = apply.Applied, apply.Requeued, stats.Total()
	log.Info("linked issues reconciled", slog.Int("examined", res.Examined), slog.Int("applied", res.Applied),
		slog.Int("requeued", res.Requeued), slog.Bool("truncated", res.Truncated), slog.Int("jira_calls", res.JiraCalls))
	return res, nil
}

// reconcilePage applies the linked issues of one search page.
func (a *Activities) reconcilePage(ctx context.Context, ref ConnectionRef, cfg findings.SyncConfig, issues []jira.Issue, res *ReconcileResult,
	apply *ApplyResult, lastUpdated *time.Time, log *slog.Logger) error {
	res.Examined += len(issues)
	ids := make([]string, 0, len(issues))
	for _, is := range issues {
		if is.ID != "" {
			ids = append(ids, is.ID)
		}
		if !is.Fields.Updated.IsZero() {
			*lastUpdated = is.Fields.Updated.UTC()
		}
	}
	if len(ids) == 0 {
		return nil
	}
	var links []dbq.FindingIssueLink
	err := a.db.InOrg(ctx, ref.OrgID, func(q *dbq.Queries) error {
		var err error
		links, err = q.LinksByIssueIDs(ctx, dbq.LinksByIssueIDsParams{ConnectionID: ref.ConnectionID, IssueIds: ids})
		return err
	})
	if err != nil {
		return fmt.Errorf("look up links: %w", err)
	}
	linked := make(map[string]bool, len(links))
	for _, l := range links {
		if l.IssueID != nil {
			linked[*l.IssueID] = true
		}
	}
	for _, is := range issues {
		if !linked[is.ID] || is.Fields.Status == nil || is.Fields.Updated.IsZero() {
			continue
		}
		ch := findings.ChangeFromIssue(is, a.now())
		out, err := a.applyChange(ctx, ref, cfg, ch, sourceReconcile, log, nil)
		if err != nil {
			return err
		}
		count(apply, out)
	}
	return nil
}

func (a *Activities) setReconciledAt(ctx context.Context, ref ConnectionRef, at time.Time) error {
	at = at.UTC()
	err := a.db.InOrg(ctx, ref.OrgID, func(q *dbq.Queries) error {
		return q.SetReconciledAt(ctx, dbq.SetReconciledAtParams{ID: ref.ConnectionID, ReconciledAt: &at})
	})
	if err != nil {
		return fmt.Errorf("record reconciliation time: %w", err)
	}
	return nil
}
