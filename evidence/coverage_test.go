package evidence

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

var (
	covNow = time.Date(2025, 3, 3, 12, 0, 0, 0, time.UTC)
	connA  = uuid.MustParse("11111111-1111-4111-8111-111111111111")
	connB  = uuid.MustParse("22222222-2222-4222-8222-222222222222")
)

const day = 24 * time.Hour

func TestStaleDeadlineAndIsStale(t *testing.T) {
	tokyo := time.FixedZone("JST", 9*3600)
	last := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name         string
		last         time.Time
		threshold    time.Duration
		now          time.Time
		wantDeadline time.Time
		wantStale    bool
	}{
		{"well within", last, 2 * day, last.Add(time.Hour), last.Add(2 * day), false},
		{"one nanosecond before the deadline", last, 2 * day, last.Add(2*day - 1), last.Add(2 * day), false},
		{"exactly at the deadline is stale", last, 2 * day, last.Add(2 * day), last.Add(2 * day), true},
		{"past the deadline", last, 2 * day, last.Add(3 * day), last.Add(2 * day), true},
		{"last success in another zone", last.In(tokyo), 2 * day, last.Add(2*day - time.Second), last.Add(2 * day), false},
		{"now in another zone, at the deadline", last, 2 * day, last.Add(2 * day).In(tokyo), last.Add(2 * day), true},
		{"never synced", time.Time{}, 2 * day, last, time.Time{}, true},
		{"zero threshold fails closed", last, 0, last, last, true},
		{"negative threshold: the deadline is the last success", last, -time.Hour, last.Add(-time.Minute), last, false},
		{"clock behind last success", last, 2 * day, last.Add(-time.Hour), last.Add(2 * day), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := StaleDeadline(tt.last, tt.threshold)
			if !d.Equal(tt.wantDeadline) {
				t.Fatalf("StaleDeadline = %v, want %v", d, tt.wantDeadline)
			}
			if !d.IsZero() && d.Location() != time.UTC {
				t.Fatalf("deadline location = %v, want UTC", d.Location())
			}
			if got := IsStale(tt.last, tt.threshold, tt.now); got != tt.wantStale {
				t.Fatalf("IsStale = %t, want %t", got, tt.wantStale)
			}
		})
	}
}

// TestStaleDeadlineIgnoresMonotonicClock: a time.Now() value carries a monotonic reading that a
// value read back from Postgres does not; the deadline must be identical for both.
func TestStaleDeadlineIgnoresMonotonicClock(t *testing.T) {
	withMono := time.Now()
	without := withMono.Round(0)
	if a, b := StaleDeadline(withMono, time.Hour), StaleDeadline(without, time.Hour); a != b {
		t.Fatalf("deadlines differ: %#v vs %#v", a, b)
	}
}

func conn(id uuid.UUID, status ConnectionStatus, lastSuccessAgo time.Duration) Connection {
	return Connection{ID: id, Status: status, StaleThreshold: 2 * day, LastSuccessfulSync: covNow.Add(-lastSuccessAgo)}
}

func obs(id uuid.UUID, typ Type, ago time.Duration, counts bool) Observation {
	return Observation{ConnectionID: id, Type: typ, ObservedAt: covNow.Add(-ago), CountsAsEvidence: counts, Fingerprint: "fp-" + string(typ)}
}

func allTypes(id uuid.UUID, ago time.Duration) []Observation {
	var out []Observation
	for _, typ := range Types() {
		out = append(out, obs(id, typ, ago, true))
	}
	return out
}

// testCatalogue has one control per evidence pairing, so each case can check both.
func testCatalogue() []Control {
	return []Control{
		{ID: "t.change", Framework: FrameworkSOC2, Reference: "T1", Title: "change", Rationale: "r",
			Requires: []Type{TypeProjectInventory, TypeTicketVolume}},
		{ID: "t.incident", Framework: FrameworkISO27001, Reference: "T2", Title: "incident", Rationale: "r",
			Requires: []Type{TypeSecurityTicketSample, TypeResolvedSecurityTicket}},
	}
}

