package workflows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/failure"
)

// world is the activities' side of a workflow test: it answers each activity the way the real
// one would for a scripted Jira, and records every call with the workflow clock's time. The
// Temporal test environment around it is the real SDK (timers, retries, cancellation, updates),
// with time skipping.
type world struct {
	t   *testing.T
	env *testsuite.TestWorkflowEnvironment

	mu   sync.Mutex
	snap activities.ConnectionSnapshot
	// syncResult decides each SyncEvidence attempt; nil means success.
	syncResult func(in activities.SyncInput, now time.Time) (string, error)
	// syncDelay and cleanupDelay are how long those activities take, on the workflow clock.
	syncDelay    func(seq int64) time.Duration
	cleanupDelay time.Duration

	loads    int
	attempts []syncCall // every SyncEvidence attempt, when it started
	failures []activities.SyncFailure
	mirrors  []activities.StateUpdate
	opened   []time.Time
	resolved []time.Time
	cleanups []activities.RevokeInput
	tests    int
	attrs    []string
	events   []string // ordered log of the interesting moments

	findings *findingStubs // the finding-sync activities (findings_connection_test.go)
}

type syncCall struct {
	Seq     int64
	Trigger string
	At      time.Time
	Attempt int32
}

func newWorld(t *testing.T) *world {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	// The SDK logs every timer and activity, and each scripted activity failure as an error;
	// the tests assert on outcomes, so the log is kept for -v runs only.
	level := slog.LevelError + 1
	if testing.Verbose() {
		level = slog.LevelWarn
	}
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))))
	env := suite.NewTestWorkflowEnvironment()
	env.SetStartTime(t0)
	w := &world{
		t: t, env: env,
		snap: activities.ConnectionSnapshot{Status: StatusActive, SyncCadence: day, StaleThreshold: 2 * day, CreatedAt: t0},
	}
	env.RegisterWorkflow(ConnectionWorkflow)
	env.OnActivity(acts.LoadConnection, mock.Anything, mock.Anything).Return(w.loadConnection)
	env.OnActivity(acts.SyncEvidence, mock.Anything, mock.Anything).AfterFn(w.currentSyncDelay).Return(w.syncEvidence)
	env.OnActivity(acts.RecordSyncFailure, mock.Anything, mock.Anything).Return(w.recordSyncFailure)
	env.OnActivity(acts.SetConnectionState, mock.Anything, mock.Anything).Return(w.setConnectionState)
	env.OnActivity(acts.OpenAlert, mock.Anything, mock.Anything).Return(w.openAlert)
	env.OnActivity(acts.ResolveAlert, mock.Anything, mock.Anything).Return(w.resolveAlert)
	env.OnActivity(acts.TestConnection, mock.Anything, mock.Anything).Return(w.testConnection)
	env.OnActivity(acts.RevokeCleanup, mock.Anything, mock.Anything).AfterFn(func() time.Duration {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.cleanupDelay
	}).Return(w.revokeCleanup)
	env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		sa := args.Get(0).(temporal.SearchAttributes)
		org, _ := sa.GetKeyword(AttrOrgID)
		status, _ := sa.GetKeyword(AttrConnectionStatus)
		stale, _ := sa.GetBool(AttrStale)
		reauth, _ := sa.GetBool(AttrNeedsReauth)
		if org != testOrg.String() {
			t.Errorf("search attribute org id %q", org)
		}
		w.record(&w.attrs, fmt.Sprintf("%s stale=%t reauth=%t", status, stale, reauth))
	}).Return(nil)
	w.findings = newFindingStubs(w)
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, args converter.EncodedValues) {
		if w.findings.started(info, args) {
			return
		}
		if info.ActivityType.Name != activities.NameSyncEvidence {
			return
		}
		var in activities.SyncInput
		if err := args.Get(&in); err != nil {
			t.Errorf("sync input: %v", err)
		}
		w.mu.Lock()
		w.attempts = append(w.attempts, syncCall{Seq: in.Seq, Trigger: in.Trigger, At: env.Now(), Attempt: info.Attempt})
		w.events = append(w.events, fmt.Sprintf("sync %d started", in.Seq))
		w.mu.Unlock()
	})
	env.SetOnActivityCanceledListener(func(info *activity.Info) {
		w.mu.Lock()
		w.events = append(w.events, info.ActivityType.Name+" canceled")
		w.mu.Unlock()
	})
	return w
}

