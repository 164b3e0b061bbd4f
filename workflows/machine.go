package workflows

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
)

// This file is the connection's state machine: plain Go, no workflow APIs, so every scheduling
// and staleness rule is decided in one place and table-tested without a Temporal environment.
// ConnectionWorkflow only feeds it events (with the workflow's deterministic time) and executes
// the commands it returns, in order.

// Connection statuses, as stored in connections.status and shown by the API.
const (
	StatusPendingAuth = "pending_auth"
	StatusActive      = "active"
	StatusNeedsReauth = "needs_reauth"
	StatusRevoked     = "revoked"
)

// Sync triggers, recorded on each connector run (activities.SyncInput.Trigger).
const (
	TriggerSchedule     = "schedule"
	TriggerSyncNow      = "sync_now"
	TriggerReauthorized = "reauthorized"
)

// Sync outcomes as the activity reports them, plus OutcomeFailed for a sync that ended in an
// error. Only success and partial count as a successful sync for staleness.
const (
	OutcomeSuccess = "success"
	OutcomePartial = "partial"
	OutcomeNoData  = "no_data"
	OutcomeFailed  = "failed"
)

// ErrTypeNoData is shown as the connection's last error kind after a sync that returned no data:
// it is not a failure of the connector, but the user must see why the evidence is not fresh.
const ErrTypeNoData = "no_data"

// Audit actions written with the state mirror (activities.StateUpdate.Action).
const (
	ActionStale       = "connection.stale"
	ActionRecovered   = "connection.recovered"
	ActionNeedsReauth = "connection.needs_reauth"
)

// Defaults used when a loaded configuration carries no cadence or threshold. The API validates
// both, so this only guards the machine against a zero cadence, which would sync in a loop.
const (
	defaultSyncCadence    = 24 * time.Hour
	defaultStaleThreshold = 48 * time.Hour
)

// maxErrorMessage bounds the last error message kept in the state (and carried across
// continue-as-new), so the carried state stays small whatever an error says.
const maxErrorMessage = 1000

// Carried is the part of the state that survives continue-as-new. It is O(1) in size whatever
// the connection's age or number of findings: timestamps, counters and the last error only.
// Deadlines are not carried; they are recomputed from these timestamps and the reloaded
// configuration, so a configuration change during the previous run is never lost.
type Carried struct {
	// Initialized is set once the stored connection has been loaded; before that, the stored
	// status is adopted as is (a workflow started for a connection that needs re-auth waits).
	Initialized bool   `json:"initialized"`
	Status      string `json:"status"`
	Stale       bool   `json:"stale"`

	SyncCadence    time.Duration `json:"sync_cadence"`
	StaleThreshold time.Duration `json:"stale_threshold"`
	CreatedAt      time.Time     `json:"created_at"`

	// LastAttemptAt is when the last sync started; the next scheduled sync is a cadence later.
	LastAttemptAt time.Time `json:"last_attempt_at"`
	// LastSuccessAt is when the last successful (success or partial) sync completed, in
	// workflow time; the stale deadline is a threshold later.
	LastSuccessAt time.Time `json:"last_success_at"`
	LastOutcome   string    `json:"last_outcome,omitempty"`
	LastErrorType string    `json:"last_error_type,omitempty"`
	LastError     string    `json:"last_error,omitempty"`

	// Seq is the highest sync sequence number handed out. It only grows, across runs.
	Seq int64 `json:"seq"`
	// PendingSeq is a requested sync (sync-now, re-authorization) that has not started yet;
	// 0 when none. Requests coalesce into it, so at most one is ever pending.
	PendingSeq     int64  `json:"pending_seq,omitempty"`
	PendingTrigger string `json:"pending_trigger,omitempty"`
	// ConfigReloadPending is set by a config-changed signal until the reload lands.
	ConfigReloadPending bool `json:"config_reload_pending,omitempty"`

	// FindingCarried is the finding-sync state (findings_machine.go).
	FindingCarried
}

