package findingsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/jira"
)

// maxInlineRateLimitWait is the longest Retry-After a drain waits out itself before going on with
// its batch. Jira's burst limits answer with a second or two; going back to the caller for each
// of those (a timer, a new activity, a new client) would cost more than the wait, and at a
// sustained rate limit would leave Jira's budget partly unused.
const maxInlineRateLimitWait = 2 * time.Second

// DrainRequest asks for one batch of a connection's finding queue.
type DrainRequest struct {
	// Batch bounds the queue items handled (at least 1).
	Batch int
	// Actor is whom the audit rows of the drain name (the connection's workflow).
	Actor audit.Actor
	// Calls counts the drain's Jira calls by operation (for the caller's run record); the drain
	// uses a counter of its own when it is nil. DrainResult.JiraCalls is its total either way.
	Calls *jira.CallStats
}

// Drain pushes up to req.Batch due items of the connection's finding queue to Jira, one finding
// at a time, reporting progress between them. For each finding:
//
//   - Creation, exactly once. A finding without an issue that matches the mapping rule gets one.
//     The intent (link state "creating") is committed before Jira is called; a create request is
//     preceded by marking the intent's time. An intent that already existed when the item was
//     picked up may stand for a create that reached Jira (response lost, worker killed, activity
//     timed out), so Jira is searched for the issue's marker label first: found → linked; not
//     found while the intent is younger than the per-call timeout plus the search consistency
//     window → the item is delayed until then (the search may lag); older → created. Only an
//     intent whose last attempt Jira definitely rejected (a 4xx answer, recorded as the link's
//     error) skips the search. So a retry never yields a second issue.
//   - Status, both ways safe. A linked issue is transitioned when findings.DecideOutbound says so
//     (a status set by Jira is never pushed back; no call when Jira is already there), walking
//     multi-hop workflows with jira.Client.MoveTo. The pushed status is recorded before and after
//     the call so that Jira's reports of it are recognised as echoes.
//   - Errors by kind (failure.Classify): rate limited → the item and the rest of the due queue
//     wait for Retry-After (plus up to a fifth of it as jitter); a short wait
//     (≤ maxInlineRateLimitWait, Jira's usual burst answer) is waited out inside the drain, which
//     then goes on with the batch, a longer one stops the batch so that the caller sleeps until
//     NextDue; configuration problems (issue_create_forbidden, customfield_unknown, bad request,
//     missing issue or transition, …) → kept on the link and the connection, audited, the item
//     dropped until the configuration changes (EnqueueErroredLinks); reauth_required → Drain
//     returns the error and the queue is left as it is; anything else (5xx, transport, malformed
//     answers, lost responses) → the item is delayed with exponential backoff and the batch goes
//     on.
//
// A processed item is deleted only in the version that was processed, so a change enqueued
// meanwhile stays queued. With finding sync off, the queue is cleared and nothing else happens.
//
// The result carries counts, the backlog (Remaining due now, NextDue) and the number of Jira
// calls — never finding content. An error ends the drain: revoked connection, re-authorization,
// Postgres, cancellation; the result then holds what the drain did before (without the backlog).
func (s *Service) Drain(ctx context.Context, scope findings.Scope, req DrainRequest) (DrainResult, error) {
	if req.Batch <= 0 {
		return DrainResult{}, failure.InvalidInput(fmt.Sprintf("drain batch %d: must be at least 1", req.Batch))
	}
	calls := req.Calls
	if calls == nil {
		calls = &jira.CallStats{}
	}
	log := s.logger(scope)
	s.progress(ctx, "load connection")
	_, conn, err := s.load(ctx, scope)
	if err != nil {
		return DrainResult{}, err
	}
	if conn.Config.FindingSync == nil {
		return DrainResult{}, s.clearQueue(ctx, scope, log)
	}
	client, err := s.client(ctx, scope, conn, calls)
	if err != nil {
		return DrainResult{}, err
	}
	d := &drainer{s: s, scope: scope, cfg: *conn.Config.FindingSync, client: client, log: log, actor: req.Actor}
	res, err := d.run(ctx, req.Batch)
	res.JiraCalls = calls.Total()
	if err != nil {
		return res, err
	}
	if err := s.backlog(ctx, scope, &res); err != nil {
		return res, err
	}
	log.Info("finding queue drained", slog.Int("created", res.Created), slog.Int("transitions", res.Transitions),
		slog.Int("unchanged", res.Unchanged), slog.Int("failed", res.Failed), slog.Int("delayed", res.Delayed),
		slog.Bool("rate_limited", res.RateLimited), slog.Int("remaining", res.Remaining), slog.Int("jira_calls", res.JiraCalls))
	return res, nil
}

