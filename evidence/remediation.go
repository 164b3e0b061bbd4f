package evidence

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// RemediationSampleSize is how many resolved security tickets a sync reads to compute times to
// resolve: one search page, the most recently resolved first. One page keeps the sync's call
// count the same whatever the site holds; the evidence records how many tickets the figures come
// from and whether that was every ticket of the window.
const RemediationSampleSize = 100

// MaxRemediationPriorities bounds the priorities a remediation item reports on.
const MaxRemediationPriorities = 10

// maxPriorityNameLen bounds a priority name in bytes (Jira's own limit is 60 characters).
const maxPriorityNameLen = 255

// SecurityRemediation is the payload of TypeSecurityRemediation: how the connection's security
// tickets (its configured JQL) were remediated over a rolling window that ends at the sync.
//
//   - Resolved is how many were resolved in the window (a done status category and a resolution
//     date in the window), as Jira counted them; on Jira Cloud the count is Jira's estimate, which
//     the item's provenance records (Query.Approximate).
//   - The times to resolve (resolution date minus creation date, whole seconds) are computed from
//     the most recently resolved of those tickets, at most one search page: Sampled of them, all
//     of the window's when SampleComplete. OtherPriorities of them have a priority that is not
//     configured (or none) and count towards no priority's figures.
//   - Per configured priority, ordered by SLA (shortest first) then name: the SLA, how many of
//     the sampled tickets had that priority and how many of those were resolved within the SLA,
//     the median and 90th percentile time to resolve (nearest rank: the smallest time within
//     which at least half, or nine in ten, of them were resolved; null when none was sampled),
//     and how many tickets of that priority are still open (status category not done) although
//     they were created longer ago than the SLA.
//   - OldestOpen is the open security ticket created first, by key, priority and creation time —
//     not its age, which would change the payload (and its fingerprint) every day; null when no
//     security ticket is open.
//
// The window is recorded as a length (the JQL is relative, "resolved >= -90d"); the absolute
// bounds are in the provenance. The figures move as the window rolls, so the item is a new
// evidence row whenever one of them changes, and the same row observed again while none does.
// Empty says the item proves nothing: nothing resolved in the window and nothing open.
type SecurityRemediation struct {
	JQL             string                `json:"jql"`
	WindowSeconds   int64                 `json:"window_seconds"`
	Resolved        int64                 `json:"resolved"`
	Sampled         int64                 `json:"sampled"`
	SampleComplete  bool                  `json:"sample_complete"`
	OtherPriorities int64                 `json:"other_priorities"`
	Priorities      []PriorityRemediation `json:"priorities"`
	OldestOpen      *OpenSecurityTicket   `json:"oldest_open"`
	Empty           bool                  `json:"empty"`
}

// PriorityRemediation is one priority's figures in a SecurityRemediation.
type PriorityRemediation struct {
	Priority      string `json:"priority"`
	SLASeconds    int64  `json:"sla_seconds"`
	Sampled       int64  `json:"sampled"`
	WithinSLA     int64  `json:"within_sla"`
	MedianSeconds *int64 `json:"median_seconds"`
	P90Seconds    *int64 `json:"p90_seconds"`
	OpenPastSLA   int64  `json:"open_past_sla"`
}

// OpenSecurityTicket identifies the oldest open security ticket.
type OpenSecurityTicket struct {
	Key      string    `json:"key"`
	Priority string    `json:"priority"` // empty when the ticket has no priority
	Created  Timestamp `json:"created"`
}

// EvidenceType implements Payload.
func (SecurityRemediation) EvidenceType() Type { return TypeSecurityRemediation }

// IsEmpty implements Payload: with no security ticket resolved in the window and none open, the
// figures say nothing about how vulnerabilities or incidents are handled.
func (p SecurityRemediation) IsEmpty() bool { return p.Empty || p.emptyContent() }

func (p SecurityRemediation) emptyContent() bool {
	if p.Resolved != 0 || p.Sampled != 0 || p.OldestOpen != nil {
		return false
	}
	for _, pr := range p.Priorities {
		if pr.OpenPastSLA != 0 {
			return false
		}
	}
	return true
}