// State is the connection workflow's whole state.
type State struct {
	Carried

	OrgID        uuid.UUID
	ConnectionID uuid.UUID

	// Loaded is true once the configuration has been loaded in this run: nothing is scheduled
	// before that.
	Loaded bool
	// RunningSeq is the sync in flight (0 when idle) and RunningTrigger its trigger.
	RunningSeq     int64
	RunningTrigger string
	// Draining stops new syncs from starting while the run prepares to continue as new; a
	// pending request is carried over instead.
	Draining bool
	// Ended is set when the connection is revoked: the machine accepts no further events.
	Ended bool

	// NextSyncAt and StaleAt are the absolute deadlines derived from the fields above (zero when
	// there is none). They are recomputed after every event.
	NextSyncAt time.Time
	StaleAt    time.Time

	// ReconcileInterval and WebhookRefreshInterval come from the workflow input (zero: the
	// defaults).
	ReconcileInterval      time.Duration
	WebhookRefreshInterval time.Duration
	// FindingRunning is the finding operation in flight ("" when the lane is idle) and
	// LastFindingOp the one that ran last (for fairness).
	FindingRunning string
	LastFindingOp  string
	// Applying is the batch of inbound changes the apply in flight was given, put back into the
	// buffer if it fails. Not carried: a run continues as new only when no activity is in flight.
	Applying []findings.IssueChange
	// InboxChecks makes each reconciliation tick also check the webhook inbox. The workflow sets
	// it for runs whose history carries the inbox version marker (workflow.GetVersion): a run
	// recorded before the inbox existed must replay without the extra activity. Inbox nudges are
	// handled in every run (histories without the inbox hold none).
	InboxChecks bool
	// StaleFloor raises a stored stale threshold below the schedule rule's floor
	// (connections.StaleThresholdFloor) to the floor, so a connection configured before the rule
	// was validated cannot go stale while it is healthy. Set, like InboxChecks, for runs that
	// record the stale-floor version marker; older histories replay without it.
	StaleFloor bool
	// NextFindingAt is when the next finding operation is due (zero: none, or the lane is busy
	// or may not run). Recomputed after every event.
	NextFindingAt time.Time
}

// NewState returns the state a run starts from: fresh for a new connection, or carried over
// from the previous run.
func NewState(orgID, connectionID uuid.UUID, carried *Carried) State {
	s := State{OrgID: orgID, ConnectionID: connectionID}
	if carried != nil {
		s.Carried = *carried
	} else {
		// The API starts the workflow once the connection is active; the first load corrects
		// this if the stored status says otherwise.
		s.Status = StatusActive
	}
	return s
}

// Carry returns what the next run needs.
func (s State) Carry() Carried { return s.Carried }

// Wake is when the workflow must next feed the machine a TimerFired event: the earlier of the
// next scheduled sync and the stale deadline. Zero means no timer is needed.
func (s State) Wake() time.Time {
	var w time.Time
	if !s.NextSyncAt.IsZero() && s.syncStartable() && s.PendingSeq == 0 {
		w = s.NextSyncAt
	}
	if !s.StaleAt.IsZero() && (w.IsZero() || s.StaleAt.Before(w)) {
		w = s.StaleAt
	}
	if !s.NextFindingAt.IsZero() && (w.IsZero() || s.NextFindingAt.Before(w)) {
		w = s.NextFindingAt
	}
	return w
}

// CanSyncNow says whether a sync-now request is accepted, and why not.
func (s State) CanSyncNow() error {
	if s.Ended || s.Status != StatusActive {
		return rejectf("sync is not possible while the connection is %s", s.Status)
	}
	return nil
}

// CanTest says whether a connection test is accepted: an active connection, or one waiting for
// re-authorization (so the user can check what is wrong).
func (s State) CanTest() error {
	if s.Ended || (s.Status != StatusActive && s.Status != StatusNeedsReauth) {
		return rejectf("a connection test is not possible while the connection is %s", s.Status)
	}
	return nil
}

