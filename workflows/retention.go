package workflows

import (
	"fmt"

	"go.temporal.io/sdk/workflow"

	"github.com/jiraconnect/jiraconnect/activities"
)

// RetentionScheduleID is the Temporal schedule that runs RetentionWorkflow daily.
const RetentionScheduleID = "jiraconnect-retention"

// RetentionWorkflow purges evidence older than the retention window that no assessment holds.
// A Temporal schedule starts it once a day; running it twice is harmless (the purge is
// idempotent), and evidence attached to an approved assessment is never deleted — the database
// refuses, whatever this code does.
func RetentionWorkflow(ctx workflow.Context, in activities.RetentionInput) (activities.RetentionResult, error) {
	var a *activities.Activities
	ctx = workflow.WithActivityOptions(ctx, activities.RetentionOptions())
	var out activities.RetentionResult
	if err := workflow.ExecuteActivity(ctx, a.RetentionPurge, in).Get(ctx, &out); err != nil {
		return out, fmt.Errorf("retention purge: %w", err)
	}
	return out, nil
}
