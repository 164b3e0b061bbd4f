package workflows

import (
	"slices"
	"time"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
)

// This file is the finding ⇄ issue half of the connection's state machine. Per-finding state lives
// in Postgres (finding_sync_queue, finding_issue_links, the webhook inbox in webhook_deliveries);
// the machine only knows that there is work — a flag for the outbound queue, a flag for the inbox,
// a bounded buffer of inbound issue changes signalled the old way, and the deadlines of
// reconciliation and webhook refresh — so its state is O(1) however many findings a connection has.
//
// The finding work runs in its own lane, next to the evidence sync: at most one finding activity
// is in flight, chosen by the machine, and a sync and a finding activity may run at the same time,
// so neither delays the other's deadlines (nor the stale detection, which needs no activity).

// Finding operations: which activity the finding lane runs (CmdStartFinding.Op).
const (
	FindingOpApply     = "apply"     // ApplyJiraChanges with the buffered inbound changes
	FindingOpInbox     = "inbox"     // ApplyInboxChanges: the pending changes of the webhook inbox
	FindingOpRegister  = "register"  // RegisterWebhooks
	FindingOpRefresh   = "refresh"   // RefreshWebhooks
	FindingOpReconcile = "reconcile" // ReconcileLinkedIssues
	FindingOpDrain     = "drain"     // DrainFindingQueue
)

// findingOpOrder is the lane's priority order. Inbound changes come first (the signalled buffer,
// then the webhook inbox): they are the freshest word on what a user did in Jira, and applying
// them before pushing makes the drain see them.
// One-shot operations (webhooks, reconciliation) come before the drain, which repeats while the
// queue has due items; the fairness rule in nextFindingOp keeps any of them from starving the
// others.
var findingOpOrder = []string{FindingOpApply, FindingOpInbox, FindingOpRegister, FindingOpReconcile, FindingOpDrain, FindingOpRefresh}

// Finding-sync defaults and bounds.
const (
	// DefaultReconcileInterval is how often linked issues are reconciled (and the queue drained
	// and the webhook inbox checked), so that a lost webhook, a lost findings-pending signal or a
	// lost inbox nudge converges within it.
	DefaultReconcileInterval = 15 * time.Minute
	// DefaultWebhookRefreshInterval is how often dynamic webhooks are refreshed: well before
	// Jira's 30-day expiry, so a few failed refreshes in a row still do not let them lapse.
	DefaultWebhookRefreshInterval = 7 * 24 * time.Hour
	// MaxInboundBuffer bounds the inbound changes buffered between two ApplyJiraChanges calls
	// (and carried across continue-as-new). On overflow the buffer is dropped and a
	// reconciliation is requested instead: it reads the same truth from Jira.
	MaxInboundBuffer = 100
	// findingBackoffBase and maxFindingBackoff bound the wait after a finding activity failed
	// for good (its own retries exhausted): 1m, 2m, 4m, … up to 15m, so a broken Jira is never
	// hammered and a recovered one is noticed quickly.
	findingBackoffBase = time.Minute
	maxFindingBackoff  = 15 * time.Minute
	// minQueueDelay is the shortest wait for a delayed queue item: a NextDue at or before the
	// workflow's time (clocks of workers and history differ slightly) must not become a loop of
	// drains that find nothing due.
	minQueueDelay = time.Second
	// noProgressDelay is the wait after a drain that reported due items but handled none.
	noProgressDelay = 30 * time.Second
	// webhookExpiryMargin: a refresh happens at least this long before the expiry Jira reported.
	webhookExpiryMargin = 24 * time.Hour
	// minWebhookRefresh guards against an expiry so close that the refresh would loop.
	minWebhookRefresh = time.Hour
)

