package findingsync

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/jira"
)

// syncStatus makes a linked issue follow its finding's status, then removes the queue item:
//
//  1. decide with findings.DecideOutbound whether the issue must move, and where;
//  2. record the push on the link before the first call (so that Jira's reports of it are
//     recognised as echoes), unless the finding changed since it was loaded;
//  3. move the issue, walking multi-hop workflows;
//  4. record the outcome: the push as finished (and audited), or, when nothing moved, the link as
//     it was — except when an earlier attempt's push had already landed.
func (d *drainer) syncStatus(ctx context.Context, it dbq.DueQueueItemsAtRow, row dbq.Finding, link dbq.FindingIssueLink) (itemOutcome, error) {
	f := findingOf(row)
	dec := d.decideOutbound(row, link)
	switch dec.Outcome {
	case findings.OutboundTransition:
	case findings.OutboundUnmappedStatus:
		return d.configFailure(ctx, it, f.ID, &link, phaseTransition, "config", fmt.Sprintf("finding status %s has no Jira status in the status map", f.Status))
	default:
		return d.done(ctx, it, itemOutcome{})
	}
	before, changed, err := d.beginPush(ctx, row, pushedName(dec.Target))
	if err != nil {
		return itemOutcome{}, err
	}
	if changed {
		return itemOutcome{result: resultLeft}, nil
	}
	key := deref(link.IssueKey)
	moved, err := d.moveIssue(ctx, key, dec.Target)
	if err != nil {
		return d.pushFailed(ctx, it, f.ID, &link, before, err)
	}
	if !moved.Changed {
		return d.alreadyThere(ctx, it, before, moved.To)
	}
	if err := d.recordPush(ctx, f, key, moved); err != nil {
		return itemOutcome{}, err
	}
	return d.done(ctx, it, itemOutcome{transitioned: true})
}

// decideOutbound is findings.DecideOutbound for a stored finding and link. The queue item is still
// here, so a push recorded by an earlier attempt may not have happened (interrupted, failed
// transiently): the decision starts from the status Jira last confirmed, not from what was being
// pushed. MoveTo reads the real status before changing anything.
func (d *drainer) decideOutbound(row dbq.Finding, link dbq.FindingIssueLink) findings.OutboundDecision {
	origin := findings.OriginPlatform
	if row.StatusSource == sourceJira {
		origin = findings.OriginJira
	}
	ls := linkStateOf(link)
	ls.AwaitingEcho = false
	return findings.DecideOutbound(d.cfg, findings.Status(row.Status), origin, ls)
}

// pushedName is what a push to t records as the pushed status: the status's name, or only its
// category when the status map gives no name.
func pushedName(t jira.Target) string {
	if t.StatusName != "" {
		return t.StatusName
	}
	return t.CategoryKey
}

// beginPush records, under the link's row lock (which serialises it with inbound changes), that
// the issue is being moved to target, and returns the link as it was before. When the finding
// changed since it was loaded (an inbound change applied meanwhile) it records nothing and
// reports changed: the item stays due and is decided again next time.
func (d *drainer) beginPush(ctx context.Context, row dbq.Finding, target string) (before dbq.FindingIssueLink, changed bool, err error) {
	err = d.s.db.InOrg(ctx, d.scope.OrgID, func(q *dbq.Queries) error {
		var err error
		before, err = q.LockLink(ctx, dbq.LockLinkParams{FindingID: row.ID, ConnectionID: d.scope.ConnectionID})
		if err != nil {
			return fmt.Errorf("lock link of finding %s: %w", row.ID, err)
		}
		cur, err := q.GetFinding(ctx, row.ID)
		if err != nil {
			return fmt.Errorf("reload finding %s: %w", row.ID, err)
		}
		if cur.Status != row.Status || cur.StatusSource != row.StatusSource || !cur.StatusChangedAt.Equal(row.StatusChangedAt) {
			changed = true
			return nil
		}
		return q.BeginLinkPush(ctx, dbq.BeginLinkPushParams{PushedStatus: &target, At: ptr(d.s.now().UTC()), FindingID: row.ID, ConnectionID: d.scope.ConnectionID})
	})
	return before, changed, err
}

// moveIssue moves the issue to target (jira.Client.MoveTo, which may take several transitions).
func (d *drainer) moveIssue(ctx context.Context, key string, target jira.Target) (*jira.TransitionResult, error) {
	d.s.progress(ctx, "transition issue")
	callCtx, cancel := d.s.callCtx(ctx, 2)
	defer cancel()
	return d.client.MoveTo(callCtx, key, target, 0)
}

// pushFailed handles a move Jira answered with an error. When Jira refused (a configuration
// error) nothing moved, so the push recorded by beginPush is undone: there is no echo to wait for.
func (d *drainer) pushFailed(ctx context.Context, it dbq.DueQueueItemsAtRow, findingID uuid.UUID, link *dbq.FindingIssueLink, before dbq.FindingIssueLink, err error) (itemOutcome, error) {
	if failure.Classify(err).Type == failure.TypeConfig {
		if rerr := d.restorePush(ctx, before, nil); rerr != nil {
			return itemOutcome{}, rerr
		}
	}
	return d.jiraFailure(ctx, it, findingID, link, phaseTransition, err)
}