// CanReauthorize says whether a re-authorization is accepted: anything but a revoked connection.
func (s State) CanReauthorize() error {
	if s.Ended || s.Status == StatusRevoked {
		return rejectf("the connection is revoked")
	}
	return nil
}

// Event is something that happened to the connection.
type Event interface{ isEvent() }

// Events.
type (
	// Started begins a run (fresh or after continue-as-new): the configuration is loaded first.
	Started struct{}
	// Loaded delivers the stored connection (LoadConnection).
	Loaded struct{ Snapshot activities.ConnectionSnapshot }
	// ConfigChanged is the config-changed signal: the API stored a new configuration.
	ConfigChanged struct{}
	// TimerFired says a deadline may have passed.
	TimerFired struct{}
	// SyncNowRequested is the sync-now update.
	SyncNowRequested struct{}
	// Reauthorized is the reauthorized update: the API stored new credentials.
	Reauthorized struct{}
	// SyncFinished reports the end of sync Seq: an Outcome, or an ErrorType and Message when it
	// failed for good.
	SyncFinished struct {
		Seq       int64
		Outcome   string
		ErrorType string
		Message   string
	}
	// RevokeRequested is the revoke update or signal, or the workflow's cancellation.
	RevokeRequested struct{ ActorType, ActorID string }
	// RevokedElsewhere says an activity found the connection already revoked (and cleaned up).
	RevokedElsewhere struct{}
	// Drain prepares for continue-as-new: no new sync starts in this run.
	Drain struct{}
)

func (Started) isEvent()          {}
func (Loaded) isEvent()           {}
func (ConfigChanged) isEvent()    {}
func (TimerFired) isEvent()       {}
func (SyncNowRequested) isEvent() {}
func (Reauthorized) isEvent()     {}
func (SyncFinished) isEvent()     {}
func (RevokeRequested) isEvent()  {}
func (RevokedElsewhere) isEvent() {}
func (Drain) isEvent()            {}

// Command is something the workflow must do.
type Command interface{ isCommand() }

// Commands. They are executed in the order returned.
type (
	// CmdLoad runs LoadConnection and feeds back Loaded (or RevokedElsewhere).
	CmdLoad struct{}
	// CmdStartSync starts SyncEvidence without waiting for it; its end comes back as
	// SyncFinished.
	CmdStartSync struct {
		Seq     int64
		Trigger string
	}
	// CmdCancelSync cancels the sync in flight and waits until the activity has stopped.
	CmdCancelSync struct{}
	// CmdRecordFailure runs RecordSyncFailure.
	CmdRecordFailure struct {
		Seq       int64
		ErrorType string
		Message   string
	}
	// CmdMirror runs SetConnectionState, writing the audit row for Update.Action when set.
	CmdMirror struct{ Update activities.StateUpdate }
	// CmdOpenAlert and CmdResolveAlert open and resolve an alert of Kind.
	CmdOpenAlert struct {
		Kind    string
		Message string
	}
	CmdResolveAlert struct{ Kind string }
	// CmdSearchAttributes upserts the workflow's search attributes.
	CmdSearchAttributes struct {
		Status      string
		Stale       bool
		NeedsReauth bool
	}
	// CmdRevokeCleanup runs RevokeCleanup in a context that survives cancellation.
	CmdRevokeCleanup struct{ ActorType, ActorID string }
	// CmdEnd ends the workflow.
	CmdEnd struct{}
)

func (CmdLoad) isCommand()             {}
func (CmdStartSync) isCommand()        {}
func (CmdCancelSync) isCommand()       {}
func (CmdRecordFailure) isCommand()    {}
func (CmdMirror) isCommand()           {}
func (CmdOpenAlert) isCommand()        {}
func (CmdResolveAlert) isCommand()     {}
func (CmdSearchAttributes) isCommand() {}
func (CmdRevokeCleanup) isCommand()    {}
func (CmdEnd) isCommand()              {}