func (p SecurityRemediation) validate(v *validator, field string) {
	v.text(field+".jql", p.JQL, true)
	if p.WindowSeconds <= 0 {
		v.add(field+".window_seconds", "must be positive, got %d", p.WindowSeconds)
	}
	v.count(field+".resolved", p.Resolved)
	v.count(field+".sampled", p.Sampled)
	if p.Sampled > MaxSampleSize {
		v.add(field+".sampled", "must be at most %d, got %d", MaxSampleSize, p.Sampled)
	}
	v.count(field+".other_priorities", p.OtherPriorities)
	if n := len(p.Priorities); n < 1 || n > MaxRemediationPriorities {
		v.add(field+".priorities", "must hold between 1 and %d priorities, got %d", MaxRemediationPriorities, n)
	}
	sum := p.OtherPriorities
	seen := make(map[string]int, len(p.Priorities))
	for i, pr := range p.Priorities {
		f := fmt.Sprintf("%s.priorities[%d]", field, i)
		v.text(f+".priority", pr.Priority, true)
		if len(pr.Priority) > maxPriorityNameLen {
			v.add(f+".priority", "must be at most %d bytes", maxPriorityNameLen)
		}
		if j, dup := seen[strings.ToLower(pr.Priority)]; dup {
			v.add(f+".priority", "%q is also at index %d (priority names are compared without regard to case)", pr.Priority, j)
		} else {
			seen[strings.ToLower(pr.Priority)] = i
		}
		if i > 0 && comparePriorities(p.Priorities[i-1], pr) >= 0 {
			v.add(f, "priorities must be sorted by sla_seconds, then priority")
		}
		if pr.SLASeconds <= 0 {
			v.add(f+".sla_seconds", "must be positive, got %d", pr.SLASeconds)
		}
		v.count(f+".sampled", pr.Sampled)
		v.count(f+".within_sla", pr.WithinSLA)
		v.count(f+".open_past_sla", pr.OpenPastSLA)
		if pr.WithinSLA > pr.Sampled {
			v.add(f+".within_sla", "%d exceeds sampled %d", pr.WithinSLA, pr.Sampled)
		}
		switch {
		case pr.Sampled == 0:
			if pr.MedianSeconds != nil || pr.P90Seconds != nil {
				v.add(f+".median_seconds", "median and p90 must be null when no ticket was sampled")
			}
		case pr.MedianSeconds == nil || pr.P90Seconds == nil:
			v.add(f+".median_seconds", "median and p90 are required when tickets were sampled")
		default:
			v.count(f+".median_seconds", *pr.MedianSeconds)
			v.count(f+".p90_seconds", *pr.P90Seconds)
			if *pr.P90Seconds < *pr.MedianSeconds {
				v.add(f+".p90_seconds", "%d is below the median %d", *pr.P90Seconds, *pr.MedianSeconds)
			}
		}
		sum += pr.Sampled
	}
	if sum != p.Sampled {
		v.add(field+".sampled", "is %d but the priorities and other_priorities add up to %d", p.Sampled, sum)
	}
	if o := p.OldestOpen; o != nil {
		v.issueKey(field+".oldest_open.key", o.Key)
		v.text(field+".oldest_open.priority", o.Priority, false)
		v.timestamp(field+".oldest_open.created", o.Created)
	}
	if p.Empty != p.emptyContent() {
		v.add(field+".empty", "is %t but the figures say %t", p.Empty, p.emptyContent())
	}
}

func comparePriorities(a, b PriorityRemediation) int {
	if c := cmp.Compare(a.SLASeconds, b.SLASeconds); c != 0 {
		return c
	}
	return strings.Compare(a.Priority, b.Priority)
}

// nearestRank returns the p-th percentile (0 < p ≤ 100) of sorted, a non-empty ascending slice,
// by the nearest-rank method: the value at rank ⌈p·n/100⌉, the smallest value with at least p% of
// the values at or below it. It is always one of the values, so an integer input gives an integer
// answer that any reader can check against the tickets.
func nearestRank(sorted []int64, p int) int64 {
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}