func (w *world) record(list *[]string, s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	*list = append(*list, s)
}

func (w *world) currentSyncDelay() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.syncDelay == nil || len(w.attempts) == 0 {
		return 0
	}
	return w.syncDelay(w.attempts[len(w.attempts)-1].Seq)
}

func (w *world) loadConnection(_ context.Context, ref activities.ConnectionRef) (activities.ConnectionSnapshot, error) {
	if ref.OrgID != testOrg || ref.ConnectionID != testConn {
		w.t.Errorf("load of %v", ref)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.loads++
	return w.snap, nil
}

func (w *world) syncEvidence(_ context.Context, in activities.SyncInput) (activities.SyncResult, error) {
	if in.WorkflowID != WorkflowID(testConn) || in.RunID == "" || in.Seq <= 0 {
		w.t.Errorf("sync input %+v", in)
	}
	w.mu.Lock()
	decide := w.syncResult
	w.mu.Unlock()
	outcome, err := OutcomeSuccess, error(nil)
	if decide != nil {
		outcome, err = decide(in, w.env.Now())
	}
	w.record(&w.events, fmt.Sprintf("sync %d finished", in.Seq))
	if err != nil {
		return activities.SyncResult{}, err
	}
	return activities.SyncResult{Outcome: outcome, CompletedAt: w.env.Now()}, nil
}

func (w *world) recordSyncFailure(_ context.Context, in activities.SyncFailure) error {
	if in.WorkflowID != WorkflowID(testConn) || in.RunID == "" {
		w.t.Errorf("failure input %+v", in)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failures = append(w.failures, in)
	w.events = append(w.events, fmt.Sprintf("failure %d %s", in.Seq, in.ErrorType))
	return nil
}

func (w *world) setConnectionState(_ context.Context, in activities.StateUpdate) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mirrors = append(w.mirrors, in)
	if in.Action != "" {
		w.events = append(w.events, in.Action)
	}
	return nil
}

func (w *world) openAlert(_ context.Context, in activities.AlertInput) error {
	if in.Kind != activities.AlertKindStale || in.Message == "" {
		w.t.Errorf("alert %+v", in)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.opened = append(w.opened, w.env.Now())
	w.events = append(w.events, "alert opened")
	return nil
}

func (w *world) resolveAlert(_ context.Context, in activities.AlertInput) error {
	if in.Kind != activities.AlertKindStale {
		w.t.Errorf("resolve %+v", in)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.resolved = append(w.resolved, w.env.Now())
	w.events = append(w.events, "alert resolved")
	return nil
}

func (w *world) testConnection(_ context.Context, _ activities.ConnectionRef) (activities.TestResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tests++
	return activities.TestResult{OK: true, Checks: []activities.Check{{Name: "auth", OK: true, Detail: "myself answered"}}}, nil
}

func (w *world) revokeCleanup(_ context.Context, in activities.RevokeInput) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cleanups = append(w.cleanups, in)
	w.events = append(w.events, "cleanup "+in.ActorType+"/"+in.ActorID)
	return nil
}

func (w *world) start(in ConnectionInput) {
	w.t.Helper()
	if in.OrgID == (ConnectionInput{}).OrgID {
		in.OrgID, in.ConnectionID = testOrg, testConn
	}
	w.env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: WorkflowID(testConn)})
	w.env.ExecuteWorkflow(ConnectionWorkflow, in)
	if !w.env.IsWorkflowCompleted() {
		w.t.Fatal("workflow did not complete")
	}
}

// at runs fn when the workflow clock reaches t0+d.
func (w *world) at(d time.Duration, fn func()) { w.env.RegisterDelayedCallback(fn, d) }

func (w *world) state() ConnectionState {
	w.t.Helper()
	v, err := w.env.QueryWorkflow(QueryState)
	if err != nil {
		w.t.Fatalf("query: %v", err)
	}
	var s ConnectionState
	if err := v.Get(&s); err != nil {
		w.t.Fatal(err)
	}
	return s
}

// updateResult is what an update answered.
type updateResult struct {
	done     bool
	rejected error
	err      error
	value    any
}

// update sends an update; the returned result fills in as the workflow answers.
func (w *world) update(name string, args ...any) *updateResult {
	res := &updateResult{}
	w.env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
		OnAccept: func() {},
		OnReject: func(err error) { res.done, res.rejected = true, err },
		OnComplete: func(v any, err error) {
			res.done, res.value, res.err = true, v, err
			w.record(&w.events, name+" answered")
		},
	}, args...)
	return res
}