// FindingCarried is the finding-sync part of the carried state: flags, timestamps, counters and
// the bounded inbound buffer — nothing per finding.
type FindingCarried struct {
	// FindingSync says the loaded configuration has finding sync on. Periodic work
	// (reconciliation, webhook refresh) only runs while it is; signalled work (a findings-pending
	// nudge, an inbound change) runs whenever the connection is active — the activities know
	// what to do with a connection whose finding sync is off.
	FindingSync bool `json:"finding_sync,omitempty"`

	// QueuePending says finding_sync_queue may have due items: set by findings-pending, by a
	// reconciliation tick and by a drain that left due items. Consumed when a drain starts.
	QueuePending bool `json:"queue_pending,omitempty"`
	// QueueNextDue is when the earliest delayed queue item becomes due (zero: none known).
	QueueNextDue time.Time `json:"queue_next_due,omitzero"`
	// DrainSeq numbers the connection's drains (activities.DrainInput.Seq: with the workflow id,
	// the idempotency key of the drain's connector run). It only grows, across runs.
	DrainSeq int64 `json:"drain_seq,omitempty"`

	// Inbound holds the issue changes received by signal (SignalJiraIssueChanged) and not yet
	// applied, in arrival order; at most MaxInboundBuffer.
	Inbound []findings.IssueChange `json:"inbound,omitempty"`
	// InboxPending says the webhook inbox may hold pending changes: set by an inbox nudge, by a
	// reconciliation tick (in runs with InboxChecks) and by an inbox pass that left changes
	// behind. Consumed when ApplyInboxChanges starts, so a nudge during the pass runs another.
	InboxPending bool `json:"inbox_pending,omitempty"`
	// InboxRetryAt is when to look at the inbox again after a pass that reported pending changes
	// but took none (zero: no such wait), so the lane never spins.
	InboxRetryAt time.Time `json:"inbox_retry_at,omitzero"`
	// ReconcileNeeded asks for a reconciliation at once (inbound changes were dropped).
	ReconcileNeeded bool `json:"reconcile_needed,omitempty"`
	// LastReconcileAt is when the last reconciliation started; the next is an interval later.
	LastReconcileAt time.Time `json:"last_reconcile_at,omitzero"`

	// WebhookRegisterPending asks for RegisterWebhooks: on a fresh start and whenever finding sync
	// is (re)configured, so each configuration is registered once.
	WebhookRegisterPending bool `json:"webhook_register_pending,omitempty"`
	// WebhooksAt is when the webhooks were last registered or refreshed; WebhooksExpireAt when
	// Jira said they expire (zero: unknown); WebhooksSkipped that the connection does not use
	// dynamic webhooks (nothing to refresh).
	WebhooksAt       time.Time `json:"webhooks_at,omitzero"`
	WebhooksExpireAt time.Time `json:"webhooks_expire_at,omitzero"`
	WebhooksSkipped  bool      `json:"webhooks_skipped,omitempty"`

	// FindingFailures counts consecutive failed queue operations (apply, inbox, reconcile, drain)
	// and FindingBackoffUntil holds them back after a failure; WebhookFailures and WebhookRetryAt
	// do the same for webhook registration and refresh, so a webhook problem never stops the queue.
	FindingFailures     int       `json:"finding_failures,omitempty"`
	FindingBackoffUntil time.Time `json:"finding_backoff_until,omitzero"`
	WebhookFailures     int       `json:"webhook_failures,omitempty"`
	WebhookRetryAt      time.Time `json:"webhook_retry_at,omitzero"`

	// FindingErrorType and FindingError are the last failure of a finding operation
	// (FindingErrorOp), kept until that operation succeeds (or re-authorization for
	// reauth_required). They are mirrored as the connection's last error when the sync has none.
	FindingErrorOp   string `json:"finding_error_op,omitempty"`
	FindingErrorType string `json:"finding_error_type,omitempty"`
	FindingError     string `json:"finding_error,omitempty"`
}

// Finding-sync events.
type (
	// FindingsPending is the findings-pending signal: the queue has work.
	FindingsPending struct{}
	// JiraIssueChanged is the jira-issue-changed signal.
	JiraIssueChanged struct{ Change findings.IssueChange }
	// InboxNudged is the inbox-nudge signal: the webhook inbox has new changes.
	InboxNudged struct{}
	// FindingFinished reports the end of the finding operation Op: its result, or an ErrorType and
	// Message when it failed for good.
	FindingFinished struct {
		Op string
		// Drain: Remaining due items, Handled items (created, transitioned, unchanged or failed),
		// NextDue the earliest delayed item (zero: none). Inbox: Remaining pending changes,
		// Handled changes taken off the inbox (applied, echoes, ignored or requeued).
		Remaining int
		Handled   int
		NextDue   time.Time
		// Webhooks: Skipped for connections without dynamic webhooks, ExpiresAt as Jira said.
		Skipped   bool
		ExpiresAt time.Time

		ErrorType string
		Message   string
	}
)

