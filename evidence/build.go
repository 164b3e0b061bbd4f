package evidence

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// SyncResult is everything one sync of one Jira connection collected, as the Jira activity
// reports it. It crosses a Temporal payload, so it is plain data: errors are strings.
//
// Each part records whether its fetch completed (Fetched) and, if not, why (Error). The zero value
// of a part means "not fetched", so a collector that forgets to fill a part produces "no data"
// rather than a count of zero that looks like an answer.
type SyncResult struct {
	SiteURL          string    `json:"site_url"`
	ConnectorVersion string    `json:"connector_version"`
	CollectedAt      time.Time `json:"collected_at"`

	Projects ProjectCountPart   `json:"projects"`
	Total    TicketCountPart    `json:"total"`
	Open     TicketCountPart    `json:"open"`
	Resolved ResolvedSamplePart `json:"resolved"`
	// Remediation is the security-remediation queries; its zero value is "not fetched".
	Remediation RemediationPart `json:"remediation"`
}

// ProjectCountPart is the result of the project search.
type ProjectCountPart struct {
	Fetched        bool   `json:"fetched"`
	Error          string `json:"error,omitempty"` // why the fetch did not complete; empty when Fetched
	Count          int64  `json:"count"`
	ResponseSHA256 string `json:"response_sha256,omitempty"`
}

// TicketCountPart is the result of one ticket count (total or open).
type TicketCountPart struct {
	Fetched bool   `json:"fetched"`
	Error   string `json:"error,omitempty"`
	JQL     string `json:"jql"`
	Count   int64  `json:"count"`
	// Approximate is set when the count is Jira's estimate (Cloud's approximate-count).
	Approximate    bool   `json:"approximate,omitempty"`
	ResponseSHA256 string `json:"response_sha256,omitempty"`
}

// ResolvedSamplePart is the result of the resolved-security-ticket search. The window is the
// absolute interval the JQL covered as the collector computed it; SampleSize is how many tickets
// were asked for (the search's maxResults). ResponseSHA256 covers the response body, or the
// bodies of all pages concatenated in order if the search was paged.
type ResolvedSamplePart struct {
	Fetched bool   `json:"fetched"`
	Error   string `json:"error,omitempty"`
	// Incomplete says why the tickets stop short of SampleSize although Jira had more (the page
	// bound was reached): the tickets are real, the sample is not a complete one.
	Incomplete     string    `json:"incomplete,omitempty"`
	JQL            string    `json:"jql"`
	WindowFrom     time.Time `json:"window_from"`
	WindowTo       time.Time `json:"window_to"`
	SampleSize     int       `json:"sample_size"`
	Tickets        []Ticket  `json:"tickets"`
	ResponseSHA256 string    `json:"response_sha256,omitempty"`
}

// Ticket is one resolved ticket as the Jira client parsed it.
type Ticket struct {
	Key        string    `json:"key"`
	Summary    string    `json:"summary"`
	Resolution string    `json:"resolution"`
	Resolved   time.Time `json:"resolved"`
	Priority   string    `json:"priority"`
	Assignee   string    `json:"assignee"` // display name; empty when unassigned
	Link       string    `json:"link"`
}

// Outcome says how much evidence a sync (or one evidence type within it) produced.
type Outcome string

const (
	// OutcomeComplete: fresh, compliance-satisfying evidence was produced.
	OutcomeComplete Outcome = "complete"
	// OutcomePartial (whole sync only): some evidence types are complete and some have no data.
	OutcomePartial Outcome = "partial"
	// OutcomeNoData: nothing that can satisfy a control was produced, because the fetch failed, was
	// not attempted, or returned nothing.
	OutcomeNoData Outcome = "no_data"
)

// TypeReport is the outcome of one evidence type in one sync.
type TypeReport struct {
	Type    Type    `json:"type"`
	Outcome Outcome `json:"outcome"`          // OutcomeComplete or OutcomeNoData
	Reason  string  `json:"reason,omitempty"` // why there is no data; empty when complete
}

// Report is the completeness report of a sync: an overall outcome and one entry per evidence type
// (in the order of Types()), so that "no data" is always explicit and never inferred from absence.
type Report struct {
	Outcome Outcome      `json:"outcome"`
	Types   []TypeReport `json:"types"`
}