func (w *world) syncsOf(seq int64) []syncCall {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []syncCall
	for _, c := range w.attempts {
		if c.Seq == seq {
			out = append(out, c)
		}
	}
	return out
}

func (w *world) actions(action string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, m := range w.mirrors {
		if m.Action == action {
			n++
		}
	}
	return n
}

// before reports whether event a was logged before event b (both must occur).
func (w *world) before(a, b string) bool {
	ia, ib := -1, -1
	for i, e := range w.events {
		if e == a && ia < 0 {
			ia = i
		}
		if e == b && ib < 0 {
			ib = i
		}
	}
	return ia >= 0 && ib >= 0 && ia < ib
}

func (w *world) cancelAt(d time.Duration) { w.at(d, w.env.CancelWorkflow) }

func (w *world) requireCanceled() {
	w.t.Helper()
	var canceled *temporal.CanceledError
	if err := w.env.GetWorkflowError(); !errors.As(err, &canceled) {
		w.t.Fatalf("workflow error %v, want canceled", err)
	}
}

func TestThreeDailySyncs(t *testing.T) {
	w := newWorld(t)
	var st ConnectionState
	w.at(3*day-30*time.Minute, func() { st = w.state() })
	w.cancelAt(3*day - 29*time.Minute)
	w.start(ConnectionInput{})
	w.requireCanceled()

	if len(w.attempts) != 3 {
		t.Fatalf("syncs in three days: %+v", w.attempts)
	}
	want := t0
	for i, c := range w.attempts {
		seq := int64(i + 1)
		if i > 0 {
			want = want.Add(day + Jitter(testConn, seq, day))
		}
		if c.Seq != seq || c.Trigger != TriggerSchedule || !c.At.Equal(want) {
			t.Errorf("sync %d: %+v, want seq %d at %v", i, c, seq, want)
		}
	}
	if st.Status != StatusActive || st.Stale || st.Seq != 3 || st.SyncInProgress || st.LastOutcome != OutcomeSuccess {
		t.Errorf("state: %+v", st)
	}
	if st.LastSyncAt == nil || !st.LastSyncAt.Equal(w.attempts[2].At) || st.LastSuccessAt == nil || !st.LastSuccessAt.Equal(w.attempts[2].At) {
		t.Errorf("last sync/success: %+v", st)
	}
	if next := w.attempts[2].At.Add(day + Jitter(testConn, 4, day)); st.NextSyncAt == nil || !st.NextSyncAt.Equal(next) {
		t.Errorf("next sync %v, want %v", st.NextSyncAt, next)
	}
	if st.StaleAt == nil || !st.StaleAt.Equal(w.attempts[2].At.Add(2*day)) {
		t.Errorf("stale at %v", st.StaleAt)
	}
	if len(w.opened) != 0 || len(w.failures) != 0 || w.loads != 1 {
		t.Errorf("alerts %v failures %v loads %d", w.opened, w.failures, w.loads)
	}
	if len(w.mirrors) < 4 || w.mirrors[len(w.mirrors)-1].LastSuccessAt == nil {
		t.Errorf("every sync is mirrored: %+v", w.mirrors)
	}
	if len(w.cleanups) != 1 || w.cleanups[0].ActorType != "system" || w.cleanups[0].ActorID != "workflow-cancellation" {
		t.Errorf("cleanup: %+v", w.cleanups)
	}
}