// step collects the effects of one event before they are ordered into commands.
type step struct {
	s   State
	now time.Time
	// early runs before the state is mirrored (recording a failure, resolving an alert);
	// late runs after it (opening an alert, so the alert never precedes the stale flag).
	early, late []Command
	mirror      bool
	actions     []string
	forceAttrs  bool
	start       *CmdStartSync
	// startFinding is the finding operation to start, after the sync.
	startFinding *CmdStartFinding
}

// Step applies ev at time now and returns the new state and the commands to execute. The rules:
//
//   - Deadlines are absolute and derived, never stored timers: the next scheduled sync is
//     LastAttemptAt + cadence + Jitter (at once if no sync was ever attempted), the stale deadline
//     LastSuccessAt + threshold (CreatedAt + threshold before the first success). After every
//     event, whatever is due at now happens (a sync starts, the connection turns stale), so the
//     same rules hold after continue-as-new or a long outage.
//   - success and partial are successes: LastSuccessAt moves to now (workflow time, which is
//     what schedules), the last error clears, and a stale connection recovers (alert resolved,
//     connection.recovered). no_data — or an outcome this code does not know — is a sync but not
//     a success: the stale clock keeps running and the last error kind says no_data.
//   - A sync that failed for good is recorded (RecordSyncFailure). reauth_required moves the
//     connection to needs_reauth (connection.needs_reauth): no sync starts, on schedule or on
//     request, until re-authorization, while the stale clock keeps running. revoked ends the
//     machine. config and transient failures keep the connection active and the next sync comes
//     at the usual cadence; a config failure is in addition retried at once when the
//     configuration changes (trigger "schedule"), since that is the first reason to expect a
//     different answer. A permission fixed on the Jira side is thus picked up within a cadence
//     without retries burning calls in between.
//   - The stale deadline marks the connection stale exactly once (connection.stale and one
//     alert) until a successful sync clears it.
//   - Sync requests (sync-now, re-authorization) get the next Seq at once and coalesce into one
//     pending sync, which starts as soon as nothing runs; Seq only grows, across runs.
//   - A revoke cancels the sync in flight, runs the cleanup and ends; everything after is ignored.
//
// Finding ⇄ issue sync (findings_machine.go) runs in its own lane, one activity at a time, next
// to the sync and never waiting for it:
//
//   - findings-pending sets QueuePending; an inbox nudge sets InboxPending; a Jira issue change
//     signalled the old way is buffered (at most MaxInboundBuffer; on overflow the buffer is
//     dropped and a reconciliation requested).
//   - While the connection is active and loaded (and the run is not draining for
//     continue-as-new), the lane runs what is due, in the order apply (the whole inbound buffer in
//     one ApplyJiraChanges), inbox (ApplyInboxChanges), register webhooks, reconcile, drain,
//     refresh webhooks — except that the operation that ran last yields to any other due one, so
//     nothing starves. A drain repeats while it reports due items, an inbox pass while it reports
//     pending changes; a reported NextDue becomes a deadline of the machine's single timer.
//   - With finding sync configured, reconciliation is due every ReconcileInterval (at once when
//     it never ran or inbound changes were dropped) and drains the queue and (InboxChecks) checks
//     the inbox too; RegisterWebhooks runs once per configuration (a fresh workflow, finding sync
//     turned on, off or reconfigured) and RefreshWebhooks every WebhookRefreshInterval (earlier if
//     Jira's expiry is sooner).
//   - A finding activity that failed for good asks again for what it consumed, and: reauth_required
//     → needs_reauth exactly as for a sync (no finding or sync work until re-authorization);
//     revoked → end; config → recorded as the connection's last error and tried again after a
//     ReconcileInterval or at once on a configuration change; anything else → exponential backoff
//     (1m … 15m) before that lane tries again. Webhook operations back off separately, so a
//     webhook problem never stops the queue.
func Step(s State, ev Event, now time.Time) (State, []Command) {
	if s.Ended {
		return s, nil
	}
	before := s
	st := &step{s: s, now: now}
	switch e := ev.(type) {
	case Started:
		st.s.Loaded, st.s.RunningSeq, st.s.RunningTrigger, st.s.Draining = false, 0, "", false
		st.s.FindingRunning, st.s.LastFindingOp = "", ""
		st.early = append(st.early, CmdLoad{})
	case Loaded:
		if e.Snapshot.Revoked || e.Snapshot.Status == StatusRevoked {
			return st.endRevoked(nil)
		}
		st.loaded(e.Snapshot)
	case ConfigChanged:
		st.s.ConfigReloadPending = true
		st.early = append(st.early, CmdLoad{})
	case TimerFired:
		// Deadlines are checked below for every event.
	case SyncNowRequested:
		st.request(TriggerSyncNow)
	case Reauthorized:
		st.reauthorize()
	case SyncFinished:
		if e.Seq != st.s.RunningSeq || e.Seq == 0 {
			return s, nil
		}
		st.finished(e)
		if e.ErrorType == failure.TypeRevoked {
			// Revoked while syncing: the revoke already cleaned up; record the run and end.
			return st.endRevoked(nil)
		}
	case RevokeRequested:
		return st.endRevoked(&CmdRevokeCleanup{ActorType: e.ActorType, ActorID: e.ActorID})
	case RevokedElsewhere:
		return st.endRevoked(nil)
	case Drain:
		st.s.Draining = true
	case FindingsPending:
		st.s.QueuePending = true
	case JiraIssueChanged:
		st.issueChanged(e.Change)
	case InboxNudged:
		st.s.InboxPending = true
	case FindingFinished:
		if e.Op == "" || e.Op != st.s.FindingRunning {
			return s, nil
		}
		st.findingFinished(e)
		if e.ErrorType == failure.TypeRevoked {
			// The connection was revoked under the activity: the revoke cleaned up; end.
			return st.endRevoked(nil)
		}
	}
	st.settle()
	return st.s, st.commands(before)
}

