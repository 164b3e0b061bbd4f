package workflows

import "github.com/jiraconnect/jiraconnect/activities"

// Finding-sync messages, shared with the API's webhook bridge and findings endpoints.
const (
	// SignalJiraIssueChanged carries a JiraIssueChange from the webhook bridge.
	SignalJiraIssueChanged = "jira-issue-changed"
	// SignalFindingsPending tells the workflow that finding_sync_queue has work for it. It has no
	// payload: the queue in Postgres is the source of truth, so coalescing many signals into one
	// drain loses nothing and the workflow's state does not grow with the number of findings.
	SignalFindingsPending = "findings-pending"
)

// JiraIssueChange is the payload of SignalJiraIssueChanged.
type JiraIssueChange = activities.JiraIssueChange

// JiraStatus is an issue status inside a JiraIssueChange.
type JiraStatus = activities.JiraStatus
