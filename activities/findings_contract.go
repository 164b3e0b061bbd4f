package activities

import (
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/findings"
)

// Finding-sync contract between the connection workflow and its activities. As everywhere in this
// package, only ids, statuses, counts and error kinds cross it — never finding content or
// credentials — and per-finding state lives in Postgres (finding_sync_queue,
// finding_issue_links), so the workflow's own state stays O(1) however many findings there are.

// DrainInput asks for one batch of the connection's finding queue to be pushed to Jira.
type DrainInput struct {
	ConnectionRef
	// Max bounds the findings handled in this call (0: DefaultDrainBatch; at most MaxDrainBatch).
	Max int `json:"max,omitempty"`
	// WorkflowID and Seq name the drain for its connector_runs row: with WorkflowID set, the
	// row's idempotency key is "<workflow id>/finding_push/<seq>", so Seq must number the
	// connection's drains (monotonic, carried across continue-as-new). Without WorkflowID the key
	// is derived from the activity's own identity (workflow id, run id, activity id), which is
	// stable across the activity's retries. RunID is recorded on the row.
	WorkflowID string `json:"workflow_id,omitempty"`
	RunID      string `json:"run_id,omitempty"`
	Seq        int64  `json:"seq,omitempty"`
}

// DefaultDrainBatch is the default batch size of DrainFindingQueue.
const DefaultDrainBatch = 25

// DrainResult reports a batch.
type DrainResult struct {
	Created     int `json:"created"`
	Transitions int `json:"transitions"`
	Unchanged   int `json:"unchanged"`
	Failed      int `json:"failed"`
	// Remaining is how many queue items are due now; NextDue when the earliest delayed item
	// becomes due (nil if none), so the workflow can sleep until then.
	Remaining int        `json:"remaining"`
	NextDue   *time.Time `json:"next_due,omitempty"`
	JiraCalls int        `json:"jira_calls"`
	// Delayed counts items put back with a later due time (rate limit, transient Jira failure,
	// waiting for Jira's search to confirm an unconfirmed create). RateLimited is set when Jira
	// rate-limited the batch, which then stopped early.
	Delayed     int  `json:"delayed"`
	RateLimited bool `json:"rate_limited,omitempty"`
}

// ApplyInput hands inbound issue changes to ApplyJiraChanges (in delivery order).
type ApplyInput struct {
	ConnectionRef
	Changes []findings.IssueChange `json:"changes"`
}

// ApplyResult reports what the changes did.
type ApplyResult struct {
	Applied  int `json:"applied"`
	Echoes   int `json:"echoes"`
	Ignored  int `json:"ignored"`
	Requeued int `json:"requeued"`
}

// InboxInput asks ApplyInboxChanges to apply the pending changes of the connection's webhook
// inbox.
type InboxInput struct {
	ConnectionRef
	// Max bounds the changes applied in this call (0: DefaultInboxBatch; at most MaxApplyChanges).
	Max int `json:"max,omitempty"`
}

// DefaultInboxBatch is the default batch size of ApplyInboxChanges.
const DefaultInboxBatch = 500

// InboxResult reports an inbox pass: what the changes did (as ApplyResult) and how many are still
// pending (Remaining, counted up to a bound), so the workflow runs another pass when it is not 0.
type InboxResult struct {
	ApplyResult
	Remaining int `json:"remaining"`
}

// ReconcileResult reports a reconciliation pass.
type ReconcileResult struct {
	Examined  int `json:"examined"`
	Applied   int `json:"applied"`
	JiraCalls int `json:"jira_calls"`
	// Requeued counts findings queued for a push because their own change was newer than what
	// Jira showed. Truncated is set when the page bound was reached: the pass stopped at the last
	// issue it saw and the next pass continues from there.
	Requeued  int  `json:"requeued,omitempty"`
	Truncated bool `json:"truncated,omitempty"`
}

// WebhookResult reports dynamic webhook registration or refresh.
type WebhookResult struct {
	IDs       []int64    `json:"ids"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Skipped is set when the connection does not use dynamic webhooks (token/PAT connections,
	// where an admin registers the webhook, or finding sync off).
	Skipped bool `json:"skipped,omitempty"`
}

// FindingRef names one finding of a connection (used by tests and the fault suite).
type FindingRef struct {
	ConnectionRef
	FindingID uuid.UUID `json:"finding_id"`
}