// loaded applies a loaded configuration.
func (st *step) loaded(snap activities.ConnectionSnapshot) {
	s := &st.s
	s.SyncCadence, s.StaleThreshold = snap.SyncCadence, snap.StaleThreshold
	if s.SyncCadence <= 0 {
		s.SyncCadence = defaultSyncCadence
	}
	if s.StaleThreshold <= 0 {
		s.StaleThreshold = defaultStaleThreshold
	}
	s.CreatedAt = snap.CreatedAt
	// A new run of an old connection (e.g. a workflow started again after an outage) keeps its
	// staleness clock from the stored last success.
	if snap.LastSuccessAt != nil && snap.LastSuccessAt.After(s.LastSuccessAt) {
		s.LastSuccessAt = *snap.LastSuccessAt
	}
	st.loadedFindings(snap, !s.Initialized, s.ConfigReloadPending)
	switch {
	case !s.Initialized:
		switch snap.Status {
		case StatusNeedsReauth, StatusPendingAuth:
			s.Status = snap.Status
		default:
			s.Status = StatusActive
		}
		st.resume(snap)
	case waitingForAuth(s.Status) && snap.Status == StatusActive:
		// The API stored new credentials but its reauthorized update never arrived (the
		// workflow's own needs_reauth mirror is written before any later load reads the row).
		st.reauthorize()
	}
	s.Initialized = true
	if s.ConfigReloadPending {
		s.ConfigReloadPending = false
		// A sync that failed on configuration was not retried; the new configuration is the
		// first reason to believe it could work, so try at once instead of waiting a cadence.
		if s.LastErrorType == failure.TypeConfig && s.Status == StatusActive && s.RunningSeq == 0 {
			st.request(TriggerSchedule)
		}
	}
	if !s.Loaded {
		// First load of this run: make sure the search attributes match the carried state.
		st.forceAttrs = true
	}
	s.Loaded = true
	st.mirror = true
}

