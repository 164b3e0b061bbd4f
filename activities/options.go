package activities

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/jiraconnect/jiraconnect/failure"
)

// Recommended activity options. The workflow owns the choice; these encode what the activities
// need to behave as documented (heartbeats, per-call timeouts, typed non-retryable errors).

// nonRetryable are the error types no retry can fix. They are also raised as non-retryable
// ApplicationErrors; listing them keeps the policy correct even for an error wrapped elsewhere.
var nonRetryable = []string{failure.TypeConfig, failure.TypeReauthRequired, failure.TypeRevoked, failure.TypeInvalidInput}

// SyncOptions are for SyncEvidence. A sync is a fixed number of Jira calls (12 with the default
// configuration), each bounded by DefaultJiraCallTimeout, plus one transaction. Jira answers each
// in well under a second; three minutes still fits a default sync whose every call takes ten
// seconds, and an attempt slower than that times out and is retried. The heartbeat timeout
// exceeds one call's bound, so a live sync never misses it while a dead worker is noticed within
// a minute. Retries
// back off from 10s to 10m over six attempts (about 20 minutes), well inside a daily cadence; a
// rate-limited attempt waits for Jira's Retry-After instead (NextRetryDelay). When the retries are
// exhausted the workflow calls RecordSyncFailure.
func SyncOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 3 * time.Minute,
		HeartbeatTimeout:    DefaultJiraCallTimeout + 15*time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        10 * time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        10 * time.Minute,
			MaximumAttempts:        6,
			NonRetryableErrorTypes: nonRetryable,
		},
	}
}

// TestOptions are for TestConnection, which answers an API caller who is waiting: at most two
// attempts (failing checks are results, so only infrastructure errors retry). With finding sync
// on, a test makes up to eight Jira calls of DefaultJiraCallTimeout each; the attempt budget
// covers them all, and a caller who stops waiting earlier finds the result in the runs.
func TestOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		HeartbeatTimeout:    DefaultJiraCallTimeout + 15*time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        2 * time.Second,
			BackoffCoefficient:     2,
			MaximumAttempts:        2,
			NonRetryableErrorTypes: nonRetryable,
		},
	}
}

// StateOptions are for the Postgres-only bookkeeping activities: LoadConnection,
// RecordSyncFailure, SetConnectionState, OpenAlert and ResolveAlert. They are idempotent and must
// eventually happen (a lost stale flag or alert is a wrong coverage figure), so they retry without
// an attempt limit, backing off to one minute, until the workflow stops waiting.
func StateOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			NonRetryableErrorTypes: nonRetryable,
		},
	}
}

// RevokeOptions are for RevokeCleanup, which must happen however long Postgres is away (run it on
// a disconnected context after cancellation). It includes one best-effort Jira call, bounded by
// DefaultJiraCallTimeout.
func RevokeOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		HeartbeatTimeout:    DefaultJiraCallTimeout + 15*time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			NonRetryableErrorTypes: []string{failure.TypeInvalidInput, failure.TypeConfig},
		},
	}
}

// RetentionOptions are for RetentionPurge, a batch job over every organization that heartbeats
// per organization and per batch and resumes where it stopped when retried.
func RetentionOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: time.Hour,
		HeartbeatTimeout:    2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        10 * time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        10 * time.Minute,
			MaximumAttempts:        5,
			NonRetryableErrorTypes: []string{failure.TypeInvalidInput},
		},
	}
}

// findingHeartbeat exceeds the longest gap between two heartbeats of the finding-sync activities:
// one transition, which may walk a multi-hop workflow within twice the per-call timeout.
const findingHeartbeat = 2*DefaultJiraCallTimeout + 15*time.Second

// DrainOptions are for DrainFindingQueue. A batch of DefaultDrainBatch findings is at most a few
// Jira calls each; rate limits and transient Jira failures are handled inside the queue (items are
// delayed, the activity succeeds), so a retry here means Postgres or the worker failed. Re-running
// a drain is safe: creation is exactly-once and transitions are idempotent. Re-auth, revoked and
// configuration errors are not retried; the workflow waits for re-authorization.
func DrainOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		HeartbeatTimeout:    findingHeartbeat,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        5 * time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        5 * time.Minute,
			MaximumAttempts:        5,
			NonRetryableErrorTypes: nonRetryable,
		},
	}
}

// ApplyOptions are for ApplyJiraChanges and ApplyInboxChanges: Postgres only, idempotent
// (duplicates and stale reports are ignored; an inbox change is marked applied with its effect),
// and a lost inbound change would leave the finding behind until reconciliation, so they retry
// without an attempt limit like the state activities. An inbox pass of DefaultInboxBatch changes
// is that many short transactions, far inside the timeout, heartbeating as it goes.
func ApplyOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			NonRetryableErrorTypes: nonRetryable,
		},
	}
}

// ReconcileOptions are for ReconcileLinkedIssues: at most 10 search calls plus Postgres writes.
// A failed pass is simply tried again by the next periodic pass, so retries are few.
func ReconcileOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		HeartbeatTimeout:    findingHeartbeat,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        10 * time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        5 * time.Minute,
			MaximumAttempts:        3,
			NonRetryableErrorTypes: nonRetryable,
		},
	}
}

// WebhookOptions are for RegisterWebhooks and RefreshWebhooks: four Jira calls at most. They run
// days ahead of the 30-day expiry, so retries can back off generously.
func WebhookOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 3 * time.Minute,
		HeartbeatTimeout:    DefaultJiraCallTimeout + 15*time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        30 * time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        30 * time.Minute,
			MaximumAttempts:        6,
			NonRetryableErrorTypes: nonRetryable,
		},
	}
}

// SupervisorOptions are for SuperviseConnections: at most DefaultSuperviseLimit connections, a
// few Postgres and Temporal calls each, heartbeating per page and per connection it acts on. A
// retried call starts again from its cursor (starting a running workflow again is harmless); a
// pass that fails for good is simply the next scheduled pass's work.
func SupervisorOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        5 * time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			MaximumAttempts:        5,
			NonRetryableErrorTypes: []string{failure.TypeInvalidInput, failure.TypeConfig},
		},
	}
}
