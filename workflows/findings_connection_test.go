package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/failure"
)

// findingStubs answers the finding-sync activities the way the real ones do for a scripted
// Postgres queue: DrainFindingQueue takes up to Max due items and reports what is left due and
// when the next delayed item is; the others record what they were given. Every attempt is
// recorded with the workflow clock's time when it started.
type findingStubs struct {
	w *world

	// queue holds the not-before time of each queued finding (guarded by w.mu, like the rest).
	queue    []time.Time
	handled  int
	attempts []findingCall
	drains   []activities.DrainInput
	applied  [][]string // delivery ids of each successful ApplyJiraChanges
	// inbox is the number of pending changes in the scripted webhook inbox; each ApplyInboxChanges
	// takes up to its Max of them and reports the rest as Remaining. inboxPasses counts the
	// successful passes and inboxTaken what each took.
	inbox       int
	inboxPasses int
	inboxTaken  []int
	// delay is how long each operation takes on the workflow clock; fail decides whether an
	// attempt fails (nil: it succeeds).
	delay map[string]time.Duration
	fail  func(op string, now time.Time) error
	// expiry is how long after a registration Jira says the webhooks expire.
	expiry time.Duration
}

type findingCall struct {
	Op      string
	At      time.Time
	Attempt int32
}

var findingOpOfActivity = map[string]string{
	activities.NameApplyJiraChanges: FindingOpApply, activities.NameDrainFindingQueue: FindingOpDrain,
	activities.NameReconcileLinkedIssues: FindingOpReconcile, activities.NameRegisterWebhooks: FindingOpRegister,
	activities.NameRefreshWebhooks: FindingOpRefresh, activities.NameApplyInboxChanges: FindingOpInbox,
}

func newFindingStubs(w *world) *findingStubs {
	f := &findingStubs{w: w, delay: map[string]time.Duration{}, expiry: 30 * day}
	delay := func(op string) func() time.Duration {
		return func() time.Duration {
			w.mu.Lock()
			defer w.mu.Unlock()
			return f.delay[op]
		}
	}
	env := w.env
	env.OnActivity(acts.DrainFindingQueue, mock.Anything, mock.Anything).AfterFn(delay(FindingOpDrain)).Return(f.drain)
	env.OnActivity(acts.ApplyJiraChanges, mock.Anything, mock.Anything).AfterFn(delay(FindingOpApply)).Return(f.apply)
	env.OnActivity(acts.ApplyInboxChanges, mock.Anything, mock.Anything).AfterFn(delay(FindingOpInbox)).Return(f.applyInbox)
	env.OnActivity(acts.ReconcileLinkedIssues, mock.Anything, mock.Anything).AfterFn(delay(FindingOpReconcile)).Return(f.reconcile)
	env.OnActivity(acts.RegisterWebhooks, mock.Anything, mock.Anything).AfterFn(delay(FindingOpRegister)).Return(f.register)
	env.OnActivity(acts.RefreshWebhooks, mock.Anything, mock.Anything).AfterFn(delay(FindingOpRefresh)).Return(f.refresh)
	return f
}

// started records a finding activity attempt; it reports whether info was one.
func (f *findingStubs) started(info *activity.Info, args converter.EncodedValues) bool {
	op, ok := findingOpOfActivity[info.ActivityType.Name]
	if !ok {
		return false
	}
	if op == FindingOpDrain {
		var in activities.DrainInput
		if err := args.Get(&in); err != nil {
			f.w.t.Errorf("drain input: %v", err)
		}
		f.w.mu.Lock()
		f.drains = append(f.drains, in)
		f.w.mu.Unlock()
	}
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	f.attempts = append(f.attempts, findingCall{Op: op, At: f.w.env.Now(), Attempt: info.Attempt})
	f.w.events = append(f.w.events, op+" started")
	return true
}

// enqueue queues n findings that become due at notBefore.
func (f *findingStubs) enqueue(n int, notBefore time.Time) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	for range n {
		f.queue = append(f.queue, notBefore)
	}
}

func (f *findingStubs) failure(op string) error {
	f.w.mu.Lock()
	fail := f.fail
	f.w.mu.Unlock()
	if fail == nil {
		return nil
	}
	return fail(op, f.w.env.Now())
}

