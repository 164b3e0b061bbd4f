//go:build recordhistory

package workflows

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/server/temporaltest"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/failure"
)

// TestRecordHistories runs ConnectionWorkflow on a real in-process Temporal server through its
// whole life and writes the histories to testdata/, where TestReplayRecordedHistories replays
// them on every test run. Re-record only on purpose (a deliberate, versioned change):
//
//	go test -tags recordhistory -run TestRecordHistories ./workflows/
//
// The activities are scripted stand-ins registered under the real activity names: the history
// only holds their inputs and results, which is what a replay checks the workflow against.
func TestRecordHistories(t *testing.T) {
	srv := temporaltest.NewServer(temporaltest.WithT(t))
	c := srv.GetDefaultClient()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace: srv.GetDefaultNamespace(),
		SearchAttributes: map[string]enumspb.IndexedValueType{
			AttrOrgID.GetName():            enumspb.INDEXED_VALUE_TYPE_KEYWORD,
			AttrConnectionStatus.GetName(): enumspb.INDEXED_VALUE_TYPE_KEYWORD,
			AttrStale.GetName():            enumspb.INDEXED_VALUE_TYPE_BOOL,
			AttrNeedsReauth.GetName():      enumspb.INDEXED_VALUE_TYPE_BOOL,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("lifecycle", func(t *testing.T) { recordLifecycle(ctx, t, srv, c, "connection-lifecycle.json") })
	t.Run("continue-as-new-and-cancel", func(t *testing.T) { recordContinueAsNewAndCancel(ctx, t, srv, c) })
	t.Run("finding-signals", func(t *testing.T) { recordFindingSignals(ctx, t, srv, c) })
	t.Run("finding-sync-periodic", func(t *testing.T) { recordFindingSyncPeriodic(ctx, t, srv, c) })
	t.Run("inbox", func(t *testing.T) { recordInbox(ctx, t, srv, c) })
	// The same life once the bookkeeping activities ran as local activities
	// (localBookkeepingChangeID); connection-lifecycle.json keeps the regular-activity version.
	// Record only this one with -run 'TestRecordHistories/local-bookkeeping'.
	t.Run("local-bookkeeping", func(t *testing.T) { recordLifecycle(ctx, t, srv, c, "connection-local-bookkeeping.json") })
}

// recordInbox: the webhook inbox (version webhook-inbox 1). A nudge applies a backlog larger than
// one pass in consecutive passes, nudges during a pass coalesce into one more, changes stored
// without a nudge are applied with a reconciliation tick, and a revoke ends it.
func recordInbox(ctx context.Context, t *testing.T, srv *temporaltest.TestServer, c client.Client) {
	f := newScripted(time.Hour, 2*time.Hour)
	f.snap.FindingSync = true
	f.startWorker(srv, "record-inbox")
	conn := uuid.MustParse("a05d7e4f-9b6c-4d8e-9fc0-3b4c5d6e7f55")
	id := WorkflowID(conn)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "record-inbox"},
		ConnectionWorkflow, ConnectionInput{OrgID: testOrg, ConnectionID: conn, ReconcileInterval: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, c, id, "registered and reconciled", func(s ConnectionState) bool {
		return f.calls(FindingOpRegister) == 1 && f.calls(FindingOpReconcile) >= 1 && s.FindingOpInProgress == ""
	})

	f.fillInbox(2*activities.DefaultInboxBatch + 1)
	for range 3 {
		signal(ctx, t, c, id, SignalInboxNudge, nil)
	}
	waitFor(ctx, t, c, id, "backlog applied", func(s ConnectionState) bool { return f.inboxLeft() == 0 && !s.InboxPending })

	f.fillInbox(5) // stored, but the nudge is lost
	waitFor(ctx, t, c, id, "applied with a reconciliation", func(ConnectionState) bool { return f.inboxLeft() == 0 })

	mustUpdate(ctx, t, c, id, UpdateRevoke, nil, RevokeRequest{ActorType: "api_key", ActorID: "recorder"})
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("workflow after revoke: %v", err)
	}
	writeHistory(ctx, t, c, id, run.GetRunID(), "connection-inbox.json")
}