func TestComputeCoverage(t *testing.T) {
	type want struct {
		state      State
		supporting []uuid.UUID
		reasons    map[Type][]Reason // per type, the reason of each Support (sorted by connection)
		why        []string          // substrings expected in Why
	}
	tests := []struct {
		name        string
		conns       []Connection
		obs         []Observation
		now         time.Time
		change, inc want
	}{
		{
			name:   "covered by one active connection",
			conns:  []Connection{conn(connA, StatusActive, time.Hour)},
			obs:    allTypes(connA, time.Hour),
			change: want{state: StateCovered, supporting: []uuid.UUID{connA}, reasons: map[Type][]Reason{TypeProjectInventory: {""}, TypeTicketVolume: {""}}},
			inc:    want{state: StateCovered, supporting: []uuid.UUID{connA}},
		},
		{
			name:  "stale by threshold: sample last satisfied three days ago",
			conns: []Connection{conn(connA, StatusActive, time.Hour)},
			obs: []Observation{
				obs(connA, TypeProjectInventory, time.Hour, true), obs(connA, TypeTicketVolume, time.Hour, true),
				obs(connA, TypeSecurityTicketSample, 3*day, true), obs(connA, TypeSecurityTicketSample, time.Hour, false),
				obs(connA, TypeResolvedSecurityTicket, 3*day, true),
			},
			change: want{state: StateCovered, supporting: []uuid.UUID{connA}},
			inc: want{state: StateStale, supporting: []uuid.UUID{},
				reasons: map[Type][]Reason{TypeSecurityTicketSample: {ReasonObservationStale}, TypeResolvedSecurityTicket: {ReasonObservationStale}},
				why:     []string{"jira.security_ticket_sample: only stale evidence", "observation_stale"}},
		},
		{
			name:  "stale connection: no successful sync within the threshold",
			conns: []Connection{conn(connA, StatusActive, 3*day)},
			obs:   allTypes(connA, time.Hour),
			change: want{state: StateStale, supporting: []uuid.UUID{},
				reasons: map[Type][]Reason{TypeProjectInventory: {ReasonConnectionStale}}, why: []string{"connection_stale"}},
			inc: want{state: StateStale, supporting: []uuid.UUID{}},
		},
		{
			name:   "stale by needs_reauth",
			conns:  []Connection{conn(connA, StatusNeedsReauth, time.Hour)},
			obs:    allTypes(connA, time.Hour),
			change: want{state: StateStale, supporting: []uuid.UUID{}, reasons: map[Type][]Reason{TypeTicketVolume: {ReasonNeedsReauth}}, why: []string{"connection_needs_reauth"}},
			inc:    want{state: StateStale, supporting: []uuid.UUID{}},
		},
		{
			name:   "stale by revoked",
			conns:  []Connection{conn(connA, StatusRevoked, time.Hour)},
			obs:    allTypes(connA, time.Hour),
			change: want{state: StateStale, supporting: []uuid.UUID{}, reasons: map[Type][]Reason{TypeTicketVolume: {ReasonRevoked}}, why: []string{"connection_revoked"}},
			inc:    want{state: StateStale, supporting: []uuid.UUID{}},
		},
		{
			name:   "pending_auth does not count",
			conns:  []Connection{conn(connA, StatusPendingAuth, time.Hour)},
			obs:    allTypes(connA, time.Hour),
			change: want{state: StateStale, supporting: []uuid.UUID{}, reasons: map[Type][]Reason{TypeProjectInventory: {ReasonPendingAuth}}},
			inc:    want{state: StateStale, supporting: []uuid.UUID{}},
		},
		{
			name:   "missing: no observations",
			conns:  []Connection{conn(connA, StatusActive, time.Hour)},
			change: want{state: StateMissing, supporting: []uuid.UUID{}, reasons: map[Type][]Reason{TypeProjectInventory: {}}, why: []string{"jira.project_inventory: no evidence from any connection", "jira.ticket_volume: no evidence"}},
			inc:    want{state: StateMissing, supporting: []uuid.UUID{}},
		},
		{
			name:   "missing: no connections at all",
			change: want{state: StateMissing, supporting: []uuid.UUID{}},
			inc:    want{state: StateMissing, supporting: []uuid.UUID{}},
		},
		{
			name:  "mixed connections: one active connection suffices",
			conns: []Connection{conn(connB, StatusActive, time.Hour), conn(connA, StatusRevoked, time.Hour)},
			obs:   append(allTypes(connA, time.Hour), allTypes(connB, 5*time.Hour)...),
			change: want{state: StateCovered, supporting: []uuid.UUID{connB},
				reasons: map[Type][]Reason{TypeProjectInventory: {ReasonRevoked, ""}}},
			inc: want{state: StateCovered, supporting: []uuid.UUID{connB}},
		},
		{
			name:  "required types from different connections",
			conns: []Connection{conn(connA, StatusActive, time.Hour), conn(connB, StatusActive, time.Hour)},
			obs:   []Observation{obs(connB, TypeProjectInventory, time.Hour, true), obs(connA, TypeTicketVolume, time.Hour, true)},
			change: want{state: StateCovered, supporting: []uuid.UUID{connA, connB},
				reasons: map[Type][]Reason{TypeProjectInventory: {""}, TypeTicketVolume: {""}}},
			inc: want{state: StateMissing, supporting: []uuid.UUID{}},
		},
		{
			name:  "empty sample does not count",
			conns: []Connection{conn(connA, StatusActive, time.Hour)},
			obs: []Observation{
				obs(connA, TypeProjectInventory, time.Hour, true), obs(connA, TypeTicketVolume, time.Hour, true),
				obs(connA, TypeSecurityTicketSample, time.Hour, false),
			},
			change: want{state: StateCovered, supporting: []uuid.UUID{connA}},
			inc: want{state: StateMissing, supporting: []uuid.UUID{},
				reasons: map[Type][]Reason{TypeSecurityTicketSample: {ReasonEmptyObservation}, TypeResolvedSecurityTicket: {}},
				why:     []string{"jira.security_ticket_sample: no evidence that counts", "empty_observation", "jira.resolved_security_ticket: no evidence from any connection"}},
		},
		{
			name:  "an empty sample after a satisfying one does not erase it",
			conns: []Connection{conn(connA, StatusActive, time.Hour)},
			obs: append(allTypes(connA, 2*time.Hour),
				obs(connA, TypeSecurityTicketSample, time.Hour, false)),
			change: want{state: StateCovered, supporting: []uuid.UUID{connA}},
			inc:    want{state: StateCovered, supporting: []uuid.UUID{connA}, reasons: map[Type][]Reason{TypeSecurityTicketSample: {""}}},
		},
		{
			name:   "boundary: observed and synced exactly at the threshold is stale",
			conns:  []Connection{conn(connA, StatusActive, 2*day)},
			obs:    allTypes(connA, 2*day),
			change: want{state: StateStale, supporting: []uuid.UUID{}, reasons: map[Type][]Reason{TypeProjectInventory: {ReasonConnectionStale}}},
			inc:    want{state: StateStale, supporting: []uuid.UUID{}},
		},
		{
			name:   "boundary: one nanosecond inside the threshold is covered",
			conns:  []Connection{conn(connA, StatusActive, 2*day-1)},
			obs:    allTypes(connA, 2*day-1),
			change: want{state: StateCovered, supporting: []uuid.UUID{connA}},
			inc:    want{state: StateCovered, supporting: []uuid.UUID{connA}},
		},
		{
			name:   "boundary: observation exactly at the threshold on a healthy connection",
			conns:  []Connection{conn(connA, StatusActive, time.Hour)},
			obs:    allTypes(connA, 2*day),
			change: want{state: StateStale, supporting: []uuid.UUID{}, reasons: map[Type][]Reason{TypeTicketVolume: {ReasonObservationStale}}},
			inc:    want{state: StateStale, supporting: []uuid.UUID{}},
		},
		{
			name: "per-connection threshold",
			conns: []Connection{{ID: connA, Status: StatusActive, StaleThreshold: 3 * day,
				LastSuccessfulSync: covNow.Add(-60 * time.Hour)}},
			obs:    allTypes(connA, 60*time.Hour),
			change: want{state: StateCovered, supporting: []uuid.UUID{connA}},
			inc:    want{state: StateCovered, supporting: []uuid.UUID{connA}},
		},
		{
			name:  "one type covered and one stale makes the control stale",
			conns: []Connection{conn(connA, StatusActive, time.Hour)},
			obs:   []Observation{obs(connA, TypeProjectInventory, time.Hour, true), obs(connA, TypeTicketVolume, 5*day, true)},
			change: want{state: StateStale, supporting: []uuid.UUID{connA},
				reasons: map[Type][]Reason{TypeProjectInventory: {""}, TypeTicketVolume: {ReasonObservationStale}}},
			inc: want{state: StateMissing, supporting: []uuid.UUID{}},
		},
		{
			name:  "one type stale and one missing makes the control missing",
			conns: []Connection{conn(connA, StatusNeedsReauth, time.Hour)},
			obs:   []Observation{obs(connA, TypeProjectInventory, time.Hour, true)},
			change: want{state: StateMissing, supporting: []uuid.UUID{},
				why: []string{"jira.project_inventory: only stale evidence", "jira.ticket_volume: no evidence from any connection"}},
			inc: want{state: StateMissing, supporting: []uuid.UUID{}},
		},
		{
			name:   "now in another time zone gives the same answer",
			conns:  []Connection{conn(connA, StatusActive, 2*day)},
			obs:    allTypes(connA, 2*day),
			now:    covNow.In(time.FixedZone("PST", -8*3600)),
			change: want{state: StateStale, supporting: []uuid.UUID{}},
			inc:    want{state: StateStale, supporting: []uuid.UUID{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = covNow
			}
			got, err := ComputeCoverage(testCatalogue(), tt.conns, tt.obs, now)
			if err != nil {
				t.Fatalf("ComputeCoverage: %v", err)
			}
			if len(got.Controls) != 2 {
				t.Fatalf("got %d controls", len(got.Controls))
			}
			for i, w := range []want{tt.change, tt.inc} {
				cc := got.Controls[i]
				if cc.State != w.state {
					t.Errorf("%s: state %s, want %s (why %q)", cc.ControlID, cc.State, w.state, cc.Why)
				}
				if !slices.Equal(cc.SupportingConnections, w.supporting) {
					t.Errorf("%s: supporting %v, want %v", cc.ControlID, cc.SupportingConnections, w.supporting)
				}
				if (cc.State == StateCovered) != (len(cc.Why) == 0) {
					t.Errorf("%s: state %s with why %q", cc.ControlID, cc.State, cc.Why)
				}
				for typ, reasons := range w.reasons {
					idx := slices.IndexFunc(cc.Types, func(tc TypeCoverage) bool { return tc.Type == typ })
					if idx < 0 {
						t.Fatalf("%s: no coverage entry for %s", cc.ControlID, typ)
					}
					var gotReasons []Reason
					for _, s := range cc.Types[idx].Evidence {
						gotReasons = append(gotReasons, s.Reason)
						if s.Fresh != (s.Reason == "") {
							t.Errorf("%s/%s: support %+v is fresh=%t with reason %q", cc.ControlID, typ, s, s.Fresh, s.Reason)
						}
					}
					if !slices.Equal(gotReasons, reasons) {
						t.Errorf("%s/%s: reasons %q, want %q", cc.ControlID, typ, gotReasons, reasons)
					}
				}
				joined := strings.Join(cc.Why, "\n")
				for _, s := range w.why {
					if !strings.Contains(joined, s) {
						t.Errorf("%s: why %q does not mention %q", cc.ControlID, cc.Why, s)
					}
				}
			}
		})
	}
}

