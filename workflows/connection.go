// Package workflows holds jiraconnect's Temporal workflows and the pure state machines they
// drive. Everything here is deterministic: no I/O, no wall clock, no randomness, no goroutines —
// only workflow APIs. The world is touched through activities (package activities).
package workflows

import (
	"errors"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
)

// TaskQueue is where connection workflows and their activities run.
const TaskQueue = "jira-connections"

// WorkflowIDPrefix prefixes every connection workflow id (connections owns it: the id is stored
// with the connection).
const WorkflowIDPrefix = connections.WorkflowIDPrefix

// WorkflowID is the stable id of a connection's workflow (connections.WorkflowID).
func WorkflowID(connectionID uuid.UUID) string { return connections.WorkflowID(connectionID) }

// Search attributes that let operators filter connection workflows in the Temporal UI.
var (
	AttrOrgID            = temporal.NewSearchAttributeKeyKeyword("JiraConnectOrgId")
	AttrConnectionStatus = temporal.NewSearchAttributeKeyKeyword("JiraConnectionStatus")
	AttrStale            = temporal.NewSearchAttributeKeyBool("JiraConnectionStale")
	AttrNeedsReauth      = temporal.NewSearchAttributeKeyBool("JiraConnectionNeedsReauth")
)

// Names of the workflow's message handlers, shared with the API.
const (
	// QueryState returns a ConnectionState.
	QueryState = "state"
	// UpdateSyncNow requests a sync and returns its sequence number (int64) as soon as it is
	// queued; the sync itself is followed through the connection's runs. Rejected unless the
	// connection is active.
	UpdateSyncNow = "sync-now"
	// UpdateTest runs the connection test and returns a connections.TestResult. Accepted while
	// the connection is active or needs re-authorization.
	UpdateTest = "test"
	// UpdateReauthorized is sent by the API after it stored new credentials: the connection
	// becomes active and syncs at once. Returns when the new status is stored. Rejected once
	// revoked.
	UpdateReauthorized = "reauthorized"
	// UpdateRevoke takes a RevokeRequest, stops any sync, runs the revoke cleanup and returns
	// when the cleanup is done; the workflow then ends.
	UpdateRevoke = "revoke"
	// SignalRevoke is the fire-and-forget form of UpdateRevoke (optional RevokeRequest payload),
	// for callers that cannot wait, such as an operator with the Temporal CLI.
	SignalRevoke = "revoke-signal"
	// SignalConfigChanged is sent by the API after it stored a new configuration: the workflow
	// reloads it and recomputes its deadlines. No payload.
	SignalConfigChanged = "config-changed"
)

// DefaultMaxSyncsPerRun bounds the syncs of one run before it continues as new, in case the
// server's history-size suggestion never comes (about 100 days at the default cadence).
const DefaultMaxSyncsPerRun = 100

// DefaultMaxFindingOpsPerRun bounds the finding activities of one run the same way. Each adds
// about half a dozen events, so a run stays far below Temporal's history limits even while a
// queue of 10,000 findings drains (400 batches of 25, spread over several runs).
const DefaultMaxFindingOpsPerRun = 300

// ConnectionInput starts a connection workflow. It carries ids only — never a credential: the
// activities load and unseal credentials themselves, so no secret enters workflow history.
type ConnectionInput struct {
	OrgID        uuid.UUID `json:"org_id"`
	ConnectionID uuid.UUID `json:"connection_id"`
	// MaxSyncsPerRun makes the run continue as new after that many syncs (0:
	// DefaultMaxSyncsPerRun).
	MaxSyncsPerRun int `json:"max_syncs_per_run,omitempty"`
	// MaxFindingOpsPerRun makes the run continue as new after that many finding activities (0:
	// DefaultMaxFindingOpsPerRun).
	MaxFindingOpsPerRun int `json:"max_finding_ops_per_run,omitempty"`
	// ReconcileInterval is the period of reconciliation (0: DefaultReconcileInterval) and
	// WebhookRefreshInterval that of the dynamic webhook refresh (0:
	// DefaultWebhookRefreshInterval). Tests and operators may shorten them.
	ReconcileInterval      time.Duration `json:"reconcile_interval,omitempty"`
	WebhookRefreshInterval time.Duration `json:"webhook_refresh_interval,omitempty"`
	// Carried is the previous run's state when the workflow continued as new; nil for a new
	// connection.
	Carried *Carried `json:"carried,omitempty"`
}

