package evidence

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fullRemediation is a fetched remediation part with known answers (collected at `collected`):
//
//	High (SLA 30d):    SEC-3 1d, SEC-1 5d, SEC-7 ("high") 10d, SEC-2 39d → median 5d, p90 39d, 3 within SLA
//	Highest (SLA 7d):  SEC-4 2h                                            → median = p90 = 2h, 1 within
//	Medium (SLA 90d):  none sampled                                        → null, null; 2 open past SLA
//	SEC-5 (no priority) and SEC-6 (Low, not configured)                    → other priorities
//
// Priorities are listed out of order on purpose: the payload sorts them by SLA.
func fullRemediation() RemediationPart {
	ago := func(d time.Duration) time.Time { return collected.Add(-d) }
	count := func(jql string, n int64) CountResult {
		return CountResult{JQL: jql, Count: n, Approximate: true, ResponseSHA256: hashB}
	}
	return RemediationPart{
		Fetched:    true,
		JQL:        `labels = "security"`,
		WindowFrom: ago(90 * day),
		WindowTo:   collected,
		Resolved:   count(`(labels = "security") AND (statusCategory = "Done") AND (resolved >= -90d)`, 7),
		Sample: RemediationSample{
			JQL: `(labels = "security") AND (statusCategory = "Done") AND (resolved >= -90d) ORDER BY resolved DESC`,
			Tickets: []RemediationTicket{
				{Key: "SEC-1", Priority: "High", Created: ago(10 * day), Resolved: ago(5 * day)},
				{Key: "SEC-2", Priority: "High", Created: ago(40 * day), Resolved: ago(day)},
				{Key: "SEC-3", Priority: "High", Created: ago(3 * day), Resolved: ago(2 * day).In(time.FixedZone("PST", -8*3600))},
				{Key: "SEC-4", Priority: "Highest", Created: ago(2 * day), Resolved: ago(2*day - 2*time.Hour)},
				{Key: "SEC-5", Priority: "", Created: ago(9 * day), Resolved: ago(8 * day)},
				{Key: "SEC-6", Priority: "Low", Created: ago(9 * day), Resolved: ago(8 * day)},
				{Key: "SEC-7", Priority: "high", Created: ago(20 * day), Resolved: ago(10 * day)},
			},
			Complete:       true,
			ResponseSHA256: hashA,
		},
		Priorities: []PriorityPart{
			{Priority: "High", SLA: 30 * day, OpenPastSLA: count(`… (priority = "High") AND (created < -30d)`, 0)},
			{Priority: "Medium", SLA: 90 * day, OpenPastSLA: count(`… (priority = "Medium") AND (created < -90d)`, 2)},
			{Priority: "Highest", SLA: 7 * day, OpenPastSLA: count(`… (priority = "Highest") AND (created < -7d)`, 1)},
		},
		Oldest: OldestOpenResult{
			JQL:            `(labels = "security") AND (statusCategory != "Done") ORDER BY created ASC`,
			Ticket:         &OpenTicket{Key: "SEC-100", Priority: "Medium", Created: ago(200 * day)},
			ResponseSHA256: hashA,
		},
	}
}

// emptyRemediation is a fetched part of a site with no security ticket resolved or open.
func emptyRemediation() RemediationPart {
	r := fullRemediation()
	r.Resolved.Count = 0
	r.Sample.Tickets = nil
	for i := range r.Priorities {
		r.Priorities[i].OpenPastSLA.Count = 0
	}
	r.Oldest.Ticket = nil
	return r
}

func secs(d time.Duration) *int64 { n := int64(d / time.Second); return &n }

func remediationOf(t *testing.T, in SyncResult) (Item, TypeReport) {
	t.Helper()
	items, report, err := BuildItems(in)
	require.NoError(t, err)
	i := slices.IndexFunc(items, func(it Item) bool { return it.Type == TypeSecurityRemediation })
	require.GreaterOrEqual(t, i, 0, "no remediation item")
	return items[i], report.Types[slices.Index(Types(), TypeSecurityRemediation)]
}