func TestComputeCoverageReportsEvidence(t *testing.T) {
	conns := []Connection{conn(connA, StatusActive, time.Hour)}
	o := obs(connA, TypeProjectInventory, 90*time.Minute, true)
	o.ObservedAt = o.ObservedAt.In(time.FixedZone("X", 3600))
	got, err := ComputeCoverage(testCatalogue(), conns, []Observation{o, obs(connA, TypeProjectInventory, 3*time.Hour, true)}, covNow)
	if err != nil {
		t.Fatal(err)
	}
	ev := got.Controls[0].Types[0].Evidence
	if len(ev) != 1 {
		t.Fatalf("evidence = %+v, want the single freshest observation", ev)
	}
	s := ev[0]
	if s.ConnectionID != connA || !s.ObservedAt.Equal(covNow.Add(-90*time.Minute)) || s.ObservedAt.Location() != time.UTC ||
		s.Fingerprint != "fp-jira.project_inventory" || !s.Fresh || !s.CountsAsEvidence {
		t.Fatalf("support = %+v", s)
	}
}

func TestComputeCoverageOrgFigure(t *testing.T) {
	tests := []struct {
		name                           string
		catalogue                      []Control
		conns                          []Connection
		obs                            []Observation
		total, covered, stale, missing int
		basisPoints                    int
	}{
		{
			name:      "full catalogue, only change management evidence",
			catalogue: Catalogue(),
			conns:     []Connection{conn(connA, StatusActive, time.Hour)},
			obs:       []Observation{obs(connA, TypeProjectInventory, time.Hour, true), obs(connA, TypeTicketVolume, time.Hour, true)},
			total:     10, covered: 2, stale: 0, missing: 8, basisPoints: 2000,
		},
		{
			name:      "full catalogue, everything fresh",
			catalogue: Catalogue(),
			conns:     []Connection{conn(connA, StatusActive, time.Hour)},
			obs:       allTypes(connA, time.Hour),
			total:     10, covered: 10, basisPoints: 10000,
		},
		{
			name:      "full catalogue, connection needs re-auth",
			catalogue: Catalogue(),
			conns:     []Connection{conn(connA, StatusNeedsReauth, time.Hour)},
			obs:       allTypes(connA, time.Hour),
			total:     10, stale: 10, basisPoints: 0,
		},
		{
			name: "two of three rounds down",
			catalogue: append(testCatalogue(), Control{ID: "t.third", Framework: FrameworkSOC2, Reference: "T3", Title: "third", Rationale: "r",
				Requires: []Type{TypeProjectInventory}}),
			conns: []Connection{conn(connA, StatusActive, time.Hour)},
			obs: []Observation{obs(connA, TypeProjectInventory, time.Hour, true), obs(connA, TypeTicketVolume, time.Hour, true),
				obs(connA, TypeSecurityTicketSample, time.Hour, false)},
			total: 3, covered: 2, missing: 1, basisPoints: 6666,
		},
		{
			name:  "empty catalogue",
			conns: []Connection{conn(connA, StatusActive, time.Hour)},
			total: 0, basisPoints: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ComputeCoverage(tt.catalogue, tt.conns, tt.obs, covNow)
			if err != nil {
				t.Fatalf("ComputeCoverage: %v", err)
			}
			if got.Total != tt.total || got.Covered != tt.covered || got.Stale != tt.stale || got.Missing != tt.missing || got.CoveredBasisPoints != tt.basisPoints {
				t.Fatalf("got total %d covered %d stale %d missing %d bp %d; want %d %d %d %d %d",
					got.Total, got.Covered, got.Stale, got.Missing, got.CoveredBasisPoints,
					tt.total, tt.covered, tt.stale, tt.missing, tt.basisPoints)
			}
			if got.Covered+got.Stale+got.Missing != got.Total || len(got.Controls) != got.Total {
				t.Fatalf("counts do not add up: %+v", got)
			}
			for i, cc := range got.Controls {
				if cc.ControlID != tt.catalogue[i].ID {
					t.Fatalf("control %d is %s, want catalogue order", i, cc.ControlID)
				}
			}
		})
	}
}