// RevokeRequest says who revoked the connection, for the audit row.
type RevokeRequest struct {
	ActorType string `json:"actor_type"`
	ActorID   string `json:"actor_id"`
}

// ConnectionState is what the state query returns.
type ConnectionState struct {
	OrgID        uuid.UUID `json:"org_id"`
	ConnectionID uuid.UUID `json:"connection_id"`
	Status       string    `json:"status"`
	Stale        bool      `json:"stale"`
	// Initialized: the stored connection has been loaded (in this run or one it continued from).
	// A fresh workflow hands out its final sync numbers only from then on: a sync requested
	// before is renumbered after the connection's stored runs (see resume in machine.go).
	Initialized bool `json:"initialized"`
	// LastSuccessAt is when the last successful sync completed; LastSyncAt when the last sync
	// (of any outcome) started.
	LastSuccessAt *time.Time `json:"last_success_at,omitempty"`
	LastSyncAt    *time.Time `json:"last_sync_at,omitempty"`
	// NextSyncAt is when the next sync is due (absent while one runs or while no sync may run);
	// StaleAt when the connection turns stale without a successful sync (absent once stale).
	NextSyncAt *time.Time `json:"next_sync_at,omitempty"`
	StaleAt    *time.Time `json:"stale_at,omitempty"`
	// Seq is the highest sync sequence number handed out; PendingSyncSeq a requested sync that
	// has not started (0: none); RunningSyncSeq the sync in flight (0: none).
	Seq            int64         `json:"seq"`
	PendingSyncSeq int64         `json:"pending_sync_seq,omitempty"`
	SyncInProgress bool          `json:"sync_in_progress"`
	RunningSyncSeq int64         `json:"running_sync_seq,omitempty"`
	LastOutcome    string        `json:"last_outcome,omitempty"`
	LastErrorType  string        `json:"last_error_type,omitempty"`
	LastError      string        `json:"last_error,omitempty"`
	SyncCadence    time.Duration `json:"sync_cadence"`
	StaleThreshold time.Duration `json:"stale_threshold"`

	// Finding sync: whether it is configured, the work the workflow knows of (ids and counts
	// only), the finding activity in flight, its deadlines and its last error.
	FindingSync            bool       `json:"finding_sync"`
	FindingQueuePending    bool       `json:"finding_queue_pending"`
	FindingQueueNextDue    *time.Time `json:"finding_queue_next_due,omitempty"`
	PendingInboundChanges  int        `json:"pending_inbound_changes"`
	InboxPending           bool       `json:"inbox_pending"`
	ReconcileNeeded        bool       `json:"reconcile_needed"`
	FindingOpInProgress    string     `json:"finding_op_in_progress,omitempty"`
	NextFindingOpAt        *time.Time `json:"next_finding_op_at,omitempty"`
	LastReconcileAt        *time.Time `json:"last_reconcile_at,omitempty"`
	WebhookRegisterPending bool       `json:"webhook_register_pending"`
	WebhooksRefreshedAt    *time.Time `json:"webhooks_refreshed_at,omitempty"`
	WebhooksSkipped        bool       `json:"webhooks_skipped"`
	FindingBackoffUntil    *time.Time `json:"finding_backoff_until,omitempty"`
	FindingErrorOp         string     `json:"finding_error_op,omitempty"`
	FindingErrorType       string     `json:"finding_error_type,omitempty"`
	FindingError           string     `json:"finding_error,omitempty"`
}

// stateView is the query's answer for s.
func stateView(s State) ConnectionState {
	return ConnectionState{
		OrgID: s.OrgID, ConnectionID: s.ConnectionID, Status: s.Status, Stale: s.Stale, Initialized: s.Initialized,
		LastSuccessAt: timePtr(s.LastSuccessAt), LastSyncAt: timePtr(s.LastAttemptAt),
		NextSyncAt: timePtr(s.NextSyncAt), StaleAt: timePtr(s.StaleAt),
		Seq: s.Seq, PendingSyncSeq: s.PendingSeq, SyncInProgress: s.RunningSeq != 0, RunningSyncSeq: s.RunningSeq,
		LastOutcome: s.LastOutcome, LastErrorType: s.LastErrorType, LastError: s.LastError,
		SyncCadence: s.SyncCadence, StaleThreshold: s.StaleThreshold,

		FindingSync: s.FindingSync, FindingQueuePending: s.QueuePending, FindingQueueNextDue: timePtr(s.QueueNextDue),
		PendingInboundChanges: len(s.Inbound), InboxPending: s.InboxPending, ReconcileNeeded: s.ReconcileNeeded,
		FindingOpInProgress: s.FindingRunning, NextFindingOpAt: timePtr(s.NextFindingAt),
		LastReconcileAt: timePtr(s.LastReconcileAt), WebhookRegisterPending: s.WebhookRegisterPending,
		WebhooksRefreshedAt: timePtr(s.WebhooksAt), WebhooksSkipped: s.WebhooksSkipped,
		FindingBackoffUntil: timePtr(s.FindingBackoffUntil),
		FindingErrorOp:      s.FindingErrorOp, FindingErrorType: s.FindingErrorType, FindingError: s.FindingError,
	}
}