func TestFailingSyncsGoStaleOnceAndRecover(t *testing.T) {
	w := newWorld(t)
	// Jira answers 503 for the first 2.75 days, then recovers.
	w.syncResult = func(_ activities.SyncInput, now time.Time) (string, error) {
		if now.Before(t0.Add(66 * time.Hour)) {
			return "", temporal.NewApplicationError("jira answered 503", failure.TypeTransient)
		}
		return OutcomeSuccess, nil
	}
	var staleState, recovered ConnectionState
	w.at(2*day+time.Minute, func() { staleState = w.state() })
	w.at(3*day+12*time.Hour, func() { recovered = w.state() })
	w.cancelAt(4*day + time.Hour)
	w.start(ConnectionInput{})
	w.requireCanceled()

	maxAttempts := int(activities.SyncOptions().RetryPolicy.MaximumAttempts)
	for seq := int64(1); seq <= 3; seq++ {
		if n := len(w.syncsOf(seq)); n != maxAttempts {
			t.Errorf("sync %d: %d attempts, want the retry policy's %d", seq, n, maxAttempts)
		}
	}
	if len(w.failures) != 3 {
		t.Fatalf("failures recorded: %+v", w.failures)
	}
	for i, f := range w.failures {
		if f.Seq != int64(i+1) || f.ErrorType != failure.TypeTransient || f.Message != "jira answered 503" {
			t.Errorf("failure %d: %+v", i, f)
		}
	}
	if len(w.opened) != 1 || !w.opened[0].Equal(t0.Add(2*day)) {
		t.Errorf("alerts opened at %v, want exactly one at creation + threshold", w.opened)
	}
	if w.actions(ActionStale) != 1 || w.actions(ActionRecovered) != 1 {
		t.Errorf("stale/recovered audit actions: %d/%d", w.actions(ActionStale), w.actions(ActionRecovered))
	}
	if !staleState.Stale || staleState.StaleAt != nil || staleState.LastErrorType != failure.TypeTransient || staleState.LastSuccessAt != nil {
		t.Errorf("stale state: %+v", staleState)
	}
	recovery := w.syncsOf(4)
	if len(recovery) != 1 || len(w.resolved) != 1 || !w.before("sync 4 finished", "alert resolved") {
		t.Fatalf("recovery sync %+v resolved %v events %q", recovery, w.resolved, w.events)
	}
	if recovered.Stale || recovered.LastSuccessAt == nil || !recovered.LastSuccessAt.Equal(recovery[0].At) || recovered.LastErrorType != "" {
		t.Errorf("recovered state: %+v", recovered)
	}
	if !containsInOrder(w.attrs, "active stale=true reauth=false", "active stale=false reauth=false") {
		t.Errorf("search attributes: %q", w.attrs)
	}
}

func TestReauthRequiredWaitsWithoutJiraCalls(t *testing.T) {
	w := newWorld(t)
	w.syncResult = func(in activities.SyncInput, _ time.Time) (string, error) {
		if in.Seq == 2 {
			return "", temporal.NewNonRetryableApplicationError("the refresh token was revoked (invalid_grant)", failure.TypeReauthRequired, nil)
		}
		return OutcomeSuccess, nil
	}
	var waiting, staleWaiting ConnectionState
	var syncNow, reauth *updateResult
	w.at(day+time.Hour, func() {
		waiting = w.state()
		syncNow = w.update(UpdateSyncNow)
	})
	w.at(2*day+time.Minute, func() { staleWaiting = w.state() })
	w.at(3*day, func() { reauth = w.update(UpdateReauthorized) })
	w.cancelAt(3*day + time.Hour)
	w.start(ConnectionInput{})
	w.requireCanceled()

	if n := len(w.syncsOf(2)); n != 1 {
		t.Errorf("reauth_required must not be retried: %d attempts", n)
	}
	if waiting.Status != StatusNeedsReauth || waiting.NextSyncAt != nil || waiting.StaleAt == nil || !waiting.StaleAt.Equal(t0.Add(2*day)) {
		t.Errorf("waiting state: %+v", waiting)
	}
	if syncNow == nil || syncNow.rejected == nil || !strings.Contains(syncNow.rejected.Error(), StatusNeedsReauth) {
		t.Errorf("sync-now while waiting: %+v", syncNow)
	}
	for _, c := range w.attempts {
		if c.At.After(w.syncsOf(2)[0].At) && c.At.Before(t0.Add(3*day)) {
			t.Errorf("Jira called while waiting for re-auth: %+v", c)
		}
	}
	if w.tests != 0 {
		t.Errorf("connection tested without being asked: %d", w.tests)
	}
	if !staleWaiting.Stale || staleWaiting.Status != StatusNeedsReauth || len(w.opened) != 1 || !w.opened[0].Equal(t0.Add(2*day)) {
		t.Errorf("the stale clock must keep running: %+v, alerts %v", staleWaiting, w.opened)
	}
	if w.actions(ActionNeedsReauth) != 1 {
		t.Errorf("needs_reauth audit actions: %d", w.actions(ActionNeedsReauth))
	}
	if reauth == nil || !reauth.done || reauth.err != nil || reauth.rejected != nil {
		t.Fatalf("reauthorized update: %+v", reauth)
	}
	resumed := w.syncsOf(3)
	if len(resumed) != 1 || resumed[0].Trigger != TriggerReauthorized || !resumed[0].At.Equal(t0.Add(3*day)) {
		t.Errorf("re-authorization must sync at once: %+v", resumed)
	}
	if len(w.resolved) != 1 {
		t.Errorf("resolved: %v", w.resolved)
	}
	if !containsInOrder(w.attrs, "needs_reauth stale=false reauth=true", "needs_reauth stale=true reauth=true",
		"active stale=true reauth=false", "active stale=false reauth=false") {
		t.Errorf("search attributes: %q", w.attrs)
	}
}

