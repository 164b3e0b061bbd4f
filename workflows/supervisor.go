package workflows

import (
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/jiraconnect/jiraconnect/activities"
)

// SupervisorScheduleID is the Temporal schedule that runs SupervisorWorkflow every
// SUPERVISOR_INTERVAL; each run's workflow id starts with it.
const SupervisorScheduleID = "connection-supervisor"

// SupervisorWorkflow is one pass of the connection supervisor: it calls SuperviseConnections
// until every organization has been examined or in.MaxStarts workflows were started, each call
// continuing from the cursor the previous one returned, and returns the pass's totals. The
// schedule skips a tick while a pass still runs, so passes never overlap; a pass that stops at
// MaxStarts leaves the rest to the next one.
func SupervisorWorkflow(ctx workflow.Context, in activities.SupervisorInput) (activities.SuperviseResult, error) {
	if in.Limit < 0 || in.MaxStarts < 0 {
		return activities.SuperviseResult{}, temporal.NewNonRetryableApplicationError("supervisor: limit and max_starts must not be negative", "invalid_input", nil)
	}
	maxStarts := in.MaxStarts
	if maxStarts == 0 {
		maxStarts = activities.DefaultSupervisorMaxStarts
	}
	var a *activities.Activities
	ctx = workflow.WithActivityOptions(ctx, activities.SupervisorOptions())
	var total activities.SuperviseResult
	req := activities.SuperviseInput{Limit: in.Limit, MaxStarts: maxStarts}
	for {
		var page activities.SuperviseResult
		if err := workflow.ExecuteActivity(ctx, a.SuperviseConnections, req).Get(ctx, &page); err != nil {
			return total, fmt.Errorf("supervise connections from %+v: %w", req.Cursor, err)
		}
		total.Add(page)
		if page.Next == nil || total.Restarted >= maxStarts {
			return total, nil
		}
		req.Cursor, req.MaxStarts = *page.Next, maxStarts-total.Restarted
	}
}