func TestBuildRemediationFigures(t *testing.T) {
	t.Parallel()
	it, rep := remediationOf(t, fullSync())
	assert.Equal(t, TypeReport{Type: TypeSecurityRemediation, Outcome: OutcomeComplete}, rep)
	assert.Equal(t, testSite, it.Subject)
	assert.True(t, it.CountsAsEvidence())
	assert.Equal(t, SecurityRemediation{
		JQL:             `labels = "security"`,
		WindowSeconds:   90 * 24 * 3600,
		Resolved:        7,
		Sampled:         7,
		SampleComplete:  true,
		OtherPriorities: 2,
		Priorities: []PriorityRemediation{
			{Priority: "Highest", SLASeconds: 7 * 24 * 3600, Sampled: 1, WithinSLA: 1, MedianSeconds: secs(2 * time.Hour), P90Seconds: secs(2 * time.Hour), OpenPastSLA: 1},
			{Priority: "High", SLASeconds: 30 * 24 * 3600, Sampled: 4, WithinSLA: 3, MedianSeconds: secs(5 * day), P90Seconds: secs(39 * day), OpenPastSLA: 0},
			{Priority: "Medium", SLASeconds: 90 * 24 * 3600, Sampled: 0, WithinSLA: 0, OpenPastSLA: 2},
		},
		OldestOpen: &OpenSecurityTicket{Key: "SEC-100", Priority: "Medium", Created: NewTimestamp(collected.Add(-200 * day))},
	}, it.Payload)

	// Provenance: every query in call order (the priorities as listed in the payload), the counts
	// marked approximate, the absolute window.
	p := it.Provenance
	purposes := make([]string, len(p.Queries))
	for i, q := range p.Queries {
		purposes[i] = q.Purpose
	}
	assert.Equal(t, []string{PurposeRemediationResolvedCount, PurposeRemediationSample, PurposeRemediationOpenPastSLA,
		PurposeRemediationOpenPastSLA, PurposeRemediationOpenPastSLA, PurposeRemediationOldestOpen}, purposes)
	assert.True(t, p.Queries[0].Approximate)
	assert.False(t, p.Queries[1].Approximate)
	assert.Contains(t, p.Queries[2].JQL, `"Highest"`)
	assert.True(t, p.Queries[2].Approximate)
	assert.False(t, p.Queries[5].Approximate)
	assert.Equal(t, collected.Add(-90*day), p.WindowFrom)
	assert.Equal(t, collected, p.WindowTo)
	require.NoError(t, it.Validate())
}

func TestBuildRemediationNoData(t *testing.T) {
	t.Parallel()
	in := fullSync()
	in.Remediation = RemediationPart{JQL: `labels = "security"`, Error: "jira search.count: POST /rest/api/3/search/approximate-count: 400 bad_request: The value 'Critical' does not exist for the field 'priority'."}
	items, report, err := BuildItems(in)
	require.NoError(t, err)
	assert.NotContains(t, typesOf(items), TypeSecurityRemediation, "a failed fetch records no figures, never zeros")
	assert.Equal(t, OutcomePartial, report.Outcome)
	r := report.Types[slices.Index(Types(), TypeSecurityRemediation)]
	assert.Equal(t, OutcomeNoData, r.Outcome)
	assert.Contains(t, r.Reason, "security remediation fetch failed: ")
	assert.Contains(t, r.Reason, "'Critical' does not exist")

	// Nothing resolved in the window and nothing open: recorded, proves nothing.
	in.Remediation = emptyRemediation()
	it, rep := remediationOf(t, in)
	assert.Equal(t, OutcomeNoData, rep.Outcome)
	assert.Contains(t, rep.Reason, "none is open")
	assert.False(t, it.CountsAsEvidence())
	p := it.Payload.(SecurityRemediation)
	assert.True(t, p.Empty)
	canon, err := CanonicalPayload(p)
	require.NoError(t, err)
	assert.Contains(t, string(canon), `"empty":true`)

	// One open ticket past its SLA is evidence (of a problem), not an empty result.
	in.Remediation.Priorities[0].OpenPastSLA.Count = 1
	it, rep = remediationOf(t, in)
	assert.Equal(t, OutcomeComplete, rep.Outcome)
	assert.True(t, it.CountsAsEvidence())
}

// A sample cut by its page still counts; the payload says how many tickets the times come from
// and that they are not every ticket of the window.
func TestBuildRemediationPartialSample(t *testing.T) {
	t.Parallel()
	in := fullSync()
	in.Remediation.Sample.Complete = false
	in.Remediation.Resolved.Count = 250
	it, rep := remediationOf(t, in)
	assert.Equal(t, OutcomeComplete, rep.Outcome)
	p := it.Payload.(SecurityRemediation)
	assert.False(t, p.SampleComplete)
	assert.EqualValues(t, 250, p.Resolved)
	assert.EqualValues(t, 7, p.Sampled)
}

