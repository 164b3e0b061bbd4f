package evidence

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

var collected = time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)

// fullSync is a valid sync in which every part succeeded and returned data.
func fullSync() SyncResult {
	return SyncResult{
		SiteURL:          "https://ACME.atlassian.net/",
		ConnectorVersion: "1.0.0",
		CollectedAt:      collected,
		Projects:         ProjectCountPart{Fetched: true, Count: 12, ResponseSHA256: hashA},
		Total:            TicketCountPart{Fetched: true, JQL: "created >= -3650d", Count: 1200, ResponseSHA256: hashA},
		Open:             TicketCountPart{Fetched: true, JQL: "created >= -3650d AND statusCategory != Done", Count: 37, ResponseSHA256: hashB},
		Resolved: ResolvedSamplePart{
			Fetched:    true,
			JQL:        "labels = security AND resolved >= -30d ORDER BY resolved DESC",
			WindowFrom: collected.Add(-30 * 24 * time.Hour),
			WindowTo:   collected,
			SampleSize: 50,
			Tickets: []Ticket{
				{Key: "SEC-9", Summary: "Rotate leaked key", Resolution: "Done", Resolved: collected.Add(-2 * time.Hour),
					Priority: "Highest", Assignee: "Ada Lovelace", Link: "https://acme.atlassian.net/browse/SEC-9"},
				{Key: "SEC-10", Summary: "Patch OpenSSL", Resolution: "Fixed", Resolved: collected.Add(-26 * time.Hour).In(time.FixedZone("CET", 3600)),
					Priority: "", Assignee: "", Link: "https://acme.atlassian.net/browse/SEC-10"},
			},
			ResponseSHA256: hashB,
		},
		Remediation: fullRemediation(),
	}
}

func typesOf(items []Item) []Type {
	out := make([]Type, len(items))
	for i, it := range items {
		out[i] = it.Type
	}
	return out
}

