package activities

import (
	"time"

	"github.com/google/uuid"
)

// Finding-sync contract between the connection workflow and its activities. As everywhere in this
// package, only ids, statuses, counts and error kinds cross it — never finding content or
// credentials — and per-finding state lives in Postgres (finding_sync_queue,
// finding_issue_links), so the workflow's own state stays O(1) however many findings there are.

// JiraStatus is a Jira issue status as the workflow and activities need it.
type JiraStatus struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	CategoryKey string `json:"category_key"`
}

// JiraIssueChange is one accepted webhook delivery (or reconciliation observation) about an
// issue: ids, the issue's status after the change and ordering information.
type JiraIssueChange struct {
	DeliveryID      string     `json:"delivery_id"`
	Event           string     `json:"event"`
	IssueID         string     `json:"issue_id"`
	IssueKey        string     `json:"issue_key"`
	Status          JiraStatus `json:"status"`
	StatusChanged   bool       `json:"status_changed"`
	FromStatusName  string     `json:"from_status_name,omitempty"`
	TimestampMillis int64      `json:"timestamp_millis"`
	ReceivedAt      time.Time  `json:"received_at"`
}

// DrainInput asks for one batch of the connection's finding queue to be pushed to Jira.
type DrainInput struct {
	ConnectionRef
	// Max bounds the findings handled in this call (0: DefaultDrainBatch).
	Max int `json:"max,omitempty"`
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
}

// ApplyInput hands inbound issue changes to ApplyJiraChanges (in delivery order).
type ApplyInput struct {
	ConnectionRef
	Changes []JiraIssueChange `json:"changes"`
}

// ApplyResult reports what the changes did.
type ApplyResult struct {
	Applied  int `json:"applied"`
	Echoes   int `json:"echoes"`
	Ignored  int `json:"ignored"`
	Requeued int `json:"requeued"`
}

// ReconcileResult reports a reconciliation pass.
type ReconcileResult struct {
	Examined  int `json:"examined"`
	Applied   int `json:"applied"`
	JiraCalls int `json:"jira_calls"`
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