// RemediationPart is the result of the security-remediation queries of a sync: the count of
// security tickets resolved in the window, one search page of the most recently resolved of them,
// one count per configured priority of open tickets older than the priority's SLA, and a search
// for the oldest open one. Fetched is set only when every one of these calls completed; a failure
// of any makes the whole part "no data" with Error saying why.
type RemediationPart struct {
	Fetched bool   `json:"fetched"`
	Error   string `json:"error,omitempty"`
	// JQL is the configured security-ticket filter every query narrows.
	JQL        string            `json:"jql"`
	WindowFrom time.Time         `json:"window_from"`
	WindowTo   time.Time         `json:"window_to"`
	Resolved   CountResult       `json:"resolved"`
	Sample     RemediationSample `json:"sample"`
	Priorities []PriorityPart    `json:"priorities"`
	Oldest     OldestOpenResult  `json:"oldest"`
}

// CountResult is one count query and its answer.
type CountResult struct {
	JQL   string `json:"jql"`
	Count int64  `json:"count"`
	// Approximate is set when the count is Jira's estimate (Cloud's approximate-count).
	Approximate    bool   `json:"approximate,omitempty"`
	ResponseSHA256 string `json:"response_sha256,omitempty"`
}

// RemediationSample is the search page of resolved security tickets, most recently resolved
// first. Complete is set when it was Jira's last page (it holds every ticket of the window).
type RemediationSample struct {
	JQL            string              `json:"jql"`
	Tickets        []RemediationTicket `json:"tickets"`
	Complete       bool                `json:"complete"`
	ResponseSHA256 string              `json:"response_sha256,omitempty"`
}

// RemediationTicket is one resolved security ticket of the sample.
type RemediationTicket struct {
	Key      string    `json:"key"`
	Priority string    `json:"priority"` // empty when the ticket has no priority
	Created  time.Time `json:"created"`
	Resolved time.Time `json:"resolved"`
}

// PriorityPart is one configured priority: its SLA and the count of open tickets past it.
type PriorityPart struct {
	Priority    string        `json:"priority"`
	SLA         time.Duration `json:"sla"`
	OpenPastSLA CountResult   `json:"open_past_sla"`
}

// OldestOpenResult is the search for the oldest open security ticket; Ticket is nil when none
// is open.
type OldestOpenResult struct {
	JQL            string      `json:"jql"`
	Ticket         *OpenTicket `json:"ticket,omitempty"`
	ResponseSHA256 string      `json:"response_sha256,omitempty"`
}

// OpenTicket is an open ticket as the Jira client parsed it.
type OpenTicket struct {
	Key      string    `json:"key"`
	Priority string    `json:"priority"`
	Created  time.Time `json:"created"`
}