func (f *findingStubs) drain(_ context.Context, in activities.DrainInput) (activities.DrainResult, error) {
	if in.OrgID != testOrg || in.ConnectionID != testConn || in.Max <= 0 {
		f.w.t.Errorf("drain input %+v", in)
	}
	if err := f.failure(FindingOpDrain); err != nil {
		return activities.DrainResult{}, err
	}
	now := f.w.env.Now()
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	slices.SortFunc(f.queue, func(a, b time.Time) int { return a.Compare(b) })
	var res activities.DrainResult
	kept := f.queue[:0]
	for _, nb := range f.queue {
		if !nb.After(now) && res.Created < in.Max {
			res.Created++
			continue
		}
		kept = append(kept, nb)
	}
	f.queue = kept
	f.handled += res.Created
	for _, nb := range f.queue {
		switch {
		case !nb.After(now):
			res.Remaining++
		case res.NextDue == nil:
			next := nb
			res.NextDue = &next
		}
	}
	return res, nil
}

func (f *findingStubs) apply(_ context.Context, in activities.ApplyInput) (activities.ApplyResult, error) {
	if in.OrgID != testOrg || in.ConnectionID != testConn || len(in.Changes) == 0 || len(in.Changes) > MaxInboundBuffer {
		f.w.t.Errorf("apply input with %d changes", len(in.Changes))
	}
	if err := f.failure(FindingOpApply); err != nil {
		return activities.ApplyResult{}, err
	}
	ids := make([]string, len(in.Changes))
	for i, c := range in.Changes {
		ids[i] = c.DeliveryID
	}
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	f.applied = append(f.applied, ids)
	return activities.ApplyResult{Applied: len(ids)}, nil
}

// applyInbox answers like ApplyInboxChanges over the scripted inbox.
func (f *findingStubs) applyInbox(_ context.Context, in activities.InboxInput) (activities.InboxResult, error) {
	if in.OrgID != testOrg || in.ConnectionID != testConn || in.Max != activities.DefaultInboxBatch {
		f.w.t.Errorf("inbox input %+v", in)
	}
	if err := f.failure(FindingOpInbox); err != nil {
		return activities.InboxResult{}, err
	}
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	took := min(f.inbox, in.Max)
	f.inbox -= took
	f.inboxPasses++
	f.inboxTaken = append(f.inboxTaken, took)
	return activities.InboxResult{ApplyResult: activities.ApplyResult{Applied: took}, Remaining: f.inbox}, nil
}

// fillInbox adds n pending changes to the scripted inbox.
func (f *findingStubs) fillInbox(n int) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	f.inbox += n
}

func (f *findingStubs) reconcile(_ context.Context, ref activities.ConnectionRef) (activities.ReconcileResult, error) {
	if ref.ConnectionID != testConn {
		f.w.t.Errorf("reconcile of %v", ref)
	}
	return activities.ReconcileResult{}, f.failure(FindingOpReconcile)
}

func (f *findingStubs) register(_ context.Context, ref activities.ConnectionRef) (activities.WebhookResult, error) {
	return f.webhooks(FindingOpRegister, ref)
}

func (f *findingStubs) refresh(_ context.Context, ref activities.ConnectionRef) (activities.WebhookResult, error) {
	return f.webhooks(FindingOpRefresh, ref)
}

// webhooks answers like the real activities: Skipped once finding sync is off.
func (f *findingStubs) webhooks(op string, ref activities.ConnectionRef) (activities.WebhookResult, error) {
	if ref.ConnectionID != testConn {
		f.w.t.Errorf("%s of %v", op, ref)
	}
	if err := f.failure(op); err != nil {
		return activities.WebhookResult{}, err
	}
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	if !f.w.snap.FindingSync {
		return activities.WebhookResult{Skipped: true}, nil
	}
	exp := f.w.env.Now().Add(f.expiry)
	return activities.WebhookResult{IDs: []int64{1}, ExpiresAt: &exp}, nil
}

// starts returns when each attempt of op started (first attempts only unless all).
func (f *findingStubs) starts(op string, all bool) []time.Time {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	var out []time.Time
	for _, c := range f.attempts {
		if c.Op == op && (all || c.Attempt == 1) {
			out = append(out, c.At)
		}
	}
	return out
}

// startsBetween counts finding activity attempts started in (from, to).
func (f *findingStubs) startsBetween(from, to time.Time) []findingCall {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	var out []findingCall
	for _, c := range f.attempts {
		if c.At.After(from) && c.At.Before(to) {
			out = append(out, c)
		}
	}
	return out
}

func (w *world) signalFindingsPending() { w.env.SignalWorkflow(SignalFindingsPending, nil) }