// recordFindingSyncPeriodic: a connection with finding sync configured registers its webhooks,
// reconciles (and drains) every interval, refreshes the webhooks on schedule, registers again
// when the configuration changes, and stops the periodic work when finding sync is turned off.
func recordFindingSyncPeriodic(ctx context.Context, t *testing.T, srv *temporaltest.TestServer, c client.Client) {
	f := newScripted(time.Hour, 2*time.Hour)
	f.snap.FindingSync = true
	f.startWorker(srv, "record-finding-sync")
	conn := uuid.MustParse("9f4c6d3e-8a5b-4c7d-8ebf-2a3b4c5d6e44")
	id := WorkflowID(conn)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "record-finding-sync"},
		ConnectionWorkflow, ConnectionInput{OrgID: testOrg, ConnectionID: conn,
			ReconcileInterval: 2 * time.Second, WebhookRefreshInterval: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, c, id, "registered and reconciled twice", func(ConnectionState) bool {
		return f.calls(FindingOpRegister) == 1 && f.calls(FindingOpReconcile) >= 2
	})
	waitFor(ctx, t, c, id, "webhooks refreshed", func(ConnectionState) bool { return f.calls(FindingOpRefresh) == 1 })

	signal(ctx, t, c, id, SignalConfigChanged, nil)
	waitFor(ctx, t, c, id, "registered again", func(ConnectionState) bool { return f.calls(FindingOpRegister) == 2 })

	f.set(func(f *scripted) { f.snap.FindingSync = false })
	signal(ctx, t, c, id, SignalConfigChanged, nil)
	waitFor(ctx, t, c, id, "finding sync off", func(s ConnectionState) bool {
		return !s.FindingSync && f.calls(FindingOpRegister) == 3 && s.FindingOpInProgress == "" && s.NextFindingOpAt == nil
	})

	mustUpdate(ctx, t, c, id, UpdateRevoke, nil, RevokeRequest{ActorType: "api_key", ActorID: "recorder"})
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("workflow after revoke: %v", err)
	}
	writeHistory(ctx, t, c, id, run.GetRunID(), "connection-finding-sync.json")
}

// recordFindingSignals: the finding lane driven by its signals only (the connection's snapshot
// does not say finding sync is on, so nothing periodic runs): a findings-pending nudge drains the
// queue in batches and sleeps until a delayed item is due, inbound changes are applied in a
// batch, a drain that needs re-authorization stops the work until the reauthorized update,
// changes received meanwhile are applied then, and a revoke ends it.
func recordFindingSignals(ctx context.Context, t *testing.T, srv *temporaltest.TestServer, c client.Client) {
	f := newScripted(time.Hour, 2*time.Hour)
	f.startWorker(srv, "record-findings")
	conn := uuid.MustParse("8e3b5c2d-7f4a-4b6c-9dae-1f2a3b4c5d33")
	id := WorkflowID(conn)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "record-findings"},
		ConnectionWorkflow, ConnectionInput{OrgID: testOrg, ConnectionID: conn})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, c, id, "first sync", func(s ConnectionState) bool { return s.Seq == 1 && !s.SyncInProgress && s.LastSuccessAt != nil })

	now := time.Now()
	f.enqueue(30, now)
	f.enqueue(2, now.Add(2*time.Second))
	signal(ctx, t, c, id, SignalFindingsPending, nil)
	waitFor(ctx, t, c, id, "delayed items drained", func(ConnectionState) bool { return f.drained() == 32 })

	for i := 1; i <= 3; i++ {
		signal(ctx, t, c, id, SignalJiraIssueChanged, change(i))
	}
	waitFor(ctx, t, c, id, "changes applied", func(s ConnectionState) bool {
		return f.appliedCount() == 3 && s.FindingOpInProgress == ""
	})

	f.set(func(f *scripted) { f.findingFailure = failure.TypeReauthRequired })
	f.enqueue(1, time.Now())
	signal(ctx, t, c, id, SignalFindingsPending, nil)
	waitFor(ctx, t, c, id, "needs_reauth", func(s ConnectionState) bool { return s.Status == StatusNeedsReauth })
	signal(ctx, t, c, id, SignalJiraIssueChanged, change(4))
	waitFor(ctx, t, c, id, "change buffered", func(s ConnectionState) bool { return s.PendingInboundChanges == 1 })

	f.set(func(f *scripted) { f.findingFailure = "" })
	mustUpdate(ctx, t, c, id, UpdateReauthorized, nil)
	waitFor(ctx, t, c, id, "resumed", func(s ConnectionState) bool {
		return f.drained() == 33 && f.appliedCount() == 4 && !s.SyncInProgress && s.FindingOpInProgress == "" && s.Seq == 2
	})

	mustUpdate(ctx, t, c, id, UpdateRevoke, nil, RevokeRequest{ActorType: "api_key", ActorID: "recorder"})
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("workflow after revoke: %v", err)
	}
	writeHistory(ctx, t, c, id, run.GetRunID(), "connection-finding-signals.json")
}

