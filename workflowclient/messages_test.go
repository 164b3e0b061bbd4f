package workflowclient_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/workflowclient"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// queryReceived is the stand-in's own query: how often each message name arrived, and how many
// of them arrived before the workflow had loaded its connection.
const queryReceived = "test-received"

type received struct {
	Count      map[string]int `json:"count"`
	BeforeLoad map[string]int `json:"before_load"`
}

// standIn registers a workflow under ConnectionWorkflow's name that answers every message the
// client sends, under the real message names, as the real workflow's contract says: the state
// query reports Initialized only after a first load (a timer stands in for it); sync-now answers
// 1 before the load and 100+n after it (the real workflow renumbers a sync requested before its
// load after the stored runs); test blocks until a release-test signal; revoke and revoke-signal
// end the workflow. With rejectSync, sync-now's validator refuses.
func standIn(t *testing.T, c client.Client, queue string, rejectSync bool) {
	t.Helper()
	w := sdkworker.New(c, queue, sdkworker.Options{})
	w.RegisterWorkflowWithOptions(func(ctx workflow.Context, in workflows.ConnectionInput) error {
		var (
			initialized, released, ended bool
			syncs                        int64
			got                          = received{Count: map[string]int{}, BeforeLoad: map[string]int{}}
		)
		note := func(name string) {
			got.Count[name]++
			if !initialized {
				got.BeforeLoad[name]++
			}
		}
		if err := workflow.SetQueryHandler(ctx, workflows.QueryState, func() (workflows.ConnectionState, error) {
			return workflows.ConnectionState{OrgID: in.OrgID, ConnectionID: in.ConnectionID, Initialized: initialized, Seq: syncs}, nil
		}); err != nil {
			return err
		}
		if err := workflow.SetQueryHandler(ctx, queryReceived, func() (received, error) { return got, nil }); err != nil {
			return err
		}
		accept := func() error { return nil }
		updates := []struct {
			name      string
			handler   any
			validator any
		}{
			{workflows.UpdateSyncNow, func(workflow.Context) (int64, error) {
				note(workflows.UpdateSyncNow)
				if !initialized {
					return 1, nil
				}
				syncs++
				return 100 + syncs, nil
			}, func() error {
				if rejectSync {
					return errors.New("not possible while the connection is needs_reauth")
				}
				return nil
			}},
			{workflows.UpdateTest, func(ctx workflow.Context) (connections.TestResult, error) {
				note(workflows.UpdateTest)
				if err := workflow.Await(ctx, func() bool { return released }); err != nil {
					return connections.TestResult{}, err
				}
				return connections.TestResult{OK: false, Checks: []connections.Check{
					{Name: "auth", OK: true, Detail: "ok"}, {Name: "create_issue", OK: false, Detail: "no", IssueKey: "SEC-9"}}}, nil
			}, accept},
			{workflows.UpdateReauthorized, func(workflow.Context) error {
				note(workflows.UpdateReauthorized)
				return nil
			}, accept},
			{workflows.UpdateRevoke, func(workflow.Context, workflows.RevokeRequest) error {
				note(workflows.UpdateRevoke)
				ended = true
				return nil
			}, func(workflows.RevokeRequest) error { return nil }},
		}
		for _, u := range updates {
			if err := workflow.SetUpdateHandlerWithOptions(ctx, u.name, u.handler, workflow.UpdateHandlerOptions{Validator: u.validator}); err != nil {
				return err
			}
		}
		workflow.Go(ctx, func(ctx workflow.Context) {
			_ = workflow.Sleep(ctx, 300*time.Millisecond)
			initialized = true
		})
		sel := workflow.NewSelector(ctx)
		for _, name := range []string{workflows.SignalConfigChanged, workflows.SignalFindingsPending, workflows.SignalInboxNudge,
			workflows.SignalRevoke, "release-test"} {
			sel.AddReceive(workflow.GetSignalChannel(ctx, name), func(ch workflow.ReceiveChannel, _ bool) {
				ch.Receive(ctx, nil)
				switch name {
				case "release-test":
					released = true
					return
				case workflows.SignalRevoke:
					ended = true
				}
				note(name)
			})
		}
		workflow.Go(ctx, func(ctx workflow.Context) {
			for {
				sel.Select(ctx)
			}
		})
		return workflow.Await(ctx, func() bool { return ended && workflow.AllHandlersFinished(ctx) })
	}, workflow.RegisterOptions{Name: "ConnectionWorkflow"})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
}

func receivedBy(t *testing.T, c client.Client, connID uuid.UUID) received {
	t.Helper()
	v, err := c.QueryWorkflow(context.Background(), workflows.WorkflowID(connID), "", queryReceived)
	require.NoError(t, err)
	var got received
	require.NoError(t, v.Get(&got))
	return got
}