// ConnectionWorkflow is the long-lived workflow of one Jira connection: it owns the sync
// schedule, stale detection, re-authorization waits, revocation and the finding ⇄ issue sync
// (see Step for the rules).
//
// It is a thin loop around the state machine: every event (timer, sync or finding activity
// result, signal, update, loaded configuration) goes through Step with the workflow's time, and
// the returned commands are executed in order. Only the evidence sync and the one finding
// activity the machine allows at a time run concurrently with the loop, so updates and signals are
// answered while Jira is slow and neither lane waits for the other; the Postgres-only activities
// run one at a time, which keeps the stored state in the order the machine decided it.
func ConnectionWorkflow(ctx workflow.Context, in ConnectionInput) error {
	if in.OrgID == uuid.Nil || in.ConnectionID == uuid.Nil {
		return temporal.NewNonRetryableApplicationError("connection workflow needs org and connection ids", "invalid_input", nil)
	}
	r := newRunner(ctx, in)
	if err := r.register(); err != nil {
		return err
	}
	return r.run()
}

// acts is only used for method references: the worker registers the real *Activities, and the
// SDK derives each activity's name from the method.
var acts *activities.Activities

// runner is one run of ConnectionWorkflow.
type runner struct {
	ctx        workflow.Context
	loopCtx    workflow.Context // canceled when the connection is revoked, to stop work in flight
	cancelLoop workflow.CancelFunc
	in         ConnectionInput
	s          State
	log        log.Logger

	// queue holds commands not yet executed. Each gets a ticket; done is the highest ticket
	// executed (or dropped), so a handler can wait for its own effects.
	queue        []ticketed
	issued, done int64

	sync       workflow.Future
	syncSeq    int64
	cancelSync workflow.CancelFunc

	finding       workflow.Future
	findingOp     string
	cancelFinding workflow.CancelFunc

	timer       workflow.Future
	timerAt     time.Time
	cancelTimer workflow.CancelFunc

	configCh, revokeCh         workflow.ReceiveChannel
	findingsPendingCh, issueCh workflow.ReceiveChannel
	inboxCh                    workflow.ReceiveChannel

	syncsThisRun      int
	findingOpsThisRun int
	canceled          bool  // the workflow itself was canceled (revoke by cancellation)
	revokeDone        bool  // the revoke cleanup ran
	revokeErr         error // and failed
	ended             bool  // CmdEnd ran
	failErr           error
	// localBook runs the Postgres-only bookkeeping activities as local activities (see
	// localBookkeepingChangeID).
	localBook bool
}

type ticketed struct {
	ticket int64
	cmd    Command
}

// inboxChangeID names the workflow change that made reconciliation ticks check the webhook inbox
// (ApplyInboxChanges). Histories recorded before it replay with workflow.DefaultVersion and so
// without those checks; every run started since records version 1.
const inboxChangeID = "webhook-inbox"

// staleFloorChangeID names the workflow change that raises a stored stale threshold below the
// schedule rule's floor to the floor (State.StaleFloor). Histories recorded before it replay with
// workflow.DefaultVersion and their stored thresholds.
const staleFloorChangeID = "stale-floor"

// localBookkeepingChangeID names the workflow change that runs the Postgres-only bookkeeping
// activities (load, state mirror, alerts, failure records) as local activities: they take a few
// milliseconds, so scheduling each through the server's task queue cost more than the work — an
// extra workflow task, three history events and a matching round trip after every sync. A local
// activity runs inside the workflow task that asked for it and leaves one marker. Histories
// recorded before the change replay with workflow.DefaultVersion, as regular activities.
const localBookkeepingChangeID = "local-bookkeeping"

