package activities

import (
	"context"
	"fmt"
	"time"

	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/evidence"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jira/jql"
)

// remediationFields are the only issue fields the remediation searches ask for.
var remediationFields = []string{"created", "resolutiondate", "priority"}

// remediationQueries are the JQL queries of the security-remediation evidence, built from the
// connection's configuration with package jql: the configured filter is one parenthesised operand
// and every value is a quoted literal, so no configured value can change a query's structure.
type remediationQueries struct {
	resolvedCount string
	sample        string
	pastSLA       []string // in the order of priorities
	oldest        string
	priorities    []string // configured priority names, shortest SLA first
}

// buildRemediationQueries returns the queries for cfg. The window and SLAs are relative dates
// ("resolved >= -90d", "created < -30d"), so the queries read the same on every sync and Jira
// evaluates them against its own clock.
func buildRemediationQueries(cfg connections.RemediationConfig) (remediationQueries, error) {
	security := jql.Filter(cfg.JQL)
	resolved := jql.And(security, jql.Eq("statusCategory", "Done"), jql.GreaterEq("resolved", jql.DaysAgo(cfg.WindowDays)))
	open := jql.And(security, jql.NotEq("statusCategory", "Done"))
	var q remediationQueries
	var err error
	if q.resolvedCount, err = (jql.Query{Where: resolved}).Build(); err != nil {
		return q, fmt.Errorf("build remediation resolved JQL: %w", err)
	}
	if q.sample, err = (jql.Query{Where: resolved, OrderBy: []jql.Order{jql.Desc("resolved")}}).Build(); err != nil {
		return q, fmt.Errorf("build remediation sample JQL: %w", err)
	}
	if q.oldest, err = (jql.Query{Where: open, OrderBy: []jql.Order{jql.Asc("created")}}).Build(); err != nil {
		return q, fmt.Errorf("build remediation oldest-open JQL: %w", err)
	}
	q.priorities = cfg.Priorities()
	for _, name := range q.priorities {
		past := jql.And(security, jql.NotEq("statusCategory", "Done"), jql.Eq("priority", name),
			jql.Less("created", relativeAgo(cfg.SLAs[name].D())))
		s, err := (jql.Query{Where: past}).Build()
		if err != nil {
			return q, fmt.Errorf("build remediation JQL for priority %q: %w", name, err)
		}
		q.pastSLA = append(q.pastSLA, s)
	}
	return q, nil
}

// relativeAgo writes d ago as a JQL relative date in the largest unit that divides it exactly
// (-7d, -36h, -90m); configuration guarantees whole minutes.
func relativeAgo(d time.Duration) jql.Value {
	switch m := int(d / time.Minute); {
	case m%(24*60) == 0:
		return jql.Relative(-m/(24*60), 'd')
	case m%60 == 0:
		return jql.Relative(-m/60, 'h')
	default:
		return jql.Relative(-m, 'm')
	}
}

// remediationFailure reports whether err costs the remediation evidence alone: Jira answered,
// but with a body that is not what its API documents, or refused a query with a 400 (a
// configured priority the site does not have, a field of the configured filter it does not
// know). The other evidence types do not depend on the remediation settings, so they are still
// collected and the run shows why the remediation has no data. Everything else (auth, rate
// limits, outages, revocation) ends the attempt as it does for every other call.
func remediationFailure(err error) bool {
	return partFailure(err) || jira.KindOf(err) == jira.KindBadRequest
}