// alreadyThere finishes an item whose issue was already in the target status (observed).
//
// When an earlier attempt pushed this very status and lost the answer (a dropped response, a
// killed worker), Jira being there now is that push having landed, possibly through intermediate
// hops whose reports are still on their way: the push is finished as of now, after every hop, so
// those reports are recognised as its echo — restoring the state from before that attempt would
// make them look like a person's changes. Otherwise the push recorded by beginPush is undone and
// the observed status recorded.
func (d *drainer) alreadyThere(ctx context.Context, it dbq.DueQueueItemsAtRow, before dbq.FindingIssueLink, observed jira.Status) (itemOutcome, error) {
	if unconfirmedPushOf(before, observed) {
		if err := d.finishPush(ctx, before.FindingID, observed.Name); err != nil {
			return itemOutcome{}, err
		}
		return d.done(ctx, it, itemOutcome{})
	}
	if err := d.restorePush(ctx, before, &observed.Name); err != nil {
		return itemOutcome{}, err
	}
	return d.done(ctx, it, itemOutcome{})
}

// unconfirmedPushOf reports whether the link (as it was before this attempt's beginPush) awaits
// the echo of a push of status: an earlier attempt recorded the push and never saw it finish or
// come back.
func unconfirmedPushOf(before dbq.FindingIssueLink, status jira.Status) bool {
	if !awaitingEcho(before) {
		return false
	}
	pushed := *before.LastPushedStatus
	// The push names the status, or only its category when the status map gives no name.
	return findings.JiraStatus{Name: pushed}.Same(findings.JiraStatus{Name: status.Name}) ||
		(status.Category.Key != "" && strings.EqualFold(pushed, status.Category.Key))
}

// recordPush records a move that changed the issue's status, as of now, and audits it.
func (d *drainer) recordPush(ctx context.Context, f findings.Finding, key string, moved *jira.TransitionResult) error {
	err := d.s.db.InOrg(ctx, d.scope.OrgID, func(q *dbq.Queries) error {
		if err := finishLinkPush(ctx, q, d.scope, f.ID, moved.To.Name, d.s.now()); err != nil {
			return err
		}
		_, err := audit.Record(ctx, q, audit.Entry{
			OrgID: d.scope.OrgID, Actor: d.actor, Action: ActionPush, TargetType: "finding", TargetID: f.ID.String(),
			Metadata: map[string]any{"connection_id": d.scope.ConnectionID.String(), "issue_key": key, "finding_status": string(f.Status),
				"from": moved.From.Name, "to": moved.To.Name},
		})
		return err
	})
	if err != nil {
		return err
	}
	d.log.Info("finding status pushed to Jira", slog.String("finding_id", f.ID.String()), slog.String("issue_key", key),
		slog.String("from", moved.From.Name), slog.String("to", moved.To.Name))
	return nil
}

// finishPush records that the issue is in status because of the connector's own push, as of now.
func (d *drainer) finishPush(ctx context.Context, findingID uuid.UUID, status string) error {
	return d.s.db.InOrg(ctx, d.scope.OrgID, func(q *dbq.Queries) error {
		return finishLinkPush(ctx, q, d.scope, findingID, status, d.s.now())
	})
}

func finishLinkPush(ctx context.Context, q *dbq.Queries, scope findings.Scope, findingID uuid.UUID, status string, at time.Time) error {
	if err := q.FinishLinkPush(ctx, dbq.FinishLinkPushParams{PushedStatus: &status, At: ptr(at.UTC()), FindingID: findingID, ConnectionID: scope.ConnectionID}); err != nil {
		return fmt.Errorf("record push of finding %s: %w", findingID, err)
	}
	return nil
}

// restorePush undoes beginPush after a push that changed nothing (Jira was already there, or
// refused), so the link does not wait for an echo that will never come; observed is the status
// Jira was seen in, when known.
func (d *drainer) restorePush(ctx context.Context, before dbq.FindingIssueLink, observed *string) error {
	return d.s.db.InOrg(ctx, d.scope.OrgID, func(q *dbq.Queries) error {
		if err := q.RestoreLinkPush(ctx, dbq.RestoreLinkPushParams{
			PushedStatus: before.LastPushedStatus, PushAt: before.LastPushAt, FindingID: before.FindingID, ConnectionID: d.scope.ConnectionID,
		}); err != nil {
			return fmt.Errorf("restore push state of finding %s: %w", before.FindingID, err)
		}
		if observed == nil {
			return nil
		}
		return q.SetLinkJiraStatus(ctx, dbq.SetLinkJiraStatusParams{JiraStatus: observed, FindingID: before.FindingID, ConnectionID: d.scope.ConnectionID})
	})
}
