package workflowclient_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.temporal.io/server/temporaltest"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/worker"
	"github.com/jiraconnect/jiraconnect/workflowclient"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// newServer starts an in-process Temporal server with the connection search attributes
// registered, and returns a client of it.
func newServer(t *testing.T) client.Client {
	t.Helper()
	srv := temporaltest.NewServer(temporaltest.WithT(t))
	c := srv.GetDefaultClient()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, worker.EnsureSearchAttributes(ctx, c, srv.GetDefaultNamespace()))
	return c
}

// runningSoon waits until the visibility store reports exactly want among ids as running.
func runningSoon(t *testing.T, wc *workflowclient.Client, ids []uuid.UUID, want map[uuid.UUID]bool) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got, err := wc.Running(context.Background(), ids)
		require.NoError(c, err)
		assert.Equal(c, want, got)
	}, 20*time.Second, 100*time.Millisecond)
}

// No worker polls the task queue here: a started workflow stays running until it is terminated,
// which is all the start and reuse rules need.
func TestStartConnectionReusePolicy(t *testing.T) {
	t.Parallel()
	c := newServer(t)
	ctx := context.Background()
	wc := workflowclient.New(c, "reuse-policy", time.Minute)
	org, conn, other := uuid.New(), uuid.New(), uuid.New()

	started, err := wc.StartConnection(ctx, workflowclient.Start{OrgID: org, ConnectionID: conn, Status: workflows.StatusNeedsReauth, Stale: true})
	require.NoError(t, err)
	require.True(t, started)
	first, err := wc.Describe(ctx, conn)
	require.NoError(t, err)
	require.Equal(t, activities.WorkflowRunning, first.Status)
	require.True(t, first.CloseTime.IsZero())

	// The input and search attributes are the connection's, and hold no secret by construction.
	desc, err := c.DescribeWorkflow(ctx, workflows.WorkflowID(conn), "")
	require.NoError(t, err)
	attrs := desc.TypedSearchAttributes
	status, _ := attrs.GetKeyword(workflows.AttrConnectionStatus)
	reauth, _ := attrs.GetBool(workflows.AttrNeedsReauth)
	stale, _ := attrs.GetBool(workflows.AttrStale)
	orgAttr, _ := attrs.GetKeyword(workflows.AttrOrgID)
	assert.Equal(t, workflows.StatusNeedsReauth, status)
	assert.True(t, reauth)
	assert.True(t, stale)
	assert.Equal(t, org.String(), orgAttr)

	// A second start while the first run runs is a success that starts nothing.
	started, err = wc.StartConnection(ctx, workflowclient.Start{OrgID: org, ConnectionID: conn})
	require.NoError(t, err)
	require.False(t, started)
	again, err := wc.Describe(ctx, conn)
	require.NoError(t, err)
	require.Equal(t, first.RunID, again.RunID)

	runningSoon(t, wc, []uuid.UUID{conn, other}, map[uuid.UUID]bool{conn: true})

	// Terminated behind the service's back: a new run may follow.
	require.NoError(t, c.TerminateWorkflow(ctx, workflows.WorkflowID(conn), "", "test"))
	gone, err := wc.Describe(ctx, conn)
	require.NoError(t, err)
	require.Equal(t, activities.WorkflowTerminated, gone.Status)
	require.False(t, gone.CloseTime.IsZero())
	runningSoon(t, wc, []uuid.UUID{conn, other}, map[uuid.UUID]bool{})
	started, err = wc.StartConnection(ctx, workflowclient.Start{OrgID: org, ConnectionID: conn})
	require.NoError(t, err)
	require.True(t, started)
	next, err := wc.Describe(ctx, conn)
	require.NoError(t, err)
	require.Equal(t, activities.WorkflowRunning, next.Status)
	require.NotEqual(t, first.RunID, next.RunID)

	missing, err := wc.Describe(ctx, other)
	require.NoError(t, err)
	require.Equal(t, activities.WorkflowNotFound, missing.Status)

	_, err = wc.Running(ctx, make([]uuid.UUID, workflowclient.MaxRunningBatch+1))
	require.Error(t, err)
	_, err = wc.StartConnection(ctx, workflowclient.Start{ConnectionID: conn})
	require.Error(t, err, "a start without an org is refused")
}

// A connection workflow completes only when its connection was revoked; its id is never reused.
// A stand-in registered under the workflow's name completes at once, as a revoked one would.
func TestStartConnectionNeverFollowsACompletedRun(t *testing.T) {
	t.Parallel()
	c := newServer(t)
	ctx := context.Background()
	const queue = "completed-run"
	w := sdkworker.New(c, queue, sdkworker.Options{})
	w.RegisterWorkflowWithOptions(func(workflow.Context, workflows.ConnectionInput) error { return nil },
		workflow.RegisterOptions{Name: "ConnectionWorkflow"})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	wc := workflowclient.New(c, queue, 0)
	conn := uuid.New()
	started, err := wc.StartConnection(ctx, workflowclient.Start{OrgID: uuid.New(), ConnectionID: conn})
	require.NoError(t, err)
	require.True(t, started)
	require.NoError(t, c.GetWorkflow(ctx, workflows.WorkflowID(conn), "").Get(ctx, nil))
	done, err := wc.Describe(ctx, conn)
	require.NoError(t, err)
	require.Equal(t, activities.WorkflowCompleted, done.Status)

	started, err = wc.StartConnection(ctx, workflowclient.Start{OrgID: uuid.New(), ConnectionID: conn})
	require.NoError(t, err)
	require.False(t, started, "a completed (revoked) connection's workflow was started again")
	after, err := wc.Describe(ctx, conn)
	require.NoError(t, err)
	require.Equal(t, done.RunID, after.RunID)
}