func newRunner(ctx workflow.Context, in ConnectionInput) *runner {
	loopCtx, cancel := workflow.WithCancel(ctx)
	s := NewState(in.OrgID, in.ConnectionID, in.Carried)
	s.ReconcileInterval, s.WebhookRefreshInterval = in.ReconcileInterval, in.WebhookRefreshInterval
	s.InboxChecks = workflow.GetVersion(ctx, inboxChangeID, workflow.DefaultVersion, 1) >= 1
	s.StaleFloor = workflow.GetVersion(ctx, staleFloorChangeID, workflow.DefaultVersion, 1) >= 1
	return &runner{
		ctx: ctx, loopCtx: loopCtx, cancelLoop: cancel, in: in,
		s:                 s,
		localBook:         workflow.GetVersion(ctx, localBookkeepingChangeID, workflow.DefaultVersion, 1) >= 1,
		log:               workflow.GetLogger(ctx),
		configCh:          workflow.GetSignalChannel(ctx, SignalConfigChanged),
		revokeCh:          workflow.GetSignalChannel(ctx, SignalRevoke),
		findingsPendingCh: workflow.GetSignalChannel(ctx, SignalFindingsPending),
		issueCh:           workflow.GetSignalChannel(ctx, SignalJiraIssueChanged),
		inboxCh:           workflow.GetSignalChannel(ctx, SignalInboxNudge),
	}
}

// register installs the query and update handlers before anything can block, so no message
// arriving with the first workflow task is refused.
func (r *runner) register() error {
	if err := workflow.SetQueryHandler(r.ctx, QueryState, func() (ConnectionState, error) {
		return stateView(r.s), nil
	}); err != nil {
		return err
	}
	handlers := []struct {
		name      string
		handler   any
		validator any
	}{
		{UpdateSyncNow, r.syncNow, func() error { return rejection(r.s.CanSyncNow()) }},
		{UpdateTest, r.test, func() error { return rejection(r.s.CanTest()) }},
		{UpdateReauthorized, r.reauthorized, func() error { return rejection(r.s.CanReauthorize()) }},
		// A repeated revoke is accepted and answered when the first one's cleanup is done.
		{UpdateRevoke, r.revoke, func(RevokeRequest) error { return nil }},
	}
	for _, h := range handlers {
		if err := workflow.SetUpdateHandlerWithOptions(r.ctx, h.name, h.handler,
			workflow.UpdateHandlerOptions{Validator: h.validator}); err != nil {
			return err
		}
	}
	return nil
}

// rejection turns a machine's refusal into the application error the API reports as 409.
func rejection(err error) error {
	if err == nil {
		return nil
	}
	return temporal.NewApplicationError(err.Error(), "rejected")
}

func (r *runner) syncNow(workflow.Context) (int64, error) {
	r.apply(SyncNowRequested{})
	// The request either became (or joined) the pending sync, or started at once.
	if r.s.PendingSeq != 0 {
		return r.s.PendingSeq, nil
	}
	return r.s.RunningSeq, nil
}

func (r *runner) test(ctx workflow.Context) (activities.TestResult, error) {
	var res activities.TestResult
	// loopCtx: a revoke cancels a test in flight.
	actx := workflow.WithActivityOptions(r.loopCtx, testOptions())
	err := workflow.ExecuteActivity(actx, acts.TestConnection, r.ref()).Get(ctx, &res)
	return res, err
}

func (r *runner) reauthorized(ctx workflow.Context) error {
	ticket := r.apply(Reauthorized{})
	return workflow.Await(ctx, func() bool { return r.done >= ticket || r.ended })
}

func (r *runner) revoke(ctx workflow.Context, req RevokeRequest) error {
	r.apply(revokeEvent(req, "api"))
	// The answer must wait for the cleanup even if the workflow is being canceled meanwhile.
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	if err := workflow.Await(dctx, func() bool { return r.revokeDone || r.ended }); err != nil {
		return err
	}
	if !r.revokeDone && r.failErr != nil {
		// The workflow is failing for another reason and cleaned nothing up; saying so lets the
		// API, which finds no workflow on its retry, run the cleanup itself.
		return temporal.NewApplicationError("the connection workflow stopped before it could revoke", "not_revoked")
	}
	return r.revokeErr
}