// remediation makes the security-remediation calls: a count of the security tickets resolved in
// the window, one search page of the most recently resolved of them, a count per configured
// priority of open tickets created longer ago than its SLA, and a search for the oldest open one
// — 3 + len(priorities) calls whatever the site's size. The first call that fails makes the part
// "no data" with the reason, and the remaining remediation calls are not made.
func (c *collector) remediation(ctx context.Context, collectedAt time.Time) (evidence.RemediationPart, error) {
	cfg := c.conn.Config.Remediation
	out := evidence.RemediationPart{JQL: cfg.JQL, WindowFrom: collectedAt.Add(-cfg.Window()), WindowTo: collectedAt}
	q, err := buildRemediationQueries(cfg)
	if err != nil {
		// The stored configuration was validated with the same builder: only a configuration
		// stored by something else gets here, and it costs this evidence type only.
		out.Error = err.Error()
		return out, nil
	}
	approximate := c.client.CountsAreEstimates()
	fail := func(err error) (evidence.RemediationPart, error) {
		if !remediationFailure(err) {
			return out, &hardError{err}
		}
		return evidence.RemediationPart{JQL: out.JQL, WindowFrom: out.WindowFrom, WindowTo: out.WindowTo, Error: err.Error()}, nil
	}
	count := func(purpose, query string) (evidence.CountResult, error) {
		var n int
		err := c.call(ctx, purpose, func(ctx context.Context) (err error) {
			n, err = c.client.ApproximateCount(ctx, query)
			return err
		})
		if err != nil {
			return evidence.CountResult{}, err
		}
		return evidence.CountResult{JQL: query, Count: int64(n), Approximate: approximate,
			ResponseSHA256: digest("search.count", c.conn.Kind, map[string]any{"jql": query, "count": n})}, nil
	}
	search := func(purpose, query string, max int) (*jira.SearchPage, string, error) {
		var page *jira.SearchPage
		err := c.call(ctx, purpose, func(ctx context.Context) (err error) {
			page, err = c.client.Search(ctx, jira.SearchRequest{JQL: query, Fields: remediationFields, MaxResults: max})
			return err
		})
		if err != nil {
			return nil, "", err
		}
		if len(page.Issues) > max {
			page.Issues = page.Issues[:max]
		}
		raw := make([]map[string]any, 0, len(page.Issues))
		for _, is := range page.Issues {
			raw = append(raw, map[string]any{"id": is.ID, "key": is.Key, "fields": is.Raw})
		}
		return page, digest("search", c.conn.Kind, map[string]any{"jql": query, "issues": raw}), nil
	}

	if out.Resolved, err = count(evidence.PurposeRemediationResolvedCount, q.resolvedCount); err != nil {
		return fail(err)
	}

	page, hash, err := search(evidence.PurposeRemediationSample, q.sample, evidence.RemediationSampleSize)
	if err != nil {
		return fail(err)
	}
	out.Sample = evidence.RemediationSample{JQL: q.sample, Complete: page.IsLast, ResponseSHA256: hash,
		Tickets: make([]evidence.RemediationTicket, 0, len(page.Issues))}
	for _, is := range page.Issues {
		out.Sample.Tickets = append(out.Sample.Tickets, evidence.RemediationTicket{
			Key: is.Key, Priority: priorityName(is), Created: is.Fields.Created, Resolved: is.Fields.ResolutionDate})
	}

	for i, name := range q.priorities {
		past, err := count(evidence.PurposeRemediationOpenPastSLA, q.pastSLA[i])
		if err != nil {
			return fail(err)
		}
		out.Priorities = append(out.Priorities, evidence.PriorityPart{Priority: name, SLA: cfg.SLAs[name].D(), OpenPastSLA: past})
	}

	page, hash, err = search(evidence.PurposeRemediationOldestOpen, q.oldest, 1)
	if err != nil {
		return fail(err)
	}
	out.Oldest = evidence.OldestOpenResult{JQL: q.oldest, ResponseSHA256: hash}
	if len(page.Issues) > 0 {
		is := page.Issues[0]
		out.Oldest.Ticket = &evidence.OpenTicket{Key: is.Key, Priority: priorityName(is), Created: is.Fields.Created}
	}
	out.Fetched = true
	return out, nil
}

func priorityName(is jira.Issue) string {
	if p := is.Fields.Priority; p != nil {
		return p.Name
	}
	return ""
}
