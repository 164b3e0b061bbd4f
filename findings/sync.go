package findings

import (
	"strings"
	"time"

	"github.com/jiraconnect/jiraconnect/jira"
)

// JiraStatus is a Jira workflow status as the connector reasons about it: the one owner of the
// (id, name, category key) triple. Jira's own shape, jira.Status (REST answers, transition results
// and webhook payloads alike), is converted at the edge with StatusFromJira. Any of the fields may
// be empty; CategoryKey is "new", "indeterminate" or "done" (or "undefined").
//
// Its JSON form is part of IssueChange's and writes every member.
type JiraStatus struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	CategoryKey string `json:"category_key"`
}

// StatusFromJira converts a status as Jira describes it (issues, transition results, webhooks).
func StatusFromJira(s jira.Status) JiraStatus {
	return JiraStatus{ID: s.ID, Name: s.Name, CategoryKey: s.Category.Key}
}

// IsZero reports whether nothing is known about the status.
func (s JiraStatus) IsZero() bool { return s.ID == "" && s.Name == "" && s.CategoryKey == "" }

// Same reports whether s and o are the same workflow status: by id when both have one (ids
// survive renames), otherwise by name, case-insensitively. A category alone identifies nothing.
func (s JiraStatus) Same(o JiraStatus) bool {
	if s.ID != "" && o.ID != "" {
		return s.ID == o.ID
	}
	return s.Name != "" && o.Name != "" && strings.EqualFold(strings.TrimSpace(s.Name), strings.TrimSpace(o.Name))
}

// OutboundTarget is the Jira status a finding status transitions its issue to: the status-map
// entry as a jira.Target (id, then name, then category fallback, with the resolution). It is the
// zero Target for a status without an entry, which a validated configuration never has.
func OutboundTarget(cfg SyncConfig, s Status) jira.Target {
	t, ok := cfg.StatusMap[s]
	if !ok {
		return jira.Target{}
	}
	return jira.Target{StatusID: t.ID, StatusName: t.Name, CategoryKey: t.CategoryKey, Resolution: t.Resolution}
}

// statusAliases are well-known Jira status names that map to a finding status whatever the
// status map says, consulted after the map: they cover the names of Jira's default workflows
// that the category fallback would map differently ("Won't Do" is a done status, but it means
// accepted, not resolved) and the reopened status.
var statusAliases = []struct {
	name   string
	status Status
}{
	{"open", StatusOpen}, {"to do", StatusOpen}, {"reopened", StatusOpen},
	{"in progress", StatusTriaged},
	{"done", StatusResolved},
	{"won't do", StatusAccepted}, {"won't fix", StatusAccepted},
	{"cancelled", StatusFalsePositive}, {"canceled", StatusFalsePositive},
}

// InboundStatus maps a Jira status to a finding status:
//
//  1. by id, against the status map's ids;
//  2. by name, case-insensitively, against the status map's names;
//  3. by name against well-known names (Open, To Do, Reopened → open; In Progress → triaged;
//     Done → resolved; Won't Do, Won't Fix → accepted; Cancelled, Canceled → false_positive);
//  4. by category: done → resolved, indeterminate → triaged, new → open.
//
// A status matching none of these (no name match and category "undefined" or empty) is not
// mapped: ok is false and the finding must not change.
func InboundStatus(cfg SyncConfig, js JiraStatus) (Status, bool) {
	if js.ID != "" {
		for _, s := range Statuses() {
			if t, ok := cfg.StatusMap[s]; ok && t.ID != "" && t.ID == js.ID {
				return s, true
			}
		}
	}
	name := strings.TrimSpace(js.Name)
	if name != "" {
		for _, s := range Statuses() {
			if t, ok := cfg.StatusMap[s]; ok && strings.EqualFold(strings.TrimSpace(t.Name), name) {
				return s, true
			}
		}
		for _, a := range statusAliases {
			if strings.EqualFold(a.name, name) {
				return a.status, true
			}
		}
	}
	switch strings.ToLower(js.CategoryKey) {
	case CategoryDone:
		return StatusResolved, true
	case CategoryIndeterminate:
		return StatusTriaged, true
	case CategoryNew:
		return StatusOpen, true
	}
	return "", false
}

// LinkState is what the connector remembers about one finding's issue for status sync. It is
// stored with the finding/issue link and updated from the decisions' results (AfterPush,
// InboundDecision.Link).
type LinkState struct {
	IssueKey string `json:"issue_key"`
	// LastPushedStatus is the Jira status the connector last transitioned the issue to (from the
	// transition result), and LastPushedAt when (the connector's clock).
	LastPushedStatus JiraStatus `json:"last_pushed_status"`
	LastPushedAt     time.Time  `json:"last_pushed_at,omitzero"`
	// AwaitingEcho is true from a transition the connector made until Jira's report of it (or of
	// any later change) has been processed. It is what tells our own transition bouncing back from
	// a person moving the issue to the same status later.
	AwaitingEcho bool `json:"awaiting_echo,omitempty"`
	// LastJiraStatus is the last status Jira reported (webhook or reconciliation) and
	// LastJiraChangeAt the time Jira gave for it (Jira's clock: the webhook timestamp or the
	// issue's updated time). Reports older than LastJiraChangeAt are out of date.
	LastJiraStatus   JiraStatus `json:"last_jira_status"`
	LastJiraChangeAt time.Time  `json:"last_jira_change_at,omitzero"`
}