// clearQueue empties the queue of a connection whose finding sync is off.
func (s *Service) clearQueue(ctx context.Context, scope findings.Scope, log *slog.Logger) error {
	var cleared int64
	err := s.db.InOrg(ctx, scope.OrgID, func(q *dbq.Queries) error {
		var err error
		cleared, err = q.ClearQueue(ctx, scope.ConnectionID)
		return err
	})
	if err != nil {
		return fmt.Errorf("clear finding queue: %w", err)
	}
	if cleared > 0 {
		log.Info("finding sync is off; cleared the finding queue", slog.Int64("items", cleared))
	}
	return nil
}

// backlog fills Remaining and NextDue.
func (s *Service) backlog(ctx context.Context, scope findings.Scope, res *DrainResult) error {
	now := s.now().UTC()
	return s.db.InOrg(ctx, scope.OrgID, func(q *dbq.Queries) error {
		due, err := q.QueueDueAt(ctx, dbq.QueueDueAtParams{ConnectionID: scope.ConnectionID, Now: now})
		if err != nil {
			return fmt.Errorf("count due queue items: %w", err)
		}
		next, err := q.QueueNextDueAt(ctx, dbq.QueueNextDueAtParams{ConnectionID: scope.ConnectionID, Now: now})
		if err != nil {
			return fmt.Errorf("find next due queue item: %w", err)
		}
		res.Remaining = int(due)
		if len(next) > 0 {
			t := next[0].UTC()
			res.NextDue = &t
		}
		return nil
	})
}

// drainer pushes one batch.
type drainer struct {
	s      *Service
	scope  findings.Scope
	cfg    findings.SyncConfig
	client *jira.Client
	log    *slog.Logger
	actor  audit.Actor

	// frameworkOptions caches, for one drain, the options Jira offers on the framework
	// multi-select (nil: not asked yet, or asking failed).
	frameworkOptions map[string]bool
	frameworkAsked   bool
}

// Results of one queue item (itemOutcome.result).
const (
	resultDone    = "done"    // processed and removed
	resultFailed  = "failed"  // configuration error, removed
	resultDelayed = "delayed" // put back with a later due time
	resultLeft    = "left"    // left due: the finding changed under us
)

// itemOutcome is what happened to one queue item.
type itemOutcome struct {
	created, transitioned bool
	result                string
	// stop ends the batch (rate limited) until resumeAt.
	stop     bool
	resumeAt time.Time
}

// run handles up to batch due items, waiting out a short Retry-After inline.
func (d *drainer) run(ctx context.Context, batch int) (DrainResult, error) {
	var res DrainResult
	for handled := 0; handled < batch; {
		var items []dbq.DueQueueItemsAtRow
		err := d.s.db.InOrg(ctx, d.scope.OrgID, func(q *dbq.Queries) error {
			var err error
			items, err = q.DueQueueItemsAt(ctx, dbq.DueQueueItemsAtParams{ConnectionID: d.scope.ConnectionID, Now: d.s.now().UTC(), Batch: int32(batch - handled)})
			return err
		})
		if err != nil {
			return res, fmt.Errorf("load due finding queue items: %w", err)
		}
		n, resumeAt, err := d.items(ctx, items, &res)
		handled += n
		if err != nil || resumeAt.IsZero() {
			return res, err
		}
		wait := resumeAt.Sub(d.s.now())
		if wait > maxInlineRateLimitWait {
			return res, nil
		}
		if err := d.pause(ctx, wait); err != nil {
			return res, err
		}
	}
	return res, nil
}