func TestComputeCoverageRejectsBadInput(t *testing.T) {
	good := conn(connA, StatusActive, time.Hour)
	tests := []struct {
		name  string
		cat   []Control
		conns []Connection
		obs   []Observation
		now   time.Time
		field string
	}{
		{"invalid catalogue", []Control{{ID: "x"}}, nil, nil, covNow, "catalogue[0].requires"},
		{"zero now", testCatalogue(), nil, nil, time.Time{}, "now"},
		{"nil connection id", testCatalogue(), []Connection{{Status: StatusActive, StaleThreshold: day}}, nil, covNow, "connections[0].id"},
		{"duplicate connection", testCatalogue(), []Connection{good, good}, nil, covNow, "connections[1].id"},
		{"unknown status", testCatalogue(), []Connection{{ID: connA, Status: "paused", StaleThreshold: day}}, nil, covNow, "connections[0].status"},
		{"zero threshold", testCatalogue(), []Connection{{ID: connA, Status: StatusActive}}, nil, covNow, "connections[0].stale_threshold"},
		{"observation of an unknown connection", testCatalogue(), []Connection{good}, []Observation{obs(connB, TypeTicketVolume, time.Hour, true)}, covNow, "observations[0].connection_id"},
		{"observation of an unknown type", testCatalogue(), []Connection{good}, []Observation{obs(connA, "jira.nope", time.Hour, true)}, covNow, "observations[0].type"},
		{"observation without a time", testCatalogue(), []Connection{good}, []Observation{{ConnectionID: connA, Type: TypeTicketVolume, CountsAsEvidence: true}}, covNow, "observations[0].observed_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ComputeCoverage(tt.cat, tt.conns, tt.obs, tt.now)
			var ve *ValidationError
			if !errors.As(err, &ve) || !ve.Has(tt.field) {
				t.Fatalf("ComputeCoverage = %v, want a problem with %q", err, tt.field)
			}
		})
	}
}

