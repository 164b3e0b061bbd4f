// Package findings is the domain logic of jiraconnect's security half: the finding model and
// its validation, a connection's finding-sync configuration, defensive redaction of excerpts,
// the Jira issue payload built for a finding, and the pure decisions that keep a finding and its
// Jira issue in sync in both directions without echoing changes back and forth.
//
// It does no I/O and keeps no state, so the API (validation), the activities (issue payloads,
// redaction) and the deterministic connection workflow (sync decisions) can all call it.
//
// # Exactly-once issue creation: the issue marker
//
// Every issue built by BuildIssue carries the label IssueMarker(scope, finding id), "jc-" followed
// by 16 hex digits of a SHA-256 over the organization, connection and finding ids. An activity
// whose create call failed ambiguously (a lost response, a killed worker) searches for that label
// with MarkerQuery before creating again. A label is used rather than the optional finding-id
// text field because labels exist on every site and issue type without configuration and JQL
// matches them exactly (labels = "x"), while text custom fields are only matched by the fuzzy
// full-text operator (~). The connection id is part of the hash because two connections of one
// organization may point at the same Jira project and each must get its own issue.
//
// Jira Cloud's search is eventually consistent: an issue created seconds ago may not be found yet.
// The marker makes a retry able to find the issue; it does not make a single immediate search
// sufficient (see MarkerQuery).
//
// # Two-way status sync
//
// DecideOutbound says whether a finding's status change must transition its issue, and
// DecideInbound whether a Jira status change must change the finding. LinkState, stored per
// finding/issue link, carries what the two need to recognise the connector's own transitions when
// Jira reports them back (echoes) and to ignore webhooks that arrive late or out of order. The
// rules are documented on those functions.
package findings