func TestSyncNow(t *testing.T) {
	w := newWorld(t)
	w.syncDelay = func(seq int64) time.Duration {
		if seq == 3 {
			return 30 * time.Minute
		}
		return 0
	}
	var first, second, queued, coalesced *updateResult
	var during ConnectionState
	w.at(2*time.Hour, func() { first = w.update(UpdateSyncNow) })
	w.at(5*time.Hour, func() { second = w.update(UpdateSyncNow) })
	w.at(5*time.Hour+10*time.Minute, func() { queued = w.update(UpdateSyncNow) })
	w.at(5*time.Hour+20*time.Minute, func() { coalesced = w.update(UpdateSyncNow) })
	w.at(5*time.Hour+25*time.Minute, func() { during = w.state() })
	w.cancelAt(6 * time.Hour)
	w.start(ConnectionInput{})
	w.requireCanceled()

	for i, tc := range []struct {
		res  *updateResult
		want int64
	}{{first, 2}, {second, 3}, {queued, 4}, {coalesced, 4}} {
		if tc.res == nil || !tc.res.done || tc.res.err != nil || tc.res.rejected != nil || tc.res.value != tc.want {
			t.Errorf("sync-now %d: %+v, want seq %d", i, tc.res, tc.want)
		}
	}
	if during.RunningSyncSeq != 3 || !during.SyncInProgress || during.PendingSyncSeq != 4 || during.NextSyncAt != nil {
		t.Errorf("state during sync 3: %+v", during)
	}
	wantAt := map[int64]time.Time{1: t0, 2: t0.Add(2 * time.Hour), 3: t0.Add(5 * time.Hour), 4: t0.Add(5*time.Hour + 30*time.Minute)}
	if len(w.attempts) != 4 {
		t.Fatalf("syncs: %+v", w.attempts)
	}
	for _, c := range w.attempts {
		wantTrigger := TriggerSyncNow
		if c.Seq == 1 {
			wantTrigger = TriggerSchedule
		}
		if !c.At.Equal(wantAt[c.Seq]) || c.Trigger != wantTrigger {
			t.Errorf("sync %+v, want at %v by %s", c, wantAt[c.Seq], wantTrigger)
		}
	}
	last := w.mirrors[len(w.mirrors)-1]
	if next := t0.Add(5*time.Hour + 30*time.Minute + day + Jitter(testConn, 5, day)); last.NextSyncAt == nil || !last.NextSyncAt.Equal(next) {
		t.Errorf("next scheduled sync %v, want a cadence after the last attempt (%v)", last.NextSyncAt, next)
	}
}

func TestConfigChangedChangesCadence(t *testing.T) {
	w := newWorld(t)
	var after ConnectionState
	w.at(time.Hour, func() {
		w.mu.Lock()
		w.snap.SyncCadence = 6 * time.Hour
		w.mu.Unlock()
		w.env.SignalWorkflow(SignalConfigChanged, nil)
	})
	w.at(2*time.Hour, func() { after = w.state() })
	w.cancelAt(8 * time.Hour)
	w.start(ConnectionInput{})
	w.requireCanceled()

	if w.loads != 2 {
		t.Errorf("loads: %d, want a reload after config-changed", w.loads)
	}
	want := t0.Add(6*time.Hour + Jitter(testConn, 2, 6*time.Hour))
	if after.SyncCadence != 6*time.Hour || after.NextSyncAt == nil || !after.NextSyncAt.Equal(want) {
		t.Errorf("after reload: %+v, want next sync %v", after, want)
	}
	if s := w.syncsOf(2); len(s) != 1 || !s[0].At.Equal(want) {
		t.Errorf("second sync %+v, want at %v", s, want)
	}
}