// AfterPush returns the link state after the connector transitioned the issue (or found it
// already in the target, changed=false) at the given time. Only a real transition produces a
// webhook, so only then does the link await an echo; an unchanged issue tells us its current
// status directly.
func (l LinkState) AfterPush(to JiraStatus, changed bool, at time.Time) LinkState {
	l.LastPushedStatus = to
	l.LastPushedAt = at
	if changed {
		l.AwaitingEcho = true
	} else {
		l.LastJiraStatus = to
	}
	return l
}

// believedStatus is the issue's status as far as the connector knows: what it pushed, if Jira has
// not reported anything since, otherwise what Jira last reported.
func (l LinkState) believedStatus() JiraStatus {
	if l.AwaitingEcho {
		return l.LastPushedStatus
	}
	return l.LastJiraStatus
}

// Origin says who changed a finding's status.
type Origin string

// Origins.
const (
	// OriginPlatform is a change made through jiraconnect: the scanner, a user, the API.
	OriginPlatform Origin = "platform"
	// OriginJira is a change applied because the issue moved in Jira (an InboundDecision).
	OriginJira Origin = "jira"
)

// OutboundOutcome classifies an OutboundDecision.
type OutboundOutcome string

// Outbound outcomes.
const (
	OutboundTransition     OutboundOutcome = "transition"      // transition the issue to Target
	OutboundAlreadyThere   OutboundOutcome = "already_there"   // Jira is in a status that maps to the finding's
	OutboundFromJira       OutboundOutcome = "from_jira"       // the change came from Jira; pushing it back would echo
	OutboundNoIssue        OutboundOutcome = "no_issue"        // the finding has no issue yet
	OutboundUnmappedStatus OutboundOutcome = "unmapped_status" // the status map has no entry (invalid configuration)
)

// OutboundDecision says whether to transition a finding's issue.
type OutboundDecision struct {
	Outcome OutboundOutcome
	// Target is set when Outcome is OutboundTransition.
	Target jira.Target
}

// Transition reports whether the issue must be transitioned.
func (d OutboundDecision) Transition() bool { return d.Outcome == OutboundTransition }

// DecideOutbound decides whether a finding's status (after a change by origin) must be pushed to
// its issue:
//
//   - a change that came from Jira is never pushed back (it would bounce between the two);
//   - without a linked issue there is nothing to transition (creation is decided by Matches);
//   - when the status Jira is believed to be in — what the connector last pushed if Jira has not
//     reported since, else the last status Jira reported — maps to the finding's status
//     (InboundStatus), no call is made;
//   - otherwise the issue is transitioned to OutboundTarget. When nothing is known about the
//     issue's status the transition is attempted; jira.Client.TransitionTo reads the current
//     status first and makes no transition call when the issue is already there.
//
// The belief can be stale when a webhook was lost; the periodic reconciliation corrects it.
func DecideOutbound(cfg SyncConfig, finding Status, origin Origin, link LinkState) OutboundDecision {
	if origin == OriginJira {
		return OutboundDecision{Outcome: OutboundFromJira}
	}
	if link.IssueKey == "" {
		return OutboundDecision{Outcome: OutboundNoIssue}
	}
	target := OutboundTarget(cfg, finding)
	if target == (jira.Target{}) {
		return OutboundDecision{Outcome: OutboundUnmappedStatus}
	}
	if cur := link.believedStatus(); !cur.IsZero() {
		if s, ok := InboundStatus(cfg, cur); ok && s == finding {
			return OutboundDecision{Outcome: OutboundAlreadyThere}
		}
	}
	return OutboundDecision{Outcome: OutboundTransition, Target: target}
}

// IssueStatusChange is a status Jira reported for an issue: from a webhook (the changelog's new
// status, or the issue's status after the event) or from the reconciliation pull (the issue's
// current status).
type IssueStatusChange struct {
	IssueKey string
	To       JiraStatus
	// At is Jira's time for the change: the webhook's timestamp, or the issue's updated time for
	// reconciliation. It orders reports of the same issue.
	At time.Time
}

// InboundOutcome classifies an InboundDecision.
type InboundOutcome string