func revokeEvent(req RevokeRequest, defaultActor string) RevokeRequested {
	if req.ActorType == "" {
		req.ActorType, req.ActorID = "system", defaultActor
	}
	return RevokeRequested(req)
}

func (r *runner) ref() activities.ConnectionRef {
	return activities.ConnectionRef{OrgID: r.in.OrgID, ConnectionID: r.in.ConnectionID}
}

// apply feeds ev to the machine and queues its commands; it returns the ticket of the last one.
func (r *runner) apply(ev Event) int64 {
	wasEnded := r.s.Ended
	var cmds []Command
	r.s, cmds = Step(r.s, ev, workflow.Now(r.ctx))
	if r.s.Ended && !wasEnded {
		// What was queued is obsolete once the connection is revoked, and whatever is in flight
		// (a sync, a mirror, a test) is stopped; the ending commands run in a disconnected context.
		r.queue = nil
		r.done = r.issued
		r.cancelLoop()
	}
	for _, c := range cmds {
		r.issued++
		r.queue = append(r.queue, ticketed{ticket: r.issued, cmd: c})
	}
	return r.issued
}

// run is the loop: execute queued commands, then wait for the next event.
func (r *runner) run() error {
	r.apply(Started{})
	for {
		for len(r.queue) > 0 && !r.ended {
			t := r.queue[0]
			r.queue = r.queue[1:]
			r.exec(t.cmd)
			r.done = max(r.done, t.ticket)
		}
		switch {
		case r.ended:
			return r.finish()
		case r.ctx.Err() != nil && !r.s.Ended:
			// Cancelling the workflow is a revoke: clean up, then end as canceled.
			r.canceled = true
			r.apply(revokeEvent(RevokeRequest{}, "workflow-cancellation"))
			continue
		case r.drainSignals():
			continue
		case r.sync != nil && r.sync.IsReady():
			r.finishSync()
			continue
		case r.finding != nil && r.finding.IsReady():
			r.finishFinding()
			continue
		case r.timer != nil && r.timer.IsReady():
			r.timer, r.cancelTimer, r.timerAt = nil, nil, time.Time{}
			r.apply(TimerFired{})
			continue
		}
		if r.wantContinueAsNew() {
			if !r.s.Draining {
				r.apply(Drain{})
				continue
			}
			if r.idle() && workflow.AllHandlersFinished(r.ctx) {
				return r.continueAsNew()
			}
		}
		r.armTimer()
		// An error here is the workflow's cancellation, handled at the top of the loop.
		_ = workflow.Await(r.ctx, r.woken)
	}
}

// woken says the loop has something to do.
func (r *runner) woken() bool {
	return len(r.queue) > 0 || r.configCh.Len() > 0 || r.revokeCh.Len() > 0 ||
		r.findingsPendingCh.Len() > 0 || r.issueCh.Len() > 0 || r.inboxCh.Len() > 0 ||
		(r.sync != nil && r.sync.IsReady()) || (r.finding != nil && r.finding.IsReady()) ||
		(r.timer != nil && r.timer.IsReady()) ||
		(r.wantContinueAsNew() && (!r.s.Draining || (r.idle() && workflow.AllHandlersFinished(r.ctx))))
}

// idle: no activity of either lane in flight.
func (r *runner) idle() bool { return r.sync == nil && r.finding == nil }

// drainSignals feeds every buffered signal to the machine; it reports whether there was one.
// Continue-as-new only happens after a call that found none, so no signal is ever lost with a
// run: what it asked for is in the carried state.
func (r *runner) drainSignals() bool {
	got := false
	for r.configCh.ReceiveAsync(nil) {
		r.apply(ConfigChanged{})
		got = true
	}
	for r.findingsPendingCh.ReceiveAsync(nil) {
		r.apply(FindingsPending{})
		got = true
	}
	for {
		var change findings.IssueChange
		if !r.issueCh.ReceiveAsync(&change) {
			break
		}
		r.apply(JiraIssueChanged{Change: change})
		got = true
	}
	for r.inboxCh.ReceiveAsync(nil) {
		r.apply(InboxNudged{})
		got = true
	}
	for {
		var req RevokeRequest
		if !r.revokeCh.ReceiveAsync(&req) {
			break
		}
		r.apply(revokeEvent(req, "revoke-signal"))
		got = true
	}
	return got
}

