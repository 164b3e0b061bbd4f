package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/evidence"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jira/jql"
)

// The counting queries of a sync.
//
// Total: "project is not EMPTY". Every issue belongs to exactly one project, so the clause holds
// for every issue the credential can see and the count is the site's total; it also gives Jira
// Cloud the search restriction that approximate-count and search/jql require ("unbounded" JQL is
// rejected with 400). It reads plainly to an auditor, unlike a date trick such as
// "created <= now()" (which the jql builders cannot express without a raw function call anyway).
// The simulator answers both from its aggregates.
//
// Open: "statusCategory != Done" — status categories are fixed by Jira (unlike status names,
// which each site defines), and != never matches an empty field, so every issue is counted once.
var (
	totalQuery = jql.Query{Where: jql.IsNotEmpty("project")}
	openQuery  = jql.Query{Where: jql.NotEq("statusCategory", "Done")}
)

// sampleFields are the only issue fields the resolved-ticket sample asks for.
var sampleFields = []string{"key", "summary", "resolution", "resolutiondate", "priority", "assignee", "status"}

// revokedCheck reports whether the connection has been revoked since the sync started.
type revokedCheck func(ctx context.Context) error

// collector performs the Jira calls of one sync.
type collector struct {
	client      *jira.Client
	conn        connections.Connection
	callTimeout time.Duration
	// guard runs before every Jira call: heartbeat, context and revocation checks.
	guard func(ctx context.Context, step string) error
}

// hardError is a failure that ends the attempt: the remaining calls are not made, because they
// would fail the same way (auth, permissions, rate limit, outage) or must not be made at all
// (revoked, cancelled).
type hardError struct{ err error }

func (e *hardError) Error() string { return e.err.Error() }
func (e *hardError) Unwrap() error { return e.err }

// partFailure reports whether err fails only the part being fetched: Jira answered, but with a
// body that is not what its API documents. The other parts are still worth fetching and the
// failure is recorded as that part's "no data" reason.
func partFailure(err error) bool {
	switch jira.KindOf(err) {
	case jira.KindMalformedResponse, jira.KindResponseTooLarge:
		return true
	}
	return false
}

// collect runs the sync's Jira calls. Their number does not depend on the site's size: project
// count, total count, open count, the resolved-ticket sample (one page unless Jira cuts pages
// short, at most samplePageLimit), and the security-remediation calls (3 + one per configured
// priority: 8 with the defaults). With the default configuration a sync makes 12 calls.
func (c *collector) collect(ctx context.Context, collectedAt time.Time) (evidence.SyncResult, error) {
	out := evidence.SyncResult{SiteURL: c.conn.SiteURL, CollectedAt: collectedAt}
	totalJQL, err := totalQuery.Build()
	if err != nil {
		return out, fmt.Errorf("build total JQL: %w", err)
	}
	openJQL, err := openQuery.Build()
	if err != nil {
		return out, fmt.Errorf("build open JQL: %w", err)
	}

	// Project count.
	var projects int
	if err := c.call(ctx, evidence.PurposeProjectCount, func(ctx context.Context) (err error) {
		projects, err = c.client.ProjectCount(ctx)
		return err
	}); err != nil {
		if !partFailure(err) {
			return out, &hardError{err}
		}
		out.Projects.Error = err.Error()
	} else {
		out.Projects = evidence.ProjectCountPart{Fetched: true, Count: int64(projects),
			ResponseSHA256: digest("project.count", c.conn.Kind, map[string]any{"total": projects})}
	}

	// Ticket counts.
	for _, part := range []struct {
		purpose string
		jql     string
		dst     *evidence.TicketCountPart
	}{{evidence.PurposeTotalCount, totalJQL, &out.Total}, {evidence.PurposeOpenCount, openJQL, &out.Open}} {
		var n int
		err := c.call(ctx, part.purpose, func(ctx context.Context) (err error) {
			n, err = c.client.ApproximateCount(ctx, part.jql)
			return err
		})
		switch {
		case err == nil:
			*part.dst = evidence.TicketCountPart{Fetched: true, JQL: part.jql, Count: int64(n), Approximate: c.client.CountsAreEstimates(),
				ResponseSHA256: digest("search.count", c.conn.Kind, map[string]any{"jql": part.jql, "count": n})}
		case partFailure(err):
			*part.dst = evidence.TicketCountPart{JQL: part.jql, Error: err.Error()}
		default:
			return out, &hardError{err}
		}
	}

	// Resolved security ticket sample: at most SampleSize issues, over as many pages as Jira cuts
	// them into, up to samplePageLimit.
	resolvedJQL := c.conn.Config.ResolvedJQL
	from, to := sampleWindow(resolvedJQL, collectedAt)
	out.Resolved = evidence.ResolvedSamplePart{JQL: resolvedJQL, WindowFrom: from, WindowTo: to, SampleSize: c.conn.Config.SampleSize}
	var issues []jira.Issue
	var incomplete string
	err = c.call(ctx, evidence.PurposeResolvedSample, func(ctx context.Context) (err error) {
		issues, incomplete, err = c.sample(ctx, resolvedJQL)
		return err
	})
	switch {
	case err == nil:
		out.Resolved.Incomplete = incomplete
		out.Resolved.Fetched = true
		out.Resolved.Tickets = make([]evidence.Ticket, 0, len(issues))
		raw := make([]map[string]any, 0, len(issues))
		for _, is := range issues {
			out.Resolved.Tickets = append(out.Resolved.Tickets, c.ticket(is))
			raw = append(raw, map[string]any{"id": is.ID, "key": is.Key, "fields": is.Raw})
		}
		out.Resolved.ResponseSHA256 = digest("search", c.conn.Kind, map[string]any{"jql": resolvedJQL, "issues": raw})
	case partFailure(err):
		out.Resolved.Error = err.Error()
	default:
		return out, &hardError{err}
	}

	// Security remediation (collect_remediation.go).
	if out.Remediation, err = c.remediation(ctx, collectedAt); err != nil {
		return out, err
	}
	return out, nil
}

