package workflows

import "time"

// Finding-sync messages, shared with the API's webhook bridge and findings endpoints.
const (
	// SignalJiraIssueChanged carries a JiraIssueChange from the webhook bridge.
	SignalJiraIssueChanged = "jira-issue-changed"
	// SignalFindingsPending tells the workflow that finding_sync_queue has work for it. It has no
	// payload: the queue in Postgres is the source of truth, so coalescing many signals into one
	// drain loses nothing and the workflow's state does not grow with the number of findings.
	SignalFindingsPending = "findings-pending"
)

// JiraStatus is a Jira issue status as the workflow needs it.
type JiraStatus struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	CategoryKey string `json:"category_key"`
}

// JiraIssueChange is one accepted webhook delivery about an issue: ids, the issue's status after
// the change and the delivery's ordering information. No credential and no issue content beyond
// the status travels in it.
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
