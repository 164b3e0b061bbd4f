package findingsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jira/jql"
)

// maxMarkerMatches bounds the marker search page (normally one issue).
const maxMarkerMatches = 10

// createRejectedPrefix starts the link error of a create that Jira definitely did not perform (it
// answered with a rejection, or nothing was sent). Such an intent is not ambiguous: the next
// attempt creates without searching first. Errors of the marker search do not carry it, because
// they say nothing about an earlier create.
const createRejectedPrefix = "issue create rejected: "

// createRejected reports whether a creating link's last create attempt was definitely rejected.
func createRejected(l dbq.FindingIssueLink) bool {
	return l.LastErrorKind != nil && l.LastError != nil && strings.HasPrefix(*l.LastError, createRejectedPrefix)
}

// claimIntent records the create intent in its own committed transaction; inserted says whether
// this call made it (false: an earlier attempt did, and may have reached Jira).
func (d *drainer) claimIntent(ctx context.Context, findingID uuid.UUID) (link dbq.FindingIssueLink, inserted bool, err error) {
	var r dbq.ClaimLinkIntentRow
	err = d.s.db.InOrg(ctx, d.scope.OrgID, func(q *dbq.Queries) error {
		var err error
		r, err = q.ClaimLinkIntent(ctx, dbq.ClaimLinkIntentParams{
			OrgID: d.scope.OrgID, FindingID: findingID, ConnectionID: d.scope.ConnectionID, At: d.s.now().UTC(),
		})
		return err
	})
	if err != nil {
		return dbq.FindingIssueLink{}, false, fmt.Errorf("record create intent of finding %s: %w", findingID, err)
	}
	return dbq.FindingIssueLink{
		OrgID: r.OrgID, FindingID: r.FindingID, ConnectionID: r.ConnectionID, State: r.State, IssueID: r.IssueID,
		IssueKey: r.IssueKey, LastPushedStatus: r.LastPushedStatus, LastJiraStatus: r.LastJiraStatus,
		LastPushAt: r.LastPushAt, LastInboundAt: r.LastInboundAt, LastError: r.LastError, LastErrorKind: r.LastErrorKind,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}, r.Inserted, nil
}

// ensureIssue turns a "creating" link into a linked one (see Drain for why this is exactly once):
//
//  1. an intent this attempt did not make may stand for a create that reached Jira: find that
//     issue by its marker, or wait for Jira's search to catch up (findEarlierCreate);
//  2. a finding that no longer wants an issue drops its intent instead;
//  3. otherwise the issue is created (the intent's time marked first when it is not fresh) and
//     linked.
//
// A nil link means the item is finished for now (see the outcome).
func (d *drainer) ensureIssue(ctx context.Context, it dbq.DueQueueItemsAtRow, f findings.Finding, link dbq.FindingIssueLink, fresh bool) (*dbq.FindingIssueLink, itemOutcome, error) {
	// An intent that existed before this attempt is ambiguous unless its last create was
	// definitely rejected by Jira (recorded as the link's error; TouchLinkIntent clears it).
	if !fresh && !createRejected(link) {
		l, o, settled, err := d.findEarlierCreate(ctx, it, f.ID, link)
		if settled || err != nil {
			return l, o, err
		}
	}
	if !d.cfg.Matches(f) {
		// No issue exists and the finding no longer wants one (it changed while its create was
		// pending): drop the intent instead of creating an issue nobody asked for.
		o, err := d.dropIntent(ctx, it, f.ID)
		return nil, o, err
	}
	in, err := findings.BuildIssue(d.scope, f, d.cfg)
	if err != nil {
		o, err := d.configFailure(ctx, it, f.ID, &link, phaseCreate, "config", fmt.Sprintf("build issue for finding %s: %v", f.ID, err))
		return nil, o, err
	}
	if !fresh {
		if err := d.markCreateAttempt(ctx, f.ID); err != nil {
			return nil, itemOutcome{}, err
		}
	}
	created, err := d.createIssue(ctx, f, in)
	if err != nil {
		o, err := d.jiraFailure(ctx, it, f.ID, &link, phaseCreate, err)
		return nil, o, err
	}
	l, err := d.linkCreated(ctx, f.ID, created.ID, created.Key, initialStatus(d.cfg, f.Status), false)
	if err != nil {
		// The issue exists but the link could not be stored; the intent stays, so the next attempt
		// finds the issue by its marker.
		return nil, itemOutcome{}, err
	}
	return &l, itemOutcome{created: true}, nil
}