// buildRemediation turns a validated remediation part into its item (nil when the part was not
// fetched) and its report entry.
func buildRemediation(site string, r RemediationPart, base Provenance) (*Item, TypeReport) {
	if !r.Fetched {
		return nil, TypeReport{Type: TypeSecurityRemediation, Outcome: OutcomeNoData,
			Reason: "security remediation " + notFetched(r.Error)}
	}
	prios := slices.Clone(r.Priorities)
	slices.SortFunc(prios, func(a, b PriorityPart) int {
		if c := cmp.Compare(a.SLA, b.SLA); c != 0 {
			return c
		}
		return strings.Compare(a.Priority, b.Priority)
	})
	index := make(map[string]int, len(prios))
	for i, p := range prios {
		index[strings.ToLower(p.Priority)] = i
	}
	times := make([][]int64, len(prios))
	within := make([]int64, len(prios))
	var other int64
	for _, t := range r.Sample.Tickets {
		i, ok := index[strings.ToLower(t.Priority)]
		if !ok {
			other++
			continue
		}
		ttr := t.Resolved.Truncate(time.Millisecond).Sub(t.Created.Truncate(time.Millisecond))
		times[i] = append(times[i], int64(ttr/time.Second))
		if ttr <= prios[i].SLA {
			within[i]++
		}
	}
	payload := SecurityRemediation{
		JQL:             r.JQL,
		WindowSeconds:   int64(r.WindowTo.Sub(r.WindowFrom) / time.Second),
		Resolved:        r.Resolved.Count,
		Sampled:         int64(len(r.Sample.Tickets)),
		SampleComplete:  r.Sample.Complete,
		OtherPriorities: other,
		Priorities:      make([]PriorityRemediation, len(prios)),
	}
	for i, p := range prios {
		pr := PriorityRemediation{Priority: p.Priority, SLASeconds: int64(p.SLA / time.Second), Sampled: int64(len(times[i])),
			WithinSLA: within[i], OpenPastSLA: p.OpenPastSLA.Count}
		if len(times[i]) > 0 {
			slices.Sort(times[i])
			median, p90 := nearestRank(times[i], 50), nearestRank(times[i], 90)
			pr.MedianSeconds, pr.P90Seconds = &median, &p90
		}
		payload.Priorities[i] = pr
	}
	if o := r.Oldest.Ticket; o != nil {
		payload.OldestOpen = &OpenSecurityTicket{Key: o.Key, Priority: o.Priority, Created: NewTimestamp(o.Created)}
	}
	payload.Empty = payload.emptyContent()

	prov := base
	prov.WindowFrom, prov.WindowTo = r.WindowFrom.UTC(), r.WindowTo.UTC()
	prov.Queries = append(make([]Query, 0, 3+len(r.Priorities)),
		Query{Purpose: PurposeRemediationResolvedCount, JQL: r.Resolved.JQL, ResponseSHA256: r.Resolved.ResponseSHA256, Approximate: r.Resolved.Approximate},
		Query{Purpose: PurposeRemediationSample, JQL: r.Sample.JQL, ResponseSHA256: r.Sample.ResponseSHA256})
	for _, p := range prios {
		prov.Queries = append(prov.Queries, Query{Purpose: PurposeRemediationOpenPastSLA, JQL: p.OpenPastSLA.JQL,
			ResponseSHA256: p.OpenPastSLA.ResponseSHA256, Approximate: p.OpenPastSLA.Approximate})
	}
	prov.Queries = append(prov.Queries, Query{Purpose: PurposeRemediationOldestOpen, JQL: r.Oldest.JQL, ResponseSHA256: r.Oldest.ResponseSHA256})

	item := &Item{Type: TypeSecurityRemediation, Subject: site, Payload: payload, Provenance: prov}
	if payload.Empty {
		return item, TypeReport{Type: TypeSecurityRemediation, Outcome: OutcomeNoData,
			Reason: "no security ticket was resolved in the remediation window and none is open"}
	}
	return item, TypeReport{Type: TypeSecurityRemediation, Outcome: OutcomeComplete}
}