func (w *world) signalInboxNudge() { w.env.SignalWorkflow(SignalInboxNudge, nil) }

func (w *world) signalChanges(from, to int) {
	for i := from; i <= to; i++ {
		w.env.SignalWorkflow(SignalJiraIssueChanged, change(i))
	}
}

func times(base time.Time, offsets ...time.Duration) []time.Time {
	out := make([]time.Time, len(offsets))
	for i, d := range offsets {
		out[i] = base.Add(d)
	}
	return out
}

func equalTimes(a, b []time.Time) bool {
	return slices.EqualFunc(a, b, func(x, y time.Time) bool { return x.Equal(y) })
}

func TestFindingsPendingDrainsUntilEmpty(t *testing.T) {
	w := newWorld(t)
	var after ConnectionState
	w.at(time.Hour, func() {
		w.findings.enqueue(60, t0.Add(time.Hour))
		w.signalFindingsPending()
	})
	w.at(90*time.Minute, func() { after = w.state() })
	w.cancelAt(2 * time.Hour)
	w.start(ConnectionInput{})
	w.requireCanceled()

	h := t0.Add(time.Hour)
	if got := w.findings.starts(FindingOpDrain, true); !equalTimes(got, []time.Time{h, h, h}) {
		t.Errorf("drains at %v, want three batches (25, 25, 10) at once", got)
	}
	if len(w.findings.queue) != 0 || w.findings.handled != 60 {
		t.Errorf("queue left %d, handled %d", len(w.findings.queue), w.findings.handled)
	}
	for i, in := range w.findings.drains {
		if in.Seq != int64(i+1) || in.WorkflowID != WorkflowID(testConn) || in.RunID == "" || in.Max != activities.DefaultDrainBatch {
			t.Errorf("drain %d input %+v", i, in)
		}
	}
	if after.FindingQueuePending || after.FindingOpInProgress != "" || after.NextFindingOpAt != nil || after.FindingSync {
		t.Errorf("state after the drain: %+v", after)
	}
	for _, op := range []string{FindingOpReconcile, FindingOpRegister, FindingOpRefresh, FindingOpApply} {
		if n := len(w.findings.starts(op, true)); n != 0 {
			t.Errorf("%s ran %d times without finding sync configured or signalled", op, n)
		}
	}
}

func TestDrainSleepsUntilNextDue(t *testing.T) {
	w := newWorld(t)
	var waiting ConnectionState
	w.at(time.Hour, func() {
		w.findings.enqueue(5, t0.Add(time.Hour))
		w.findings.enqueue(3, t0.Add(3*time.Hour)) // e.g. rate-limited items waiting for Retry-After
		w.signalFindingsPending()
	})
	w.at(2*time.Hour, func() { waiting = w.state() })
	w.cancelAt(day + time.Hour)
	w.start(ConnectionInput{})
	w.requireCanceled()

	if got := w.findings.starts(FindingOpDrain, true); !equalTimes(got, times(t0, time.Hour, 3*time.Hour)) {
		t.Errorf("drains at %v, want at 1h and at the delayed items' due time", got)
	}
	if w.findings.handled != 8 {
		t.Errorf("handled %d", w.findings.handled)
	}
	if due := t0.Add(3 * time.Hour); waiting.FindingQueueNextDue == nil || !waiting.FindingQueueNextDue.Equal(due) ||
		waiting.NextFindingOpAt == nil || !waiting.NextFindingOpAt.Equal(due) {
		t.Errorf("state while waiting: %+v", waiting)
	}
	// The evidence sync keeps its own schedule.
	if s := w.syncsOf(2); len(s) != 1 || !s[0].At.Equal(t0.Add(day+Jitter(testConn, 2, day))) {
		t.Errorf("second sync %+v", s)
	}
}

func TestInboundChangesAreBatched(t *testing.T) {
	w := newWorld(t)
	w.findings.delay[FindingOpApply] = time.Minute
	w.at(time.Hour, func() { w.signalChanges(1, 1) })
	w.at(time.Hour+10*time.Second, func() { w.signalChanges(2, 6) })
	w.cancelAt(2 * time.Hour)
	w.start(ConnectionInput{})
	w.requireCanceled()

	want := [][]string{{"delivery-1"}, {"delivery-2", "delivery-3", "delivery-4", "delivery-5", "delivery-6"}}
	if !slices.EqualFunc(w.findings.applied, want, slices.Equal) {
		t.Errorf("applied batches %q, want %q", w.findings.applied, want)
	}
	if got := w.findings.starts(FindingOpApply, true); !equalTimes(got, times(t0, time.Hour, time.Hour+time.Minute)) {
		t.Errorf("applies at %v", got)
	}
}