// findEarlierCreate resolves an ambiguous intent: the issue carrying the finding's marker is
// linked (settled, with the link), and while the intent is younger than the per-call timeout plus
// the search consistency window the item is delayed (settled, nil link), since Jira's search may
// not show an issue created that recently. Otherwise no earlier create happened: not settled.
func (d *drainer) findEarlierCreate(ctx context.Context, it dbq.DueQueueItemsAtRow, findingID uuid.UUID, link dbq.FindingIssueLink) (*dbq.FindingIssueLink, itemOutcome, bool, error) {
	d.s.progress(ctx, "search issue marker")
	found, err := d.findByMarker(ctx, findingID)
	if err != nil {
		o, err := d.jiraFailure(ctx, it, findingID, &link, phaseSearch, err)
		return nil, o, true, err
	}
	if found != nil {
		l, err := d.linkCreated(ctx, findingID, found.ID, found.Key, statusName(found.Fields.Status), true)
		if err != nil {
			return nil, itemOutcome{}, true, err
		}
		return &l, itemOutcome{created: true}, true, nil
	}
	if until := link.UpdatedAt.Add(d.s.callTimeout + d.s.searchWindow); d.s.now().Before(until) {
		o, err := d.delay(ctx, it, until, "an earlier create request has no confirmed outcome; waiting for Jira's search to catch up")
		return nil, o, true, err
	}
	return nil, itemOutcome{}, false, nil
}

// dropIntent removes the create intent of a finding that no longer wants an issue, and the item.
func (d *drainer) dropIntent(ctx context.Context, it dbq.DueQueueItemsAtRow, findingID uuid.UUID) (itemOutcome, error) {
	err := d.s.db.InOrg(ctx, d.scope.OrgID, func(q *dbq.Queries) error {
		_, err := q.DeleteLinkIntent(ctx, dbq.DeleteLinkIntentParams{FindingID: findingID, ConnectionID: d.scope.ConnectionID})
		return err
	})
	if err != nil {
		return itemOutcome{}, fmt.Errorf("drop create intent of finding %s: %w", findingID, err)
	}
	return d.done(ctx, it, itemOutcome{})
}

// markCreateAttempt records the time of a create request about to be sent for an existing intent
// (and clears its last error), which is what the search consistency wait is measured from.
func (d *drainer) markCreateAttempt(ctx context.Context, findingID uuid.UUID) error {
	err := d.s.db.InOrg(ctx, d.scope.OrgID, func(q *dbq.Queries) error {
		_, err := q.TouchLinkIntent(ctx, dbq.TouchLinkIntentParams{At: d.s.now().UTC(), FindingID: findingID, ConnectionID: d.scope.ConnectionID})
		return err
	})
	if err != nil {
		return fmt.Errorf("mark create attempt of finding %s: %w", findingID, err)
	}
	return nil
}

// initialStatus is the status a new issue is known to be in without asking. A new issue is in its
// workflow's initial status, which is of category "new". When the finding's status maps to a
// status of that category, the issue counts as there (TransitionTo accepts a category match when
// the named status is not reachable), which saves a GET per created issue; the first webhook or
// reconciliation records the real name. Otherwise the status is left unknown ("") and the status
// step moves the issue.
func initialStatus(cfg findings.SyncConfig, s findings.Status) string {
	if t := findings.OutboundTarget(cfg, s); t.CategoryKey == findings.CategoryNew {
		return t.StatusName
	}
	return ""
}

// createIssue creates the finding's issue. When Jira rejects the create only because a framework
// reference is not an option of the framework multi-select, it is created again without the
// references Jira does not offer: a scanner that learns a new framework must not stop its findings
// from reaching Jira. The references stay in the labels and the description. A rejected create
// made nothing, so the second request cannot duplicate the issue.
func (d *drainer) createIssue(ctx context.Context, f findings.Finding, in jira.IssueInput) (*jira.CreatedIssue, error) {
	create := func() (*jira.CreatedIssue, error) {
		d.s.progress(ctx, "create issue")
		callCtx, cancel := d.s.callCtx(ctx, 1)
		defer cancel()
		return d.client.CreateIssue(callCtx, in)
	}
	created, err := create()
	var jerr *jira.Error
	field := d.cfg.FrameworkField
	if err == nil || field == "" || !errors.As(err, &jerr) || jerr.Status != http.StatusBadRequest || jerr.FieldErrors[field] == "" {
		return created, err
	}
	if !d.keepKnownFrameworkOptions(ctx, f, &in) {
		return nil, err
	}
	return create()
}

