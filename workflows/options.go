package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/jiraconnect/jiraconnect/activities"
)

// Activity options of the connection workflow. The activities package recommends timeouts and
// retry policies that match what each activity does (heartbeats, per-call Jira timeouts, typed
// non-retryable errors); the workflow adds only what its own protocol needs.

// syncOptions: bounded retries, so a failing sync ends, is recorded, and the next scheduled sync
// tries again — the stale threshold, not the retry policy, decides when users are alerted.
// WaitForCancellation makes a revoke wait until the activity has really stopped, so the cleanup
// never races a sync still writing evidence.
func syncOptions() workflow.ActivityOptions {
	o := activities.SyncOptions()
	o.WaitForCancellation = true
	return o
}

// bookkeepingOptions covers the Postgres-only activities (load, mirror, alerts, failure records):
// idempotent, retried until they succeed; a revoke or cancellation interrupts them.
func bookkeepingOptions() workflow.ActivityOptions { return activities.StateOptions() }

// localBookkeepingOptions are bookkeepingOptions for the same activities run as local
// activities: the same per-attempt timeout and retry policy (retried until they succeed; the SDK
// turns a long backoff into a workflow timer), without the task-queue timeouts a local activity
// does not have.
func localBookkeepingOptions() workflow.LocalActivityOptions {
	o := bookkeepingOptions()
	return workflow.LocalActivityOptions{StartToCloseTimeout: o.StartToCloseTimeout, RetryPolicy: o.RetryPolicy}
}

// testOptions: the connection test answers a waiting API caller.
func testOptions() workflow.ActivityOptions { return activities.TestOptions() }

// revokeOptions: the cleanup clears sealed credentials, so it retries until done; it runs in a
// disconnected context and is not interrupted by the workflow's cancellation.
func revokeOptions() workflow.ActivityOptions { return activities.RevokeOptions() }

// findingOptions are for the finding activities: the activities package's recommendations (drains
// and reconciliations retry a few times, applies and inbox passes — Postgres only — until they
// succeed, webhooks back off generously), plus WaitForCancellation, so that a revoke waits until
// the activity has stopped, as for the sync. When the retries are exhausted the machine backs the
// lane off (findingBackoff) instead of retrying in a loop.
func findingOptions(op string) workflow.ActivityOptions {
	var o workflow.ActivityOptions
	switch op {
	case FindingOpApply, FindingOpInbox:
		o = activities.ApplyOptions()
	case FindingOpReconcile:
		o = activities.ReconcileOptions()
	case FindingOpRegister, FindingOpRefresh:
		o = activities.WebhookOptions()
	default:
		o = activities.DrainOptions()
	}
	o.WaitForCancellation = true
	return o
}
