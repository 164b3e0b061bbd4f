package findingsync

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jira/jql"
)

// Reconciliation bounds: at most reconcilePages search pages of reconcilePageSize issues per pass
// (so at most 10 Jira calls and 1,000 issues); reconcileOverlap re-reads a little of the previous
// window, because Jira's updated times and search visibility are not exactly our clock.
const (
	reconcilePages    = 10
	reconcilePageSize = 100
	reconcileOverlap  = 5 * time.Minute
)

// Reconcile pulls the issues of the configured project changed since the previous pass
// (connections.reconciled_at minus a small overlap; on the first pass since the oldest link was
// created) and applies each linked issue's current status exactly like Apply, with the issue's
// updated time as the report's time. So a lost webhook still converges.
//
// The window is expressed relative to Jira's own clock ("updated >= -Nm"), which is independent
// of the time zone Jira interprets absolute dates in. Bound: at most 10 search pages of 100 issues
// (10 Jira calls, 1,000 issues) per pass, ordered by updated time; when the bound is reached the
// pass records the last updated time it saw, and the next pass continues from there (Truncated).
// Limitation: the search covers the whole project, so a project shared with many unrelated issues
// spends the bound on them, and a burst of more than 1,000 updates within one minute cannot be
// paged past (no id cursor survives between passes) — the rest of that minute is skipped.
//
// With finding sync off it does nothing.
func (s *Service) Reconcile(ctx context.Context, scope findings.Scope) (ReconcileResult, error) {
	row, conn, err := s.load(ctx, scope)
	if err != nil {
		return ReconcileResult{}, err
	}
	if conn.Config.FindingSync == nil {
		return ReconcileResult{}, nil
	}
	start := s.now().UTC()
	since, ok, err := s.reconcileSince(ctx, scope, row)
	if err != nil {
		return ReconcileResult{}, err
	}
	if !ok {
		// Nothing linked yet: nothing to reconcile, and nothing before now ever will be.
		return ReconcileResult{}, s.setReconciledAt(ctx, scope, start)
	}
	query, err := reconcileQuery(conn.Config.FindingSync.ProjectKey, since, start)
	if err != nil {
		return ReconcileResult{}, err
	}
	calls := &jira.CallStats{}
	client, err := s.client(ctx, scope, conn, calls)
	if err != nil {
		return ReconcileResult{}, err
	}
	log := s.logger(scope)
	p := &reconcilePass{inbound: inbound{s: s, scope: scope, cfg: *conn.Config.FindingSync, log: log}, client: client, query: query}
	if err := p.run(ctx); err != nil {
		return ReconcileResult{}, err
	}
	mark := start
	if p.res.Truncated {
		if next, ok := continueFrom(since, p.lastUpdated); ok {
			mark = next
		} else {
			log.Warn("reconciliation window holds more updated issues than one pass reads; skipping the rest of it",
				slog.Int("examined", p.res.Examined))
		}
	}
	if err := s.setReconciledAt(ctx, scope, mark); err != nil {
		return ReconcileResult{}, err
	}
	res := p.res
	res.Applied, res.Requeued, res.JiraCalls = p.applied.Applied, p.applied.Requeued, calls.Total()
	log.Info("linked issues reconciled", slog.Int("examined", res.Examined), slog.Int("applied", res.Applied),
		slog.Int("requeued", res.Requeued), slog.Bool("truncated", res.Truncated), slog.Int("jira_calls", res.JiraCalls))
	return res, nil
}