// FreshTypes returns the evidence types for which the sync produced compliance-satisfying evidence.
func (r Report) FreshTypes() []Type {
	var out []Type
	for _, t := range r.Types {
		if t.Outcome == OutcomeComplete {
			out = append(out, t.Type)
		}
	}
	return out
}

// BuildItems turns the raw results of a sync into evidence items and a completeness report.
//
// Invalid input (negative counts, open > total, tickets without a key, times in the future, …)
// returns a *ValidationError naming every bad field and no items: malformed Jira data fails the run
// with a recorded reason rather than being half-recorded. Valid input yields, in order: the project
// inventory (if fetched), the ticket volume (if both counts were fetched), the sample summary (if
// the sample was fetched, marked empty when it returned no tickets), one item per resolved
// ticket, sorted by key, and the security remediation (if fetched, marked empty when there was no
// security ticket to measure). Parts that were not fetched produce no items and a no_data report
// entry.
func BuildItems(in SyncResult) ([]Item, Report, error) {
	site, err := validateSync(in)
	if err != nil {
		return nil, Report{}, err
	}
	collectedAt := in.CollectedAt.UTC()
	prov := func(from, to time.Time, queries ...Query) Provenance {
		return Provenance{
			Queries:          queries,
			WindowFrom:       from,
			WindowTo:         to,
			ConnectorVersion: in.ConnectorVersion,
			CollectedAt:      collectedAt,
		}
	}
	var items []Item
	reports := make(map[Type]TypeReport, len(Types()))
	noData := func(t Type, format string, args ...any) {
		reports[t] = TypeReport{Type: t, Outcome: OutcomeNoData, Reason: fmt.Sprintf(format, args...)}
	}
	complete := func(t Type) { reports[t] = TypeReport{Type: t, Outcome: OutcomeComplete} }

	// Project inventory.
	if p := in.Projects; !p.Fetched {
		noData(TypeProjectInventory, "project count %s", notFetched(p.Error))
	} else {
		payload := ProjectInventory{ProjectCount: p.Count}
		items = append(items, Item{
			Type: TypeProjectInventory, Subject: site, Payload: payload,
			Provenance: prov(time.Time{}, time.Time{}, Query{Purpose: PurposeProjectCount, ResponseSHA256: p.ResponseSHA256}),
		})
		if payload.IsEmpty() {
			noData(TypeProjectInventory, "the site reported 0 projects visible to this connection")
		} else {
			complete(TypeProjectInventory)
		}
	}

	// Ticket volume needs both counts: a total without the open count (or the reverse) is not the
	// evidence the controls ask for.
	switch tot, open := in.Total, in.Open; {
	case !tot.Fetched:
		noData(TypeTicketVolume, "total ticket count %s", notFetched(tot.Error))
	case !open.Fetched:
		noData(TypeTicketVolume, "open ticket count %s", notFetched(open.Error))
	default:
		payload := TicketVolume{TotalJQL: tot.JQL, TotalCount: tot.Count, OpenJQL: open.JQL, OpenCount: open.Count}
		items = append(items, Item{
			Type: TypeTicketVolume, Subject: site, Payload: payload,
			Provenance: prov(time.Time{}, time.Time{},
				Query{Purpose: PurposeTotalCount, JQL: tot.JQL, ResponseSHA256: tot.ResponseSHA256, Approximate: tot.Approximate},
				Query{Purpose: PurposeOpenCount, JQL: open.JQL, ResponseSHA256: open.ResponseSHA256, Approximate: open.Approximate}),
		})
		if payload.IsEmpty() {
			noData(TypeTicketVolume, "the total ticket count is 0")
		} else {
			complete(TypeTicketVolume)
		}
	}

	// Resolved security ticket sample.
	if r := in.Resolved; !r.Fetched {
		reason := "resolved security ticket sample " + notFetched(r.Error)
		noData(TypeSecurityTicketSample, "%s", reason)
		noData(TypeResolvedSecurityTicket, "%s", reason)
	} else {
		from, to := r.WindowFrom.UTC(), r.WindowTo.UTC()
		q := Query{Purpose: PurposeResolvedSample, JQL: r.JQL, ResponseSHA256: r.ResponseSHA256}
		tickets := slices.Clone(r.Tickets)
		slices.SortFunc(tickets, func(a, b Ticket) int { return cmp.Compare(a.Key, b.Key) })
		keys := make([]string, len(tickets))
		for i, t := range tickets {
			keys[i] = t.Key
		}
		items = append(items, Item{
			Type: TypeSecurityTicketSample, Subject: site,
			Payload: SecurityTicketSample{
				JQL:           r.JQL,
				WindowSeconds: int64(to.Sub(from) / time.Second),
				Requested:     int64(r.SampleSize),
				Returned:      int64(len(tickets)),
				Keys:          keys,
				Empty:         len(tickets) == 0,
				Incomplete:    r.Incomplete,
			},
			Provenance: prov(from, to, q),
		})
		for _, t := range tickets {
			items = append(items, Item{
				Type: TypeResolvedSecurityTicket, Subject: t.Key,
				Payload: ResolvedSecurityTicket{
					Key: t.Key, Summary: t.Summary, Resolution: t.Resolution, Resolved: NewTimestamp(t.Resolved),
					Priority: t.Priority, Assignee: t.Assignee, Link: t.Link,
				},
				Provenance: prov(from, to, q),
			})
		}
		switch {
		case len(tickets) == 0:
			const reason = "the resolved security ticket sample returned 0 tickets"
			noData(TypeSecurityTicketSample, reason)
			noData(TypeResolvedSecurityTicket, reason)
		case r.Incomplete != "":
			noData(TypeSecurityTicketSample, "the resolved security ticket sample is incomplete: %s", r.Incomplete)
			complete(TypeResolvedSecurityTicket)
		default:
			complete(TypeSecurityTicketSample)
			complete(TypeResolvedSecurityTicket)
		}
	}

	// Security remediation.
	item, rep := buildRemediation(site, in.Remediation, prov(time.Time{}, time.Time{}))
	if item != nil {
		items = append(items, *item)
	}
	reports[TypeSecurityRemediation] = rep

	report := Report{Types: make([]TypeReport, 0, len(reports))}
	completeCount := 0
	for _, t := range Types() {
		r := reports[t]
		if r.Outcome == OutcomeComplete {
			completeCount++
		}
		report.Types = append(report.Types, r)
	}
	switch completeCount {
	case len(report.Types):
		report.Outcome = OutcomeComplete
	case 0:
		report.Outcome = OutcomeNoData
	default:
		report.Outcome = OutcomePartial
	}
	// Belt and braces: every item we emit must fingerprint. A failure here is a bug in this
	// function, and is reported as an error rather than written as evidence.
	for i, it := range items {
		if err := it.Validate(); err != nil {
			return nil, Report{}, fmt.Errorf("evidence: built item %d (%s %q) is invalid: %w", i, it.Type, it.Subject, err)
		}
	}
	return items, report, nil
}