func TestBuildItemsComplete(t *testing.T) {
	in := fullSync()
	items, report, err := BuildItems(in)
	if err != nil {
		t.Fatalf("BuildItems: %v", err)
	}
	wantTypes := []Type{TypeProjectInventory, TypeTicketVolume, TypeSecurityTicketSample, TypeResolvedSecurityTicket, TypeResolvedSecurityTicket,
		TypeSecurityRemediation}
	if got := typesOf(items); !slices.Equal(got, wantTypes) {
		t.Fatalf("item types = %v, want %v", got, wantTypes)
	}
	if report.Outcome != OutcomeComplete {
		t.Fatalf("outcome = %s, want complete (report %+v)", report.Outcome, report)
	}
	if got := report.FreshTypes(); !slices.Equal(got, Types()) {
		t.Fatalf("fresh types = %v, want %v", got, Types())
	}
	for _, it := range items {
		if !it.CountsAsEvidence() {
			t.Errorf("%s %q does not count as evidence", it.Type, it.Subject)
		}
		if err := it.Validate(); err != nil {
			t.Errorf("%s %q invalid: %v", it.Type, it.Subject, err)
		}
		if _, err := Fingerprint(testConn, it); err != nil {
			t.Errorf("%s %q cannot be fingerprinted: %v", it.Type, it.Subject, err)
		}
		if it.Provenance.ConnectorVersion != "1.0.0" || !it.Provenance.CollectedAt.Equal(collected) {
			t.Errorf("%s provenance = %+v", it.Type, it.Provenance)
		}
	}
	for _, it := range items[:3] {
		if it.Subject != testSite {
			t.Errorf("%s subject = %q, want the normalised site %q", it.Type, it.Subject, testSite)
		}
	}
	if got := items[0].Payload.(ProjectInventory); got.ProjectCount != 12 {
		t.Errorf("inventory = %+v", got)
	}
	vol := items[1].Payload.(TicketVolume)
	if vol.TotalCount != 1200 || vol.OpenCount != 37 || vol.TotalJQL != in.Total.JQL || vol.OpenJQL != in.Open.JQL {
		t.Errorf("volume = %+v", vol)
	}
	if q := items[1].Provenance.Queries; len(q) != 2 || q[0].Purpose != PurposeTotalCount || q[0].ResponseSHA256 != hashA || q[1].Purpose != PurposeOpenCount || q[1].ResponseSHA256 != hashB {
		t.Errorf("volume queries = %+v", q)
	}
	sample := items[2].Payload.(SecurityTicketSample)
	if sample.Empty || sample.Returned != 2 || sample.Requested != 50 || sample.WindowSeconds != 30*24*3600 ||
		!slices.Equal(sample.Keys, []string{"SEC-10", "SEC-9"}) || sample.JQL != in.Resolved.JQL {
		t.Errorf("sample = %+v", sample)
	}
	if p := items[2].Provenance; !p.WindowFrom.Equal(in.Resolved.WindowFrom) || !p.WindowTo.Equal(in.Resolved.WindowTo) {
		t.Errorf("sample window = %v..%v", p.WindowFrom, p.WindowTo)
	}
	// Tickets come out sorted by key, with times normalised to UTC.
	first := items[3].Payload.(ResolvedSecurityTicket)
	if items[3].Subject != "SEC-10" || first.Key != "SEC-10" || first.Resolution != "Fixed" ||
		first.Resolved.String() != "2025-03-02T07:00:00.000Z" || first.Priority != "" || first.Assignee != "" {
		t.Errorf("first ticket = %q %+v", items[3].Subject, first)
	}
	if items[4].Subject != "SEC-9" || items[4].Payload.(ResolvedSecurityTicket).Assignee != "Ada Lovelace" {
		t.Errorf("second ticket = %q %+v", items[4].Subject, items[4].Payload)
	}
	// BuildItems must not reorder the caller's slice.
	if in.Resolved.Tickets[0].Key != "SEC-9" {
		t.Error("BuildItems sorted the caller's tickets in place")
	}
}