// reconcileSince is where the pass's window begins: the previous pass's mark, or the creation of
// the connection's oldest link on the first pass. ok is false when nothing is linked yet.
func (s *Service) reconcileSince(ctx context.Context, scope findings.Scope, row dbq.Connection) (since time.Time, ok bool, err error) {
	if row.ReconciledAt != nil {
		return row.ReconciledAt.UTC(), true, nil
	}
	var oldest []time.Time
	err = s.db.InOrg(ctx, scope.OrgID, func(q *dbq.Queries) error {
		var err error
		oldest, err = q.OldestLinkCreatedAt(ctx, scope.ConnectionID)
		return err
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("find oldest link: %w", err)
	}
	if len(oldest) == 0 {
		return time.Time{}, false, nil
	}
	return oldest[0].UTC(), true, nil
}

// reconcileQuery selects the project's issues updated since since (less the overlap), in Jira's
// relative minutes as of now, oldest first.
func reconcileQuery(projectKey string, since, now time.Time) (string, error) {
	minutes := int(math.Ceil(now.Sub(since.Add(-reconcileOverlap)).Minutes()))
	minutes = max(minutes, 1)
	query, err := jql.Query{
		Where:   jql.And(jql.Eq("project", projectKey), jql.GreaterEq("updated", jql.Relative(-minutes, 'm'))),
		OrderBy: []jql.Order{jql.Asc("updated"), jql.Asc("id")},
	}.Build()
	if err != nil {
		return "", fmt.Errorf("%w: reconciliation query: %v", failure.ErrBadConfig, err)
	}
	return query, nil
}

// continueFrom is the mark that makes the next pass continue after a truncated one: its window
// begins at lastUpdated, the last issue seen (the recorded time minus the overlap), which may lie
// after now when the updates are recent. The window has minute granularity, so when it would not
// move forward by a minute (more than a pass's worth of updates within one minute) there is no
// such mark (ok false) and the pass gives up on the rest of the window.
func continueFrom(since, lastUpdated time.Time) (time.Time, bool) {
	next := lastUpdated.Add(reconcileOverlap)
	if lastUpdated.IsZero() || !next.After(since.Add(time.Minute)) {
		return time.Time{}, false
	}
	return next, true
}

// reconcilePass is one pass over the search pages.
type reconcilePass struct {
	inbound
	client *jira.Client
	query  string

	res         ReconcileResult
	applied     ApplyResult
	lastUpdated time.Time
}

// run reads up to reconcilePages pages and applies each page's linked issues.
func (p *reconcilePass) run(ctx context.Context) error {
	token := ""
	seen := map[string]bool{}
	for page := 0; ; page++ {
		if page == reconcilePages {
			p.res.Truncated = true
			return nil
		}
		p.s.progress(ctx, fmt.Sprintf("reconcile page %d", page+1))
		if err := ctx.Err(); err != nil {
			return err
		}
		callCtx, cancel := p.s.callCtx(ctx, 1)
		pg, err := p.client.Search(callCtx, jira.SearchRequest{JQL: p.query, Fields: []string{"status", "updated"}, MaxResults: reconcilePageSize, PageToken: token})
		cancel()
		if err != nil {
			f := failure.Classify(err)
			p.log.Warn("reconciliation search failed", slog.String("error_type", f.Type), slog.String("error", f.Message))
			return err
		}
		if err := p.page(ctx, pg.Issues); err != nil {
			return err
		}
		if pg.IsLast || pg.NextPageToken == "" {
			return nil
		}
		if seen[pg.NextPageToken] {
			return &jira.Error{Kind: jira.KindMalformedResponse, Op: "search", Detail: "search returned a page token it already returned"}
		}
		seen[pg.NextPageToken] = true
		token = pg.NextPageToken
	}
}

// page applies the linked issues of one search page.
func (p *reconcilePass) page(ctx context.Context, issues []jira.Issue) error {
	p.res.Examined += len(issues)
	ids := make([]string, 0, len(issues))
	for _, is := range issues {
		if is.ID != "" {
			ids = append(ids, is.ID)
		}
		if !is.Fields.Updated.IsZero() {
			p.lastUpdated = is.Fields.Updated.UTC()
		}
	}
	if len(ids) == 0 {
		return nil
	}
	var links []dbq.FindingIssueLink
	err := p.s.db.InOrg(ctx, p.scope.OrgID, func(q *dbq.Queries) error {
		var err error
		links, err = q.LinksByIssueIDs(ctx, dbq.LinksByIssueIDsParams{ConnectionID: p.scope.ConnectionID, IssueIds: ids})
		return err
	})
	if err != nil {
		return fmt.Errorf("look up links: %w", err)
	}
	linked := make(map[string]bool, len(links))
	for _, l := range links {
		if l.IssueID != nil {
			linked[*l.IssueID] = true
		}
	}
	for _, is := range issues {
		if !linked[is.ID] || is.Fields.Status == nil || is.Fields.Updated.IsZero() {
			continue
		}
		out, err := p.apply(ctx, findings.ChangeFromIssue(is, p.s.now()), sourceReconcile, nil)
		if err != nil {
			return err
		}
		p.applied.count(out)
	}
	return nil
}

// setReconciledAt records the mark the next pass's window begins at.
func (s *Service) setReconciledAt(ctx context.Context, scope findings.Scope, at time.Time) error {
	at = at.UTC()
	err := s.db.InOrg(ctx, scope.OrgID, func(q *dbq.Queries) error {
		return q.SetReconciledAt(ctx, dbq.SetReconciledAtParams{ID: scope.ConnectionID, ReconciledAt: &at})
	})
	if err != nil {
		return fmt.Errorf("record reconciliation time: %w", err)
	}
	return nil
}