// samplePageLimit bounds the pages one sample may take, so a site that answers with tiny pages
// cannot make a sync's call count grow without limit; a sample cut short by it is recorded as
// incomplete, never as a complete one.
const samplePageLimit = 5

// sample reads the resolved-ticket search until SampleSize issues or Jira's last page. Jira may
// answer with fewer issues than maxResults and a nextPageToken (it caps a page's size), so one
// page is not the sample. When samplePageLimit pages were read and Jira still had more, incomplete
// says so. More issues than asked for are cut to SampleSize.
func (c *collector) sample(ctx context.Context, jql string) (issues []jira.Issue, incomplete string, err error) {
	want := c.conn.Config.SampleSize
	pages := 0
	for page, err := range c.client.SearchPages(ctx, jira.SearchRequest{JQL: jql, Fields: sampleFields, MaxResults: want}, samplePageLimit) {
		if errors.Is(err, jira.ErrPageLimit) {
			return issues, fmt.Sprintf("Jira had more issues after %d pages (%d of %d read); the sample stops at %d pages", pages, len(issues), want, samplePageLimit), nil
		}
		if err != nil {
			return nil, "", err
		}
		pages++
		issues = append(issues, page.Issues...)
		if len(issues) >= want {
			return issues[:want], "", nil
		}
	}
	return issues, "", nil
}

// call runs one Jira call behind the guard and with the per-call timeout.
func (c *collector) call(ctx context.Context, step string, fn func(ctx context.Context) error) error {
	if err := c.guard(ctx, step); err != nil {
		return err
	}
	callCtx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	return fn(callCtx)
}

func (c *collector) ticket(is jira.Issue) evidence.Ticket {
	t := evidence.Ticket{Key: is.Key, Summary: is.Fields.Summary, Resolved: is.Fields.ResolutionDate, Link: c.client.BrowseURL(is.Key)}
	if r := is.Fields.Resolution; r != nil {
		t.Resolution = r.Name
	}
	if p := is.Fields.Priority; p != nil {
		t.Priority = p.Name
	}
	if u := is.Fields.Assignee; u != nil {
		t.Assignee = u.DisplayName
		if t.Assignee == "" {
			t.Assignee = u.Name // Data Center users without a display name
		}
	}
	return t
}

