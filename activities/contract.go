// Package activities is everything the connection workflow does that touches the world: Jira
// calls, unsealing credentials, Postgres writes, alerts. Workflows call these through an
// *Activities value (method references) and exchange only the plain, secret-free types below —
// ids, counts, timestamps and error kinds — so nothing sensitive ever enters Temporal history.
//
// Where a service owns the use case (findingsync for finding ⇄ issue sync), an activity is a thin
// adapter: it validates its input, passes its heartbeat to the service as the progress callback,
// calls the service and classifies the error (failure.Classify) into the ApplicationError the
// workflow switches on. Evidence sync, the connection test, alerts, retention and the connection
// supervisor are activities of their own.
//
// Every write is idempotent, keyed by stable ids (connection id + sync sequence number), never by
// a workflow run id, so retries and worker crashes never duplicate rows.
package activities

import (
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/connections"
)

// ConnectionRef names a connection. Every activity input embeds it; RLS scopes all its writes
// to OrgID.
type ConnectionRef struct {
	OrgID        uuid.UUID `json:"org_id"`
	ConnectionID uuid.UUID `json:"connection_id"`
}

// ConnectionSnapshot is what the workflow needs to know about a stored connection to schedule
// it. Loaded at workflow start, after continue-as-new and when the configuration changes.
type ConnectionSnapshot struct {
	Status         string        `json:"status"`
	Revoked        bool          `json:"revoked"`
	SyncCadence    time.Duration `json:"sync_cadence"`
	StaleThreshold time.Duration `json:"stale_threshold"`
	// LastSuccessAt is the last successful sync recorded in Postgres (nil if never).
	LastSuccessAt *time.Time `json:"last_success_at,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	// FindingSync reports whether finding ⇄ issue sync is configured: the workflow then drains the
	// finding queue, reconciles linked issues and keeps its dynamic webhook registered.
	FindingSync bool `json:"finding_sync,omitempty"`

	// The rest is the stored state a workflow resumes from when it starts over for an existing
	// connection — its previous run was terminated, failed or never started, and the supervisor
	// (or the API) started a new one — so the connection keeps its schedule, staleness, last
	// error and sync numbering. A run that continued as new carries its own state and ignores
	// them; so do histories recorded before these fields existed (they replay as zero values).
	//
	// LastSyncAt is the stored last sync attempt: the next scheduled sync is a cadence after it.
	LastSyncAt    *time.Time `json:"last_sync_at,omitempty"`
	Stale         bool       `json:"stale,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	LastErrorKind string     `json:"last_error_kind,omitempty"`
	// LastSync is the connection's evidence sync run with the highest sequence number under its
	// workflow id (nil: none).
	LastSync *SyncRunRecord `json:"last_sync,omitempty"`
}

// SyncRunRecord is a stored evidence sync run: its sequence number, its outcome ("running" while
// unfinished) and what triggered it.
type SyncRunRecord struct {
	Seq     int64  `json:"seq"`
	Outcome string `json:"outcome"`
	Trigger string `json:"trigger,omitempty"`
}

// SyncInput asks for one evidence sync.
type SyncInput struct {
	ConnectionRef
	// Seq numbers the connection's syncs (monotonic, carried across continue-as-new). With the
	// workflow id it forms the run's idempotency key: a retried activity updates the same
	// connector_runs row.
	Seq int64 `json:"seq"`
	// Trigger is "schedule", "sync_now" or "reauthorized" — recorded on the run.
	Trigger    string `json:"trigger"`
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
}

// SyncResult reports a finished sync.
type SyncResult struct {
	ConnectorRunID uuid.UUID `json:"connector_run_id"`
	// Outcome is "success", "partial" or "no_data". success and partial count as a successful
	// sync for staleness (the connection answered); no_data does not.
	Outcome     string    `json:"outcome"`
	JiraCalls   int       `json:"jira_calls"`
	NewEvidence int       `json:"new_evidence"`
	Observed    int       `json:"observed"`
	CompletedAt time.Time `json:"completed_at"`
}

// SyncFailure records a sync that failed for good (retries exhausted or not retryable).
type SyncFailure struct {
	ConnectionRef
	Seq        int64  `json:"seq"`
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
	ErrorType  string `json:"error_type"`
	// Message is the error's message as produced by our own code (jira.Error strings never hold
	// credentials).
	Message string `json:"message"`
}

// StateUpdate mirrors the workflow's state into the connections row for the API, and writes the
// matching audit row when Action is set (e.g. "connection.needs_reauth", "connection.stale").
type StateUpdate struct {
	ConnectionRef
	Status        string     `json:"status"`
	Stale         bool       `json:"stale"`
	NextSyncAt    *time.Time `json:"next_sync_at,omitempty"`
	LastSyncAt    *time.Time `json:"last_sync_at,omitempty"`
	LastSuccessAt *time.Time `json:"last_success_at,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	LastErrorKind string     `json:"last_error_kind,omitempty"`
	Action        string     `json:"action,omitempty"`
}

// AlertInput opens or resolves the stale alert of a connection (idempotent both ways: at most one
// open alert per connection and kind).
type AlertInput struct {
	ConnectionRef
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// AlertKindStale is the alert raised when a connection passes its stale threshold.
const AlertKindStale = "connection_stale"

// Check and TestResult are the connection test's report, owned by connections (the API answers
// it as is).
type (
	Check      = connections.Check
	TestResult = connections.TestResult
)

// RevokeInput asks for the revoke cleanup.
type RevokeInput struct {
	ConnectionRef
	// Actor is the API key (or "system") that asked, for the audit row.
	ActorType string `json:"actor_type"`
	ActorID   string `json:"actor_id"`
}

// Run kinds recorded in connector_runs.kind.
const (
	RunKindSync = "sync"
	RunKindTest = "test"
)

// Sync outcomes as SyncResult.Outcome and connector_runs.outcome report them; a run not finished
// yet is OutcomeRunning in connector_runs.
const (
	OutcomeSuccess = "success"
	OutcomePartial = "partial"
	OutcomeNoData  = "no_data"
	OutcomeFailed  = "failed"
	OutcomeRunning = "running"
)

// RetentionInput asks for one retention pass over every organization.
type RetentionInput struct {
	// OlderThan is the retention window: evidence created and last observed before now-OlderThan
	// (and attached to no assessment) is deleted. At least MinRetention.
	OlderThan time.Duration `json:"older_than"`
}

// MinRetention is the shortest retention window RetentionPurge accepts. It guards against a zero
// or mistyped window wiping evidence that auditors still rely on.
const MinRetention = 7 * 24 * time.Hour

// RetentionResult reports a retention pass.
type RetentionResult struct {
	Cutoff     time.Time `json:"cutoff"`
	Orgs       int       `json:"orgs"`
	OrgsPurged int       `json:"orgs_purged"`
	Purged     int64     `json:"purged"`
	// DeliveriesPurged counts webhook deliveries deleted once their accept-once window
	// (WebhookDedupeWindow) had passed.
	DeliveriesPurged int64 `json:"deliveries_purged"`
	// RevokedInboxDiscarded counts pending webhook changes of revoked connections deleted (they can
	// never be applied); each batch is audited as webhook_inbox.discard.
	RevokedInboxDiscarded int64     `json:"revoked_inbox_discarded,omitempty"`
	CompletedAt           time.Time `json:"completed_at"`
}