// Inbound outcomes.
const (
	InboundApply      InboundOutcome = "apply"       // the finding changes to Status
	InboundEcho       InboundOutcome = "echo"        // Jira reports the transition the connector made
	InboundInSync     InboundOutcome = "in_sync"     // the status maps to the finding's current status
	InboundUnmapped   InboundOutcome = "unmapped"    // the status maps to no finding status
	InboundStale      InboundOutcome = "stale"       // older than the last report applied
	InboundDuplicate  InboundOutcome = "duplicate"   // the report already applied
	InboundOtherIssue InboundOutcome = "other_issue" // the report is about another issue
	InboundInvalid    InboundOutcome = "invalid"     // no status or no time
)

// InboundDecision says what a Jira status report means for the finding.
type InboundDecision struct {
	Outcome InboundOutcome
	// Status is the finding's new status when Outcome is InboundApply.
	Status Status
	// Link is the link state to store when UpdateLink is set (every accepted report: apply, echo,
	// in sync, unmapped); ignored reports leave it equal to the input.
	Link       LinkState
	UpdateLink bool
}

// Apply reports whether the finding's status must change (to Status). The change is then of
// OriginJira, which DecideOutbound never pushes back.
func (d InboundDecision) Apply() bool { return d.Outcome == InboundApply }

// DecideInbound decides what a status reported by Jira means for a finding whose status is
// finding and whose issue's link state is link. The rules, in order:
//
//  1. A report without a status or a time is invalid; one about another issue is ignored.
//  2. Ordering: Jira delivers webhooks at least once, late (up to ~30 minutes) and out of order.
//     A report older than LastJiraChangeAt is stale and ignored; one at the same time with the
//     same status is a duplicate. Times compared are always Jira's, never the connector's clock.
//  3. Echo: while the link awaits the echo of a transition the connector made, a report of that
//     same status is the connector's own change coming back; it is recorded but does not change
//     the finding. Any accepted report ends the wait, so a person later moving the issue back to
//     that status is a real change.
//  4. The status is mapped with InboundStatus. Unmapped statuses and statuses that map to the
//     finding's current status leave the finding alone; otherwise the finding changes.
//
// Every accepted report (echo, unmapped, in sync, apply) updates LastJiraStatus and
// LastJiraChangeAt. Changes applied here are OriginJira and DecideOutbound does not push them
// back; and since the link now records the reported status, which maps to the new finding status,
// a later outbound decision finds Jira already there.
//
// Races settle on Jira's final state. If a person moves the issue just before the connector's
// own transition lands, both reports arrive: whichever is older by Jira's clock is stale if it
// comes second, and if the person's report comes first it is applied and the connector's later
// transition is then applied as a real change, so the finding ends where the issue is.
func DecideInbound(cfg SyncConfig, finding Status, link LinkState, ch IssueStatusChange) InboundDecision {
	ignore := func(o InboundOutcome) InboundDecision { return InboundDecision{Outcome: o, Link: link} }
	if ch.To.IsZero() || ch.At.IsZero() {
		return ignore(InboundInvalid)
	}
	if link.IssueKey != "" && ch.IssueKey != "" && !strings.EqualFold(link.IssueKey, ch.IssueKey) {
		return ignore(InboundOtherIssue)
	}
	if !link.LastJiraChangeAt.IsZero() {
		if ch.At.Before(link.LastJiraChangeAt) {
			return ignore(InboundStale)
		}
		if ch.At.Equal(link.LastJiraChangeAt) && ch.To.Same(link.LastJiraStatus) {
			return ignore(InboundDuplicate)
		}
	}
	next := link
	next.LastJiraStatus = ch.To
	next.LastJiraChangeAt = ch.At
	next.AwaitingEcho = false
	d := InboundDecision{Link: next, UpdateLink: true}
	switch s, ok := InboundStatus(cfg, ch.To); {
	case link.AwaitingEcho && ch.To.Same(link.LastPushedStatus):
		d.Outcome = InboundEcho
	case !ok:
		d.Outcome = InboundUnmapped
	case s == finding:
		d.Outcome = InboundInSync
	default:
		d.Outcome = InboundApply
		d.Status = s
	}
	return d
}

// Roles of the mapped custom fields in a create-screen check (jira.ConfigProblem.Role).
const (
	RoleFrameworkRefs = "framework_refs"
	RoleFindingID     = "finding_id"
)

// CreateCheck is the create-screen check of the configuration (jira.Client.ValidateCreateConfig):
// the target project and issue type, the mapped custom fields by role, and the system fields
// every finding's issue fills. The API asks it when the configuration is saved, the connection
// test when it checks finding sync, and the drain to read the framework field's options.
func (c SyncConfig) CreateCheck() jira.CreateConfig {
	roles := map[string]string{}
	if c.FrameworkField != "" {
		roles[RoleFrameworkRefs] = c.FrameworkField
	}
	if c.FindingIDField != "" {
		roles[RoleFindingID] = c.FindingIDField
	}
	return jira.CreateConfig{Project: c.ProjectKey, IssueType: c.IssueType, CustomFields: roles,
		ProvidedFields: []string{"description", "labels"}}
}