// resume adopts, at the first load of a fresh workflow, the stored state of a connection whose
// previous workflow was lost (terminated, failed, or never started), so that a new workflow
// carries on where the old one stopped instead of treating the connection as new:
//
//   - the next scheduled sync is a cadence after the stored last attempt, not at once (a fleet
//     whose workflows are restarted together does not sync all at once);
//   - a stale connection stays stale (no second connection.stale row or alert; the next success
//     recovers it), and the stored last error stays until a sync replaces it;
//   - sync numbers continue after the highest stored run, whose idempotency key would otherwise
//     be reused — and SyncEvidence answers a finished key from its row without syncing, which
//     would count an old result as a fresh success; a sync requested before the load is
//     renumbered the same way;
//   - a run the lost workflow left unfinished is run again as soon as the connection may sync,
//     under its own key, so it is finished instead of staying "running".
//
// For a new connection every stored value is empty and nothing changes.
func (st *step) resume(snap activities.ConnectionSnapshot) {
	s := &st.s
	if snap.LastSyncAt != nil && snap.LastSyncAt.After(s.LastAttemptAt) {
		s.LastAttemptAt = *snap.LastSyncAt
	}
	s.Stale = s.Stale || snap.Stale
	if s.LastErrorType == "" && snap.LastErrorKind != "" {
		s.LastErrorType, s.LastError = snap.LastErrorKind, truncate(snap.LastError)
	}
	run := snap.LastSync
	if run == nil || run.Seq <= 0 {
		return
	}
	// A fresh run has handed out at most one number before this load: a sync requested (sync now,
	// re-authorized) while it started, from an empty state. Such a request is renumbered too.
	switch {
	case run.Outcome == activities.OutcomeRunning:
		trigger := TriggerSchedule
		switch {
		case s.PendingSeq != 0:
			trigger = s.PendingTrigger // the interrupted run serves the request
		case run.Trigger == TriggerSyncNow || run.Trigger == TriggerReauthorized:
			trigger = run.Trigger
		}
		s.Seq = max(s.Seq, run.Seq)
		s.PendingSeq, s.PendingTrigger = run.Seq, trigger
		return
	case s.PendingSeq != 0:
		s.Seq = max(s.Seq, run.Seq+1)
		s.PendingSeq = s.Seq
	default:
		s.Seq = max(s.Seq, run.Seq)
	}
	switch run.Outcome {
	case OutcomeSuccess, OutcomePartial, OutcomeNoData, OutcomeFailed:
		s.LastOutcome = run.Outcome
	}
}

// request asks for a sync, coalescing with one already pending.
func (st *step) request(trigger string) {
	if st.s.PendingSeq != 0 {
		return
	}
	st.s.Seq++
	st.s.PendingSeq, st.s.PendingTrigger = st.s.Seq, trigger
}

func (st *step) reauthorize() {
	st.s.Status = StatusActive
	st.mirror = true
	st.request(TriggerReauthorized)
	st.reauthorizeFindings()
}

// finished applies the end of the running sync.
func (st *step) finished(e SyncFinished) {
	s := &st.s
	s.RunningSeq, s.RunningTrigger = 0, ""
	st.mirror = true
	if e.ErrorType == "" {
		switch e.Outcome {
		case OutcomeSuccess, OutcomePartial:
			s.LastOutcome = e.Outcome
			s.LastSuccessAt = st.now
			s.LastErrorType, s.LastError = "", ""
			if s.Stale {
				s.Stale = false
				st.early = append(st.early, CmdResolveAlert{Kind: activities.AlertKindStale})
				st.actions = append(st.actions, ActionRecovered)
			}
		default:
			// no_data, or an outcome this code does not know: a sync happened, but nothing
			// proves the site is still compliant, so it is never counted as a success.
			s.LastOutcome = OutcomeNoData
			s.LastErrorType = ErrTypeNoData
			s.LastError = "the last sync returned no data; it does not count as fresh evidence"
		}
		return
	}
	s.LastOutcome = OutcomeFailed
	msg := truncate(e.Message)
	s.LastErrorType, s.LastError = e.ErrorType, msg
	st.early = append(st.early, CmdRecordFailure{Seq: e.Seq, ErrorType: e.ErrorType, Message: msg})
	switch e.ErrorType {
	case failure.TypeReauthRequired:
		if s.Status != StatusNeedsReauth { // a finding activity may have found out first
			s.Status = StatusNeedsReauth
			st.actions = append(st.actions, ActionNeedsReauth)
		}
	}
}