// sentPayloads reads the workflow's history and returns, per signal and update name, every
// payload as it was recorded: its encoding and its bytes. This is what replay compares, so it is
// what must not change.
func sentPayloads(t *testing.T, c client.Client, connID uuid.UUID) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	render := func(name string, ps *commonpb.Payloads) {
		if len(ps.GetPayloads()) == 0 {
			out[name] = append(out[name], "(none)")
		}
		for _, p := range ps.GetPayloads() {
			out[name] = append(out[name], string(p.GetMetadata()["encoding"])+" "+string(p.GetData()))
		}
	}
	it := c.GetWorkflowHistory(context.Background(), workflows.WorkflowID(connID), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil {
			render(a.GetSignalName(), a.GetInput())
		}
		if a := ev.GetWorkflowExecutionUpdateAcceptedEventAttributes(); a != nil {
			render(a.GetAcceptedRequest().GetInput().GetName(), a.GetAcceptedRequest().GetInput().GetArgs())
		}
	}
	return out
}

// A sync requested of a connection whose workflow is gone starts the workflow, waits for its
// first load and answers the number the sync carries; later syncs go to the running workflow.
func TestSyncNowStartsALostWorkflowAndWaitsForItsLoad(t *testing.T) {
	t.Parallel()
	c := newServer(t)
	ctx := context.Background()
	standIn(t, c, "sync-now", false)
	wc := workflowclient.New(c, "sync-now", 0)
	org, conn := uuid.New(), uuid.New()

	seq, err := wc.SyncNow(ctx, org, conn)
	require.NoError(t, err)
	require.Equal(t, int64(101), seq, "the sync was asked before the workflow had loaded its connection")
	first, err := wc.Describe(ctx, conn)
	require.NoError(t, err)
	require.Equal(t, activities.WorkflowRunning, first.Status)

	seq, err = wc.SyncNow(ctx, org, conn)
	require.NoError(t, err)
	require.Equal(t, int64(102), seq)
	again, err := wc.Describe(ctx, conn)
	require.NoError(t, err)
	require.Equal(t, first.RunID, again.RunID, "a running workflow was started again")

	st, err := wc.State(ctx, conn)
	require.NoError(t, err)
	assert.True(t, st.Initialized)
	assert.Equal(t, conn, st.ConnectionID)
	assert.Equal(t, org, st.OrgID)
	assert.Equal(t, int64(2), st.Seq)
	// Both updates reached the workflow after its load.
	assert.Equal(t, map[string]int{workflows.UpdateSyncNow: 2}, receivedBy(t, c, conn).Count)

	// A start that fails is ErrStartFailed (no org id: StartConnection refuses it).
	_, err = wc.SyncNow(ctx, uuid.Nil, uuid.New())
	require.ErrorIs(t, err, workflowclient.ErrStartFailed)
}

func TestSyncNowRejectedByTheWorkflow(t *testing.T) {
	t.Parallel()
	c := newServer(t)
	ctx := context.Background()
	standIn(t, c, "sync-rejected", true)
	wc := workflowclient.New(c, "sync-rejected", 0)
	conn := uuid.New()
	require.NoError(t, wc.EnsureRunning(ctx, uuid.New(), conn))
	require.NoError(t, wc.EnsureRunning(ctx, uuid.New(), conn), "a running workflow counts as started")

	_, err := wc.SyncNow(ctx, uuid.New(), conn)
	var rejected *workflowclient.RejectedError
	require.ErrorAs(t, err, &rejected)
	require.Equal(t, "not possible while the connection is needs_reauth", rejected.Reason)
	require.NotErrorIs(t, err, workflowclient.ErrNoWorkflow)
}

// Test answers the workflow's report; one that takes longer than the update wait is
// ErrUpdatePending and goes on in the workflow; without a workflow it is ErrNoWorkflow (no start:
// a test needs a workflow that has already loaded its connection).
func TestTestConnectionUpdate(t *testing.T) {
	t.Parallel()
	c := newServer(t)
	ctx := context.Background()
	standIn(t, c, "test-update", false)
	wc := workflowclient.New(c, "test-update", 0)
	conn := uuid.New()

	_, err := wc.Test(ctx, conn)
	require.ErrorIs(t, err, workflowclient.ErrNoWorkflow)
	run, err := wc.Describe(ctx, conn)
	require.NoError(t, err)
	require.Equal(t, activities.WorkflowNotFound, run.Status, "Test started a workflow")

	require.NoError(t, wc.EnsureRunning(ctx, uuid.New(), conn))
	_, err = wc.WithUpdateWait(200*time.Millisecond).Test(ctx, conn)
	require.ErrorIs(t, err, workflowclient.ErrUpdatePending)

	require.NoError(t, c.SignalWorkflow(ctx, workflows.WorkflowID(conn), "", "release-test", nil))
	res, err := wc.Test(ctx, conn)
	require.NoError(t, err)
	require.False(t, res.OK)
	require.Equal(t, []string{"create_issue"}, res.FailedChecks())
	require.Equal(t, "SEC-9", res.TestIssueKey())
	require.Equal(t, 2, receivedBy(t, c, conn).Count[workflows.UpdateTest])
}