func (FindingsPending) isEvent()  {}
func (JiraIssueChanged) isEvent() {}
func (InboxNudged) isEvent()      {}
func (FindingFinished) isEvent()  {}

// Finding-sync commands.
type (
	// CmdStartFinding starts the finding activity Op without waiting for it; its end comes back as
	// FindingFinished. Changes is the batch for FindingOpApply, Seq the number of a drain.
	CmdStartFinding struct {
		Op      string
		Changes []findings.IssueChange
		Seq     int64
	}
	// CmdCancelFinding cancels the finding activity in flight and waits until it has stopped.
	CmdCancelFinding struct{}
)

func (CmdStartFinding) isCommand()  {}
func (CmdCancelFinding) isCommand() {}

// issueChanged buffers an inbound change, or trades the whole buffer for a reconciliation when it
// is full. A change without an issue id cannot be applied and is ignored.
func (st *step) issueChanged(c findings.IssueChange) {
	s := &st.s
	if c.IssueID == "" {
		return
	}
	if len(s.Inbound) >= MaxInboundBuffer {
		s.Inbound = nil
		s.ReconcileNeeded = true
		return
	}
	// Clip: never write into a backing array an earlier State value shares.
	s.Inbound = append(slices.Clip(s.Inbound), c)
}

// requeueChanges puts the changes of a failed apply back before those received since, within
// the buffer's bound (beyond it, reconciliation takes over as for any overflow).
func (st *step) requeueChanges(batch []findings.IssueChange) {
	s := &st.s
	if len(batch)+len(s.Inbound) > MaxInboundBuffer {
		s.Inbound, s.ReconcileNeeded = nil, true
		return
	}
	s.Inbound = append(slices.Clip(batch), s.Inbound...)
}

// loadedFindings applies the finding-sync part of a loaded configuration. first is the first
// load of a fresh workflow, reload a load asked for by config-changed.
func (st *step) loadedFindings(snap activities.ConnectionSnapshot, first, reload bool) {
	s := &st.s
	was := s.FindingSync
	s.FindingSync = snap.FindingSync
	switch {
	case s.FindingSync && (first || reload || !was):
		// (Re)configured: register the webhooks for this configuration, and drain, since
		// nudges may have been lost while the workflow was not running or the mapping changed.
		s.WebhookRegisterPending = true
		s.QueuePending = true
	case !s.FindingSync && was:
		// Turned off: RegisterWebhooks for a connection without finding sync removes what it
		// registered (or reports Skipped).
		s.WebhookRegisterPending = true
	}
	if reload {
		// A new configuration is the first reason to expect a different answer.
		st.clearFindingBackoff()
	}
}

func (st *step) clearFindingBackoff() {
	s := &st.s
	s.FindingFailures, s.FindingBackoffUntil = 0, time.Time{}
	s.WebhookFailures, s.WebhookRetryAt = 0, time.Time{}
}

// reauthorizeFindings: new credentials; what failed on the old ones is tried at once.
func (st *step) reauthorizeFindings() {
	st.clearFindingBackoff()
	if st.s.FindingErrorType == failure.TypeReauthRequired {
		st.clearFindingError()
	}
}

func (st *step) clearFindingError() {
	s := &st.s
	if s.FindingErrorType != "" {
		s.FindingErrorOp, s.FindingErrorType, s.FindingError = "", "", ""
		st.mirror = true
	}
}

// findingFinished applies the end of the finding operation in flight.
func (st *step) findingFinished(e FindingFinished) {
	s := &st.s
	s.FindingRunning = ""
	s.LastFindingOp = e.Op
	defer func() { st.s.Applying = nil }()
	if e.ErrorType != "" {
		st.findingFailed(e)
		return
	}
	if s.FindingErrorOp == e.Op {
		st.clearFindingError()
	}
	switch e.Op {
	case FindingOpRegister, FindingOpRefresh:
		s.WebhookFailures, s.WebhookRetryAt = 0, time.Time{}
		s.WebhooksAt, s.WebhooksExpireAt, s.WebhooksSkipped = st.now, e.ExpiresAt, e.Skipped
	default:
		s.FindingFailures, s.FindingBackoffUntil = 0, time.Time{}
	}
	if e.Op == FindingOpInbox {
		st.inboxFinished(e)
		return
	}
	if e.Op != FindingOpDrain {
		return
	}
	s.QueueNextDue = time.Time{}
	if !e.NextDue.IsZero() {
		s.QueueNextDue = later(e.NextDue, st.now.Add(minQueueDelay))
	}
	if e.Remaining > 0 {
		if e.Handled > 0 {
			s.QueuePending = true
		} else if next := st.now.Add(noProgressDelay); s.QueueNextDue.IsZero() || next.Before(s.QueueNextDue) {
			// Due items the drain did not get to (e.g. locked by another transaction): try
			// again shortly rather than at once, so the lane never spins.
			s.QueueNextDue = next
		}
	}
}