// endRevoked ends the machine. cleanup is nil when someone else already revoked the connection.
// Effects collected so far that still matter (recording a failed run) are kept; mirrors and
// alerts are dropped, as the connection's row now belongs to the revoke.
func (st *step) endRevoked(cleanup *CmdRevokeCleanup) (State, []Command) {
	cmds := append([]Command(nil), st.early...)
	if st.s.RunningSeq != 0 {
		cmds = append(cmds, CmdCancelSync{})
	}
	if st.s.FindingRunning != "" {
		cmds = append(cmds, CmdCancelFinding{})
	}
	if cleanup != nil {
		cmds = append(cmds, *cleanup)
	}
	st.s = endedState(st.s)
	cmds = append(cmds, attrsOf(st.s), CmdEnd{})
	return st.s, cmds
}

func endedState(s State) State {
	s.Status, s.Ended = StatusRevoked, true
	s.RunningSeq, s.RunningTrigger, s.PendingSeq, s.PendingTrigger = 0, "", 0, ""
	s.NextSyncAt, s.StaleAt = time.Time{}, time.Time{}
	s.FindingRunning, s.NextFindingAt = "", time.Time{}
	return s
}

// settle applies what the passage of time implies — a stale deadline reached, a sync due — and
// recomputes the deadlines.
func (st *step) settle() {
	s := &st.s
	if s.Loaded && !s.Stale && !st.now.Before(s.staleDeadline()) {
		s.Stale = true
		st.actions = append(st.actions, ActionStale)
		st.late = append(st.late, CmdOpenAlert{Kind: activities.AlertKindStale, Message: staleMessage(*s)})
	}
	if s.syncStartable() {
		var trigger string
		switch {
		case s.PendingSeq != 0:
			trigger = s.PendingTrigger
			s.RunningSeq = s.PendingSeq
			s.PendingSeq, s.PendingTrigger = 0, ""
		case !st.now.Before(s.scheduledSync()):
			trigger = TriggerSchedule
			s.Seq++
			s.RunningSeq = s.Seq
		}
		if trigger != "" {
			s.RunningTrigger = trigger
			s.LastAttemptAt = st.now
			st.start = &CmdStartSync{Seq: s.RunningSeq, Trigger: trigger}
		}
	}
	s.StaleAt, s.NextSyncAt = time.Time{}, time.Time{}
	if s.Loaded && !s.Stale {
		s.StaleAt = s.staleDeadline()
	}
	if s.Loaded && s.Status == StatusActive && s.RunningSeq == 0 {
		if s.PendingSeq != 0 {
			s.NextSyncAt = st.now
		} else {
			s.NextSyncAt = s.scheduledSync()
		}
	}
	st.settleFindings()
}

// commands orders the step's effects: records and resolutions, search attributes, the state
// mirror (one per audit action), alert openings, then the new sync.
func (st *step) commands(before State) []Command {
	cmds := append([]Command(nil), st.early...)
	if st.forceAttrs || before.Status != st.s.Status || before.Stale != st.s.Stale {
		cmds = append(cmds, attrsOf(st.s))
	}
	if st.mirror || len(st.actions) > 0 {
		if len(st.actions) == 0 {
			st.actions = []string{""}
		}
		for _, a := range st.actions {
			cmds = append(cmds, CmdMirror{Update: mirrorOf(st.s, a)})
		}
	}
	cmds = append(cmds, st.late...)
	if st.start != nil {
		cmds = append(cmds, *st.start)
	}
	if st.startFinding != nil {
		cmds = append(cmds, *st.startFinding)
	}
	return cmds
}

// syncStartable: configuration known, active, nothing in flight, not preparing to continue as new.
func (s State) syncStartable() bool {
	return s.Loaded && s.Status == StatusActive && s.RunningSeq == 0 && !s.Draining && !s.Ended
}