// TestInboxNudgeAppliesTheInbox: the bridge's doorbell starts ApplyInboxChanges, a pass that
// reports pending changes is followed by another at once, and the nudges of deliveries stored
// while a pass runs coalesce into one more pass.
func TestInboxNudgeAppliesTheInbox(t *testing.T) {
	w := newWorld(t)
	w.findings.delay[FindingOpInbox] = time.Minute
	h := t0.Add(time.Hour)
	var during, after ConnectionState
	w.at(time.Hour, func() {
		w.findings.fillInbox(2*activities.DefaultInboxBatch + 1)
		w.signalInboxNudge()
	})
	// During the third (last) pass, more deliveries are stored, each with its nudge.
	w.at(time.Hour+2*time.Minute+10*time.Second, func() {
		w.findings.fillInbox(3)
		for range 3 {
			w.signalInboxNudge()
		}
	})
	w.at(time.Hour+2*time.Minute+20*time.Second, func() { during = w.state() })
	w.at(90*time.Minute, func() { after = w.state() })
	w.cancelAt(2 * time.Hour)
	w.start(ConnectionInput{})
	w.requireCanceled()

	if got := w.findings.starts(FindingOpInbox, true); !equalTimes(got, times(h, 0, time.Minute, 2*time.Minute, 3*time.Minute)) {
		t.Errorf("inbox passes at %v, want three for the backlog and one for the nudges during the last", got)
	}
	// The stub reads its inbox when a pass ends, so the third pass already took the new changes;
	// their three nudges still make exactly one more pass (the workflow cannot know), which finds
	// nothing.
	if want := []int{500, 500, 4, 0}; !slices.Equal(w.findings.inboxTaken, want) || w.findings.inbox != 0 {
		t.Errorf("passes took %v (left %d), want %v", w.findings.inboxTaken, w.findings.inbox, want)
	}
	if during.FindingOpInProgress != FindingOpInbox || !during.InboxPending {
		t.Errorf("state during the last pass: %+v", during)
	}
	if after.InboxPending || after.FindingOpInProgress != "" || after.NextFindingOpAt != nil {
		t.Errorf("state after: %+v", after)
	}
	if n := len(w.findings.starts(FindingOpApply, true)) + len(w.findings.starts(FindingOpDrain, true)); n != 0 {
		t.Errorf("other finding work: %d", n)
	}
}

// TestLostInboxNudgeConvergesWithReconciliation: deliveries whose nudge never arrived are applied
// with the next reconciliation tick.
func TestLostInboxNudgeConvergesWithReconciliation(t *testing.T) {
	w := newWorld(t)
	w.snap.FindingSync = true
	w.at(20*time.Minute, func() { w.findings.fillInbox(7) }) // stored, but no nudge
	w.cancelAt(40 * time.Minute)
	w.start(ConnectionInput{})
	w.requireCanceled()

	every := times(t0, 0, 15*time.Minute, 30*time.Minute)
	if got := w.findings.starts(FindingOpInbox, true); !equalTimes(got, every) {
		t.Errorf("inbox checks at %v, want one with each reconciliation %v", got, every)
	}
	if want := []int{0, 0, 7}; !slices.Equal(w.findings.inboxTaken, want) {
		t.Errorf("passes took %v, want %v", w.findings.inboxTaken, want)
	}
}

func TestInboundOverflowReconciles(t *testing.T) {
	w := newWorld(t)
	w.snap.FindingSync = true
	w.findings.delay[FindingOpApply] = 10 * time.Minute
	var overflowed ConnectionState
	w.at(time.Hour, func() { w.signalChanges(1, 1) })
	w.at(time.Hour+time.Minute, func() { w.signalChanges(2, MaxInboundBuffer+2) })
	w.at(time.Hour+5*time.Minute, func() { overflowed = w.state() })
	w.cancelAt(2 * time.Hour)
	w.start(ConnectionInput{ReconcileInterval: 6 * time.Hour})
	w.requireCanceled()

	if len(w.findings.applied) != 1 || len(w.findings.applied[0]) != 1 {
		t.Errorf("only the first change is applied; the overflowed buffer is dropped: %d batches", len(w.findings.applied))
	}
	if overflowed.PendingInboundChanges != 0 || !overflowed.ReconcileNeeded {
		t.Errorf("state after the overflow: %+v", overflowed)
	}
	// The first reconciliation runs at start (never reconciled), the second as soon as the apply
	// in flight ends, long before the 6h interval.
	if got := w.findings.starts(FindingOpReconcile, true); !equalTimes(got, times(t0, 0, time.Hour+10*time.Minute)) {
		t.Errorf("reconciliations at %v", got)
	}
}