func TestConfigErrorRetriedOnlyAfterConfigChange(t *testing.T) {
	w := newWorld(t)
	w.syncResult = func(in activities.SyncInput, _ time.Time) (string, error) {
		if in.Seq == 1 {
			return "", temporal.NewNonRetryableApplicationError("jira answered 403 on the project search", failure.TypeConfig, nil)
		}
		return OutcomeSuccess, nil
	}
	var failed ConnectionState
	w.at(time.Hour, func() { failed = w.state() })
	w.at(3*time.Hour, func() { w.env.SignalWorkflow(SignalConfigChanged, nil) })
	w.cancelAt(4 * time.Hour)
	w.start(ConnectionInput{})
	w.requireCanceled()

	if n := len(w.syncsOf(1)); n != 1 || len(w.failures) != 1 || w.failures[0].ErrorType != failure.TypeConfig {
		t.Errorf("a config error is recorded and not retried: %d attempts, failures %+v", n, w.failures)
	}
	if failed.Status != StatusActive || failed.LastErrorType != failure.TypeConfig || failed.NextSyncAt == nil ||
		!failed.NextSyncAt.Equal(t0.Add(day+Jitter(testConn, 2, day))) {
		t.Errorf("after the config error the next cadence still tries: %+v", failed)
	}
	retry := w.syncsOf(2)
	if len(retry) != 1 || !retry[0].At.Equal(t0.Add(3*time.Hour)) || retry[0].Trigger != TriggerSchedule {
		t.Errorf("config-changed must retry at once: %+v", retry)
	}
}

func TestNoDataIsNotASuccess(t *testing.T) {
	w := newWorld(t)
	w.syncResult = func(activities.SyncInput, time.Time) (string, error) { return OutcomeNoData, nil }
	var st ConnectionState
	w.at(2*day+time.Minute, func() { st = w.state() })
	w.cancelAt(2*day + time.Hour)
	w.start(ConnectionInput{})
	w.requireCanceled()
	if !st.Stale || st.LastSuccessAt != nil || st.LastOutcome != OutcomeNoData || st.LastErrorType != ErrTypeNoData || len(w.opened) != 1 {
		t.Errorf("no_data syncs must let the connection go stale: %+v, alerts %v", st, w.opened)
	}
	if len(w.failures) != 0 {
		t.Errorf("no_data is not a failed run: %+v", w.failures)
	}
}

func TestTestUpdate(t *testing.T) {
	w := newWorld(t)
	w.syncResult = func(in activities.SyncInput, _ time.Time) (string, error) {
		if in.Seq == 2 {
			return "", temporal.NewNonRetryableApplicationError("unauthorized", failure.TypeReauthRequired, nil)
		}
		return OutcomeSuccess, nil
	}
	var active, waiting *updateResult
	w.at(time.Hour, func() { active = w.update(UpdateTest) })
	w.at(day+time.Hour, func() { waiting = w.update(UpdateTest) })
	w.cancelAt(day + 2*time.Hour)
	w.start(ConnectionInput{})
	w.requireCanceled()
	for name, res := range map[string]*updateResult{"active": active, "needs_reauth": waiting} {
		got, ok := res.value.(activities.TestResult)
		if !res.done || res.rejected != nil || res.err != nil || !ok || !got.OK || len(got.Checks) != 1 {
			t.Errorf("test while %s: %+v", name, res)
		}
	}
	if w.tests != 2 {
		t.Errorf("TestConnection calls: %d", w.tests)
	}
}

func TestUpdatesRejectedBeforeAuthorization(t *testing.T) {
	w := newWorld(t)
	w.snap.Status = StatusPendingAuth
	var syncNow, test, reauth *updateResult
	w.at(time.Hour, func() {
		syncNow = w.update(UpdateSyncNow)
		test = w.update(UpdateTest)
	})
	w.at(2*time.Hour, func() { reauth = w.update(UpdateReauthorized) })
	w.cancelAt(3 * time.Hour)
	w.start(ConnectionInput{})
	w.requireCanceled()
	if syncNow.rejected == nil || test.rejected == nil {
		t.Errorf("pending_auth: sync-now %+v test %+v", syncNow, test)
	}
	if reauth.err != nil || reauth.rejected != nil || len(w.syncsOf(1)) != 1 || w.syncsOf(1)[0].Trigger != TriggerReauthorized {
		t.Errorf("authorization must start syncing: %+v %+v", reauth, w.attempts)
	}
}