func TestNearestRank(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in       []int64
		p50, p90 int64
	}{
		{[]int64{7}, 7, 7},
		{[]int64{1, 2}, 1, 2},
		{[]int64{1, 2, 3}, 2, 3},
		{[]int64{1, 2, 3, 4}, 2, 4},
		{[]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 5, 9},
		{[]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 6, 10},
		{[]int64{5, 5, 5, 9}, 5, 9},
		{[]int64{0, 0}, 0, 0},
		{[]int64{3, 3, 3, 3, 3, 3, 3, 3, 3, 100}, 3, 3},
	} {
		assert.Equal(t, tc.p50, nearestRank(tc.in, 50), "median of %v", tc.in)
		assert.Equal(t, tc.p90, nearestRank(tc.in, 90), "p90 of %v", tc.in)
	}
	// Against the definition, on random samples with many ties: the smallest value with at least
	// p% of the values at or below it.
	rng := rand.New(rand.NewPCG(3, 5))
	for range 500 {
		n := 1 + rng.IntN(40)
		vals := make([]int64, n)
		for i := range vals {
			vals[i] = rng.Int64N(8)
		}
		slices.Sort(vals)
		for _, p := range []int{50, 90} {
			want := int64(-1)
			for _, v := range vals {
				atOrBelow := 0
				for _, w := range vals {
					if w <= v {
						atOrBelow++
					}
				}
				if 100*atOrBelow >= p*n {
					want = v
					break
				}
			}
			require.Equal(t, want, nearestRank(vals, p), "p%d of %v", p, vals)
		}
	}
}

// The canonical form is stable: integers only, priorities sorted, null for figures of a priority
// with no sampled ticket, the oldest open ticket's creation time (never its age). Provenance,
// the order Jira answered in and the day of collection do not move the fingerprint.
func TestRemediationCanonicalFormAndFingerprint(t *testing.T) {
	t.Parallel()
	it, _ := remediationOf(t, fullSync())
	canon, err := CanonicalPayload(it.Payload)
	require.NoError(t, err)
	assert.Equal(t, `{"empty":false,"jql":"labels = \"security\"","oldest_open":{"created":"2024-08-15T09:00:00.000Z","key":"SEC-100","priority":"Medium"},`+
		`"other_priorities":2,"priorities":[`+
		`{"median_seconds":7200,"open_past_sla":1,"p90_seconds":7200,"priority":"Highest","sampled":1,"sla_seconds":604800,"within_sla":1},`+
		`{"median_seconds":432000,"open_past_sla":0,"p90_seconds":3369600,"priority":"High","sampled":4,"sla_seconds":2592000,"within_sla":3},`+
		`{"median_seconds":null,"open_past_sla":2,"p90_seconds":null,"priority":"Medium","sampled":0,"sla_seconds":7776000,"within_sla":0}],`+
		`"resolved":7,"sample_complete":true,"sampled":7,"window_seconds":7776000}`, string(canon))

	back, err := DecodePayload(TypeSecurityRemediation, canon)
	require.NoError(t, err)
	assert.Equal(t, it.Payload, back)

	fp := mustFingerprint(t, testConn, it)
	later := fullSync()
	later.CollectedAt = collected.Add(day)
	later.Remediation.WindowFrom, later.Remediation.WindowTo = later.Remediation.WindowFrom.Add(day), later.Remediation.WindowTo.Add(day)
	later.Remediation.Oldest.ResponseSHA256 = hashB
	later.Remediation.Resolved.Approximate = false
	slices.Reverse(later.Remediation.Sample.Tickets)
	slices.Reverse(later.Remediation.Priorities)
	again, _ := remediationOf(t, later)
	assert.Equal(t, fp, mustFingerprint(t, testConn, again), "the same figures a day later are the same evidence")

	changed := fullSync()
	changed.Remediation.Priorities[1].OpenPastSLA.Count = 3
	moved, _ := remediationOf(t, changed)
	assert.NotEqual(t, fp, mustFingerprint(t, testConn, moved), "a changed figure is new evidence")
}