// TestBuildItemsDeterministic: the same content collected on another day, with tickets in another
// order, gives the same fingerprints (one evidence row, two observations).
func TestBuildItemsDeterministic(t *testing.T) {
	a := fullSync()
	b := fullSync()
	day := 24 * time.Hour
	b.CollectedAt = a.CollectedAt.Add(day)
	b.Resolved.WindowFrom = a.Resolved.WindowFrom.Add(day)
	b.Resolved.WindowTo = a.Resolved.WindowTo.Add(day)
	// The remediation window rolls on by a day and Jira answers in another order: same figures.
	b.Remediation.WindowFrom = a.Remediation.WindowFrom.Add(day)
	b.Remediation.WindowTo = a.Remediation.WindowTo.Add(day)
	b.Remediation.Resolved.ResponseSHA256 = hashA
	b.Remediation.Sample.Tickets = slices.Clone(a.Remediation.Sample.Tickets)
	slices.Reverse(b.Remediation.Sample.Tickets)
	b.Remediation.Priorities = slices.Clone(a.Remediation.Priorities)
	slices.Reverse(b.Remediation.Priorities)
	b.Projects.ResponseSHA256 = hashB
	b.ConnectorVersion = "1.0.1"
	slices.Reverse(b.Resolved.Tickets)
	ia, _, err := BuildItems(a)
	if err != nil {
		t.Fatal(err)
	}
	ib, _, err := BuildItems(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(ia) != len(ib) {
		t.Fatalf("%d items vs %d", len(ia), len(ib))
	}
	for i := range ia {
		if fa, fb := mustFingerprint(t, testConn, ia[i]), mustFingerprint(t, testConn, ib[i]); fa != fb {
			t.Errorf("item %d (%s): fingerprints differ across days", i, ia[i].Type)
		}
	}
}

func TestBuildItemsNoData(t *testing.T) {
	tests := []struct {
		name        string
		edit        func(*SyncResult)
		wantTypes   []Type // item types emitted
		wantOutcome Outcome
		noData      map[Type]string // type -> substring of the reason
		notCounting []Type          // emitted but not counting as evidence
	}{
		{
			name:        "project search failed",
			edit:        func(s *SyncResult) { s.Projects = ProjectCountPart{Error: "HTTP 503 after 5 attempts"} },
			wantTypes:   []Type{TypeTicketVolume, TypeSecurityTicketSample, TypeResolvedSecurityTicket, TypeResolvedSecurityTicket, TypeSecurityRemediation},
			wantOutcome: OutcomePartial,
			noData:      map[Type]string{TypeProjectInventory: "fetch failed: HTTP 503 after 5 attempts"},
		},
		{
			name:        "zero projects is recorded but is no data",
			edit:        func(s *SyncResult) { s.Projects.Count = 0 },
			wantTypes:   []Type{TypeProjectInventory, TypeTicketVolume, TypeSecurityTicketSample, TypeResolvedSecurityTicket, TypeResolvedSecurityTicket, TypeSecurityRemediation},
			wantOutcome: OutcomePartial,
			noData:      map[Type]string{TypeProjectInventory: "0 projects"},
			notCounting: []Type{TypeProjectInventory},
		},
		{
			name:        "open count failed: no ticket volume at all",
			edit:        func(s *SyncResult) { s.Open = TicketCountPart{JQL: s.Open.JQL, Error: "timeout"} },
			wantTypes:   []Type{TypeProjectInventory, TypeSecurityTicketSample, TypeResolvedSecurityTicket, TypeResolvedSecurityTicket, TypeSecurityRemediation},
			wantOutcome: OutcomePartial,
			noData:      map[Type]string{TypeTicketVolume: "open ticket count fetch failed: timeout"},
		},
		{
			name:        "total count never attempted",
			edit:        func(s *SyncResult) { s.Total = TicketCountPart{} },
			wantTypes:   []Type{TypeProjectInventory, TypeSecurityTicketSample, TypeResolvedSecurityTicket, TypeResolvedSecurityTicket, TypeSecurityRemediation},
			wantOutcome: OutcomePartial,
			noData:      map[Type]string{TypeTicketVolume: "total ticket count was not fetched"},
		},
		{
			name:        "zero tickets in total",
			edit:        func(s *SyncResult) { s.Total.Count = 0; s.Open.Count = 0 },
			wantTypes:   []Type{TypeProjectInventory, TypeTicketVolume, TypeSecurityTicketSample, TypeResolvedSecurityTicket, TypeResolvedSecurityTicket, TypeSecurityRemediation},
			wantOutcome: OutcomePartial,
			noData:      map[Type]string{TypeTicketVolume: "total ticket count is 0"},
			notCounting: []Type{TypeTicketVolume},
		},
		{
			name:        "empty sample: summary recorded as empty, no tickets",
			edit:        func(s *SyncResult) { s.Resolved.Tickets = nil },
			wantTypes:   []Type{TypeProjectInventory, TypeTicketVolume, TypeSecurityTicketSample, TypeSecurityRemediation},
			wantOutcome: OutcomePartial,
			noData: map[Type]string{
				TypeSecurityTicketSample:   "returned 0 tickets",
				TypeResolvedSecurityTicket: "returned 0 tickets",
			},
			notCounting: []Type{TypeSecurityTicketSample},
		},
		{
			name: "sample failed",
			edit: func(s *SyncResult) {
				s.Resolved = ResolvedSamplePart{JQL: s.Resolved.JQL, SampleSize: 50, Error: "400 invalid JQL"}
			},
			wantTypes:   []Type{TypeProjectInventory, TypeTicketVolume, TypeSecurityRemediation},
			wantOutcome: OutcomePartial,
			noData: map[Type]string{
				TypeSecurityTicketSample:   "fetch failed: 400 invalid JQL",
				TypeResolvedSecurityTicket: "fetch failed: 400 invalid JQL",
			},
		},
		{
			name: "nothing fetched (zero-value parts)",
			edit: func(s *SyncResult) {
				s.Projects, s.Total, s.Open, s.Resolved = ProjectCountPart{}, TicketCountPart{}, TicketCountPart{}, ResolvedSamplePart{}
				s.Remediation = RemediationPart{}
			},
			wantTypes:   nil,
			wantOutcome: OutcomeNoData,
			noData: map[Type]string{
				TypeProjectInventory: "not fetched", TypeTicketVolume: "not fetched",
				TypeSecurityTicketSample: "not fetched", TypeResolvedSecurityTicket: "not fetched",
				TypeSecurityRemediation: "security remediation was not fetched",
			},
		},
		{
			name: "everything fetched but empty",
			edit: func(s *SyncResult) {
				s.Projects.Count, s.Total.Count, s.Open.Count, s.Resolved.Tickets = 0, 0, 0, nil
				s.Remediation = emptyRemediation()
			},
			wantTypes:   []Type{TypeProjectInventory, TypeTicketVolume, TypeSecurityTicketSample, TypeSecurityRemediation},
			wantOutcome: OutcomeNoData,
			noData: map[Type]string{
				TypeProjectInventory: "0 projects", TypeTicketVolume: "is 0",
				TypeSecurityTicketSample: "0 tickets", TypeResolvedSecurityTicket: "0 tickets",
				TypeSecurityRemediation: "none is open",
			},
			notCounting: []Type{TypeProjectInventory, TypeTicketVolume, TypeSecurityTicketSample, TypeSecurityRemediation},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := fullSync()
			tt.edit(&in)
			items, report, err := BuildItems(in)
			if err != nil {
				t.Fatalf("BuildItems: %v", err)
			}
			if got := typesOf(items); !slices.Equal(got, tt.wantTypes) {
				t.Fatalf("item types = %v, want %v", got, tt.wantTypes)
			}
			if report.Outcome != tt.wantOutcome {
				t.Fatalf("outcome = %s, want %s", report.Outcome, tt.wantOutcome)
			}
			if len(report.Types) != len(Types()) {
				t.Fatalf("report has %d types, want one per type", len(report.Types))
			}
			for i, tr := range report.Types {
				if tr.Type != Types()[i] {
					t.Fatalf("report type %d = %s, want %s", i, tr.Type, Types()[i])
				}
				reason, wantNoData := tt.noData[tr.Type]
				switch {
				case wantNoData && (tr.Outcome != OutcomeNoData || !strings.Contains(tr.Reason, reason)):
					t.Errorf("%s: %s %q, want no_data mentioning %q", tr.Type, tr.Outcome, tr.Reason, reason)
				case !wantNoData && (tr.Outcome != OutcomeComplete || tr.Reason != ""):
					t.Errorf("%s: %s %q, want complete", tr.Type, tr.Outcome, tr.Reason)
				}
				if slices.Contains(report.FreshTypes(), tr.Type) == wantNoData {
					t.Errorf("%s: FreshTypes disagrees with the outcome", tr.Type)
				}
			}
			for _, it := range items {
				if want := !slices.Contains(tt.notCounting, it.Type); it.CountsAsEvidence() != want {
					t.Errorf("%s: CountsAsEvidence = %t, want %t", it.Type, it.CountsAsEvidence(), want)
				}
				if err := it.Validate(); err != nil {
					t.Errorf("%s invalid: %v", it.Type, err)
				}
			}
		})
	}
}