// inboxFinished: a pass that left changes behind asks for the next one at once — or, if it took
// none (they committed after it read the inbox), shortly, so the lane never spins.
func (st *step) inboxFinished(e FindingFinished) {
	s := &st.s
	s.InboxRetryAt = time.Time{}
	switch {
	case e.Remaining <= 0:
	case e.Handled > 0:
		s.InboxPending = true
	default:
		s.InboxRetryAt = st.now.Add(noProgressDelay)
	}
}

// findingFailed: the operation failed for good. What it was meant to do is asked for again, and
// the lane backs off; reauth_required is the sync's needs_reauth wait, revoked is handled by Step.
func (st *step) findingFailed(e FindingFinished) {
	s := &st.s
	webhook := e.Op == FindingOpRegister || e.Op == FindingOpRefresh
	// What the operation consumed when it started is wanted again.
	switch e.Op {
	case FindingOpApply:
		if e.ErrorType == failure.TypeInvalidInput {
			// The batch itself is refused: reconciliation reads the same truth from Jira.
			s.ReconcileNeeded = true
		} else {
			st.requeueChanges(s.Applying)
		}
	case FindingOpInbox:
		s.InboxPending = true
	case FindingOpReconcile:
		s.ReconcileNeeded = true
	case FindingOpDrain:
		s.QueuePending = true
	case FindingOpRegister:
		s.WebhookRegisterPending = true
	}
	s.FindingErrorOp, s.FindingErrorType, s.FindingError = e.Op, e.ErrorType, truncate(e.Message)
	st.mirror = true
	switch e.ErrorType {
	case failure.TypeReauthRequired:
		// The same wait as a sync's: no Jira-calling work until re-authorization. The queue and
		// the flags stay, so everything resumes then.
		if s.Status == StatusActive {
			s.Status = StatusNeedsReauth
			st.actions = append(st.actions, ActionNeedsReauth)
		}
		return
	case failure.TypeConfig, failure.TypeInvalidInput:
		// Not retried in a loop: tried again after a reconciliation interval (as a permission
		// fixed on the Jira side is picked up) or at once when the configuration changes.
		if webhook {
			s.WebhookRetryAt = st.now.Add(s.reconcileInterval())
		} else {
			s.FindingBackoffUntil = st.now.Add(s.reconcileInterval())
		}
		return
	}
	// rate_limited, transient, or anything unknown, after the activity's own retries.
	if webhook {
		s.WebhookFailures++
		s.WebhookRetryAt = st.now.Add(findingBackoff(s.WebhookFailures))
	} else {
		s.FindingFailures++
		s.FindingBackoffUntil = st.now.Add(findingBackoff(s.FindingFailures))
	}
}

// findingBackoff is the wait after n consecutive failures.
func findingBackoff(n int) time.Duration {
	d := findingBackoffBase
	for i := 1; i < n && d < maxFindingBackoff; i++ {
		d *= 2
	}
	return min(d, maxFindingBackoff)
}