// scheduledSync is when the next scheduled sync is due: at once for a connection that never
// tried, else a cadence (plus jitter) after the last attempt began.
func (s State) scheduledSync() time.Time {
	if s.LastAttemptAt.IsZero() {
		return time.Time{}
	}
	return s.LastAttemptAt.Add(s.SyncCadence + Jitter(s.ConnectionID, s.Seq+1, s.SyncCadence))
}

// staleDeadline is a threshold after the last success, or after creation if none ever was.
func (s State) staleDeadline() time.Time {
	base := s.LastSuccessAt
	if base.IsZero() {
		base = s.CreatedAt
	}
	return base.Add(s.staleThreshold())
}

// staleThreshold is the configured threshold, raised to the schedule rule's floor (StaleFloor).
func (s State) staleThreshold() time.Duration {
	if s.StaleFloor {
		return max(s.StaleThreshold, connections.StaleThresholdFloor(s.SyncCadence))
	}
	return s.StaleThreshold
}

// Jitter is the deterministic offset added to the cadence before scheduled sync seq: a hash of
// the connection id and seq mapped onto [-J, +J], where J is connections.SyncJitterSpan (a
// twentieth of the cadence, at most 10 minutes). Syncs of connections created together spread
// out instead of hitting Jira and Postgres at the same instant; per sync, so the mean offset is
// zero and a daily sync does not creep later every day. Being a pure function of carried values,
// it is the same on replay and after continue-as-new.
func Jitter(connectionID uuid.UUID, seq int64, cadence time.Duration) time.Duration {
	span := connections.SyncJitterSpan(cadence)
	if span <= 0 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write(connectionID[:])
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seq))
	_, _ = h.Write(b[:])
	return time.Duration(h.Sum64()%uint64(2*span+1)) - span
}

// Rejection is why an update's validator refused it; the workflow turns it into an application
// error the API answers with 409.
type Rejection struct{ Reason string }

func (r *Rejection) Error() string { return r.Reason }

func rejectf(format string, args ...any) error {
	return &Rejection{Reason: fmt.Sprintf(format, args...)}
}

func waitingForAuth(status string) bool {
	return status == StatusNeedsReauth || status == StatusPendingAuth
}

func attrsOf(s State) CmdSearchAttributes {
	return CmdSearchAttributes{Status: s.Status, Stale: s.Stale, NeedsReauth: s.Status == StatusNeedsReauth}
}

func mirrorOf(s State, action string) activities.StateUpdate {
	lastError, lastErrorKind := s.LastError, s.LastErrorType
	if s.FindingErrorType != "" && (lastErrorKind == "" || lastErrorKind == ErrTypeNoData) {
		// The sync is fine (or merely found no data): the finding sync's problem is the one a
		// user must act on.
		lastError, lastErrorKind = s.FindingError, s.FindingErrorType
	}
	return activities.StateUpdate{
		ConnectionRef: activities.ConnectionRef{OrgID: s.OrgID, ConnectionID: s.ConnectionID},
		Status:        s.Status,
		Stale:         s.Stale,
		NextSyncAt:    timePtr(s.NextSyncAt),
		LastSyncAt:    timePtr(s.LastAttemptAt),
		LastSuccessAt: timePtr(s.LastSuccessAt),
		LastError:     lastError,
		LastErrorKind: lastErrorKind,
		Action:        action,
	}
}

func staleMessage(s State) string {
	if s.LastSuccessAt.IsZero() {
		return "the connection has not synced successfully within " + s.StaleThreshold.String() + " of its creation"
	}
	return "the connection has not synced successfully since " + s.LastSuccessAt.UTC().Format(time.RFC3339) +
		" (stale threshold " + s.StaleThreshold.String() + ")"
}

// timePtr returns nil for the zero time, so "never" reads as absent in JSON.
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func truncate(s string) string {
	if len(s) <= maxErrorMessage {
		return s
	}
	// Cut on a rune boundary so the message stays valid UTF-8.
	cut := maxErrorMessage
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
