package findingsync

import "time"

// The results below cross Temporal as the finding-sync activities' results: their JSON is part of
// the workflow's contract and must not change.

// DrainResult reports a drain of the finding queue.
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

// ApplyResult reports what inbound changes did.
type ApplyResult struct {
	Applied  int `json:"applied"`
	Echoes   int `json:"echoes"`
	Ignored  int `json:"ignored"`
	Requeued int `json:"requeued"`
}

// InboxResult reports an inbox pass: what the changes did (as ApplyResult) and how many are still
// pending (Remaining, counted up to maxInboxCount), so the caller runs another pass when it is
// not 0.
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
