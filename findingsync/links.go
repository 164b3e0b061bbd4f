package findingsync

import (
	"time"

	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/findings"
)

// Link states (finding_issue_links.state).
const (
	linkCreating = "creating"
	linkLinked   = "linked"
)

// Finding status sources (findings.status_source).
const (
	sourceAPI  = "api"
	sourceJira = "jira"
)

// findingOf converts a stored finding to the domain type.
func findingOf(r dbq.Finding) findings.Finding {
	return findings.Finding{
		ID: r.ID, ExternalID: r.ExternalID, Title: r.Title, Severity: findings.Severity(r.Severity),
		Status: findings.Status(r.Status), ProbeID: r.ProbeID, ScanID: r.ScanID,
		FrameworkRefs: r.FrameworkRefs, Excerpt: r.Excerpt,
	}
}

// linkStateOf rebuilds the domain link state from a stored link (see the package comment for how
// the echo wait is derived).
func linkStateOf(l dbq.FindingIssueLink) findings.LinkState {
	var s findings.LinkState
	if l.IssueKey != nil {
		s.IssueKey = *l.IssueKey
	}
	if l.LastPushedStatus != nil {
		s.LastPushedStatus = findings.JiraStatus{Name: *l.LastPushedStatus}
	}
	if l.LastPushAt != nil {
		s.LastPushedAt = l.LastPushAt.UTC()
	}
	if l.LastJiraStatus != nil {
		s.LastJiraStatus = findings.JiraStatus{Name: *l.LastJiraStatus}
	}
	if l.LastInboundAt != nil {
		s.LastJiraChangeAt = l.LastInboundAt.UTC()
	}
	s.AwaitingEcho = awaitingEcho(l)
	return s
}

// awaitingEcho: the connector pushed a status and Jira has not reported anything since.
func awaitingEcho(l dbq.FindingIssueLink) bool {
	return l.LastPushedStatus != nil && l.LastPushAt != nil && (l.LastInboundAt == nil || l.LastPushAt.After(*l.LastInboundAt))
}

// laterOf returns the later of two times.
func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func strPtrOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func ptr[T any](v T) *T { return &v }