// armTimer keeps exactly one timer, for the machine's earliest deadline: a timer whose deadline
// is no longer the earliest is canceled rather than left to fire for nothing.
func (r *runner) armTimer() {
	at := r.s.Wake()
	if at.Equal(r.timerAt) && (r.timer != nil || at.IsZero()) {
		return
	}
	if r.cancelTimer != nil {
		r.cancelTimer()
	}
	r.timer, r.cancelTimer, r.timerAt = nil, nil, at
	if at.IsZero() {
		return
	}
	// The machine handles every deadline that has passed before asking for a timer, so d is
	// positive; the floor only guards against a busy loop should that ever break.
	d := max(at.Sub(workflow.Now(r.ctx)), time.Second)
	tctx, cancel := workflow.WithCancel(r.loopCtx)
	r.timer = workflow.NewTimerWithOptions(tctx, d, workflow.TimerOptions{Summary: "next connection deadline"})
	r.cancelTimer = cancel
}

func (r *runner) wantContinueAsNew() bool {
	if r.s.Ended {
		return false
	}
	limit := r.in.MaxSyncsPerRun
	if limit <= 0 {
		limit = DefaultMaxSyncsPerRun
	}
	findingLimit := r.in.MaxFindingOpsPerRun
	if findingLimit <= 0 {
		findingLimit = DefaultMaxFindingOpsPerRun
	}
	return r.syncsThisRun >= limit || r.findingOpsThisRun >= findingLimit ||
		workflow.GetInfo(r.ctx).GetContinueAsNewSuggested()
}

// continueAsNew starts the next run with the carried state. The loop only gets here with no
// sync or finding activity in flight, no queued command, no buffered signal and every handler
// finished.
func (r *runner) continueAsNew() error {
	next := r.in
	carried := r.s.Carry()
	next.Carried = &carried
	return workflow.NewContinueAsNewError(r.ctx, ConnectionWorkflow, next)
}

// finish waits for the handlers still answering (a revoke update waits for its cleanup) and ends
// the workflow.
func (r *runner) finish() error {
	r.cancelLoop()
	dctx, _ := workflow.NewDisconnectedContext(r.ctx)
	if err := workflow.Await(dctx, func() bool { return workflow.AllHandlersFinished(dctx) }); err != nil {
		return err
	}
	switch {
	case r.failErr != nil:
		return r.failErr
	case r.canceled:
		return temporal.NewCanceledError("connection revoked by workflow cancellation")
	}
	return nil
}

// finishSync turns the sync's result into a SyncFinished event.
func (r *runner) finishSync() {
	var res activities.SyncResult
	err := r.sync.Get(r.ctx, &res)
	seq := r.syncSeq
	r.sync, r.syncSeq, r.cancelSync = nil, 0, nil
	switch {
	case err == nil:
		r.apply(SyncFinished{Seq: seq, Outcome: res.Outcome})
	case temporal.IsCanceledError(err) && (r.s.Ended || r.ctx.Err() != nil):
		// Canceled by a revoke (or the workflow's cancellation, which becomes one): the machine
		// has moved on or is about to. A cancellation nobody asked for is a failed sync below,
		// so the machine never waits for a sync that is gone.
	default:
		typ, msg := classify(err, "the sync")
		r.apply(SyncFinished{Seq: seq, ErrorType: typ, Message: msg})
	}
}

// finishFinding turns the finding activity's result into a FindingFinished event. Only ids and
// counts go into the event (and so into the state).
func (r *runner) finishFinding() {
	f, op := r.finding, r.findingOp
	r.finding, r.findingOp, r.cancelFinding = nil, "", nil
	ev := FindingFinished{Op: op}
	var err error
	switch op {
	case FindingOpDrain:
		var res activities.DrainResult
		if err = f.Get(r.ctx, &res); err == nil {
			ev.Remaining = res.Remaining
			ev.Handled = res.Created + res.Transitions + res.Unchanged + res.Failed
			if res.NextDue != nil {
				ev.NextDue = *res.NextDue
			}
		}
	case FindingOpInbox:
		var res activities.InboxResult
		if err = f.Get(r.ctx, &res); err == nil {
			ev.Remaining = res.Remaining
			ev.Handled = res.Applied + res.Echoes + res.Ignored + res.Requeued
		}
	case FindingOpRegister, FindingOpRefresh:
		var res activities.WebhookResult
		if err = f.Get(r.ctx, &res); err == nil {
			ev.Skipped = res.Skipped
			if res.ExpiresAt != nil {
				ev.ExpiresAt = *res.ExpiresAt
			}
		}
	default:
		// ApplyResult and ReconcileResult carry counts for the history only.
		err = f.Get(r.ctx, nil)
	}
	if err != nil {
		if temporal.IsCanceledError(err) && (r.s.Ended || r.ctx.Err() != nil) {
			return // stopped by a revoke, as for a sync
		}
		ev.ErrorType, ev.Message = classify(err, "the "+op+" activity")
	}
	r.apply(ev)
}

