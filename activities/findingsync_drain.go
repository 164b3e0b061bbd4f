package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/sqlc-dev/pqtype"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jira/jql"
)

// Backoff of queue items after a transient Jira failure: base·2^attempts, capped, with jitter.
const (
	transientBackoffBase = 5 * time.Second
	transientBackoffMax  = 5 * time.Minute
	// defaultRateLimitDelay is used when Jira rate-limits without saying for how long.
	defaultRateLimitDelay = 10 * time.Second
	// maxMarkerMatches bounds the marker search page (normally one issue).
	maxMarkerMatches = 10
)

// DrainFindingQueue pushes up to in.Max due items of the connection's finding queue to Jira, one
// finding at a time, heartbeating between them. For each finding:
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
//   - Errors by kind: rate limited → the item and the rest of the due queue wait for Retry-After
//     (plus up to a fifth of it as jitter); a short wait (≤ maxInlineRateLimitWait, Jira's usual
//     burst answer) is waited out inside the drain, which then goes on with the batch, a longer
//     one stops the batch so that the workflow sleeps until NextDue;
//     configuration problems (issue_create_forbidden, customfield_unknown, bad request, missing
//     issue or transition, …) → kept on the link and the connection, audited, the item dropped
//     until the configuration changes (EnqueueErroredLinks); reauth_required → the activity fails
//     with failure.TypeReauthRequired and the queue is left as it is; anything else (5xx, transport,
//     malformed answers, lost responses) → the item is delayed with exponential backoff and the
//     batch goes on.
//
// A processed item is deleted only in the version that was processed, so a change enqueued
// meanwhile stays queued. A drain that called Jira records one connector_runs row (kind
// finding_push). The result carries counts, the backlog (Remaining due now, NextDue) and the
// number of Jira calls — never finding content.
func (a *Activities) DrainFindingQueue(ctx context.Context, in DrainInput) (DrainResult, error) {
	if err := validRef(in.ConnectionRef); err != nil {
		return DrainResult{}, activityError(ctx, err)
	}
	if in.Max < 0 || in.Seq < 0 {
		return DrainResult{}, activityError(ctx, failure.InvalidInput("max and seq must not be negative"))
	}
	batch := in.Max
	if batch == 0 {
		batch = DefaultDrainBatch
	}
	batch = min(batch, MaxDrainBatch)
	log := a.logger(in.ConnectionRef)

	heartbeat(ctx, "load connection")
	_, conn, err := a.findingSyncConnection(ctx, in.ConnectionRef)
	if err != nil {
		return DrainResult{}, activityError(ctx, err)
	}
	if conn.Config.FindingSync == nil {
		var cleared int64
		err := a.db.InOrg(ctx, in.OrgID, func(q *dbq.Queries) error {
			var err error
			cleared, err = q.ClearQueue(ctx, in.ConnectionID)
			return err
		})
		if err != nil {
			return DrainResult{}, activityError(ctx, fmt.Errorf("clear finding queue: %w", err))
		}
		if cleared > 0 {
			log.Info("finding sync is off; cleared the finding queue", slog.Int64("items", cleared))
		}
		return DrainResult{}, nil
	}
	stats := &jira.CallStats{}
	client, _, err := a.conns.Client(ctx, in.OrgID, in.ConnectionID, stats)
	if err != nil {
		if conn.Kind == connections.KindCloudOAuth && a.conns.OAuth == nil {
			err = failure.ErrOAuthNotConfigured
		}
		return DrainResult{}, activityError(ctx, err)
	}
	d := &drainer{
		a: a, ref: in.ConnectionRef, cfg: *conn.Config.FindingSync, client: client, log: log,
		actor: workflowActor(workflowIDOf(ctx, in.WorkflowID, in.ConnectionRef)),
	}
	res, runErr := d.run(ctx, batch)
	res.JiraCalls = stats.Total()
	if runErr == nil {
		runErr = a.backlog(ctx, in.ConnectionRef, &res)
	}
	if stats.Total() > 0 {
		a.recordDrainRun(ctx, in, res, stats, runErr)
	}
	if runErr != nil {
		f := failure.Classify(runErr)
		log.Warn("finding queue drain failed", slog.String("error_type", f.Type), slog.String("error", f.Message),
			slog.Int("jira_calls", res.JiraCalls), slog.Int("attempt", attempt(ctx)))
		return DrainResult{}, activityError(ctx, runErr)
	}
	log.Info("finding queue drained", slog.Int("created", res.Created), slog.Int("transitions", res.Transitions),
		slog.Int("unchanged", res.Unchanged), slog.Int("failed", res.Failed), slog.Int("delayed", res.Delayed),
		slog.Bool("rate_limited", res.RateLimited), slog.Int("remaining", res.Remaining), slog.Int("jira_calls", res.JiraCalls))
	return res, nil
}

