package activities

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
)

// Finding ⇄ issue sync activities. Their per-finding state lives in Postgres (finding_sync_queue,
// finding_issue_links), so the workflow only passes connection ids, counts and times.
//
// How the link columns are used (the schema has no column for the echo wait, so it is derived):
//
//   - last_pushed_status / last_push_at: the status the connector is pushing or last pushed, and
//     when (the activity clock). BeginLinkPush writes them before the first Jira call of a
//     transition, FinishLinkPush again when it succeeded.
//   - last_jira_status / last_inbound_at: the status Jira last reported and Jira's time for it.
//   - The link awaits the echo of its own transition while last_push_at > last_inbound_at: the
//     connector pushed and Jira has not reported anything since. The two times come from two
//     clocks (ours and Jira's); processing the echo stores max(Jira's time, last_push_at), so the
//     wait ends whatever the skew, and a skew only widens or narrows by that much the window in
//     which a report of another status counts as superseded by the push (ApplyJiraChanges).
//
// Statuses are stored by name (what the API shows); names identify a status within a site.

// Activity names of finding sync.
const (
	NameDrainFindingQueue     = "DrainFindingQueue"
	NameApplyJiraChanges      = "ApplyJiraChanges"
	NameApplyInboxChanges     = "ApplyInboxChanges"
	NameReconcileLinkedIssues = "ReconcileLinkedIssues"
	NameRegisterWebhooks      = "RegisterWebhooks"
	NameRefreshWebhooks       = "RefreshWebhooks"
)

// DefaultSearchConsistencyWindow is how long Jira Cloud's search may lag behind a create. A create
// request whose outcome is unknown (response lost, worker killed) is only considered not to have
// happened when a marker search made at least this long (plus the per-call timeout, the longest the
// request itself could still have been in flight) after the request finds nothing.
const DefaultSearchConsistencyWindow = 30 * time.Second

// MaxDrainBatch bounds DrainInput.Max.
const MaxDrainBatch = 200

// RunKindFindingPush is the connector_runs kind of a drain that called Jira.
const RunKindFindingPush = "finding_push"

// Audit actions written by finding sync.
const (
	ActionIssueCreated  = "finding.issue_created"
	ActionPush          = "finding.push"
	ActionPushFailed    = "finding.push_failed"
	ActionInboundChange = "finding.inbound_change"
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

// linkStateOf rebuilds the domain link state from a stored link (see the package comment above
// for how the echo wait is derived).
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

// findingSyncConnection loads the connection row (for the finding-sync columns the Connection type
// does not carry) and its parsed configuration. A revoked or missing connection is ErrRevoked /
// ErrNotFound.
func (a *Activities) findingSyncConnection(ctx context.Context, ref ConnectionRef) (dbq.Connection, connections.Connection, error) {
	var row dbq.Connection
	err := a.db.InOrg(ctx, ref.OrgID, func(q *dbq.Queries) error {
		var err error
		row, err = connections.RequireLive(ctx, q, ref.ConnectionID)
		return err
	})
	if err != nil {
		return dbq.Connection{}, connections.Connection{}, err
	}
	conn, err := connections.FromRow(row)
	if err != nil {
		return dbq.Connection{}, connections.Connection{}, fmt.Errorf("connection %s configuration: %w: %w", ref.ConnectionID, failure.ErrBadConfig, err)
	}
	return row, conn, nil
}

// workflowIDOf is the workflow on whose behalf an activity acts (audit actor, run rows): the
// given id, else the calling workflow's, else the connection's conventional workflow id.
func workflowIDOf(ctx context.Context, given string, ref ConnectionRef) string {
	if given != "" {
		return given
	}
	if activity.IsActivity(ctx) {
		if id := activity.GetInfo(ctx).WorkflowExecution.ID; id != "" {
			return id
		}
	}
	return "jira-connection/" + ref.ConnectionID.String()
}

// drainRunKey is the idempotency key of a drain's connector_runs row ("" when none can be formed,
// e.g. a direct call outside Temporal without a workflow id).
func drainRunKey(ctx context.Context, in DrainInput) (key, workflowID, runID string) {
	if in.WorkflowID != "" {
		return in.WorkflowID + "/" + RunKindFindingPush + "/" + strconv.FormatInt(in.Seq, 10), in.WorkflowID, in.RunID
	}
	if !activity.IsActivity(ctx) {
		return "", "", ""
	}
	info := activity.GetInfo(ctx)
	wf := info.WorkflowExecution
	return wf.ID + "/" + RunKindFindingPush + "/" + wf.RunID + "/" + info.ActivityID, wf.ID, wf.RunID
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

// scopeOf is the issue-marker scope of a connection.
func scopeOf(ref ConnectionRef) findings.Scope {
	return findings.Scope{OrgID: ref.OrgID, ConnectionID: ref.ConnectionID}
}