func TestReconcileEveryInterval(t *testing.T) {
	w := newWorld(t)
	w.snap.FindingSync = true
	var st ConnectionState
	w.at(50*time.Minute, func() { st = w.state() })
	w.cancelAt(time.Hour + time.Minute)
	w.start(ConnectionInput{})
	w.requireCanceled()

	every := times(t0, 0, 15*time.Minute, 30*time.Minute, 45*time.Minute, time.Hour)
	if got := w.findings.starts(FindingOpReconcile, true); !equalTimes(got, every) {
		t.Errorf("reconciliations at %v, want every 15 minutes", got)
	}
	// Each tick also drains, so a lost findings-pending nudge converges.
	if got := w.findings.starts(FindingOpDrain, true); !equalTimes(got, every) {
		t.Errorf("drains at %v", got)
	}
	if got := w.findings.starts(FindingOpRegister, true); !equalTimes(got, times(t0, 0)) {
		t.Errorf("registrations at %v, want one at start", got)
	}
	if len(w.attempts) != 1 {
		t.Errorf("syncs: %+v", w.attempts)
	}
	if !st.FindingSync || st.LastReconcileAt == nil || !st.LastReconcileAt.Equal(t0.Add(45*time.Minute)) ||
		st.NextFindingOpAt == nil || !st.NextFindingOpAt.Equal(t0.Add(time.Hour)) || st.WebhooksRefreshedAt == nil {
		t.Errorf("state: %+v", st)
	}
}

func TestWebhooksRegisteredPerConfigurationAndRefreshed(t *testing.T) {
	w := newWorld(t)
	setFindingSync := func(on bool) func() {
		return func() {
			w.mu.Lock()
			w.snap.FindingSync = on
			w.mu.Unlock()
			w.env.SignalWorkflow(SignalConfigChanged, nil)
		}
	}
	w.at(time.Hour, setFindingSync(true))           // turned on: register
	w.at(3*day, setFindingSync(true))               // reconfigured: register again
	w.at(5*day+12*time.Hour, setFindingSync(false)) // turned off: register removes them
	w.cancelAt(8 * day)
	w.start(ConnectionInput{ReconcileInterval: day, WebhookRefreshInterval: 2 * day})
	w.requireCanceled()

	if got := w.findings.starts(FindingOpRegister, true); !equalTimes(got, times(t0, time.Hour, 3*day, 5*day+12*time.Hour)) {
		t.Errorf("registrations at %v", got)
	}
	if got := w.findings.starts(FindingOpRefresh, true); !equalTimes(got, times(t0, 2*day+time.Hour, 5*day)) {
		t.Errorf("refreshes at %v, want a refresh interval after each registration and none once off", got)
	}
	if got := w.findings.starts(FindingOpReconcile, true); len(got) == 0 || got[len(got)-1].After(t0.Add(5*day+12*time.Hour)) {
		t.Errorf("reconciliations must stop with finding sync: %v", got)
	}
}

func TestWebhooksRefreshedBeforeJiraExpiry(t *testing.T) {
	w := newWorld(t)
	w.snap.FindingSync = true
	w.findings.expiry = 3 * day // shorter than the refresh interval
	w.cancelAt(5 * day)
	w.start(ConnectionInput{ReconcileInterval: day})
	w.requireCanceled()
	if got := w.findings.starts(FindingOpRefresh, true); !equalTimes(got, times(t0, 2*day, 4*day)) {
		t.Errorf("refreshes at %v, want a day before each expiry", got)
	}
}