func signal(ctx context.Context, t *testing.T, c client.Client, id, name string, arg any) {
	t.Helper()
	if err := c.SignalWorkflow(ctx, id, "", name, arg); err != nil {
		t.Fatalf("signal %s: %v", name, err)
	}
}

// recordLifecycle: first sync, sync-now with no data, test, config change, re-auth failure, stale,
// re-authorization that hits a configuration error, the configuration fixed, recovery, revoke.
func recordLifecycle(ctx context.Context, t *testing.T, srv *temporaltest.TestServer, c client.Client, file string) {
	f := newScripted(4*time.Second, 10*time.Second)
	f.startWorker(srv, "record-lifecycle")
	conn := uuid.MustParse("6c1f3f0e-5a0b-4c1e-9a2d-7e3b1c0d2f11")
	id := WorkflowID(conn)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "record-lifecycle"},
		ConnectionWorkflow, ConnectionInput{OrgID: testOrg, ConnectionID: conn})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, c, id, "first sync", func(s ConnectionState) bool { return s.Seq == 1 && !s.SyncInProgress && s.LastSuccessAt != nil })

	f.set(func(f *scripted) { f.outcome = OutcomeNoData })
	var seq int64
	mustUpdate(ctx, t, c, id, UpdateSyncNow, &seq)
	waitFor(ctx, t, c, id, "sync-now", func(s ConnectionState) bool { return s.LastOutcome == OutcomeNoData && !s.SyncInProgress })
	var res activities.TestResult
	mustUpdate(ctx, t, c, id, UpdateTest, &res)

	f.set(func(f *scripted) { f.snap.SyncCadence, f.outcome = 3*time.Second, OutcomeSuccess })
	if err := c.SignalWorkflow(ctx, id, "", SignalConfigChanged, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, c, id, "config reload", func(s ConnectionState) bool { return s.SyncCadence == 3*time.Second })

	f.set(func(f *scripted) { f.failure = failure.TypeReauthRequired })
	waitFor(ctx, t, c, id, "needs_reauth", func(s ConnectionState) bool { return s.Status == StatusNeedsReauth })
	waitFor(ctx, t, c, id, "stale while waiting", func(s ConnectionState) bool { return s.Stale })

	f.set(func(f *scripted) { f.failure = failure.TypeConfig })
	mustUpdate(ctx, t, c, id, UpdateReauthorized, nil)
	waitFor(ctx, t, c, id, "config failure", func(s ConnectionState) bool {
		return s.LastErrorType == failure.TypeConfig && !s.SyncInProgress
	})
	f.set(func(f *scripted) { f.failure = "" })
	if err := c.SignalWorkflow(ctx, id, "", SignalConfigChanged, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, c, id, "recovery", func(s ConnectionState) bool { return !s.Stale && s.LastErrorType == "" && !s.SyncInProgress })

	mustUpdate(ctx, t, c, id, UpdateRevoke, nil, RevokeRequest{ActorType: "api_key", ActorID: "recorder"})
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("workflow after revoke: %v", err)
	}
	writeHistory(ctx, t, c, id, run.GetRunID(), file)
}