// classify maps an activity failure onto the contract's error types. Unknown types (a plain Go
// error becomes an application error named after its Go type) count as transient. what names the
// activity in a timeout's message.
func classify(err error, what string) (string, string) {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		switch t := appErr.Type(); t {
		case failure.TypeReauthRequired, failure.TypeConfig, failure.TypeRevoked,
			failure.TypeRateLimited, failure.TypeTransient, failure.TypeInvalidInput:
			return t, appErr.Message()
		}
		return failure.TypeTransient, appErr.Message()
	}
	var timeout *temporal.TimeoutError
	if errors.As(err, &timeout) {
		return failure.TypeTransient, what + " timed out (" + timeout.TimeoutType().String() + ")"
	}
	return failure.TypeTransient, err.Error()
}

func isErrorType(err error, typ string) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == typ
}

// exec executes one command. Only CmdStartSync returns before the work is done.
func (r *runner) exec(cmd Command) {
	switch c := cmd.(type) {
	case CmdLoad:
		var snap activities.ConnectionSnapshot
		err := r.bookkeeping(acts.LoadConnection, r.ref()).Get(r.loopCtx, &snap)
		switch {
		case err == nil:
			r.apply(Loaded{Snapshot: snap})
		case isErrorType(err, failure.TypeRevoked):
			r.apply(RevokedElsewhere{})
		case temporal.IsCanceledError(err):
			// A revoke or the workflow's cancellation; the loop takes it from here.
		default:
			// Retries are unlimited, so this is a permanent error (e.g. the stored connection
			// is unusable). Without its configuration the connection cannot be scheduled;
			// failing the workflow makes that visible to operators.
			r.failErr = temporal.NewNonRetryableApplicationError("load connection", "load_failed", err)
			r.ended = true
		}
	case CmdStartSync:
		info := workflow.GetInfo(r.ctx)
		sctx, cancel := workflow.WithCancel(r.loopCtx)
		sctx = workflow.WithActivityOptions(sctx, syncOptions())
		r.sync = workflow.ExecuteActivity(sctx, acts.SyncEvidence, activities.SyncInput{
			ConnectionRef: r.ref(), Seq: c.Seq, Trigger: c.Trigger,
			WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID,
		})
		r.syncSeq, r.cancelSync = c.Seq, cancel
		r.syncsThisRun++
	case CmdStartFinding:
		r.startFinding(c)
	case CmdCancelFinding:
		if r.finding != nil {
			r.cancelFinding()
			// WaitForCancellation, as for the sync: the cleanup never races a drain writing
			// to Jira or Postgres.
			dctx, _ := workflow.NewDisconnectedContext(r.ctx)
			_ = r.finding.Get(dctx, nil)
			r.finding, r.findingOp, r.cancelFinding = nil, "", nil
		}
	case CmdCancelSync:
		if r.sync != nil {
			r.cancelSync()
			// WaitForCancellation: this returns once the activity has stopped, so the cleanup
			// never races a sync still writing evidence.
			dctx, _ := workflow.NewDisconnectedContext(r.ctx)
			_ = r.sync.Get(dctx, nil)
			r.sync, r.syncSeq, r.cancelSync = nil, 0, nil
		}
	case CmdRecordFailure:
		info := workflow.GetInfo(r.ctx)
		r.book(acts.RecordSyncFailure, activities.SyncFailure{
			ConnectionRef: r.ref(), Seq: c.Seq, ErrorType: c.ErrorType, Message: c.Message,
			WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID,
		})
	case CmdMirror:
		r.book(acts.SetConnectionState, c.Update)
	case CmdOpenAlert:
		r.book(acts.OpenAlert, activities.AlertInput{ConnectionRef: r.ref(), Kind: c.Kind, Message: c.Message})
	case CmdResolveAlert:
		r.book(acts.ResolveAlert, activities.AlertInput{ConnectionRef: r.ref(), Kind: c.Kind})
	case CmdSearchAttributes:
		if err := workflow.UpsertTypedSearchAttributes(r.ctx,
			AttrOrgID.ValueSet(r.in.OrgID.String()),
			AttrConnectionStatus.ValueSet(c.Status),
			AttrStale.ValueSet(c.Stale),
			AttrNeedsReauth.ValueSet(c.NeedsReauth),
		); err != nil {
			r.log.Warn("upsert search attributes", "error", err)
		}
	case CmdRevokeCleanup:
		dctx, _ := workflow.NewDisconnectedContext(r.ctx)
		dctx = workflow.WithActivityOptions(dctx, revokeOptions())
		err := workflow.ExecuteActivity(dctx, acts.RevokeCleanup, activities.RevokeInput{
			ConnectionRef: r.ref(), ActorType: c.ActorType, ActorID: c.ActorID,
		}).Get(dctx, nil)
		if err != nil && !isErrorType(err, failure.TypeRevoked) {
			r.revokeErr = err
			r.log.Warn("revoke cleanup failed", "error", err)
		}
		r.revokeDone = true
	case CmdEnd:
		r.ended = true
	}
}