// settleFindings starts the finding operation that is due, if the lane is free, and computes when
// the next one is (NextFindingAt).
func (st *step) settleFindings() {
	s := &st.s
	s.NextFindingAt = time.Time{}
	if !s.findingStartable() {
		return
	}
	op, wake := s.nextFindingOp(st.now)
	if op == "" {
		s.NextFindingAt = wake
		return
	}
	cmd := CmdStartFinding{Op: op}
	switch op {
	case FindingOpApply:
		cmd.Changes, s.Applying, s.Inbound = s.Inbound, s.Inbound, nil
	case FindingOpInbox:
		s.InboxPending, s.InboxRetryAt = false, time.Time{}
	case FindingOpRegister:
		s.WebhookRegisterPending = false
	case FindingOpReconcile:
		// Each reconciliation tick also drains: a lost findings-pending nudge converges too.
		s.LastReconcileAt, s.ReconcileNeeded, s.QueuePending = st.now, false, true
		if s.InboxChecks {
			// And looks at the webhook inbox: a lost inbox nudge converges too.
			s.InboxPending = true
		}
	case FindingOpDrain:
		s.QueuePending, s.QueueNextDue = false, time.Time{}
		s.DrainSeq++
		cmd.Seq = s.DrainSeq
	}
	s.FindingRunning = op
	st.startFinding = &cmd
}

// findingStartable: configuration known, active, lane free, not preparing to continue as new.
func (s State) findingStartable() bool {
	return s.Loaded && s.Status == StatusActive && s.FindingRunning == "" && !s.Draining && !s.Ended
}

// nextFindingOp returns the operation to start at now, or "" and when the earliest one is due
// (zero: nothing wanted). Among the due operations the first in findingOpOrder wins, except that
// the operation that ran last yields to any other due one: nothing starves, even a queue that
// stays non-empty for hours.
func (s State) nextFindingOp(now time.Time) (string, time.Time) {
	var due []string
	var wake time.Time
	for _, op := range findingOpOrder {
		at, ok := s.findingReadyAt(op)
		switch {
		case !ok:
		case !at.After(now):
			due = append(due, op)
		case wake.IsZero() || at.Before(wake):
			wake = at
		}
	}
	switch {
	case len(due) == 0:
		return "", wake
	case due[0] == s.LastFindingOp && len(due) > 1:
		return due[1], time.Time{}
	}
	return due[0], time.Time{}
}

// findingReadyAt says whether op is wanted and from when (zero: at once).
func (s State) findingReadyAt(op string) (time.Time, bool) {
	switch op {
	case FindingOpApply:
		return s.FindingBackoffUntil, len(s.Inbound) > 0
	case FindingOpInbox:
		switch {
		case s.InboxPending:
			return s.FindingBackoffUntil, true
		case !s.InboxRetryAt.IsZero():
			return later(s.InboxRetryAt, s.FindingBackoffUntil), true
		}
		return time.Time{}, false
	case FindingOpRegister:
		return s.WebhookRetryAt, s.WebhookRegisterPending
	case FindingOpRefresh:
		if !s.FindingSync || s.WebhookRegisterPending || s.WebhooksAt.IsZero() || s.WebhooksSkipped {
			return time.Time{}, false
		}
		return later(s.webhookRefreshDue(), s.WebhookRetryAt), true
	case FindingOpReconcile:
		if !s.FindingSync {
			return time.Time{}, false
		}
		var at time.Time
		if !s.ReconcileNeeded && !s.LastReconcileAt.IsZero() {
			at = s.LastReconcileAt.Add(s.reconcileInterval())
		}
		return later(at, s.FindingBackoffUntil), true
	case FindingOpDrain:
		switch {
		case s.QueuePending:
			return s.FindingBackoffUntil, true
		case !s.QueueNextDue.IsZero():
			return later(s.QueueNextDue, s.FindingBackoffUntil), true
		}
	}
	return time.Time{}, false
}

// webhookRefreshDue is a refresh interval after the last registration or refresh, earlier if Jira
// said the webhooks expire sooner.
func (s State) webhookRefreshDue() time.Time {
	due := s.WebhooksAt.Add(s.webhookRefreshInterval())
	if !s.WebhooksExpireAt.IsZero() {
		if byExpiry := s.WebhooksExpireAt.Add(-webhookExpiryMargin); byExpiry.Before(due) {
			due = later(byExpiry, s.WebhooksAt.Add(minWebhookRefresh))
		}
	}
	return due
}

func (s State) reconcileInterval() time.Duration {
	if s.ReconcileInterval > 0 {
		return s.ReconcileInterval
	}
	return DefaultReconcileInterval
}

func (s State) webhookRefreshInterval() time.Duration {
	if s.WebhookRefreshInterval > 0 {
		return s.WebhookRefreshInterval
	}
	return DefaultWebhookRefreshInterval
}

// later returns the later of two times (a zero time is the earliest).
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