// recordContinueAsNewAndCancel: two syncs, a sync-now during the second, continue-as-new
// carrying it; the next run starts it, and the workflow is canceled (revoke by cancellation)
// while that sync runs.
func recordContinueAsNewAndCancel(ctx context.Context, t *testing.T, srv *temporaltest.TestServer, c client.Client) {
	f := newScripted(2*time.Second, time.Minute)
	f.syncTime = map[int64]time.Duration{2: 1500 * time.Millisecond, 3: time.Minute}
	f.startWorker(srv, "record-continue")
	conn := uuid.MustParse("7d2a4b1c-6e3f-4a5b-8c9d-0e1f2a3b4c22")
	id := WorkflowID(conn)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "record-continue"},
		ConnectionWorkflow, ConnectionInput{OrgID: testOrg, ConnectionID: conn, MaxSyncsPerRun: 2})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, c, id, "second sync running", func(s ConnectionState) bool { return s.RunningSyncSeq == 2 })
	var seq int64
	mustUpdate(ctx, t, c, id, UpdateSyncNow, &seq)
	if seq != 3 {
		t.Fatalf("sync-now seq %d", seq)
	}
	first := run.GetRunID()
	for {
		d, err := c.DescribeWorkflowExecution(ctx, id, first)
		if err != nil {
			t.Fatal(err)
		}
		if d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no continue-as-new")
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitFor(ctx, t, c, id, "pending sync in the next run", func(s ConnectionState) bool { return s.RunningSyncSeq == 3 })
	if err := c.CancelWorkflow(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	next := c.GetWorkflow(ctx, id, "")
	var canceled *temporal.CanceledError
	if err := next.Get(ctx, nil); !errors.As(err, &canceled) {
		t.Fatalf("workflow after cancellation: %v", err)
	}
	if f.cleanups() != 1 {
		t.Fatalf("cleanups: %d", f.cleanups())
	}
	writeHistory(ctx, t, c, id, first, "connection-continue-as-new.json")
	writeHistory(ctx, t, c, id, next.GetRunID(), "connection-continued-then-canceled.json")
}

// scripted stands in for the activities.
type scripted struct {
	mu       sync.Mutex
	snap     activities.ConnectionSnapshot
	outcome  string
	failure  string
	syncTime map[int64]time.Duration
	cleaned  int

	// The finding queue (not-before times), what was drained and applied, and the error type
	// the next finding activity fails with ("" for none).
	queue          []time.Time
	drainedN       int
	applied        int
	inbox          int // pending changes of the scripted webhook inbox
	findingFailure string
	findingCalls   map[string]int
}

// calls counts the successful calls of a finding operation.
func (f *scripted) calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.findingCalls[op]
}

// count records a successful finding call; the caller holds f.mu.
func (f *scripted) count(op string) {
	if f.findingCalls == nil {
		f.findingCalls = map[string]int{}
	}
	f.findingCalls[op]++
}

func (f *scripted) enqueue(n int, notBefore time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.queue = append(f.queue, notBefore)
	}
}

func (f *scripted) drained() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.drainedN
}

func (f *scripted) appliedCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

func (f *scripted) findingErr() error {
	if f.findingFailure == "" {
		return nil
	}
	return temporal.NewNonRetryableApplicationError("scripted "+f.findingFailure+" failure", f.findingFailure, nil)
}

func (f *scripted) drainFindingQueue(_ context.Context, in activities.DrainInput) (activities.DrainResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.findingErr(); err != nil {
		return activities.DrainResult{}, err
	}
	now := time.Now()
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
	f.drainedN += res.Created
	for _, nb := range f.queue {
		if !nb.After(now) {
			res.Remaining++
		} else if res.NextDue == nil || nb.Before(*res.NextDue) {
			next := nb.UTC()
			res.NextDue = &next
		}
	}
	return res, nil
}

func (f *scripted) applyJiraChanges(_ context.Context, in activities.ApplyInput) (activities.ApplyResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.findingErr(); err != nil {
		return activities.ApplyResult{}, err
	}
	f.applied += len(in.Changes)
	return activities.ApplyResult{Applied: len(in.Changes)}, nil
}

func (f *scripted) fillInbox(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inbox += n
}

func (f *scripted) inboxLeft() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inbox
}

func (f *scripted) applyInboxChanges(_ context.Context, in activities.InboxInput) (activities.InboxResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.findingErr(); err != nil {
		return activities.InboxResult{}, err
	}
	took := min(f.inbox, in.Max)
	f.inbox -= took
	f.count(FindingOpInbox)
	return activities.InboxResult{ApplyResult: activities.ApplyResult{Applied: took}, Remaining: f.inbox}, nil
}

func (f *scripted) reconcileLinkedIssues(context.Context, activities.ConnectionRef) (activities.ReconcileResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.findingErr(); err != nil {
		return activities.ReconcileResult{}, err
	}
	f.count(FindingOpReconcile)
	return activities.ReconcileResult{}, nil
}

func (f *scripted) registerWebhooks(context.Context, activities.ConnectionRef) (activities.WebhookResult, error) {
	return f.webhooks(FindingOpRegister)
}

func (f *scripted) refreshWebhooks(context.Context, activities.ConnectionRef) (activities.WebhookResult, error) {
	return f.webhooks(FindingOpRefresh)
}

// webhooks answers like the real activities: Skipped once finding sync is off.
func (f *scripted) webhooks(op string) (activities.WebhookResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.findingErr(); err != nil {
		return activities.WebhookResult{}, err
	}
	f.count(op)
	if !f.snap.FindingSync {
		return activities.WebhookResult{Skipped: true}, nil
	}
	exp := time.Now().Add(30 * 24 * time.Hour).UTC()
	return activities.WebhookResult{IDs: []int64{1}, ExpiresAt: &exp}, nil
}