func TestReauthFromDrainStopsFindingWork(t *testing.T) {
	w := newWorld(t)
	w.findings.fail = func(op string, now time.Time) error {
		if op == FindingOpDrain && now.Before(t0.Add(day+3*time.Hour)) {
			return temporal.NewNonRetryableApplicationError("the refresh token was revoked (invalid_grant)", failure.TypeReauthRequired, nil)
		}
		return nil
	}
	var waiting ConnectionState
	var reauth *updateResult
	w.at(time.Hour, func() {
		w.findings.enqueue(3, t0.Add(time.Hour))
		w.signalFindingsPending()
	})
	w.at(2*time.Hour, func() {
		w.signalFindingsPending()
		w.signalChanges(1, 2)
	})
	w.at(3*time.Hour, func() { waiting = w.state() })
	w.at(day+3*time.Hour, func() { reauth = w.update(UpdateReauthorized) })
	w.cancelAt(day + 4*time.Hour)
	w.start(ConnectionInput{})
	w.requireCanceled()

	if n := len(w.findings.starts(FindingOpDrain, true)); n < 2 {
		t.Fatalf("drains: %d", n)
	}
	if got := w.findings.startsBetween(t0.Add(time.Hour), t0.Add(day+3*time.Hour)); len(got) != 0 {
		t.Errorf("finding activities while waiting for re-auth: %+v", got)
	}
	for _, c := range w.attempts {
		if c.At.After(t0.Add(time.Hour)) && c.At.Before(t0.Add(day+3*time.Hour)) {
			t.Errorf("sync while waiting for re-auth: %+v", c)
		}
	}
	if waiting.Status != StatusNeedsReauth || !waiting.FindingQueuePending || waiting.PendingInboundChanges != 2 ||
		waiting.FindingErrorType != failure.TypeReauthRequired || waiting.NextFindingOpAt != nil {
		t.Errorf("waiting state: %+v", waiting)
	}
	if w.actions(ActionNeedsReauth) != 1 || !slices.Contains(w.attrs, "needs_reauth stale=false reauth=true") {
		t.Errorf("needs_reauth audit rows %d, attrs %q", w.actions(ActionNeedsReauth), w.attrs)
	}
	if reauth == nil || !reauth.done || reauth.err != nil {
		t.Fatalf("reauthorized: %+v", reauth)
	}
	resumed := t0.Add(day + 3*time.Hour)
	if s := w.syncsOf(2); len(s) != 1 || s[0].Trigger != TriggerReauthorized || !s[0].At.Equal(resumed) {
		t.Errorf("sync after re-authorization: %+v", s)
	}
	if got := w.findings.starts(FindingOpApply, true); !equalTimes(got, []time.Time{resumed}) || len(w.findings.applied[0]) != 2 {
		t.Errorf("applies %v %q", got, w.findings.applied)
	}
	if w.findings.handled != 3 || len(w.findings.queue) != 0 {
		t.Errorf("the queue waited in Postgres and drained after re-authorization: handled %d", w.findings.handled)
	}
	if last := w.mirrors[len(w.mirrors)-1]; last.Status != StatusActive || last.LastErrorKind != "" {
		t.Errorf("last mirror %+v", last)
	}
}

func TestTransientFindingFailuresBackOff(t *testing.T) {
	w := newWorld(t)
	recovered := t0.Add(2 * time.Hour)
	w.findings.fail = func(op string, now time.Time) error {
		if now.Before(recovered) {
			return temporal.NewApplicationError("jira answered 503", failure.TypeTransient)
		}
		return nil
	}
	var failing ConnectionState
	w.at(time.Hour, func() {
		w.findings.enqueue(1, t0.Add(time.Hour))
		w.signalFindingsPending()
	})
	w.at(90*time.Minute, func() { failing = w.state() })
	w.cancelAt(3 * time.Hour)
	w.start(ConnectionInput{})
	w.requireCanceled()

	firsts := w.findings.starts(FindingOpDrain, false)
	if len(firsts) < 3 || len(firsts) > 10 {
		t.Fatalf("drains (first attempts) %v: the lane must back off, never spin", firsts)
	}
	for i := 1; i < len(firsts); i++ {
		if gap := firsts[i].Sub(firsts[i-1]); gap < findingBackoff(i) {
			t.Errorf("drain %d started %v after the previous one, less than the backoff %v", i, gap, findingBackoff(i))
		}
	}
	maxAttempts := int(activities.DrainOptions().RetryPolicy.MaximumAttempts)
	if all := w.findings.starts(FindingOpDrain, true); len(all) < maxAttempts*(len(firsts)-1) {
		t.Errorf("each failing drain uses the activity's retries first: %d attempts for %d drains", len(all), len(firsts))
	}
	if failing.FindingErrorType != failure.TypeTransient || failing.FindingBackoffUntil == nil || !failing.FindingQueuePending {
		t.Errorf("state while failing: %+v", failing)
	}
	if w.findings.handled != 1 {
		t.Errorf("the item is pushed once Jira recovers: %d", w.findings.handled)
	}
	if last := w.mirrors[len(w.mirrors)-1]; last.LastErrorKind != "" {
		t.Errorf("the error clears after a successful drain: %+v", last)
	}
}