// startFinding starts the finding activity of c without waiting for it. Inputs carry the
// connection's ids (and, for an apply, the inbound changes: issue ids, statuses and delivery ids)
// — never finding content or credentials. An inbox pass reads its changes from Postgres.
func (r *runner) startFinding(c CmdStartFinding) {
	fctx, cancel := workflow.WithCancel(r.loopCtx)
	fctx = workflow.WithActivityOptions(fctx, findingOptions(c.Op))
	var f workflow.Future
	switch c.Op {
	case FindingOpApply:
		f = workflow.ExecuteActivity(fctx, acts.ApplyJiraChanges, activities.ApplyInput{ConnectionRef: r.ref(), Changes: c.Changes})
	case FindingOpInbox:
		f = workflow.ExecuteActivity(fctx, acts.ApplyInboxChanges, activities.InboxInput{ConnectionRef: r.ref(), Max: activities.DefaultInboxBatch})
	case FindingOpDrain:
		info := workflow.GetInfo(r.ctx)
		f = workflow.ExecuteActivity(fctx, acts.DrainFindingQueue, activities.DrainInput{
			ConnectionRef: r.ref(), Max: activities.DefaultDrainBatch,
			WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID, Seq: c.Seq,
		})
	case FindingOpReconcile:
		f = workflow.ExecuteActivity(fctx, acts.ReconcileLinkedIssues, r.ref())
	case FindingOpRegister:
		f = workflow.ExecuteActivity(fctx, acts.RegisterWebhooks, r.ref())
	case FindingOpRefresh:
		f = workflow.ExecuteActivity(fctx, acts.RefreshWebhooks, r.ref())
	default:
		// Unreachable: the machine only asks for the operations above. Reporting a failure
		// keeps it from waiting for an activity that never started.
		cancel()
		r.apply(FindingFinished{Op: c.Op, ErrorType: failure.TypeInvalidInput, Message: "unknown finding operation " + c.Op})
		return
	}
	r.finding, r.findingOp, r.cancelFinding = f, c.Op, cancel
	r.findingOpsThisRun++
}

// book runs a Postgres-only activity and waits for it. Such activities retry until they
// succeed, so an error here is permanent: it is logged and the machine carries on (the next
// mirror rewrites the whole state), except that a revoked connection ends the workflow.
func (r *runner) book(activity, input any) {
	err := r.bookkeeping(activity, input).Get(r.loopCtx, nil)
	switch {
	case err == nil, temporal.IsCanceledError(err):
	case isErrorType(err, failure.TypeRevoked):
		r.apply(RevokedElsewhere{})
	default:
		r.log.Warn("connection bookkeeping activity failed", "error", err)
	}
}

// bookkeeping starts a Postgres-only activity on the loop's context: a local activity where the
// run records localBookkeepingChangeID, a regular one in runs recorded before it.
func (r *runner) bookkeeping(activity, input any) workflow.Future {
	if r.localBook {
		return workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(r.loopCtx, localBookkeepingOptions()), activity, input)
	}
	return workflow.ExecuteActivity(workflow.WithActivityOptions(r.loopCtx, bookkeepingOptions()), activity, input)
}