func newScripted(cadence, threshold time.Duration) *scripted {
	return &scripted{
		snap: activities.ConnectionSnapshot{Status: StatusActive, SyncCadence: cadence, StaleThreshold: threshold,
			CreatedAt: time.Now().UTC().Truncate(time.Millisecond)},
		outcome: OutcomeSuccess,
	}
}

func (f *scripted) set(change func(*scripted)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

func (f *scripted) cleanups() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cleaned
}

func (f *scripted) startWorker(srv *temporaltest.TestServer, queue string) {
	srv.NewWorkerWithOptions(queue, func(r worker.Registry) {
		r.RegisterWorkflow(ConnectionWorkflow)
		for name, fn := range map[string]any{
			activities.NameLoadConnection: f.loadConnection, activities.NameSyncEvidence: f.syncEvidence,
			activities.NameRecordSyncFailure: f.nop, activities.NameSetConnectionState: f.nop,
			activities.NameOpenAlert: f.nop, activities.NameResolveAlert: f.nop,
			activities.NameTestConnection: f.testConnection, activities.NameRevokeCleanup: f.revokeCleanup,
			activities.NameDrainFindingQueue: f.drainFindingQueue, activities.NameApplyJiraChanges: f.applyJiraChanges,
			activities.NameApplyInboxChanges:     f.applyInboxChanges,
			activities.NameReconcileLinkedIssues: f.reconcileLinkedIssues,
			activities.NameRegisterWebhooks:      f.registerWebhooks, activities.NameRefreshWebhooks: f.refreshWebhooks,
		} {
			r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
		}
		// Heartbeats reach the server (and cancellations the activity) quickly.
	}, worker.Options{MaxHeartbeatThrottleInterval: 200 * time.Millisecond})
}

func (f *scripted) loadConnection(context.Context, activities.ConnectionRef) (activities.ConnectionSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap, nil
}

func (f *scripted) syncEvidence(ctx context.Context, in activities.SyncInput) (activities.SyncResult, error) {
	f.mu.Lock()
	outcome, failure, d := f.outcome, f.failure, f.syncTime[in.Seq]
	f.mu.Unlock()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		activity.RecordHeartbeat(ctx, "collecting")
		select {
		case <-ctx.Done():
			return activities.SyncResult{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if failure != "" {
		return activities.SyncResult{}, temporal.NewNonRetryableApplicationError("scripted "+failure+" failure", failure, nil)
	}
	return activities.SyncResult{
		ConnectorRunID: uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "%s/%d", in.WorkflowID, in.Seq)),
		Outcome:        outcome, JiraCalls: 4, NewEvidence: 3, Observed: 4, CompletedAt: time.Now().UTC(),
	}, nil
}

func (f *scripted) nop(context.Context, any) error { return nil }

func (f *scripted) testConnection(context.Context, activities.ConnectionRef) (activities.TestResult, error) {
	return activities.TestResult{OK: true, Checks: []activities.Check{{Name: "auth", OK: true, Detail: "scripted"}}}, nil
}

func (f *scripted) revokeCleanup(context.Context, activities.RevokeInput) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleaned++
	return nil
}

func waitFor(ctx context.Context, t *testing.T, c client.Client, id, what string, ok func(ConnectionState) bool) {
	t.Helper()
	var last ConnectionState
	for {
		if v, err := c.QueryWorkflow(ctx, id, "", QueryState); err == nil {
			// A fresh value each time: omitted (zero) fields must not keep an earlier answer.
			last = ConnectionState{}
			if err := v.Get(&last); err != nil {
				t.Fatal(err)
			}
			if ok(last) {
				return
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("waiting for %s; last state %+v", what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func mustUpdate(ctx context.Context, t *testing.T, c client.Client, id, name string, result any, args ...any) {
	t.Helper()
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: name, Args: args, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, result)
	}
	if err != nil {
		t.Fatalf("update %s: %v", name, err)
	}
}

func writeHistory(ctx context.Context, t *testing.T, c client.Client, id, runID, name string) {
	t.Helper()
	hist := &historypb.History{}
	iter := c.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		hist.Events = append(hist.Events, ev)
	}
	b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(hist)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", name)
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	replayer := worker.NewWorkflowReplayer()
	replayer.RegisterWorkflow(ConnectionWorkflow)
	if err := replayer.ReplayWorkflowHistoryFromJSONFile(nil, path); err != nil {
		t.Fatalf("replay of the fresh recording %s: %v", path, err)
	}
	t.Logf("recorded %s: %d events", path, len(hist.Events))
}