func TestRevokeUpdateStopsTheSyncAndCleansUp(t *testing.T) {
	w := newWorld(t)
	w.syncDelay = func(int64) time.Duration { return 10 * time.Minute }
	w.cleanupDelay = time.Minute
	var revoke, syncNow, again *updateResult
	w.at(5*time.Minute, func() {
		revoke = w.update(UpdateRevoke, RevokeRequest{ActorType: "api_key", ActorID: "key-1"})
	})
	w.at(5*time.Minute+30*time.Second, func() {
		syncNow = w.update(UpdateSyncNow)
		again = w.update(UpdateRevoke, RevokeRequest{ActorType: "api_key", ActorID: "key-2"})
	})
	w.start(ConnectionInput{})

	if err := w.env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow after revoke: %v", err)
	}
	if revoke == nil || !revoke.done || revoke.err != nil || revoke.rejected != nil {
		t.Fatalf("revoke update: %+v", revoke)
	}
	if len(w.cleanups) != 1 || w.cleanups[0].ActorID != "key-1" {
		t.Errorf("cleanups: %+v", w.cleanups)
	}
	if !w.before(activities.NameSyncEvidence+" canceled", "cleanup api_key/key-1") || !w.before("cleanup api_key/key-1", UpdateRevoke+" answered") {
		t.Errorf("order: the sync stops, then the cleanup runs, then revoke answers: %q", w.events)
	}
	if syncNow == nil || syncNow.rejected == nil {
		t.Errorf("sync-now during revoke: %+v", syncNow)
	}
	if again == nil || !again.done || again.err != nil || again.rejected != nil {
		t.Errorf("a repeated revoke is answered once the cleanup is done: %+v", again)
	}
	if len(w.failures) != 0 {
		t.Errorf("a revoked sync is not a failure: %+v", w.failures)
	}
	if last := w.attrs[len(w.attrs)-1]; last != "revoked stale=false reauth=false" {
		t.Errorf("search attributes: %q", w.attrs)
	}
}

func TestRevokeByCancellation(t *testing.T) {
	w := newWorld(t)
	w.syncDelay = func(int64) time.Duration { return 10 * time.Minute }
	w.cleanupDelay = time.Minute
	w.cancelAt(time.Minute)
	w.start(ConnectionInput{})
	w.requireCanceled()
	// The cleanup ran although the workflow's own context was canceled: it used a disconnected one.
	if len(w.cleanups) != 1 || w.cleanups[0].ActorID != "workflow-cancellation" {
		t.Fatalf("cleanups: %+v", w.cleanups)
	}
	if !w.before(activities.NameSyncEvidence+" canceled", "cleanup system/workflow-cancellation") {
		t.Errorf("order: %q", w.events)
	}
}

func TestRevokeSignal(t *testing.T) {
	w := newWorld(t)
	w.at(time.Hour, func() { w.env.SignalWorkflow(SignalRevoke, nil) })
	w.start(ConnectionInput{})
	if err := w.env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow after revoke signal: %v", err)
	}
	if len(w.cleanups) != 1 || w.cleanups[0].ActorType != "system" || w.cleanups[0].ActorID != "revoke-signal" {
		t.Errorf("cleanups: %+v", w.cleanups)
	}
}

func TestRevokedInStoreEndsTheWorkflow(t *testing.T) {
	w := newWorld(t)
	w.snap = activities.ConnectionSnapshot{Status: StatusRevoked, Revoked: true}
	w.start(ConnectionInput{})
	if err := w.env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow: %v", err)
	}
	if len(w.attempts) != 0 || len(w.cleanups) != 0 || len(w.mirrors) != 0 {
		t.Errorf("a revoked connection does nothing: syncs %v cleanups %v mirrors %v", w.attempts, w.cleanups, w.mirrors)
	}
}

// continued returns the input of the next run.
func continued(t *testing.T, w *world) ConnectionInput {
	t.Helper()
	var can *workflow.ContinueAsNewError
	if err := w.env.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("workflow error %v, want continue-as-new", err)
	}
	if can.WorkflowType.Name != "ConnectionWorkflow" {
		t.Errorf("continued as %s", can.WorkflowType.Name)
	}
	var in ConnectionInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &in); err != nil {
		t.Fatal(err)
	}
	if in.Carried == nil || in.OrgID != testOrg || in.ConnectionID != testConn {
		t.Fatalf("continued input: %+v", in)
	}
	return in
}