// backlog fills Remaining and NextDue.
func (a *Activities) backlog(ctx context.Context, ref ConnectionRef, res *DrainResult) error {
	now := a.now().UTC()
	return a.db.InOrg(ctx, ref.OrgID, func(q *dbq.Queries) error {
		due, err := q.QueueDueAt(ctx, dbq.QueueDueAtParams{ConnectionID: ref.ConnectionID, Now: now})
		if err != nil {
			return fmt.Errorf("count due queue items: %w", err)
		}
		next, err := q.QueueNextDueAt(ctx, dbq.QueueNextDueAtParams{ConnectionID: ref.ConnectionID, Now: now})
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

// drainReport is stored in connector_runs.report of a finding_push run.
type drainReport struct {
	Created          int            `json:"created"`
	Transitions      int            `json:"transitions"`
	Unchanged        int            `json:"unchanged"`
	Failed           int            `json:"failed"`
	Delayed          int            `json:"delayed"`
	RateLimited      bool           `json:"rate_limited,omitempty"`
	CallsByOperation map[string]int `json:"calls_by_operation,omitempty"`
}

// recordDrainRun writes the drain's connector_runs row: two statements in one transaction, and
// nothing at all for a drain that did not call Jira. Its failure is logged, not returned: the
// pushes themselves are already committed and must not be retried because of bookkeeping.
func (a *Activities) recordDrainRun(ctx context.Context, in DrainInput, res DrainResult, stats *jira.CallStats, runErr error) {
	key, workflowID, runID := drainRunKey(ctx, in)
	if key == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	outcome := OutcomeSuccess
	if res.Failed > 0 || res.Delayed > 0 {
		outcome = OutcomePartial
	}
	var errText, errKind *string
	if runErr != nil {
		f := failure.Classify(runErr)
		outcome, errText, errKind = OutcomeFailed, &f.Message, &f.Type
	}
	rep, err := json.Marshal(drainReport{Created: res.Created, Transitions: res.Transitions, Unchanged: res.Unchanged,
		Failed: res.Failed, Delayed: res.Delayed, RateLimited: res.RateLimited, CallsByOperation: stats.ByOp()})
	if err == nil {
		now := a.now().UTC()
		err = a.db.InOrg(ctx, in.OrgID, func(q *dbq.Queries) error {
			run, err := q.UpsertConnectorRun(ctx, dbq.UpsertConnectorRunParams{
				OrgID: in.OrgID, ConnectionID: in.ConnectionID, Kind: RunKindFindingPush, IdempotencyKey: key,
				WorkflowID: workflowID, RunID: runID, TriggeredBy: "findings",
			})
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("run key %q belongs to another connection or run kind", key)
			}
			if err != nil {
				return err
			}
			if run.Outcome != "running" {
				return nil // recorded by an earlier attempt whose completion was lost
			}
			_, err = q.FinishConnectorRun(ctx, dbq.FinishConnectorRunParams{
				ID: run.ID, Outcome: outcome, FinishedAt: &now, Error: errText, ErrorKind: errKind,
				JiraCalls: int32(stats.Total()), Report: pqtype.NullRawMessage{RawMessage: rep, Valid: true},
			})
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			return err
		})
	}
	if err != nil {
		a.logger(in.ConnectionRef).Error("record finding push run", slog.String("err", err.Error()))
	}
}

// drainer pushes one batch.
type drainer struct {
	a      *Activities
	ref    ConnectionRef
	cfg    findings.SyncConfig
	client *jira.Client
	log    *slog.Logger
	actor  audit.Actor

	// frameworkOptions caches, for one drain, the options Jira offers on the framework
	// multi-select (nil: not asked yet, or asking failed).
	frameworkOptions map[string]bool
	frameworkAsked   bool
}

// Phases of an item whose Jira call can fail.
const (
	phaseSearch     = "search"
	phaseCreate     = "create"
	phaseTransition = "transition"
)

// createRejectedPrefix starts the link error of a create that Jira definitely did not perform (it
// answered with a rejection, or nothing was sent). Such an intent is not ambiguous: the next
// attempt creates without searching first. Errors of the marker search do not carry it, because
// they say nothing about an earlier create.
const createRejectedPrefix = "issue create rejected: "

// createRejected reports whether a creating link's last create attempt was definitely rejected.
func createRejected(l dbq.FindingIssueLink) bool {
	return l.LastErrorKind != nil && l.LastError != nil && strings.HasPrefix(*l.LastError, createRejectedPrefix)
}

// itemOutcome is what happened to one queue item.
type itemOutcome struct {
	created, transitioned bool
	// result: "done" (processed and removed), "failed" (configuration error, removed), "delayed"
	// (put back with a later due time) or "left" (left due: the finding changed under us).
	result string
	// stop ends the batch (rate limited) until resumeAt.
	stop     bool
	resumeAt time.Time
}

// maxInlineRateLimitWait is the longest Retry-After a drain waits out itself before going on with
// its batch. Jira's burst limits answer with a second or two; going back to the workflow for each
// of those (a timer, a new activity, a new client) would cost more than the wait, and at a
// sustained rate limit would leave Jira's budget partly unused.
const maxInlineRateLimitWait = 2 * time.Second

func (d *drainer) run(ctx context.Context, batch int) (DrainResult, error) {
	var res DrainResult
	for handled := 0; handled < batch; {
		var items []dbq.DueQueueItemsAtRow
		err := d.a.db.InOrg(ctx, d.ref.OrgID, func(q *dbq.Queries) error {
			var err error
			items, err = q.DueQueueItemsAt(ctx, dbq.DueQueueItemsAtParams{ConnectionID: d.ref.ConnectionID, Now: d.a.now().UTC(), Batch: int32(batch - handled)})
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
		wait := resumeAt.Sub(d.a.now())
		if wait > maxInlineRateLimitWait {
			return res, nil
		}
		if err := pause(ctx, wait); err != nil {
			return res, err
		}
	}
	return res, nil
}

// pause waits d (heartbeating) or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	heartbeat(ctx, "waiting out Jira's Retry-After")
	t := time.NewTimer(d)
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
		heartbeat(ctx, fmt.Sprintf("finding %d of %d", i+1, len(items)))
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
		case "failed":
			res.Failed++
		case "delayed":
			res.Delayed++
		case "done":
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

// item processes one queue item. Jira failures become outcomes; the returned error is reserved for
// what must end the activity: revoked connection, re-authorization, Postgres, cancellation.
func (d *drainer) item(ctx context.Context, it dbq.DueQueueItemsAtRow) (itemOutcome, error) {
	var row dbq.Finding
	var link *dbq.FindingIssueLink
	gone := false
	err := d.a.db.InOrg(ctx, d.ref.OrgID, func(q *dbq.Queries) error {
		// Checked before each item, so that no Jira call follows a committed revoke for longer
		// than one item.
		if _, err := connections.RequireLive(ctx, q, d.ref.ConnectionID); err != nil {
			return err
		}
		var err error
		row, err = q.GetFinding(ctx, it.FindingID)
		if errors.Is(err, pgx.ErrNoRows) {
			gone = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("load finding %s: %w", it.FindingID, err)
		}
		l, err := q.GetLink(ctx, dbq.GetLinkParams{FindingID: it.FindingID, ConnectionID: d.ref.ConnectionID})
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("load link of finding %s: %w", it.FindingID, err)
		}
		link = &l
		return nil
	})
	if err != nil {
		return itemOutcome{}, err
	}
	if gone {
		return d.done(ctx, it, itemOutcome{})
	}
	f := findingOf(row)
	var out itemOutcome
	fresh := false
	if link == nil {
		if !d.cfg.Matches(f) {
			return d.done(ctx, it, out)
		}
		l, inserted, err := d.claimIntent(ctx, f.ID)
		if err != nil {
			return out, err
		}
		link, fresh = &l, inserted
	}
	if link.State == linkCreating {
		l, o, err := d.ensureIssue(ctx, it, f, *link, fresh)
		if err != nil || l == nil {
			return o, err
		}
		link, out.created = l, o.created
	}
	o, err := d.syncStatus(ctx, it, row, *link)
	o.created = out.created
	return o, err
}

// claimIntent records the create intent in its own committed transaction.
func (d *drainer) claimIntent(ctx context.Context, findingID uuid.UUID) (dbq.FindingIssueLink, bool, error) {
	var r dbq.ClaimLinkIntentRow
	err := d.a.db.InOrg(ctx, d.ref.OrgID, func(q *dbq.Queries) error {
		var err error
		r, err = q.ClaimLinkIntent(ctx, dbq.ClaimLinkIntentParams{
			OrgID: d.ref.OrgID, FindingID: findingID, ConnectionID: d.ref.ConnectionID, At: d.a.now().UTC(),
		})
		return err
	})
	if err != nil {
		return dbq.FindingIssueLink{}, false, fmt.Errorf("record create intent of finding %s: %w", findingID, err)
	}
	return dbq.FindingIssueLink{
		OrgID: r.OrgID, FindingID: r.FindingID, ConnectionID: r.ConnectionID, State: r.State, IssueID: r.IssueID,
		IssueKey: r.IssueKey, LastPushedStatus: r.LastPushedStatus, LastJiraStatus: r.LastJiraStatus,
		LastPushAt: r.LastPushAt, LastInboundAt: r.LastInboundAt, LastError: r.LastError, LastErrorKind: r.LastErrorKind,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}, r.Inserted, nil
}

// ensureIssue turns a "creating" link into a linked one: by finding the issue an earlier attempt
// created, or by creating it. A nil link means the item is finished for now (see the outcome).
func (d *drainer) ensureIssue(ctx context.Context, it dbq.DueQueueItemsAtRow, f findings.Finding, link dbq.FindingIssueLink, fresh bool) (*dbq.FindingIssueLink, itemOutcome, error) {
	// An intent that existed before this attempt is ambiguous unless its last create was
	// definitely rejected by Jira (recorded as the link's error; TouchLinkIntent clears it).
	if !fresh && !createRejected(link) {
		heartbeat(ctx, "search issue marker")
		found, err := d.findByMarker(ctx, f.ID)
		if err != nil {
			o, err := d.jiraFailure(ctx, it, f.ID, &link, phaseSearch, err)
			return nil, o, err
		}
		if found != nil {
			l, err := d.linkCreated(ctx, f.ID, found.ID, found.Key, statusName(found.Fields.Status), true)
			if err != nil {
				return nil, itemOutcome{}, err
			}
			return &l, itemOutcome{created: true}, nil
		}
		if until := link.UpdatedAt.Add(d.a.callTimeout + d.a.searchWindow); d.a.now().Before(until) {
			o, err := d.delay(ctx, it, until, "an earlier create request has no confirmed outcome; waiting for Jira's search to catch up")
			return nil, o, err
		}
	}
	if !d.cfg.Matches(f) {
		// No issue exists and the finding no longer wants one (it changed while its create was
		// pending): drop the intent instead of creating an issue nobody asked for.
		err := d.a.db.InOrg(ctx, d.ref.OrgID, func(q *dbq.Queries) error {
			_, err := q.DeleteLinkIntent(ctx, dbq.DeleteLinkIntentParams{FindingID: f.ID, ConnectionID: d.ref.ConnectionID})
			return err
		})
		if err != nil {
			return nil, itemOutcome{}, fmt.Errorf("drop create intent of finding %s: %w", f.ID, err)
		}
		o, err := d.done(ctx, it, itemOutcome{})
		return nil, o, err
	}
	in, err := findings.BuildIssue(scopeOf(d.ref), f, d.cfg)
	if err != nil {
		o, err := d.configFailure(ctx, it, f.ID, &link, phaseCreate, "config", fmt.Sprintf("build issue for finding %s: %v", f.ID, err))
		return nil, o, err
	}
	if !fresh {
		err := d.a.db.InOrg(ctx, d.ref.OrgID, func(q *dbq.Queries) error {
			_, err := q.TouchLinkIntent(ctx, dbq.TouchLinkIntentParams{At: d.a.now().UTC(), FindingID: f.ID, ConnectionID: d.ref.ConnectionID})
			return err
		})
		if err != nil {
			return nil, itemOutcome{}, fmt.Errorf("mark create attempt of finding %s: %w", f.ID, err)
		}
	}
	created, err := d.createIssue(ctx, f, in)
	if err != nil {
		o, err := d.jiraFailure(ctx, it, f.ID, &link, phaseCreate, err)
		return nil, o, err
	}
	// A new issue is in its workflow's initial status, which is of category "new". When the
	// finding's status maps to a status of that category, the issue counts as there without
	// asking (TransitionTo accepts a category match when the named status is not reachable), which
	// saves a GET per created issue; the first webhook or reconciliation records the real name.
	// Otherwise the status is left unknown and the status step below moves the issue.
	initial := ""
	if t := findings.OutboundTarget(d.cfg, f.Status); t.CategoryKey == findings.CategoryNew {
		initial = t.StatusName
	}
	l, err := d.linkCreated(ctx, f.ID, created.ID, created.Key, initial, false)
	if err != nil {
		// The issue exists but the link could not be stored; the intent stays, so the next attempt
		// finds the issue by its marker.
		return nil, itemOutcome{}, err
	}
	return &l, itemOutcome{created: true}, nil
}

// createIssue creates the finding's issue. When Jira rejects the create only because a framework
// reference is not an option of the framework multi-select, it is created again without the
// references Jira does not offer: a scanner that learns a new framework must not stop its findings
// from reaching Jira. The references stay in the labels and the description. A rejected create
// made nothing, so the second request cannot duplicate the issue.
func (d *drainer) createIssue(ctx context.Context, f findings.Finding, in jira.IssueInput) (*jira.CreatedIssue, error) {
	create := func() (*jira.CreatedIssue, error) {
		heartbeat(ctx, "create issue")
		callCtx, cancel := context.WithTimeout(ctx, d.a.callTimeout)
		defer cancel()
		return d.client.CreateIssue(callCtx, in)
	}
	created, err := create()
	var jerr *jira.Error
	field := d.cfg.FrameworkField
	if err == nil || field == "" || !errors.As(err, &jerr) || jerr.Status != http.StatusBadRequest || jerr.FieldErrors[field] == "" {
		return created, err
	}
	if !d.keepKnownFrameworkOptions(ctx, f, &in) {
		return nil, err
	}
	return create()
}

// keepKnownFrameworkOptions removes from in's framework field the references that are not among
// the field's options in Jira (read from createmeta once per drain) and reports whether it
// removed any. When the options cannot be read it changes nothing.
func (d *drainer) keepKnownFrameworkOptions(ctx context.Context, f findings.Finding, in *jira.IssueInput) bool {
	field := d.cfg.FrameworkField
	if !d.frameworkAsked {
		d.frameworkAsked = true
		heartbeat(ctx, "read framework field options")
		callCtx, cancel := context.WithTimeout(ctx, 2*d.a.callTimeout)
		rep, err := d.client.ValidateCreateConfig(callCtx, d.cfg.CreateCheck())
		cancel()
		switch {
		case err != nil:
			d.log.Warn("framework field options could not be read", slog.String("err", failure.Truncate(err.Error(), 300)))
		case rep.Fields[findings.RoleFrameworkRefs].FieldID != "":
			d.frameworkOptions = map[string]bool{}
			for _, v := range rep.Fields[findings.RoleFrameworkRefs].AllowedValues {
				d.frameworkOptions[v.Value] = true
			}
		}
	}
	if d.frameworkOptions == nil {
		return false
	}
	var kept, dropped []string
	for _, r := range f.FrameworkRefs {
		if d.frameworkOptions[r] {
			kept = append(kept, r)
		} else {
			dropped = append(dropped, r)
		}
	}
	if len(dropped) == 0 {
		return false
	}
	if len(kept) == 0 {
		delete(in.CustomFields, field)
	} else {
		in.CustomFields[field] = jira.MultiSelect(kept...)
	}
	d.log.Info("framework references that are not options of the framework field left out of it",
		slog.String("finding_id", f.ID.String()), slog.Any("references", dropped))
	return true
}

func statusName(s *jira.Status) string {
	if s == nil {
		return ""
	}
	return s.Name
}

// findByMarker searches the configured project for the finding's marker label and returns the
// oldest matching issue, or nil.
func (d *drainer) findByMarker(ctx context.Context, findingID uuid.UUID) (*jira.Issue, error) {
	marker := findings.IssueMarker(scopeOf(d.ref), findingID)
	q, err := jql.Query{Where: findings.MarkerQuery(d.cfg.ProjectKey, marker), OrderBy: []jql.Order{jql.Asc("created")}}.Build()
	if err != nil {
		return nil, &jira.Error{Kind: jira.KindConfig, Op: "search", Detail: "marker query: " + err.Error()}
	}
	callCtx, cancel := context.WithTimeout(ctx, d.a.callTimeout)
	defer cancel()
	page, err := d.client.Search(callCtx, jira.SearchRequest{JQL: q, Fields: []string{"status", "labels"}, MaxResults: maxMarkerMatches})
	if err != nil {
		return nil, err
	}
	var match []jira.Issue
	for _, is := range page.Issues {
		// Jira's label match is exact; the check guards against a search that ignores it.
		if is.ID != "" && is.Key != "" && slices.Contains(is.Fields.Labels, marker) {
			match = append(match, is)
		}
	}
	if len(match) == 0 {
		return nil, nil
	}
	if len(match) > 1 {
		keys := make([]string, len(match))
		for i, m := range match {
			keys[i] = m.Key
		}
		d.log.Warn("several issues carry one finding's marker; linking the oldest", slog.String("finding_id", findingID.String()),
			slog.Any("issue_keys", keys))
	}
	return &match[0], nil
}

// linkCreated stores the issue of a finding and audits it, in one transaction.
func (d *drainer) linkCreated(ctx context.Context, findingID uuid.UUID, issueID, issueKey, jiraStatus string, recovered bool) (dbq.FindingIssueLink, error) {
	var l dbq.FindingIssueLink
	err := d.a.db.InOrg(ctx, d.ref.OrgID, func(q *dbq.Queries) error {
		var err error
		l, err = q.SetLinkCreated(ctx, dbq.SetLinkCreatedParams{
			IssueID: &issueID, IssueKey: &issueKey, LastJiraStatus: strPtrOrNil(jiraStatus),
			FindingID: findingID, ConnectionID: d.ref.ConnectionID,
		})
		if err != nil {
			return fmt.Errorf("link finding %s to issue %s: %w", findingID, issueKey, err)
		}
		_, err = audit.Record(ctx, q, audit.Entry{
			OrgID: d.ref.OrgID, Actor: d.actor, Action: ActionIssueCreated, TargetType: "finding", TargetID: findingID.String(),
			Metadata: map[string]any{"connection_id": d.ref.ConnectionID.String(), "issue_key": issueKey, "issue_id": issueID,
				"found_by_marker": recovered},
		})
		return err
	})
	if err == nil {
		d.log.Info("finding linked to a Jira issue", slog.String("finding_id", findingID.String()), slog.String("issue_key", issueKey),
			slog.Bool("found_by_marker", recovered))
	}
	return l, err
}

// syncStatus transitions a linked issue when the finding's status asks for it, then removes the
// queue item.
func (d *drainer) syncStatus(ctx context.Context, it dbq.DueQueueItemsAtRow, row dbq.Finding, link dbq.FindingIssueLink) (itemOutcome, error) {
	f := findingOf(row)
	origin := findings.OriginPlatform
	if row.StatusSource == sourceJira {
		origin = findings.OriginJira
	}
	// The queue item is still here, so a push recorded by BeginLinkPush may not have happened
	// (interrupted, failed transiently): decide from the status Jira last confirmed, not from what
	// was being pushed. TransitionTo reads the real status before changing anything.
	ls := linkStateOf(link)
	ls.AwaitingEcho = false
	dec := findings.DecideOutbound(d.cfg, f.Status, origin, ls)
	switch dec.Outcome {
	case findings.OutboundTransition:
	case findings.OutboundUnmappedStatus:
		return d.configFailure(ctx, it, f.ID, &link, phaseTransition, "config", fmt.Sprintf("finding status %s has no Jira status in the status map", f.Status))
	default:
		return d.done(ctx, it, itemOutcome{})
	}
	key := deref(link.IssueKey)
	target := dec.Target.StatusName
	if target == "" {
		target = dec.Target.CategoryKey
	}

	// Record the push before the first call, unless the finding changed since it was loaded (an
	// inbound change applied meanwhile): then leave the item due and decide again next time. The
	// link row lock serialises this with ApplyJiraChanges.
	var before dbq.FindingIssueLink
	changed := false
	err := d.a.db.InOrg(ctx, d.ref.OrgID, func(q *dbq.Queries) error {
		var err error
		before, err = q.LockLink(ctx, dbq.LockLinkParams{FindingID: f.ID, ConnectionID: d.ref.ConnectionID})
		if err != nil {
			return fmt.Errorf("lock link of finding %s: %w", f.ID, err)
		}
		cur, err := q.GetFinding(ctx, f.ID)
		if err != nil {
			return fmt.Errorf("reload finding %s: %w", f.ID, err)
		}
		if cur.Status != row.Status || cur.StatusSource != row.StatusSource || !cur.StatusChangedAt.Equal(row.StatusChangedAt) {
			changed = true
			return nil
		}
		return q.BeginLinkPush(ctx, dbq.BeginLinkPushParams{PushedStatus: &target, At: ptr(d.a.now().UTC()), FindingID: f.ID, ConnectionID: d.ref.ConnectionID})
	})
	if err != nil {
		return itemOutcome{}, err
	}
	if changed {
		return itemOutcome{result: "left"}, nil
	}

	heartbeat(ctx, "transition issue")
	callCtx, cancel := context.WithTimeout(ctx, 2*d.a.callTimeout)
	res, err := d.client.MoveTo(callCtx, key, dec.Target, 0)
	cancel()
	if err != nil {
		f := failure.Classify(err)
		if f.Type == failure.TypeConfig {
			// Jira refused: nothing to wait for an echo of.
			if rerr := d.restorePush(ctx, before, nil); rerr != nil {
				return itemOutcome{}, rerr
			}
		}
		return d.jiraFailure(ctx, it, row.ID, &link, phaseTransition, err)
	}
	if !res.Changed {
		if unconfirmedPushOf(before, res.To) {
			// An earlier attempt pushed this very status and lost the answer (a dropped response,
			// a killed worker): Jira being there now is that push having landed, possibly through
			// intermediate hops whose reports are still on their way. Finish the push as of now,
			// after every hop, so those reports are recognised as its echo — restoring the state
			// from before that attempt would make them look like a person's changes.
			if err := d.finishPush(ctx, f.ID, res.To.Name); err != nil {
				return itemOutcome{}, err
			}
			return d.done(ctx, it, itemOutcome{})
		}
		if err := d.restorePush(ctx, before, &res.To.Name); err != nil {
			return itemOutcome{}, err
		}
		return d.done(ctx, it, itemOutcome{})
	}
	err = d.a.db.InOrg(ctx, d.ref.OrgID, func(q *dbq.Queries) error {
		if err := q.FinishLinkPush(ctx, dbq.FinishLinkPushParams{PushedStatus: &res.To.Name, At: ptr(d.a.now().UTC()), FindingID: f.ID, ConnectionID: d.ref.ConnectionID}); err != nil {
			return fmt.Errorf("record push of finding %s: %w", f.ID, err)
		}
		_, err := audit.Record(ctx, q, audit.Entry{
			OrgID: d.ref.OrgID, Actor: d.actor, Action: ActionPush, TargetType: "finding", TargetID: f.ID.String(),
			Metadata: map[string]any{"connection_id": d.ref.ConnectionID.String(), "issue_key": key, "finding_status": string(f.Status),
				"from": res.From.Name, "to": res.To.Name},
		})
		return err
	})
	if err != nil {
		return itemOutcome{}, err
	}
	d.log.Info("finding status pushed to Jira", slog.String("finding_id", f.ID.String()), slog.String("issue_key", key),
		slog.String("from", res.From.Name), slog.String("to", res.To.Name))
	return d.done(ctx, it, itemOutcome{transitioned: true})
}

// unconfirmedPushOf reports whether the link (as it was before this attempt's BeginLinkPush)
// awaits the echo of a push of status: an earlier attempt recorded the push and never saw it
// finish or come back.
func unconfirmedPushOf(before dbq.FindingIssueLink, status jira.Status) bool {
	if !awaitingEcho(before) {
		return false
	}
	pushed := *before.LastPushedStatus
	// The push names the status, or only its category when the status map gives no name.
	return findings.JiraStatus{Name: pushed}.Same(findings.JiraStatus{Name: status.Name}) ||
		(status.Category.Key != "" && strings.EqualFold(pushed, status.Category.Key))
}

// finishPush records that the issue is in status because of the connector's own push, as of now.
func (d *drainer) finishPush(ctx context.Context, findingID uuid.UUID, status string) error {
	return d.a.db.InOrg(ctx, d.ref.OrgID, func(q *dbq.Queries) error {
		if err := q.FinishLinkPush(ctx, dbq.FinishLinkPushParams{PushedStatus: &status, At: ptr(d.a.now().UTC()), FindingID: findingID, ConnectionID: d.ref.ConnectionID}); err != nil {
			return fmt.Errorf("record push of finding %s: %w", findingID, err)
		}
		return nil
	})
}

// restorePush undoes BeginLinkPush after a push that changed nothing (Jira was already there, or
// refused), so the link does not wait for an echo that will never come; observed is the status
// Jira was seen in, when known.
func (d *drainer) restorePush(ctx context.Context, before dbq.FindingIssueLink, observed *string) error {
	return d.a.db.InOrg(ctx, d.ref.OrgID, func(q *dbq.Queries) error {
		if err := q.RestoreLinkPush(ctx, dbq.RestoreLinkPushParams{
			PushedStatus: before.LastPushedStatus, PushAt: before.LastPushAt, FindingID: before.FindingID, ConnectionID: d.ref.ConnectionID,
		}); err != nil {
			return fmt.Errorf("restore push state of finding %s: %w", before.FindingID, err)
		}
		if observed == nil {
			return nil
		}
		return q.SetLinkJiraStatus(ctx, dbq.SetLinkJiraStatusParams{JiraStatus: observed, FindingID: before.FindingID, ConnectionID: d.ref.ConnectionID})
	})
}

// done removes the processed version of the queue item.
func (d *drainer) done(ctx context.Context, it dbq.DueQueueItemsAtRow, out itemOutcome) (itemOutcome, error) {
	err := d.a.db.InOrg(ctx, d.ref.OrgID, func(q *dbq.Queries) error {
		return q.DeleteQueueItem(ctx, dbq.DeleteQueueItemParams{ConnectionID: d.ref.ConnectionID, FindingID: it.FindingID, EnqueuedAt: it.EnqueuedAt})
	})
	if err != nil {
		return itemOutcome{}, fmt.Errorf("remove queue item of finding %s: %w", it.FindingID, err)
	}
	if out.result == "" {
		out.result = "done"
	}
	return out, nil
}

// delay puts the item back until the given time.
func (d *drainer) delay(ctx context.Context, it dbq.DueQueueItemsAtRow, until time.Time, reason string) (itemOutcome, error) {
	reason = failure.Truncate(reason, failure.MaxText)
	err := d.a.db.InOrg(ctx, d.ref.OrgID, func(q *dbq.Queries) error {
		return q.DelayQueueItem(ctx, dbq.DelayQueueItemParams{NotBefore: until.UTC(), LastError: &reason, ConnectionID: d.ref.ConnectionID, FindingID: it.FindingID})
	})
	if err != nil {
		return itemOutcome{}, fmt.Errorf("delay queue item of finding %s: %w", it.FindingID, err)
	}
	return itemOutcome{result: "delayed"}, nil
}

// jiraFailure handles a failed Jira call of an item by its kind (see DrainFindingQueue).
func (d *drainer) jiraFailure(ctx context.Context, it dbq.DueQueueItemsAtRow, findingID uuid.UUID, link *dbq.FindingIssueLink, phase string, err error) (itemOutcome, error) {
	if ctx.Err() != nil {
		return itemOutcome{}, err
	}
	f := failure.Classify(err)
	kind := string(jira.KindOf(err))
	log := d.log.With(slog.String("finding_id", findingID.String()), slog.String("kind", kind))
	switch f.Type {
	case failure.TypeReauthRequired:
		return itemOutcome{}, err
	case failure.TypeConfig:
		return d.configFailure(ctx, it, findingID, link, phase, kind, f.Message)
	case failure.TypeRateLimited:
		wait := jira.RetryDelay(err)
		if wait <= 0 {
			wait = defaultRateLimitDelay
		}
		// Jitter spreads the connections of one site (they share its limit) without leaving
		// much of the budget Jira just named unused.
		wait += rand.N(wait/5 + time.Millisecond)
		if phase == phaseCreate {
			// Jira answered 429/503: the create was not made, so the next attempt need not search.
			if err := d.setLinkError(ctx, findingID, kind, createRejectedPrefix+f.Message); err != nil {
				return itemOutcome{}, err
			}
		}
		log.Info("Jira rate-limited the finding push; stopping the batch", slog.Duration("retry_after", wait))
		until := d.a.now().Add(wait)
		o, err := d.delay(ctx, it, until, f.Message)
		if err != nil {
			return o, err
		}
		// The rest of the queue would be limited too: it waits as well, so the workflow sleeps
		// until NextDue instead of spending calls on more 429s.
		err = d.a.db.InOrg(ctx, d.ref.OrgID, func(q *dbq.Queries) error {
			_, err := q.DelayDueQueue(ctx, dbq.DelayDueQueueParams{Until: until.UTC(), ConnectionID: d.ref.ConnectionID})
			return err
		})
		if err != nil {
			return itemOutcome{}, fmt.Errorf("delay the finding queue: %w", err)
		}
		o.stop, o.resumeAt = true, until
		return o, nil
	}
	backoff := min(transientBackoffBase<<min(it.Attempts, 16), transientBackoffMax)
	backoff += rand.N(backoff/5 + 1)
	log.Info("finding push failed transiently; retrying later", slog.String("error", f.Message), slog.Duration("backoff", backoff))
	return d.delay(ctx, it, d.a.now().Add(backoff), f.Message)
}

// configFailure keeps a configuration error on the link and the connection, audits it and drops
// the item: it is retried when the configuration changes (EnqueueErroredLinks).
func (d *drainer) configFailure(ctx context.Context, it dbq.DueQueueItemsAtRow, findingID uuid.UUID, link *dbq.FindingIssueLink, phase, kind, msg string) (itemOutcome, error) {
	if phase == phaseCreate {
		msg = createRejectedPrefix + msg
	}
	msg = failure.Truncate(msg, failure.MaxText)
	err := d.a.db.InOrg(ctx, d.ref.OrgID, func(q *dbq.Queries) error {
		if link != nil {
			if err := q.SetLinkError(ctx, dbq.SetLinkErrorParams{LastError: &msg, LastErrorKind: &kind, FindingID: findingID, ConnectionID: d.ref.ConnectionID}); err != nil {
				return fmt.Errorf("record link error: %w", err)
			}
		}
		if err := q.SetFindingSyncError(ctx, dbq.SetFindingSyncErrorParams{ID: d.ref.ConnectionID, Error: &msg, ErrorKind: &kind, At: ptr(d.a.now().UTC())}); err != nil {
			return fmt.Errorf("record connection error: %w", err)
		}
		meta := map[string]any{"connection_id": d.ref.ConnectionID.String(), "error_kind": kind}
		if link != nil && link.IssueKey != nil {
			meta["issue_key"] = *link.IssueKey
		}
		if _, err := audit.Record(ctx, q, audit.Entry{
			OrgID: d.ref.OrgID, Actor: d.actor, Action: ActionPushFailed, TargetType: "finding", TargetID: findingID.String(), Metadata: meta,
		}); err != nil {
			return err
		}
		return q.DeleteQueueItem(ctx, dbq.DeleteQueueItemParams{ConnectionID: d.ref.ConnectionID, FindingID: it.FindingID, EnqueuedAt: it.EnqueuedAt})
	})
	if err != nil {
		return itemOutcome{}, fmt.Errorf("record push failure of finding %s: %w", findingID, err)
	}
	d.log.Warn("finding push failed; waiting for a configuration change", slog.String("finding_id", findingID.String()),
		slog.String("kind", kind), slog.String("error", msg))
	return itemOutcome{result: "failed"}, nil
}

func (d *drainer) setLinkError(ctx context.Context, findingID uuid.UUID, kind, msg string) error {
	msg = failure.Truncate(msg, failure.MaxText)
	err := d.a.db.InOrg(ctx, d.ref.OrgID, func(q *dbq.Queries) error {
		return q.SetLinkError(ctx, dbq.SetLinkErrorParams{LastError: &msg, LastErrorKind: &kind, FindingID: findingID, ConnectionID: d.ref.ConnectionID})
	})
	if err != nil {
		return fmt.Errorf("record link error of finding %s: %w", findingID, err)
	}
	return nil
}