func TestFindingConfigErrorIsNotRetriedInALoop(t *testing.T) {
	w := newWorld(t)
	fixed := t0.Add(80 * time.Minute)
	w.findings.fail = func(op string, now time.Time) error {
		if now.Before(fixed) {
			return temporal.NewNonRetryableApplicationError("issue_create_forbidden", failure.TypeConfig, nil)
		}
		return nil
	}
	w.at(time.Hour, func() {
		w.findings.enqueue(1, t0.Add(time.Hour))
		w.signalFindingsPending()
	})
	w.at(fixed.Sub(t0), func() { w.env.SignalWorkflow(SignalConfigChanged, nil) })
	w.cancelAt(3 * time.Hour)
	w.start(ConnectionInput{})
	w.requireCanceled()

	// Once, again a reconcile interval later, and at once when the configuration changes.
	if got := w.findings.starts(FindingOpDrain, true); !equalTimes(got, times(t0, time.Hour, 75*time.Minute, 80*time.Minute)) {
		t.Errorf("drains at %v", got)
	}
	var sawConfig bool
	for _, m := range w.mirrors {
		sawConfig = sawConfig || (m.LastErrorKind == failure.TypeConfig && m.LastError == "issue_create_forbidden")
	}
	if !sawConfig || len(w.failures) != 0 {
		t.Errorf("the config error is mirrored (and is no failed sync): mirrors %+v failures %+v", w.mirrors, w.failures)
	}
	if len(w.syncsOf(2)) != 0 {
		t.Errorf("a finding config error must not trigger an evidence sync on config change: %+v", w.attempts)
	}
}

func TestRevokeStopsTheDrainBeforeCleanup(t *testing.T) {
	w := newWorld(t)
	w.findings.delay[FindingOpDrain] = 10 * time.Minute
	w.cleanupDelay = 2 * time.Minute
	var revoke *updateResult
	w.at(time.Hour, func() {
		w.findings.enqueue(1, t0.Add(time.Hour))
		w.signalFindingsPending()
	})
	w.at(time.Hour+5*time.Minute, func() {
		revoke = w.update(UpdateRevoke, RevokeRequest{ActorType: "api_key", ActorID: "key-1"})
	})
	w.at(time.Hour+6*time.Minute, func() {
		w.signalFindingsPending()
		w.signalChanges(1, 1)
	})
	w.start(ConnectionInput{})
	if err := w.env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow after revoke: %v", err)
	}
	if revoke == nil || !revoke.done || revoke.err != nil {
		t.Fatalf("revoke: %+v", revoke)
	}
	if !w.before(activities.NameDrainFindingQueue+" canceled", "cleanup api_key/key-1") {
		t.Errorf("order: the drain stops, then the cleanup runs: %q", w.events)
	}
	if n := len(w.findings.attempts); n != 1 {
		t.Errorf("finding activities after the revoke: %+v", w.findings.attempts)
	}
}

func TestFindingWorkAndSyncsDoNotWaitForEachOther(t *testing.T) {
	w := newWorld(t)
	w.findings.delay[FindingOpDrain] = 3 * time.Hour
	w.syncDelay = func(seq int64) time.Duration {
		if seq == 3 {
			return 3 * time.Hour
		}
		return 0
	}
	w.at(day-time.Hour, func() {
		w.findings.enqueue(30, t0.Add(day-time.Hour))
		w.signalFindingsPending()
	})
	var during ConnectionState
	w.at(day+time.Hour, func() { during = w.state() })
	secondSync := t0.Add(day + Jitter(testConn, 2, day))
	thirdSync := secondSync.Add(day + Jitter(testConn, 3, day))
	w.at(thirdSync.Sub(t0)+time.Hour, func() { w.signalChanges(1, 1) })
	w.cancelAt(3 * day)
	w.start(ConnectionInput{})
	w.requireCanceled()

	if s := w.syncsOf(2); len(s) != 1 || !s[0].At.Equal(secondSync) {
		t.Errorf("a long drain must not delay the scheduled sync: %+v", s)
	}
	if during.FindingOpInProgress != FindingOpDrain {
		t.Errorf("state during both: %+v", during)
	}
	// The change arrives while sync 3 runs (and no drain does): applied at once.
	if got := w.findings.starts(FindingOpApply, true); !equalTimes(got, []time.Time{thirdSync.Add(time.Hour)}) {
		t.Errorf("apply during a sync at %v, sync 3 at %v", got, thirdSync)
	}
	if len(w.opened) != 0 {
		t.Errorf("the connection went stale: %v", w.opened)
	}
}

