// Package findingsync keeps a connection's findings and their Jira issues in sync, in both
// directions. It is the service below the finding-sync activities:
//
//   - outbound, Service.Drain pushes the connection's finding queue to Jira: it creates each
//     matching finding's issue exactly once and moves issues when their finding's status changes;
//   - inbound, RecordDelivery stores an authenticated webhook delivery in the connection's inbox,
//     and Service.ApplyInbox (or Service.Apply, for changes handed over directly) applies Jira's
//     reports to the linked findings, each exactly once, recognising the echoes of the
//     connector's own pushes;
//   - Service.Reconcile pulls the recently updated issues of the configured project and applies
//     their statuses the same way, because webhooks get lost;
//   - Service.RegisterWebhooks and Service.RefreshWebhooks keep an OAuth connection's dynamic
//     webhook registered and unexpired.
//
// The decisions themselves are pure and live in package findings (DecideOutbound,
// DecideInbound, IssueMarker, BuildIssue). This package adds Postgres, Jira and the ordering of
// writes and calls that keeps those decisions right under retries, crashes and concurrent passes.
// Per-finding state lives in Postgres (finding_sync_queue, finding_issue_links,
// webhook_deliveries), so callers pass connection ids, counts and times — never finding content
// or credentials — and only ids, keys, statuses and counts are logged.
//
// The package does not know Temporal. Errors are returned as they are, for the caller to classify
// with failure.Classify (the drain classifies Jira's answers itself to decide what happens to a
// queue item); progress is reported through Config.Progress, which the activities turn into
// heartbeats.
//
// # Echo safety: how a link remembers its pushes
//
// The schema has no column for "awaiting the echo of our own transition", so it is derived from
// the link columns:
//
//   - last_pushed_status / last_push_at: the status the connector is pushing or last pushed, and
//     when (the service's clock). The drain writes them before the first Jira call of a transition
//     (BeginLinkPush) and again when it succeeded (FinishLinkPush).
//   - last_jira_status / last_inbound_at: the status Jira last reported and Jira's time for it.
//   - The link awaits the echo of its own transition while last_push_at > last_inbound_at: the
//     connector pushed and Jira has not reported anything since. The two times come from two
//     clocks (ours and Jira's); processing the echo stores max(Jira's time, last_push_at), so the
//     wait ends whatever the skew, and a skew only widens or narrows by that much the window in
//     which a report of another status counts as superseded by the push (Service.Apply).
//
// Statuses are stored by name (what the API shows); names identify a status within a site.
//
// # Exactly once
//
// An issue is created at most once per finding and connection, however often a drain is retried
// or interrupted: the create intent is committed before Jira is called, and an intent that may
// stand for a create that reached Jira is resolved by searching for the marker label
// before creating again (Service.Drain). An inbox change is applied in the transaction that marks
// it applied, so it takes effect exactly once (Service.ApplyInbox).
package findingsync