func TestContinueAsNewCarriesSeqDeadlinesAndPendingSyncNow(t *testing.T) {
	w := newWorld(t)
	w.syncDelay = func(seq int64) time.Duration {
		if seq == 2 {
			return time.Hour
		}
		return 0
	}
	var syncNow *updateResult
	var before ConnectionState
	w.at(day+30*time.Minute, func() { syncNow = w.update(UpdateSyncNow) })
	w.at(day+40*time.Minute, func() { before = w.state() })
	w.start(ConnectionInput{MaxSyncsPerRun: 2})

	in := continued(t, w)
	second := w.syncsOf(2)
	if syncNow == nil || syncNow.value != int64(3) || len(second) != 1 || before.PendingSyncSeq != 3 {
		t.Fatalf("sync-now during sync 2: %+v, %+v, %+v", syncNow, second, before)
	}
	c := in.Carried
	finished := second[0].At.Add(time.Hour)
	if in.MaxSyncsPerRun != 2 || c.Seq != 3 || c.PendingSeq != 3 || c.PendingTrigger != TriggerSyncNow ||
		!c.LastAttemptAt.Equal(second[0].At) || !c.LastSuccessAt.Equal(finished) || c.Status != StatusActive || !c.Initialized {
		t.Errorf("carried: %+v", c)
	}
	if len(w.attempts) != 2 {
		t.Errorf("the pending sync must start in the next run, not this one: %+v", w.attempts)
	}

	// The next run: its first action is the pending sync with the promised seq, and the stale
	// deadline is the same absolute time as before.
	next := newWorld(t)
	next.env.SetStartTime(finished)
	next.syncResult = func(activities.SyncInput, time.Time) (string, error) {
		return "", temporal.NewNonRetryableApplicationError("bad jql", failure.TypeConfig, nil)
	}
	var after ConnectionState
	next.at(time.Minute, func() { after = next.state() })
	next.cancelAt(2 * time.Minute)
	next.start(in)
	next.requireCanceled()
	if len(next.attempts) != 1 || next.attempts[0].Seq != 3 || next.attempts[0].Trigger != TriggerSyncNow || !next.attempts[0].At.Equal(finished) {
		t.Errorf("next run syncs: %+v", next.attempts)
	}
	if after.StaleAt == nil || !after.StaleAt.Equal(finished.Add(2*day)) || after.Seq != 3 {
		t.Errorf("next run state: %+v", after)
	}
}

func TestContinueAsNewWhenSuggested(t *testing.T) {
	w := newWorld(t)
	w.env.SetContinueAsNewSuggested(true)
	w.start(ConnectionInput{})
	in := continued(t, w)
	if in.Carried.Seq != 1 || in.Carried.PendingSeq != 0 || !in.Carried.LastSuccessAt.Equal(t0) {
		t.Errorf("carried: %+v", in.Carried)
	}
	lastMirror := w.mirrors[len(w.mirrors)-1]

	next := newWorld(t)
	next.env.SetStartTime(t0.Add(time.Minute))
	var after ConnectionState
	next.at(time.Minute, func() { after = next.state() })
	next.cancelAt(2 * time.Minute)
	next.start(in)
	next.requireCanceled()
	if len(next.attempts) != 0 {
		t.Errorf("the next run must wait for its deadline: %+v", next.attempts)
	}
	if after.NextSyncAt == nil || lastMirror.NextSyncAt == nil || !after.NextSyncAt.Equal(*lastMirror.NextSyncAt) ||
		after.StaleAt == nil || !after.StaleAt.Equal(t0.Add(2*day)) {
		t.Errorf("deadlines moved across continue-as-new: before %v, after %+v", lastMirror.NextSyncAt, after)
	}
}

func TestInvalidInput(t *testing.T) {
	w := newWorld(t)
	w.env.ExecuteWorkflow(ConnectionWorkflow, ConnectionInput{})
	var appErr *temporal.ApplicationError
	if err := w.env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != "invalid_input" {
		t.Errorf("workflow without ids: %v", err)
	}
}

// containsInOrder reports whether want appear in list in this order (not necessarily adjacent).
func containsInOrder(list []string, want ...string) bool {
	i := 0
	for _, s := range list {
		if i < len(want) && s == want[i] {
			i++
		}
	}
	return i == len(want)
}