func notFetched(reason string) string {
	if reason == "" {
		return "was not fetched"
	}
	return "fetch failed: " + reason
}

// validateSync checks the raw sync result and returns the normalised site URL.
func validateSync(in SyncResult) (string, error) {
	var v validator
	site, err := NormalizeSiteURL(in.SiteURL)
	if err != nil {
		v.add("site_url", "%v", err)
	}
	v.text("connector_version", in.ConnectorVersion, true)
	if in.CollectedAt.IsZero() {
		v.add("collected_at", "is missing")
	}
	// Times reported by Jira may run ahead of our clock by at most MaxClockSkew.
	latest := in.CollectedAt.Add(MaxClockSkew)

	p := in.Projects
	validatePart(&v, "projects", p.Fetched, p.Error, p.ResponseSHA256)
	if p.Fetched {
		v.count("projects.count", p.Count)
	} else if p.Count != 0 {
		v.add("projects.count", "is %d but the part was not fetched", p.Count)
	}

	for _, part := range []struct {
		name string
		TicketCountPart
	}{{"total", in.Total}, {"open", in.Open}} {
		validatePart(&v, part.name, part.Fetched, part.Error, part.ResponseSHA256)
		if part.Fetched {
			v.text(part.name+".jql", part.JQL, true)
			v.count(part.name+".count", part.Count)
		} else {
			v.text(part.name+".jql", part.JQL, false)
			if part.Count != 0 {
				v.add(part.name+".count", "is %d but the part was not fetched", part.Count)
			}
		}
	}
	if in.Total.Fetched && in.Open.Fetched && in.Open.Count > in.Total.Count {
		v.add("open.count", "open count %d exceeds total count %d", in.Open.Count, in.Total.Count)
	}

	validateRemediation(&v, in.Remediation, in.CollectedAt, latest)

	r := in.Resolved
	validatePart(&v, "resolved", r.Fetched, r.Error, r.ResponseSHA256)
	if !r.Fetched {
		if len(r.Tickets) != 0 {
			v.add("resolved.tickets", "has %d tickets but the part was not fetched", len(r.Tickets))
		}
		return site, v.err()
	}
	v.text("resolved.jql", r.JQL, true)
	switch {
	case r.WindowFrom.IsZero():
		v.add("resolved.window_from", "is missing")
	case r.WindowTo.IsZero():
		v.add("resolved.window_to", "is missing")
	case r.WindowTo.Sub(r.WindowFrom) < time.Second:
		v.add("resolved.window_from", "must be at least one second before window_to")
	case !in.CollectedAt.IsZero() && r.WindowTo.After(latest):
		v.add("resolved.window_to", "%s is after collected_at %s", r.WindowTo.UTC().Format(time.RFC3339), in.CollectedAt.UTC().Format(time.RFC3339))
	}
	if r.SampleSize <= 0 || r.SampleSize > MaxSampleSize {
		v.add("resolved.sample_size", "must be between 1 and %d, got %d", MaxSampleSize, r.SampleSize)
	} else if len(r.Tickets) > r.SampleSize {
		v.add("resolved.tickets", "has %d tickets, more than the sample size %d", len(r.Tickets), r.SampleSize)
	} else if r.Incomplete != "" && len(r.Tickets) == r.SampleSize {
		v.add("resolved.incomplete", "a sample of the full size %d is not incomplete", r.SampleSize)
	}
	v.text("resolved.incomplete", r.Incomplete, false)
	seen := make(map[string]int, len(r.Tickets))
	for i, t := range r.Tickets {
		f := fmt.Sprintf("resolved.tickets[%d]", i)
		v.issueKey(f+".key", t.Key)
		if j, dup := seen[t.Key]; dup && t.Key != "" {
			v.add(f+".key", "duplicate key %q (also at index %d)", t.Key, j)
		} else {
			seen[t.Key] = i
		}
		v.text(f+".summary", t.Summary, true)
		v.text(f+".resolution", t.Resolution, true)
		v.text(f+".priority", t.Priority, false)
		v.text(f+".assignee", t.Assignee, false)
		v.link(f+".link", t.Link)
		switch {
		case t.Resolved.IsZero():
			v.add(f+".resolved", "is missing")
		case !in.CollectedAt.IsZero() && t.Resolved.After(latest):
			v.add(f+".resolved", "%s is in the future (collected at %s)", t.Resolved.UTC().Format(time.RFC3339), in.CollectedAt.UTC().Format(time.RFC3339))
		case !r.WindowFrom.IsZero() && t.Resolved.Before(r.WindowFrom.Add(-MaxClockSkew)):
			v.add(f+".resolved", "%s is before the sample window starts (%s)", t.Resolved.UTC().Format(time.RFC3339), r.WindowFrom.UTC().Format(time.RFC3339))
		case !r.WindowTo.IsZero() && t.Resolved.After(r.WindowTo.Add(MaxClockSkew)):
			v.add(f+".resolved", "%s is after the sample window ends (%s)", t.Resolved.UTC().Format(time.RFC3339), r.WindowTo.UTC().Format(time.RFC3339))
		case t.Resolved.UTC().Year() < 1970:
			v.add(f+".resolved", "year %d is out of range", t.Resolved.UTC().Year())
		}
	}
	return site, v.err()
}

// validatePart checks the fetched/error bookkeeping that every part shares.
func validatePart(v *validator, name string, fetched bool, errText, hash string) {
	if fetched {
		if errText != "" {
			v.add(name+".error", "is set (%q) but the part is marked fetched", errText)
		}
		v.sha256Hex(name+".response_sha256", hash)
	} else {
		v.text(name+".error", errText, false)
	}
}