// pause waits w (reporting progress first) or until ctx ends.
func (d *drainer) pause(ctx context.Context, w time.Duration) error {
	d.s.progress(ctx, "waiting out Jira's Retry-After")
	t := time.NewTimer(w)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// items processes loaded queue items in order and counts them in res. It returns how many it
// handled and, when Jira rate-limited the batch, when the queue is due again.
func (d *drainer) items(ctx context.Context, items []dbq.DueQueueItemsAtRow, res *DrainResult) (int, time.Time, error) {
	for i, it := range items {
		d.s.progress(ctx, fmt.Sprintf("finding %d of %d", i+1, len(items)))
		if err := ctx.Err(); err != nil {
			return i, time.Time{}, err
		}
		out, err := d.item(ctx, it)
		if err != nil {
			return i, time.Time{}, err
		}
		if out.created {
			res.Created++
		}
		if out.transitioned {
			res.Transitions++
		}
		switch out.result {
		case resultFailed:
			res.Failed++
		case resultDelayed:
			res.Delayed++
		case resultDone:
			if !out.created && !out.transitioned {
				res.Unchanged++
			}
		}
		if out.stop {
			res.RateLimited = true
			return i + 1, out.resumeAt, nil
		}
	}
	return len(items), time.Time{}, nil
}

// item processes one queue item: the finding gets its issue if it should have one, then the issue
// follows the finding's status. Jira failures become outcomes; the returned error is reserved for
// what must end the drain: revoked connection, re-authorization, Postgres, cancellation.
func (d *drainer) item(ctx context.Context, it dbq.DueQueueItemsAtRow) (itemOutcome, error) {
	row, link, err := d.load(ctx, it)
	if err != nil {
		return itemOutcome{}, err
	}
	if row == nil {
		return d.done(ctx, it, itemOutcome{}) // the finding is gone
	}
	f := findingOf(*row)
	fresh := false
	if link == nil {
		if !d.cfg.Matches(f) {
			return d.done(ctx, it, itemOutcome{})
		}
		l, inserted, err := d.claimIntent(ctx, f.ID)
		if err != nil {
			return itemOutcome{}, err
		}
		link, fresh = &l, inserted
	}
	created := false
	if link.State == linkCreating {
		l, o, err := d.ensureIssue(ctx, it, f, *link, fresh)
		if err != nil || l == nil {
			return o, err
		}
		link, created = l, o.created
	}
	o, err := d.syncStatus(ctx, it, *row, *link)
	o.created = created
	return o, err
}

// load reads the item's finding (nil: deleted) and its link (nil: none yet), after checking that
// the connection is still live: checked before each item, so that no Jira call follows a
// committed revoke for longer than one item.
func (d *drainer) load(ctx context.Context, it dbq.DueQueueItemsAtRow) (*dbq.Finding, *dbq.FindingIssueLink, error) {
	var row *dbq.Finding
	var link *dbq.FindingIssueLink
	err := d.s.db.InOrg(ctx, d.scope.OrgID, func(q *dbq.Queries) error {
		if _, err := connections.RequireLive(ctx, q, d.scope.ConnectionID); err != nil {
			return err
		}
		f, err := q.GetFinding(ctx, it.FindingID)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("load finding %s: %w", it.FindingID, err)
		}
		row = &f
		l, err := q.GetLink(ctx, dbq.GetLinkParams{FindingID: it.FindingID, ConnectionID: d.scope.ConnectionID})
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("load link of finding %s: %w", it.FindingID, err)
		}
		link = &l
		return nil
	})
	return row, link, err
}

// done removes the processed version of the queue item.
func (d *drainer) done(ctx context.Context, it dbq.DueQueueItemsAtRow, out itemOutcome) (itemOutcome, error) {
	err := d.s.db.InOrg(ctx, d.scope.OrgID, func(q *dbq.Queries) error {
		return q.DeleteQueueItem(ctx, dbq.DeleteQueueItemParams{ConnectionID: d.scope.ConnectionID, FindingID: it.FindingID, EnqueuedAt: it.EnqueuedAt})
	})
	if err != nil {
		return itemOutcome{}, fmt.Errorf("remove queue item of finding %s: %w", it.FindingID, err)
	}
	if out.result == "" {
		out.result = resultDone
	}
	return out, nil
}

// delay puts the item back until the given time.
func (d *drainer) delay(ctx context.Context, it dbq.DueQueueItemsAtRow, until time.Time, reason string) (itemOutcome, error) {
	reason = failure.Truncate(reason, failure.MaxText)
	err := d.s.db.InOrg(ctx, d.scope.OrgID, func(q *dbq.Queries) error {
		return q.DelayQueueItem(ctx, dbq.DelayQueueItemParams{NotBefore: until.UTC(), LastError: &reason, ConnectionID: d.scope.ConnectionID, FindingID: it.FindingID})
	})
	if err != nil {
		return itemOutcome{}, fmt.Errorf("delay queue item of finding %s: %w", it.FindingID, err)
	}
	return itemOutcome{result: resultDelayed}, nil
}