func TestRemediationPayloadValidation(t *testing.T) {
	t.Parallel()
	good := func() SecurityRemediation {
		it, _ := remediationOf(t, fullSync())
		p := it.Payload.(SecurityRemediation)
		p.Priorities = slices.Clone(p.Priorities)
		return p
	}
	for _, tc := range []struct {
		name  string
		edit  func(p *SecurityRemediation)
		field string
	}{
		{"no jql", func(p *SecurityRemediation) { p.JQL = "" }, "payload.jql"},
		{"no window", func(p *SecurityRemediation) { p.WindowSeconds = 0 }, "payload.window_seconds"},
		{"negative resolved", func(p *SecurityRemediation) { p.Resolved = -1 }, "payload.resolved"},
		{"no priorities", func(p *SecurityRemediation) { p.Priorities = nil; p.Sampled = p.OtherPriorities }, "payload.priorities"},
		{"unsorted", func(p *SecurityRemediation) { p.Priorities[0], p.Priorities[1] = p.Priorities[1], p.Priorities[0] }, "payload.priorities[1]"},
		{"same priority twice", func(p *SecurityRemediation) {
			p.Priorities[2].Priority = "HIGH"
			p.Priorities[2].SLASeconds = p.Priorities[1].SLASeconds + 1
		}, "payload.priorities[2].priority"},
		{"sum mismatch", func(p *SecurityRemediation) { p.OtherPriorities = 5 }, "payload.sampled"},
		{"median without tickets", func(p *SecurityRemediation) { p.Priorities[2].MedianSeconds = secs(time.Hour) }, "payload.priorities[2].median_seconds"},
		{"no median with tickets", func(p *SecurityRemediation) { p.Priorities[1].P90Seconds = nil }, "payload.priorities[1].median_seconds"},
		{"p90 below median", func(p *SecurityRemediation) { p.Priorities[1].P90Seconds = secs(time.Hour) }, "payload.priorities[1].p90_seconds"},
		{"within exceeds sampled", func(p *SecurityRemediation) { p.Priorities[0].WithinSLA = 2 }, "payload.priorities[0].within_sla"},
		{"bad oldest key", func(p *SecurityRemediation) {
			p.OldestOpen = &OpenSecurityTicket{Key: "nope", Created: NewTimestamp(collected)}
		}, "payload.oldest_open.key"},
		{"oldest without time", func(p *SecurityRemediation) { p.OldestOpen = &OpenSecurityTicket{Key: "SEC-1"} }, "payload.oldest_open.created"},
		{"empty flag lies", func(p *SecurityRemediation) { p.Empty = true }, "payload.empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := good()
			tc.edit(&p)
			_, err := CanonicalPayload(p)
			var ve *ValidationError
			require.True(t, errors.As(err, &ve), "%v", err)
			assert.True(t, ve.Has(tc.field), "%v does not name %s", err, tc.field)
		})
	}
}

func TestRemediationInvalidInput(t *testing.T) {
	t.Parallel()
	future := collected.Add(MaxClockSkew + time.Second)
	for _, tc := range []struct {
		name  string
		edit  func(r *RemediationPart)
		field string
	}{
		{"fetched and failed", func(r *RemediationPart) { r.Error = "boom" }, "remediation.error"},
		{"figures without fetch", func(r *RemediationPart) { r.Fetched = false }, "remediation.sample.tickets"},
		{"no jql", func(r *RemediationPart) { r.JQL = "" }, "remediation.jql"},
		{"window in the future", func(r *RemediationPart) { r.WindowTo = future }, "remediation.window_to"},
		{"negative count", func(r *RemediationPart) { r.Resolved.Count = -1 }, "remediation.resolved.count"},
		{"count without hash", func(r *RemediationPart) { r.Priorities[1].OpenPastSLA.ResponseSHA256 = "" }, "remediation.priorities[1].open_past_sla.response_sha256"},
		{"bad key", func(r *RemediationPart) { r.Sample.Tickets[2].Key = "SEC 3" }, "remediation.sample.tickets[2].key"},
		{"duplicate key", func(r *RemediationPart) { r.Sample.Tickets[1].Key = "SEC-1" }, "remediation.sample.tickets[1].key"},
		{"no created", func(r *RemediationPart) { r.Sample.Tickets[0].Created = time.Time{} }, "remediation.sample.tickets[0].created"},
		{"resolved before created", func(r *RemediationPart) {
			r.Sample.Tickets[0].Created = r.Sample.Tickets[0].Resolved.Add(time.Minute)
		}, "remediation.sample.tickets[0].resolved"},
		{"resolved before the window", func(r *RemediationPart) {
			r.Sample.Tickets[1].Created = r.WindowFrom.Add(-2 * day)
			r.Sample.Tickets[1].Resolved = r.WindowFrom.Add(-day)
		}, "remediation.sample.tickets[1].resolved"},
		{"resolved in the future", func(r *RemediationPart) { r.Sample.Tickets[0].Resolved = future }, "remediation.sample.tickets[0].resolved"},
		{"no priorities", func(r *RemediationPart) { r.Priorities = nil }, "remediation.priorities"},
		{"same priority twice", func(r *RemediationPart) { r.Priorities[2].Priority = "high" }, "remediation.priorities[2].priority"},
		{"no sla", func(r *RemediationPart) { r.Priorities[0].SLA = 0 }, "remediation.priorities[0].sla"},
		{"oldest in the future", func(r *RemediationPart) { r.Oldest.Ticket.Created = future }, "remediation.oldest.ticket.created"},
		{"oldest with bad key", func(r *RemediationPart) { r.Oldest.Ticket.Key = "" }, "remediation.oldest.ticket.key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := fullSync()
			tc.edit(&in.Remediation)
			_, _, err := BuildItems(in)
			var ve *ValidationError
			require.True(t, errors.As(err, &ve), "%v", err)
			assert.True(t, ve.Has(tc.field), "%v does not name %s", err, tc.field)
			for _, p := range ve.Problems {
				assert.True(t, strings.HasPrefix(p.Field, "remediation."), "problem %s is outside the remediation part", p)
			}
		})
	}
}

