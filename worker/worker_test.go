package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/server/temporaltest"

	"github.com/jiraconnect/jiraconnect/worker"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// The supervisor schedule is created once, keeps an operator's pause, and follows
// SUPERVISOR_INTERVAL when it changes.
func TestEnsureSupervisorSchedule(t *testing.T) {
	t.Parallel()
	srv := temporaltest.NewServer(temporaltest.WithT(t))
	c := srv.GetDefaultClient()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	describe := func() *client.ScheduleDescription {
		t.Helper()
		d, err := c.ScheduleClient().GetHandle(ctx, workflows.SupervisorScheduleID).Describe(ctx)
		require.NoError(t, err)
		return d
	}

	require.NoError(t, worker.EnsureSupervisorSchedule(ctx, c, "q", 5*time.Minute))
	d := describe()
	require.Len(t, d.Schedule.Spec.Intervals, 1)
	require.Equal(t, 5*time.Minute, d.Schedule.Spec.Intervals[0].Every)
	require.Equal(t, enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, d.Schedule.Policy.Overlap)
	action, ok := d.Schedule.Action.(*client.ScheduleWorkflowAction)
	require.True(t, ok)
	require.Equal(t, "SupervisorWorkflow", action.Workflow)
	require.Equal(t, "q", action.TaskQueue)

	require.NoError(t, c.ScheduleClient().GetHandle(ctx, workflows.SupervisorScheduleID).Pause(ctx, client.SchedulePauseOptions{Note: "operator"}))
	require.NoError(t, worker.EnsureSupervisorSchedule(ctx, c, "q", 5*time.Minute), "a second worker start")
	require.True(t, describe().Schedule.State.Paused)

	require.NoError(t, worker.EnsureSupervisorSchedule(ctx, c, "q", 90*time.Second))
	d = describe()
	require.Equal(t, 90*time.Second, d.Schedule.Spec.Intervals[0].Every, "a changed SUPERVISOR_INTERVAL applies")
	require.True(t, d.Schedule.State.Paused, "the operator's pause sticks")
}