// TestBuildToCoverage runs the whole pure pipeline: a sync with an empty sample yields items whose
// CountsAsEvidence flags leave the incident controls uncovered while change management is covered.
func TestBuildToCoverage(t *testing.T) {
	in := fullSync()
	in.Resolved.Tickets = nil
	items, _, err := BuildItems(in)
	if err != nil {
		t.Fatal(err)
	}
	var observations []Observation
	for _, it := range items {
		fp, err := Fingerprint(connA, it)
		if err != nil {
			t.Fatal(err)
		}
		observations = append(observations, Observation{
			ConnectionID: connA, Type: it.Type, ObservedAt: it.Provenance.CollectedAt,
			CountsAsEvidence: it.CountsAsEvidence(), Fingerprint: fp,
		})
	}
	conns := []Connection{{ID: connA, Status: StatusActive, StaleThreshold: DefaultStaleThreshold, LastSuccessfulSync: in.CollectedAt}}
	got, err := ComputeCoverage(Catalogue(), conns, observations, in.CollectedAt.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, cc := range got.Controls {
		wantCovered := cc.ControlID == "soc2.cc8.1" || cc.ControlID == "iso27001-2022.a.8.32"
		if (cc.State == StateCovered) != wantCovered {
			t.Errorf("%s: state %s (why %q)", cc.ControlID, cc.State, cc.Why)
		}
		if !wantCovered && cc.State != StateMissing {
			t.Errorf("%s: state %s, want missing (an empty sample is no data)", cc.ControlID, cc.State)
		}
	}
	if got.CoveredBasisPoints != 2000 {
		t.Errorf("basis points = %d, want 2000", got.CoveredBasisPoints)
	}
}