// digest is the provenance hash of one Jira response. The jira client decodes response bodies
// without exposing their bytes, so this is the sha256 of a deterministic JSON encoding of what the
// call returned, as decoded: {"flavor":…,"operation":…,"result":…}, where a search's result holds
// each issue's id, key and every field exactly as Jira sent it (json.RawMessage is re-emitted
// compacted; map keys are sorted by encoding/json). Two syncs that saw the same answer get the same
// hash; it proves what the connector read, not the exact bytes on the wire.
func digest(op string, kind connections.Kind, result any) string {
	b, err := json.Marshal(map[string]any{"operation": op, "flavor": string(connections.Flavor(kind)), "result": result})
	if err != nil {
		// Only a non-JSON value in result could get here, and every caller passes plain data
		// decoded from JSON; hashing the error text keeps the digest well-formed and visibly odd.
		b = []byte("unencodable response: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// relativeResolved finds a lower bound on the resolution date written as a relative date, the
// form the default JQL uses: resolved >= -30d, resolutiondate > "-4w".
// A combined offset ("-4w 2d") is not interpreted (the third group catches it).
var relativeResolved = regexp.MustCompile(`\b(?i:resolved|resolutiondate)\s*>=?\s*"?(-\d{1,6})([mhdw])(\s+\d)?`)

// unboundedLookback is the window recorded when the sample JQL does not bound the resolution date
// with a relative date. A constant length keeps the sample's fingerprint stable from day to day
// (the payload records the window length); an absolute date in the JQL ends up here too, and the
// JQL itself, recorded next to the window, says what was really asked.
const unboundedLookback = 50 * 365 * 24 * time.Hour

// sampleWindow returns the interval the resolved-ticket JQL covers, as [from, to] ending at now.
func sampleWindow(q string, now time.Time) (time.Time, time.Time) {
	m := relativeResolved.FindStringSubmatch(q)
	if m == nil || m[3] != "" {
		return now.Add(-unboundedLookback), now
	}
	n, err := strconv.Atoi(strings.TrimPrefix(m[1], "-"))
	if err != nil || n == 0 {
		return now.Add(-unboundedLookback), now
	}
	// Units are case-sensitive: Jira's "m" is minutes, and an upper-case unit is not matched.
	unit := map[string]time.Duration{"m": time.Minute, "h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour}[m[2]]
	return now.Add(-time.Duration(n) * unit), now
}

// buildItems runs evidence.BuildItems and, when Jira's data fails validation (an open count above
// the total, a ticket without a resolution, a resolution date in the future), fails only the
// parts the problems belong to and builds again, so that one malformed answer costs its own
// evidence type and not the whole sync. Problems outside the five parts are our own bug or
// configuration and fail the sync.
func buildItems(in evidence.SyncResult) ([]evidence.Item, evidence.Report, error) {
	for range 6 { // each round fails at least one more part; five parts bound the loop
		items, report, err := evidence.BuildItems(in)
		var ve *evidence.ValidationError
		if !errors.As(err, &ve) {
			return items, report, err
		}
		reasons := map[string][]string{}
		for _, p := range ve.Problems {
			part, _, _ := strings.Cut(p.Field, ".")
			if i := strings.IndexByte(part, '['); i >= 0 {
				part = part[:i]
			}
			switch part {
			case "projects", "total", "open", "resolved", "remediation":
				reasons[part] = append(reasons[part], p.Error())
			default:
				return nil, evidence.Report{}, fmt.Errorf("%w: %v", failure.ErrBadConfig, err)
			}
		}
		reason := func(part string) string {
			return "invalid data from Jira: " + failure.Truncate(strings.Join(reasons[part], "; "), 1000)
		}
		if _, bad := reasons["projects"]; bad {
			in.Projects = evidence.ProjectCountPart{Error: reason("projects")}
		}
		if _, bad := reasons["total"]; bad {
			in.Total = evidence.TicketCountPart{JQL: in.Total.JQL, Error: reason("total")}
		}
		if _, bad := reasons["open"]; bad {
			in.Open = evidence.TicketCountPart{JQL: in.Open.JQL, Error: reason("open")}
		}
		if _, bad := reasons["remediation"]; bad {
			r := in.Remediation
			in.Remediation = evidence.RemediationPart{JQL: r.JQL, WindowFrom: r.WindowFrom, WindowTo: r.WindowTo, Error: reason("remediation")}
		}
		if _, bad := reasons["resolved"]; bad {
			r := in.Resolved
			in.Resolved = evidence.ResolvedSamplePart{JQL: r.JQL, WindowFrom: r.WindowFrom, WindowTo: r.WindowTo,
				SampleSize: r.SampleSize, Error: reason("resolved")}
		}
	}
	return nil, evidence.Report{}, errors.New("evidence input still invalid after failing every part")
}

// notRevoked returns a revokedCheck that reads the connection row: a revoke commits before the
// workflow cancels the sync, and heartbeats deliver that cancellation only after the SDK's
// heartbeat throttle, so the row is the quickest reliable signal that no more Jira calls may be
// made.
func (a *Activities) notRevoked(ref ConnectionRef) revokedCheck {
	return func(ctx context.Context) error {
		return a.db.InOrg(ctx, ref.OrgID, func(q *dbq.Queries) error {
			_, err := connections.RequireLive(ctx, q, ref.ConnectionID)
			return err
		})
	}
}