func TestBuildItemsEmptySampleIsMarked(t *testing.T) {
	in := fullSync()
	in.Resolved.Tickets = []Ticket{}
	items, _, err := BuildItems(in)
	if err != nil {
		t.Fatal(err)
	}
	s := items[slices.IndexFunc(items, func(it Item) bool { return it.Type == TypeSecurityTicketSample })]
	p, ok := s.Payload.(SecurityTicketSample)
	if !ok || !p.Empty || p.Returned != 0 || len(p.Keys) != 0 || p.Requested != 50 {
		t.Fatalf("empty sample summary = %#v", s.Payload)
	}
	canon, err := CanonicalPayload(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(canon), `"empty":true`) || !strings.Contains(string(canon), `"keys":[]`) {
		t.Fatalf("stored payload does not say it is empty: %s", canon)
	}
}

func TestBuildItemsInvalid(t *testing.T) {
	future := collected.Add(MaxClockSkew + time.Second)
	tests := []struct {
		name   string
		edit   func(*SyncResult)
		fields []string
	}{
		{"missing site", func(s *SyncResult) { s.SiteURL = "" }, []string{"site_url"}},
		{"site with credentials", func(s *SyncResult) { s.SiteURL = "https://u:p@acme.atlassian.net" }, []string{"site_url"}},
		{"missing connector version", func(s *SyncResult) { s.ConnectorVersion = "" }, []string{"connector_version"}},
		{"missing collected-at", func(s *SyncResult) { s.CollectedAt = time.Time{} }, []string{"collected_at"}},
		{"negative project count", func(s *SyncResult) { s.Projects.Count = -1 }, []string{"projects.count"}},
		{"project count without fetch", func(s *SyncResult) { s.Projects.Fetched = false }, []string{"projects.count"}},
		{"fetched and failed", func(s *SyncResult) { s.Projects.Error = "boom" }, []string{"projects.error"}},
		{"missing response hash", func(s *SyncResult) { s.Total.ResponseSHA256 = "" }, []string{"total.response_sha256"}},
		{"malformed response hash", func(s *SyncResult) { s.Open.ResponseSHA256 = strings.Repeat("z", 64) }, []string{"open.response_sha256"}},
		{"negative total", func(s *SyncResult) { s.Total.Count = -5; s.Open.Count = 0 }, []string{"total.count"}},
		{"negative open", func(s *SyncResult) { s.Open.Count = -1 }, []string{"open.count"}},
		{"open exceeds total", func(s *SyncResult) { s.Open.Count = 1201 }, []string{"open.count"}},
		{"missing total JQL", func(s *SyncResult) { s.Total.JQL = " " }, []string{"total.jql"}},
		{"open count without fetch", func(s *SyncResult) { s.Open.Fetched = false; s.Open.ResponseSHA256 = "" }, []string{"open.count"}},
		{"missing sample JQL", func(s *SyncResult) { s.Resolved.JQL = "" }, []string{"resolved.jql"}},
		{"missing window start", func(s *SyncResult) { s.Resolved.WindowFrom = time.Time{} }, []string{"resolved.window_from"}},
		{"missing window end", func(s *SyncResult) { s.Resolved.WindowTo = time.Time{} }, []string{"resolved.window_to"}},
		{"inverted window", func(s *SyncResult) {
			s.Resolved.WindowFrom, s.Resolved.WindowTo = s.Resolved.WindowTo, s.Resolved.WindowFrom
		}, []string{"resolved.window_from"}},
		{"window ends in the future", func(s *SyncResult) { s.Resolved.WindowTo = future }, []string{"resolved.window_to"}},
		{"zero sample size", func(s *SyncResult) { s.Resolved.SampleSize = 0 }, []string{"resolved.sample_size"}},
		{"huge sample size", func(s *SyncResult) { s.Resolved.SampleSize = MaxSampleSize + 1 }, []string{"resolved.sample_size"}},
		{"more tickets than requested", func(s *SyncResult) { s.Resolved.SampleSize = 1 }, []string{"resolved.tickets"}},
		{"tickets without fetch", func(s *SyncResult) { s.Resolved.Fetched = false }, []string{"resolved.tickets"}},
		{"ticket without key", func(s *SyncResult) { s.Resolved.Tickets[1].Key = "" }, []string{"resolved.tickets[1].key"}},
		{"ticket with malformed key", func(s *SyncResult) { s.Resolved.Tickets[0].Key = "SEC 9" }, []string{"resolved.tickets[0].key"}},
		{"duplicate ticket", func(s *SyncResult) { s.Resolved.Tickets[1].Key = "SEC-9" }, []string{"resolved.tickets[1].key"}},
		{"ticket without summary", func(s *SyncResult) { s.Resolved.Tickets[0].Summary = "" }, []string{"resolved.tickets[0].summary"}},
		{"ticket without resolution", func(s *SyncResult) { s.Resolved.Tickets[0].Resolution = "" }, []string{"resolved.tickets[0].resolution"}},
		{"ticket without resolved time", func(s *SyncResult) { s.Resolved.Tickets[0].Resolved = time.Time{} }, []string{"resolved.tickets[0].resolved"}},
		{"ticket resolved in the future", func(s *SyncResult) { s.Resolved.Tickets[0].Resolved = future }, []string{"resolved.tickets[0].resolved"}},
		{"ticket resolved before the window", func(s *SyncResult) {
			s.Resolved.Tickets[0].Resolved = s.Resolved.WindowFrom.Add(-time.Hour)
		}, []string{"resolved.tickets[0].resolved"}},
		{"ticket resolved after the window", func(s *SyncResult) {
			s.Resolved.WindowTo = collected.Add(-24 * time.Hour)
		}, []string{"resolved.tickets[0].resolved"}},
		{"ticket with invalid UTF-8", func(s *SyncResult) { s.Resolved.Tickets[0].Assignee = "\xc3" }, []string{"resolved.tickets[0].assignee"}},
		{"ticket without link", func(s *SyncResult) { s.Resolved.Tickets[0].Link = "" }, []string{"resolved.tickets[0].link"}},
		{"ticket with relative link", func(s *SyncResult) { s.Resolved.Tickets[0].Link = "/browse/SEC-9" }, []string{"resolved.tickets[0].link"}},
		{"ticket link with credentials", func(s *SyncResult) {
			s.Resolved.Tickets[0].Link = "https://a:b@acme.atlassian.net/browse/SEC-9"
		}, []string{"resolved.tickets[0].link"}},
		{"several problems reported together", func(s *SyncResult) {
			s.Projects.Count = -1
			s.Resolved.Tickets[0].Key = ""
			s.Resolved.Tickets[1].Resolved = future
		}, []string{"projects.count", "resolved.tickets[0].key", "resolved.tickets[1].resolved"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := fullSync()
			tt.edit(&in)
			items, _, err := BuildItems(in)
			if err == nil {
				t.Fatalf("BuildItems accepted invalid input and built %d items", len(items))
			}
			if items != nil {
				t.Fatalf("BuildItems returned %d items with an error", len(items))
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v is not a *ValidationError", err)
			}
			for _, f := range tt.fields {
				if !ve.Has(f) {
					t.Errorf("error %v does not name %q", err, f)
				}
				if !strings.Contains(err.Error(), f+":") {
					t.Errorf("message %q does not name %q", err.Error(), f)
				}
			}
		})
	}
}

// TestBuildItemsSkewTolerance: Jira's clock may run slightly ahead of ours.
func TestBuildItemsSkewTolerance(t *testing.T) {
	in := fullSync()
	in.Resolved.Tickets[0].Resolved = collected.Add(MaxClockSkew)
	in.Resolved.WindowTo = collected.Add(MaxClockSkew)
	if _, _, err := BuildItems(in); err != nil {
		t.Fatalf("a time exactly MaxClockSkew ahead was rejected: %v", err)
	}
}
