package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/server/temporaltest"

	"github.com/jiraconnect/jiraconnect/worker"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// The key rotation schedule is created once (daily, never overlapping), keeps an operator's pause,
// and carries DATA_KEY_ROTATION_PERIOD in its action, following it when it changes.
func TestEnsureKeyRotationSchedule(t *testing.T) {
	t.Parallel()
	srv := temporaltest.NewServer(temporaltest.WithT(t))
	c := srv.GetDefaultClient()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	describe := func() (*client.ScheduleDescription, workflows.KeyRotationInput) {
		t.Helper()
		d, err := c.ScheduleClient().GetHandle(ctx, workflows.KeyRotationScheduleID).Describe(ctx)
		require.NoError(t, err)
		action, ok := d.Schedule.Action.(*client.ScheduleWorkflowAction)
		require.True(t, ok)
		require.Equal(t, "KeyRotationWorkflow", action.Workflow)
		require.Equal(t, "q", action.TaskQueue)
		require.Len(t, action.Args, 1)
		p, ok := action.Args[0].(*commonpb.Payload)
		require.True(t, ok)
		var in workflows.KeyRotationInput
		require.NoError(t, converter.GetDefaultDataConverter().FromPayload(p, &in))
		return d, in
	}

	const year = 8760 * time.Hour
	require.NoError(t, worker.EnsureKeyRotationSchedule(ctx, c, "q", year))
	d, in := describe()
	require.Equal(t, []client.ScheduleIntervalSpec{{Every: 24 * time.Hour}}, d.Schedule.Spec.Intervals)
	require.Equal(t, enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, d.Schedule.Policy.Overlap)
	require.Equal(t, year, in.Period)

	require.NoError(t, c.ScheduleClient().GetHandle(ctx, workflows.KeyRotationScheduleID).Pause(ctx, client.SchedulePauseOptions{Note: "operator"}))
	require.NoError(t, worker.EnsureKeyRotationSchedule(ctx, c, "q", year), "a second worker start")
	d, in = describe()
	require.True(t, d.Schedule.State.Paused)
	require.Equal(t, year, in.Period)

	require.NoError(t, worker.EnsureKeyRotationSchedule(ctx, c, "q", 0))
	d, in = describe()
	require.Zero(t, in.Period, "a changed DATA_KEY_ROTATION_PERIOD applies")
	require.True(t, d.Schedule.State.Paused, "the operator's pause sticks")
}
