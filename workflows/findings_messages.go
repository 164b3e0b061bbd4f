package workflows

// Finding-sync messages, shared with the API's webhook bridge and findings endpoints.
const (
	// SignalJiraIssueChanged carries a findings.IssueChange. The webhook bridge does not send it
	// (it stores deliveries in the inbox and sends SignalInboxNudge); it is still handled, for
	// histories and senders from before the inbox.
	SignalJiraIssueChanged = "jira-issue-changed"
	// SignalInboxNudge is the webhook bridge's doorbell: the connection's webhook inbox
	// (webhook_deliveries rows with a pending change) has new changes. It has no payload: the inbox
	// in Postgres is the source of truth, so the bridge coalesces nudges (at most one in flight per
	// connection) and the workflow coalesces them into one ApplyInboxChanges, however many
	// deliveries arrived. A lost nudge is made up for by the check that goes with each
	// reconciliation.
	SignalInboxNudge = "inbox-nudge"
	// SignalFindingsPending tells the workflow that finding_sync_queue has work for it. It has no
	// payload: the queue in Postgres is the source of truth, so coalescing many signals into one
	// drain loses nothing and the workflow's state does not grow with the number of findings.
	SignalFindingsPending = "findings-pending"
)