// Provenance marks counts, and only counts, as approximate; the ticket volume's counts carry the
// collector's flag through. The flag is provenance: it never moves a fingerprint, and provenance
// stored before it existed (without the member) reads the same.
func TestApproximateCountsInProvenance(t *testing.T) {
	t.Parallel()
	in := fullSync()
	in.Total.Approximate, in.Open.Approximate = true, true
	items, _, err := BuildItems(in)
	require.NoError(t, err)
	vol := items[slices.IndexFunc(items, func(it Item) bool { return it.Type == TypeTicketVolume })]
	assert.True(t, vol.Provenance.Queries[0].Approximate)
	assert.True(t, vol.Provenance.Queries[1].Approximate)

	exact := fullSync()
	items2, _, err := BuildItems(exact)
	require.NoError(t, err)
	vol2 := items2[slices.IndexFunc(items2, func(it Item) bool { return it.Type == TypeTicketVolume })]
	assert.False(t, vol2.Provenance.Queries[0].Approximate)
	assert.Equal(t, mustFingerprint(t, testConn, vol), mustFingerprint(t, testConn, vol2))
	b, err := json.Marshal(vol2.Provenance)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "approximate", "an exact count's provenance is encoded as before")

	bad := sampleItem()
	bad.Provenance.Queries[0].Approximate = true
	var ve *ValidationError
	require.True(t, errors.As(bad.Validate(), &ve))
	assert.True(t, ve.Has("provenance.queries[0].approximate"))
}

// Coverage of the controls that require remediation evidence: covered only by fresh, non-empty
// remediation figures. Without them (the fetch failed, nothing to measure, or only an old
// observation) the sample-only controls stay covered and these do not.
func TestRemediationCoverage(t *testing.T) {
	t.Parallel()
	needsRemediation := map[string]bool{"soc2.cc7.4": true, "iso27001-2022.a.8.8": true, "iso27001-2022.a.5.26": true}
	coverage := func(in SyncResult, remediationSeen time.Time, now time.Time) map[string]State {
		t.Helper()
		items, _, err := BuildItems(in)
		require.NoError(t, err)
		var obs []Observation
		for _, it := range items {
			at := in.CollectedAt
			if it.Type == TypeSecurityRemediation {
				at = remediationSeen
			}
			obs = append(obs, Observation{ConnectionID: connA, Type: it.Type, ObservedAt: at, CountsAsEvidence: it.CountsAsEvidence()})
		}
		conns := []Connection{{ID: connA, Status: StatusActive, StaleThreshold: DefaultStaleThreshold, LastSuccessfulSync: in.CollectedAt}}
		got, err := ComputeCoverage(Catalogue(), conns, obs, now)
		require.NoError(t, err)
		out := map[string]State{}
		for _, cc := range got.Controls {
			out[cc.ControlID] = cc.State
		}
		return out
	}
	now := collected.Add(time.Hour)
	for id, st := range coverage(fullSync(), collected, now) {
		assert.Equal(t, StateCovered, st, id)
	}

	failed := fullSync()
	failed.Remediation = RemediationPart{Error: "400 bad_request"}
	empty := fullSync()
	empty.Remediation = emptyRemediation()
	for name, in := range map[string]SyncResult{"no data": failed, "nothing to measure": empty} {
		for id, st := range coverage(in, collected, now) {
			if needsRemediation[id] {
				assert.Equal(t, StateMissing, st, "%s: %s", name, id)
			} else {
				assert.Equal(t, StateCovered, st, "%s: %s", name, id)
			}
		}
	}

	// Remediation last observed beyond the stale threshold: those controls are stale.
	for id, st := range coverage(fullSync(), collected.Add(-DefaultStaleThreshold-time.Hour), now) {
		if needsRemediation[id] {
			assert.Equal(t, StateStale, st, id)
		} else {
			assert.Equal(t, StateCovered, st, id)
		}
	}
}