// Reauthorized reaches a running workflow, and starts a lost one first (waiting for its load).
func TestReauthorizedUpdate(t *testing.T) {
	t.Parallel()
	c := newServer(t)
	ctx := context.Background()
	standIn(t, c, "reauthorized", false)
	wc := workflowclient.New(c, "reauthorized", 0)
	conn := uuid.New()

	require.NoError(t, wc.Reauthorized(ctx, uuid.New(), conn))
	require.NoError(t, wc.Reauthorized(ctx, uuid.New(), conn))
	got := receivedBy(t, c, conn)
	require.Equal(t, 2, got.Count[workflows.UpdateReauthorized])
	require.Zero(t, got.BeforeLoad[workflows.UpdateReauthorized], "the restarted workflow was updated before its load")
	require.Equal(t, map[string][]string{workflows.UpdateReauthorized: {"(none)", "(none)"}}, sentPayloads(t, c, conn))
}

// Revoke and SignalRevoke carry the workflows.RevokeRequest JSON the workflow's history records
// ({"actor_type","actor_id"}); the signals without payload carry none. A workflow that is not
// running is ErrNoWorkflow for every one of them.
func TestRevokeAndSignals(t *testing.T) {
	t.Parallel()
	c := newServer(t)
	ctx := context.Background()
	standIn(t, c, "signals", false)
	wc := workflowclient.New(c, "signals", 0)
	by := audit.Actor{Type: audit.ActorAPIKey, ID: "key-1"}
	missing := uuid.New()
	for name, send := range map[string]func(uuid.UUID) error{
		"config-changed":   func(id uuid.UUID) error { return wc.ConfigChanged(ctx, id) },
		"findings-pending": func(id uuid.UUID) error { return wc.FindingsPending(ctx, id) },
		"inbox-nudge":      func(id uuid.UUID) error { return wc.NudgeInbox(ctx, id) },
		"revoke-signal":    func(id uuid.UUID) error { return wc.SignalRevoke(ctx, id, by) },
		"revoke":           func(id uuid.UUID) error { return wc.Revoke(ctx, id, by) },
		"state": func(id uuid.UUID) error {
			_, err := wc.State(ctx, id)
			return err
		},
	} {
		require.ErrorIs(t, send(missing), workflowclient.ErrNoWorkflow, name)
	}

	conn := uuid.New()
	require.NoError(t, wc.EnsureRunning(ctx, uuid.New(), conn))
	require.NoError(t, wc.ConfigChanged(ctx, conn))
	require.NoError(t, wc.FindingsPending(ctx, conn))
	require.NoError(t, wc.NudgeInbox(ctx, conn))
	require.NoError(t, wc.NudgeInbox(ctx, conn))
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		got := receivedBy(t, c, conn)
		assert.Equal(ct, map[string]int{workflows.SignalConfigChanged: 1, workflows.SignalFindingsPending: 1, workflows.SignalInboxNudge: 2}, got.Count)
	}, 20*time.Second, 50*time.Millisecond)

	// The revoke update ends the workflow once answered.
	require.NoError(t, wc.Revoke(ctx, conn, by))
	require.NoError(t, c.GetWorkflow(ctx, workflows.WorkflowID(conn), "").Get(ctx, nil))
	assert.Equal(t, map[string][]string{
		workflows.SignalConfigChanged:   {"binary/null "},
		workflows.SignalFindingsPending: {"binary/null "},
		workflows.SignalInboxNudge:      {"binary/null ", "binary/null "},
		workflows.UpdateRevoke:          {`json/plain {"actor_type":"api_key","actor_id":"key-1"}`},
	}, sentPayloads(t, c, conn))

	// The signal form, to another workflow, ends it too.
	other := uuid.New()
	require.NoError(t, wc.EnsureRunning(ctx, uuid.New(), other))
	require.NoError(t, wc.SignalRevoke(ctx, other, by))
	require.NoError(t, c.GetWorkflow(ctx, workflows.WorkflowID(other), "").Get(ctx, nil))
	assert.Equal(t, map[string][]string{workflows.SignalRevoke: {`json/plain {"actor_type":"api_key","actor_id":"key-1"}`}},
		sentPayloads(t, c, other))
	done, err := wc.Describe(ctx, other)
	require.NoError(t, err)
	require.Equal(t, activities.WorkflowCompleted, done.Status)
	// A completed connection workflow is never started again, and that is no error.
	require.NoError(t, wc.EnsureRunning(ctx, uuid.New(), other))
	after, err := wc.Describe(ctx, other)
	require.NoError(t, err)
	require.Equal(t, done.RunID, after.RunID)
}