// carriedOf returns the next run's input and the carried state's encoded size.
func carriedOf(t *testing.T, w *world) (ConnectionInput, int) {
	t.Helper()
	in := continued(t, w)
	b, err := json.Marshal(in.Carried)
	if err != nil {
		t.Fatal(err)
	}
	return in, len(b)
}

func TestSignalsBeforeContinueAsNewAreCarried(t *testing.T) {
	w := newWorld(t)
	w.findings.delay[FindingOpDrain] = 10 * time.Minute
	w.findings.delay[FindingOpApply] = 10 * time.Minute
	w.at(time.Hour, func() {
		w.findings.enqueue(1, t0.Add(time.Hour))
		w.signalFindingsPending()
	})
	w.at(time.Hour+time.Minute, func() { w.signalChanges(1, 1) }) // applied as the run's 2nd op
	// The run is draining for continue-as-new while that apply runs; these must not be lost.
	w.at(time.Hour+15*time.Minute, func() {
		w.findings.enqueue(2, t0.Add(time.Hour))
		w.signalFindingsPending()
		w.signalChanges(2, 3)
	})
	w.start(ConnectionInput{MaxFindingOpsPerRun: 2})

	in, _ := carriedOf(t, w)
	c := in.Carried
	if !c.QueuePending || len(c.Inbound) != 2 || c.Inbound[0].DeliveryID != "delivery-2" || c.DrainSeq != 1 || in.MaxFindingOpsPerRun != 2 {
		t.Fatalf("carried: %+v", c.FindingCarried)
	}
	if !w.env.Now().Equal(t0.Add(time.Hour + 20*time.Minute)) {
		t.Errorf("continued at %v, want when the apply in flight ended", w.env.Now())
	}
	if got := w.findings.startsBetween(t0.Add(time.Hour+11*time.Minute), t0.Add(2*time.Hour)); len(got) != 0 {
		t.Errorf("finding work started while draining for continue-as-new: %+v", got)
	}

	next := newWorld(t)
	next.env.SetStartTime(w.env.Now())
	next.findings.queue = w.findings.queue
	next.cancelAt(time.Hour)
	in.MaxFindingOpsPerRun = 0
	next.start(in)
	next.requireCanceled()
	want := [][]string{{"delivery-2", "delivery-3"}}
	if !slices.EqualFunc(next.findings.applied, want, slices.Equal) || next.findings.handled != 2 {
		t.Errorf("next run applied %q, handled %d", next.findings.applied, next.findings.handled)
	}
	if len(next.findings.drains) == 0 || next.findings.drains[0].Seq != 2 {
		t.Errorf("drain seq continues across runs: %+v", next.findings.drains)
	}
}

func TestTenThousandFindingsAcrossRuns(t *testing.T) {
	const total = 10000
	start := t0
	var queue []time.Time
	for range total {
		queue = append(queue, t0)
	}
	var in ConnectionInput
	handled, runs, sizes := 0, 0, []int{}
	for {
		w := newWorld(t)
		w.env.SetStartTime(start)
		w.findings.queue = queue
		if runs == 0 {
			w.at(time.Minute, w.signalFindingsPending)
		}
		w.cancelAt(time.Hour)
		w.start(in)
		runs++
		handled += w.findings.handled
		queue = w.findings.queue
		var canceled *temporal.CanceledError
		if errors.As(w.env.GetWorkflowError(), &canceled) {
			break // the last run drained the rest and waited
		}
		var size int
		in, size = carriedOf(t, w)
		sizes = append(sizes, size)
		start = w.env.Now()
		if runs > 5 {
			t.Fatalf("too many runs: %d", runs)
		}
	}
	if handled != total || len(queue) != 0 {
		t.Errorf("handled %d of %d, %d left", handled, total, len(queue))
	}
	if runs < 2 {
		t.Errorf("400 drains must span runs (at most %d finding activities each): %d run(s)", DefaultMaxFindingOpsPerRun, runs)
	}
	for _, s := range sizes {
		if s > 1500 {
			t.Errorf("carried state of %d bytes: it must not grow with the queue (sizes %v)", s, sizes)
		}
	}
	t.Logf("%d runs, carried sizes %v", runs, sizes)
}
