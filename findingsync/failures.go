package findingsync

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/jira"
)

// Backoff of queue items after a transient Jira failure: base·2^attempts, capped, with jitter.
const (
	transientBackoffBase = 5 * time.Second
	transientBackoffMax  = 5 * time.Minute
	// defaultRateLimitDelay is used when Jira rate-limits without saying for how long.
	defaultRateLimitDelay = 10 * time.Second
)

// Phases of an item whose Jira call can fail.
const (
	phaseSearch     = "search"
	phaseCreate     = "create"
	phaseTransition = "transition"
)

// jiraFailure handles a failed Jira call of an item by its kind (see Service.Drain): re-authorization
// ends the drain, a configuration error drops the item until the configuration changes, a rate
// limit delays the whole due queue, and anything else delays the item with backoff.
func (d *drainer) jiraFailure(ctx context.Context, it dbq.DueQueueItemsAtRow, findingID uuid.UUID, link *dbq.FindingIssueLink, phase string, err error) (itemOutcome, error) {
	if ctx.Err() != nil {
		return itemOutcome{}, err
	}
	f := failure.Classify(err)
	kind := string(jira.KindOf(err))
	switch f.Type {
	case failure.TypeReauthRequired:
		return itemOutcome{}, err
	case failure.TypeConfig:
		return d.configFailure(ctx, it, findingID, link, phase, kind, f.Message)
	case failure.TypeRateLimited:
		return d.rateLimited(ctx, it, findingID, phase, kind, f.Message, jira.RetryDelay(err))
	}
	backoff := min(transientBackoffBase<<min(it.Attempts, 16), transientBackoffMax)
	backoff += rand.N(backoff/5 + 1)
	d.log.Info("finding push failed transiently; retrying later", slog.String("finding_id", findingID.String()), slog.String("kind", kind),
		slog.String("error", f.Message), slog.Duration("backoff", backoff))
	return d.delay(ctx, it, d.s.now().Add(backoff), f.Message)
}

// rateLimited delays the item and the rest of the due queue by Jira's Retry-After (wait; a
// default when Jira named none) and stops the batch: the rest of the queue would be limited too,
// so the caller sleeps until NextDue instead of spending calls on more 429s.
func (d *drainer) rateLimited(ctx context.Context, it dbq.DueQueueItemsAtRow, findingID uuid.UUID, phase, kind, msg string, wait time.Duration) (itemOutcome, error) {
	if wait <= 0 {
		wait = defaultRateLimitDelay
	}
	// Jitter spreads the connections of one site (they share its limit) without leaving much of
	// the budget Jira just named unused.
	wait += rand.N(wait/5 + time.Millisecond)
	if phase == phaseCreate {
		// Jira answered 429/503: the create was not made, so the next attempt need not search.
		if err := d.setLinkError(ctx, findingID, kind, createRejectedPrefix+msg); err != nil {
			return itemOutcome{}, err
		}
	}
	d.log.Info("Jira rate-limited the finding push; stopping the batch", slog.String("finding_id", findingID.String()),
		slog.String("kind", kind), slog.Duration("retry_after", wait))
	until := d.s.now().Add(wait)
	o, err := d.delay(ctx, it, until, msg)
	if err != nil {
		return o, err
	}
	err = d.s.db.InOrg(ctx, d.scope.OrgID, func(q *dbq.Queries) error {
		_, err := q.DelayDueQueue(ctx, dbq.DelayDueQueueParams{Until: until.UTC(), ConnectionID: d.scope.ConnectionID})
		return err
	})
	if err != nil {
		return itemOutcome{}, fmt.Errorf("delay the finding queue: %w", err)
	}
	o.stop, o.resumeAt = true, until
	return o, nil
}

// configFailure keeps a configuration error on the link and the connection, audits it and drops
// the item: it is retried when the configuration changes (EnqueueErroredLinks).
func (d *drainer) configFailure(ctx context.Context, it dbq.DueQueueItemsAtRow, findingID uuid.UUID, link *dbq.FindingIssueLink, phase, kind, msg string) (itemOutcome, error) {
	if phase == phaseCreate {
		msg = createRejectedPrefix + msg
	}
	msg = failure.Truncate(msg, failure.MaxText)
	err := d.s.db.InOrg(ctx, d.scope.OrgID, func(q *dbq.Queries) error {
		if link != nil {
			if err := q.SetLinkError(ctx, dbq.SetLinkErrorParams{LastError: &msg, LastErrorKind: &kind, FindingID: findingID, ConnectionID: d.scope.ConnectionID}); err != nil {
				return fmt.Errorf("record link error: %w", err)
			}
		}
		if err := q.SetFindingSyncError(ctx, dbq.SetFindingSyncErrorParams{ID: d.scope.ConnectionID, Error: &msg, ErrorKind: &kind, At: ptr(d.s.now().UTC())}); err != nil {
			return fmt.Errorf("record connection error: %w", err)
		}
		meta := map[string]any{"connection_id": d.scope.ConnectionID.String(), "error_kind": kind}
		if link != nil && link.IssueKey != nil {
			meta["issue_key"] = *link.IssueKey
		}
		if _, err := audit.Record(ctx, q, audit.Entry{
			OrgID: d.scope.OrgID, Actor: d.actor, Action: ActionPushFailed, TargetType: "finding", TargetID: findingID.String(), Metadata: meta,
		}); err != nil {
			return err
		}
		return q.DeleteQueueItem(ctx, dbq.DeleteQueueItemParams{ConnectionID: d.scope.ConnectionID, FindingID: it.FindingID, EnqueuedAt: it.EnqueuedAt})
	})
	if err != nil {
		return itemOutcome{}, fmt.Errorf("record push failure of finding %s: %w", findingID, err)
	}
	d.log.Warn("finding push failed; waiting for a configuration change", slog.String("finding_id", findingID.String()),
		slog.String("kind", kind), slog.String("error", msg))
	return itemOutcome{result: resultFailed}, nil
}

// setLinkError records an error on the finding's link.
func (d *drainer) setLinkError(ctx context.Context, findingID uuid.UUID, kind, msg string) error {
	msg = failure.Truncate(msg, failure.MaxText)
	err := d.s.db.InOrg(ctx, d.scope.OrgID, func(q *dbq.Queries) error {
		return q.SetLinkError(ctx, dbq.SetLinkErrorParams{LastError: &msg, LastErrorKind: &kind, FindingID: findingID, ConnectionID: d.scope.ConnectionID})
	})
	if err != nil {
		return fmt.Errorf("record link error of finding %s: %w", findingID, err)
	}
	return nil
}