// keepKnownFrameworkOptions removes from in's framework field the references that are not among
// the field's options in Jira (read from createmeta once per drain) and reports whether it
// removed any. When the options cannot be read it changes nothing.
func (d *drainer) keepKnownFrameworkOptions(ctx context.Context, f findings.Finding, in *jira.IssueInput) bool {
	field := d.cfg.FrameworkField
	if !d.frameworkAsked {
		d.frameworkAsked = true
		d.s.progress(ctx, "read framework field options")
		callCtx, cancel := d.s.callCtx(ctx, 2)
		rep, err := d.client.ValidateCreateConfig(callCtx, d.cfg.CreateCheck())
		cancel()
		switch {
		case err != nil:
			d.log.Warn("framework field options could not be read", slog.String("err", failure.Truncate(err.Error(), 300)))
		case rep.Fields[findings.RoleFrameworkRefs].FieldID != "":
			d.frameworkOptions = map[string]bool{}
			for _, v := range rep.Fields[findings.RoleFrameworkRefs].AllowedValues {
				d.frameworkOptions[v.Value] = true
			}
		}
	}
	if d.frameworkOptions == nil {
		return false
	}
	var kept, dropped []string
	for _, r := range f.FrameworkRefs {
		if d.frameworkOptions[r] {
			kept = append(kept, r)
		} else {
			dropped = append(dropped, r)
		}
	}
	if len(dropped) == 0 {
		return false
	}
	if len(kept) == 0 {
		delete(in.CustomFields, field)
	} else {
		in.CustomFields[field] = jira.MultiSelect(kept...)
	}
	d.log.Info("framework references that are not options of the framework field left out of it",
		slog.String("finding_id", f.ID.String()), slog.Any("references", dropped))
	return true
}

func statusName(s *jira.Status) string {
	if s == nil {
		return ""
	}
	return s.Name
}

// findByMarker searches the configured project for the finding's marker label and returns the
// oldest matching issue, or nil.
func (d *drainer) findByMarker(ctx context.Context, findingID uuid.UUID) (*jira.Issue, error) {
	marker := findings.IssueMarker(d.scope, findingID)
	q, err := jql.Query{Where: findings.MarkerQuery(d.cfg.ProjectKey, marker), OrderBy: []jql.Order{jql.Asc("created")}}.Build()
	if err != nil {
		return nil, &jira.Error{Kind: jira.KindConfig, Op: "search", Detail: "marker query: " + err.Error()}
	}
	callCtx, cancel := d.s.callCtx(ctx, 1)
	defer cancel()
	page, err := d.client.Search(callCtx, jira.SearchRequest{JQL: q, Fields: []string{"status", "labels"}, MaxResults: maxMarkerMatches})
	if err != nil {
		return nil, err
	}
	var match []jira.Issue
	for _, is := range page.Issues {
		// Jira's label match is exact; the check guards against a search that ignores it.
		if is.ID != "" && is.Key != "" && slices.Contains(is.Fields.Labels, marker) {
			match = append(match, is)
		}
	}
	if len(match) == 0 {
		return nil, nil
	}
	if len(match) > 1 {
		keys := make([]string, len(match))
		for i, m := range match {
			keys[i] = m.Key
		}
		d.log.Warn("several issues carry one finding's marker; linking the oldest", slog.String("finding_id", findingID.String()),
			slog.Any("issue_keys", keys))
	}
	return &match[0], nil
}

// linkCreated stores the issue of a finding and audits it, in one transaction.
func (d *drainer) linkCreated(ctx context.Context, findingID uuid.UUID, issueID, issueKey, jiraStatus string, recovered bool) (dbq.FindingIssueLink, error) {
	var l dbq.FindingIssueLink
	err := d.s.db.InOrg(ctx, d.scope.OrgID, func(q *dbq.Queries) error {
		var err error
		l, err = q.SetLinkCreated(ctx, dbq.SetLinkCreatedParams{
			IssueID: &issueID, IssueKey: &issueKey, LastJiraStatus: strPtrOrNil(jiraStatus),
			FindingID: findingID, ConnectionID: d.scope.ConnectionID,
		})
		if err != nil {
			return fmt.Errorf("link finding %s to issue %s: %w", findingID, issueKey, err)
		}
		_, err = audit.Record(ctx, q, audit.Entry{
			OrgID: d.scope.OrgID, Actor: d.actor, Action: ActionIssueCreated, TargetType: "finding", TargetID: findingID.String(),
			Metadata: map[string]any{"connection_id": d.scope.ConnectionID.String(), "issue_key": issueKey, "issue_id": issueID,
				"found_by_marker": recovered},
		})
		return err
	})
	if err == nil {
		d.log.Info("finding linked to a Jira issue", slog.String("finding_id", findingID.String()), slog.String("issue_key", issueKey),
			slog.Bool("found_by_marker", recovered))
	}
	return l, err
}
