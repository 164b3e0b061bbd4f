package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/jiraconnect/jiraconnect/workflows"
)

// KeyRotationInterval is how often the org-key-rotation schedule runs a pass. Daily is plenty for
// periods measured in months, and the same pass resumes any re-seal left unfinished.
const KeyRotationInterval = 24 * time.Hour

// EnsureKeyRotationSchedule makes the org-key-rotation schedule run KeyRotationWorkflow daily with
// period (DATA_KEY_ROTATION_PERIOD; 0 rotates nothing, and the pass only resumes unfinished
// re-seals). It creates the schedule if it does not exist; an existing one keeps its state (an
// operator's pause in the Temporal UI sticks) and only gets the configured period if its action
// carries another one, so changing DATA_KEY_ROTATION_PERIOD takes effect at the next worker
// start. Passes never overlap: a tick while one runs is skipped.
func EnsureKeyRotationSchedule(ctx context.Context, c client.Client, taskQueue string, period time.Duration) error {
	action := &client.ScheduleWorkflowAction{
		ID:        workflows.KeyRotationScheduleID,
		Workflow:  workflows.KeyRotationWorkflow,
		Args:      []any{workflows.KeyRotationInput{Period: period}},
		TaskQueue: taskQueue,
	}
	_, err := c.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID:      workflows.KeyRotationScheduleID,
		Spec:    client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: KeyRotationInterval}}},
		Action:  action,
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
	})
	if err == nil {
		return nil
	}
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		return fmt.Errorf("create key rotation schedule: %w", err)
	}
	err = c.ScheduleClient().GetHandle(ctx, workflows.KeyRotationScheduleID).Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := in.Description.Schedule
			if current, ok := scheduledRotationInput(s.Action); ok && current.Period == period {
				return nil, temporal.ErrSkipScheduleUpdate
			}
			s.Action = action
			return &client.ScheduleUpdate{Schedule: &s}, nil
		},
	})
	if err != nil {
		return fmt.Errorf("update key rotation schedule to period %s: %w", period, err)
	}
	return nil
}

// scheduledRotationInput decodes the input the schedule's action passes, if it is one.
func scheduledRotationInput(a client.ScheduleAction) (workflows.KeyRotationInput, bool) {
	wa, ok := a.(*client.ScheduleWorkflowAction)
	if !ok || len(wa.Args) != 1 {
		return workflows.KeyRotationInput{}, false
	}
	var in workflows.KeyRotationInput
	switch v := wa.Args[0].(type) {
	case workflows.KeyRotationInput:
		return v, true
	case *commonpb.Payload:
		// A described schedule carries its arguments encoded.
		if err := converter.GetDefaultDataConverter().FromPayload(v, &in); err != nil {
			return in, false
		}
		return in, true
	}
	return in, false
}