// validateRemediation checks the raw remediation part, naming problems "remediation.…" so that
// the collector can fail this part alone. latest is the last instant Jira's times may carry.
func validateRemediation(v *validator, r RemediationPart, collectedAt, latest time.Time) {
	const f = "remediation"
	if r.Fetched {
		if r.Error != "" {
			v.add(f+".error", "is set (%q) but the part is marked fetched", r.Error)
		}
	} else {
		v.text(f+".error", r.Error, false)
		if len(r.Sample.Tickets) != 0 || r.Oldest.Ticket != nil {
			v.add(f+".sample.tickets", "holds tickets but the part was not fetched")
		}
		return
	}
	v.text(f+".jql", r.JQL, true)
	switch {
	case r.WindowFrom.IsZero():
		v.add(f+".window_from", "is missing")
	case r.WindowTo.IsZero():
		v.add(f+".window_to", "is missing")
	case r.WindowTo.Sub(r.WindowFrom) < time.Second:
		v.add(f+".window_from", "must be at least one second before window_to")
	case !collectedAt.IsZero() && r.WindowTo.After(latest):
		v.add(f+".window_to", "%s is after collected_at %s", r.WindowTo.UTC().Format(time.RFC3339), collectedAt.UTC().Format(time.RFC3339))
	}
	count := func(field string, c CountResult) {
		v.text(field+".jql", c.JQL, true)
		v.count(field+".count", c.Count)
		v.sha256Hex(field+".response_sha256", c.ResponseSHA256)
	}
	count(f+".resolved", r.Resolved)

	s := r.Sample
	v.text(f+".sample.jql", s.JQL, true)
	v.sha256Hex(f+".sample.response_sha256", s.ResponseSHA256)
	if len(s.Tickets) > MaxSampleSize {
		v.add(f+".sample.tickets", "has %d tickets, more than %d", len(s.Tickets), MaxSampleSize)
	}
	seen := make(map[string]int, len(s.Tickets))
	for i, t := range s.Tickets {
		tf := fmt.Sprintf("%s.sample.tickets[%d]", f, i)
		v.issueKey(tf+".key", t.Key)
		if j, dup := seen[t.Key]; dup && t.Key != "" {
			v.add(tf+".key", "duplicate key %q (also at index %d)", t.Key, j)
		} else {
			seen[t.Key] = i
		}
		v.text(tf+".priority", t.Priority, false)
		jiraTime(v, tf+".created", t.Created, collectedAt, latest)
		jiraTime(v, tf+".resolved", t.Resolved, collectedAt, latest)
		switch {
		case t.Created.IsZero() || t.Resolved.IsZero():
		case t.Resolved.Before(t.Created):
			v.add(tf+".resolved", "%s is before the ticket was created (%s)", t.Resolved.UTC().Format(time.RFC3339), t.Created.UTC().Format(time.RFC3339))
		case !r.WindowFrom.IsZero() && t.Resolved.Before(r.WindowFrom.Add(-MaxClockSkew)):
			v.add(tf+".resolved", "%s is before the remediation window starts (%s)", t.Resolved.UTC().Format(time.RFC3339), r.WindowFrom.UTC().Format(time.RFC3339))
		}
	}

	if n := len(r.Priorities); n < 1 || n > MaxRemediationPriorities {
		v.add(f+".priorities", "must hold between 1 and %d priorities, got %d", MaxRemediationPriorities, n)
	}
	names := make(map[string]int, len(r.Priorities))
	for i, p := range r.Priorities {
		pf := fmt.Sprintf("%s.priorities[%d]", f, i)
		v.text(pf+".priority", p.Priority, true)
		if len(p.Priority) > maxPriorityNameLen {
			v.add(pf+".priority", "must be at most %d bytes", maxPriorityNameLen)
		}
		if j, dup := names[strings.ToLower(p.Priority)]; dup {
			v.add(pf+".priority", "%q is also at index %d", p.Priority, j)
		} else {
			names[strings.ToLower(p.Priority)] = i
		}
		if p.SLA < time.Second || p.SLA%time.Second != 0 {
			v.add(pf+".sla", "must be a positive whole number of seconds, got %s", p.SLA)
		}
		count(pf+".open_past_sla", p.OpenPastSLA)
	}

	o := r.Oldest
	v.text(f+".oldest.jql", o.JQL, true)
	v.sha256Hex(f+".oldest.response_sha256", o.ResponseSHA256)
	if t := o.Ticket; t != nil {
		v.issueKey(f+".oldest.ticket.key", t.Key)
		v.text(f+".oldest.ticket.priority", t.Priority, false)
		jiraTime(v, f+".oldest.ticket.created", t.Created, collectedAt, latest)
	}
}

// jiraTime checks a time Jira reported: present, from 1970 on, and not after latest.
func jiraTime(v *validator, field string, t, collectedAt, latest time.Time) {
	switch {
	case t.IsZero():
		v.add(field, "is missing")
	case t.UTC().Year() < 1970:
		v.add(field, "year %d is out of range", t.UTC().Year())
	case !collectedAt.IsZero() && t.After(latest):
		v.add(field, "%s is in the future (collected at %s)", t.UTC().Format(time.RFC3339), collectedAt.UTC().Format(time.RFC3339))
	}
}
