package activities

import (
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/findingsync"
)

// Finding-sync contract between the connection workflow and its activities. As everywhere in this
// package, only ids, statuses, counts and error kinds cross it — never finding content or
// credentials — and per-finding state lives in Postgres (finding_sync_queue,
// finding_issue_links, webhook_deliveries), so the workflow's own state stays O(1) however many
// findings there are. The results are the findingsync service's own types; the inbox record is
// findings.IssueChange.

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

// Bounds of DrainInput.Max.
const (
	DefaultDrainBatch = 25
	MaxDrainBatch     = 200
)

// ApplyInput hands inbound issue changes to ApplyJiraChanges (in delivery order).
type ApplyInput struct {
	ConnectionRef
	Changes []findings.IssueChange `json:"changes"`
}

// MaxApplyChanges bounds the changes of one ApplyJiraChanges or ApplyInboxChanges call.
const MaxApplyChanges = 500

// InboxInput asks ApplyInboxChanges to apply the pending changes of the connection's webhook
// inbox.
type InboxInput struct {
	ConnectionRef
	// Max bounds the changes applied in this call (0: DefaultInboxBatch; at most MaxApplyChanges).
	Max int `json:"max,omitempty"`
}

// DefaultInboxBatch is the default batch size of ApplyInboxChanges.
const DefaultInboxBatch = 500

// Results of the finding-sync activities (findingsync documents them).
type (
	DrainResult     = findingsync.DrainResult
	ApplyResult     = findingsync.ApplyResult
	InboxResult     = findingsync.InboxResult
	ReconcileResult = findingsync.ReconcileResult
	WebhookResult   = findingsync.WebhookResult
)
