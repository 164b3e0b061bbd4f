package evidence

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

var (
	testConn  = uuid.MustParse("0f8fad5b-d9cb-469f-a165-70867728950e")
	otherConn = uuid.MustParse("7c9e6679-7425-40de-944b-e07fc1f90ae7")
)

const (
	testSite = "https://acme.atlassian.net"
	hashA    = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	hashB    = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func testProvenance() Provenance {
	return Provenance{
		Queries:          []Query{{Purpose: PurposeResolvedSample, JQL: "labels = security AND resolved >= -30d", ResponseSHA256: hashA}},
		WindowFrom:       time.Date(2025, 2, 1, 9, 0, 0, 0, time.UTC),
		WindowTo:         time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC),
		ConnectorVersion: "1.0.0",
		CollectedAt:      time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC),
	}
}

func ticketItem() Item {
	return Item{
		Type:    TypeResolvedSecurityTicket,
		Subject: "SEC-12",
		Payload: ResolvedSecurityTicket{
			Key:        "SEC-12",
			Summary:    "Fix <script> & \"quotes\"\tin caf\u00e9",
			Resolution: "Done",
			Resolved:   NewTimestamp(time.Date(2025, 3, 1, 10, 30, 0, 123456789, time.UTC)),
			Priority:   "High",
			Assignee:   "Ada Lovelace",
			Link:       "https://acme.atlassian.net/browse/SEC-12",
		},
		Provenance: testProvenance(),
	}
}

func sampleItem() Item {
	return Item{
		Type:    TypeSecurityTicketSample,
		Subject: testSite,
		Payload: SecurityTicketSample{
			JQL:           "labels = security AND resolved >= -30d",
			WindowSeconds: 30 * 24 * 3600,
			Requested:     50,
			Returned:      2,
			Keys:          []string{"SEC-10", "SEC-9"},
		},
		Provenance: testProvenance(),
	}
}

func inventoryItem() Item {
	return Item{Type: TypeProjectInventory, Subject: testSite, Payload: ProjectInventory{ProjectCount: 42}, Provenance: testProvenance()}
}

func volumeItem() Item {
	return Item{
		Type: TypeTicketVolume, Subject: testSite,
		Payload:    TicketVolume{TotalJQL: "created >= -3650d", TotalCount: 1200, OpenJQL: "created >= -3650d AND statusCategory != Done", OpenCount: 37},
		Provenance: testProvenance(),
	}
}

func mustFingerprint(t *testing.T, conn uuid.UUID, it Item) string {
	t.Helper()
	fp, err := Fingerprint(conn, it)
	if err != nil {
		t.Fatalf("Fingerprint: %v", err)
	}
	return fp
}

// TestFingerprintGolden locks the exact preimage bytes and hashes. If this test fails, every stored
// fingerprint would stop matching: do not update the golden values, change the code back (or
// introduce a new fingerprint version with a migration).
func TestFingerprintGolden(t *testing.T) {
	tests := []struct {
		name     string
		item     Item
		preimage string
		hex      string
	}{
		{
			name:     "project inventory",
			item:     inventoryItem(),
			preimage: `{"connection_id":"0f8fad5b-d9cb-469f-a165-70867728950e","payload":{"project_count":42},"subject":"https://acme.atlassian.net","type":"jira.project_inventory","v":1}`,
			hex:      "fb7509ab43c35b2590b2e7ce837ef95bde070c0e672087b4cc1e05c63a03a07b",
		},
		{
			name:     "ticket volume",
			item:     volumeItem(),
			preimage: `{"connection_id":"0f8fad5b-d9cb-469f-a165-70867728950e","payload":{"open_count":37,"open_jql":"created >= -3650d AND statusCategory != Done","total_count":1200,"total_jql":"created >= -3650d"},"subject":"https://acme.atlassian.net","type":"jira.ticket_volume","v":1}`,
			hex:      "cc8d267233743fc86fb76c73209766bc846789d066b7c1790e647aaf31709804",
		},
		{
			name: "resolved security ticket (escaping, UTF-8, millisecond UTC time)",
			item: ticketItem(),
			preimage: `{"connection_id":"0f8fad5b-d9cb-469f-a165-70867728950e","payload":{"assignee":"Ada Lovelace","key":"SEC-12","link":"https://acme.atlassian.net/browse/SEC-12","priority":"High","resolution":"Done","resolved":"2025-03-01T10:30:00.123Z","summary":"Fix <script> & \"quotes\"\tin caf` +
				"\u00e9" + `"},"subject":"SEC-12","type":"jira.resolved_security_ticket","v":1}`,
			hex: "4d02bd150ff14bb03cc94a9158ee9cbda3252811128b7da01f34a209cdd19c7f",
		},
		{
			name:     "security ticket sample",
			item:     sampleItem(),
			preimage: `{"connection_id":"0f8fad5b-d9cb-469f-a165-70867728950e","payload":{"empty":false,"jql":"labels = security AND resolved >= -30d","keys":["SEC-10","SEC-9"],"requested":50,"returned":2,"window_seconds":2592000},"subject":"https://acme.atlassian.net","type":"jira.security_ticket_sample","v":1}`,
			hex:      "683ddac76928a7178fc67de291d7a0d914afa1de228c35a660f6bdbd0f6f4ed0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pre, err := FingerprintInput(testConn, tt.item)
			if err != nil {
				t.Fatalf("FingerprintInput: %v", err)
			}
			if string(pre) != tt.preimage {
				t.Fatalf("preimage\n got %s\nwant %s", pre, tt.preimage)
			}
			fp := mustFingerprint(t, testConn, tt.item)
			if fp != tt.hex {
				t.Fatalf("fingerprint = %s, want %s", fp, tt.hex)
			}
			// The fingerprint is exactly sha256 of the published preimage.
			sum := sha256.Sum256([]byte(tt.preimage))
			if hex.EncodeToString(sum[:]) != fp {
				t.Fatalf("fingerprint is not sha256(preimage)")
			}
		})
	}
}

// TestFingerprintStoredFormIndependence decodes the same payload written with different key
// orders, whitespace and escapes (as Postgres jsonb or another client might return it) and checks
// the fingerprint does not move.
func TestFingerprintStoredFormIndependence(t *testing.T) {
	want := mustFingerprint(t, testConn, ticketItem())
	forms := []string{
		`{"summary":"Fix <script> & \"quotes\"\tin café","key":"SEC-12","resolution":"Done","resolved":"2025-03-01T10:30:00.123Z","priority":"High","assignee":"Ada Lovelace","link":"https://acme.atlassian.net/browse/SEC-12"}`,
		"{\n  \"link\" : \"https://acme.atlassian.net/browse/SEC-12\",\n  \"assignee\" : \"Ada Lovelace\",\n  \"priority\" : \"High\",\n  \"resolved\" : \"2025-03-01T10:30:00.123Z\",\n  \"resolution\" : \"Done\",\n  \"key\" : \"SEC-12\",\n  \"summary\" : \"Fix \\u003cscript\\u003e \\u0026 \\\"quotes\\\"\\u0009in caf\\u00e9\"\n}",
	}
	for i, form := range forms {
		p, err := DecodePayload(TypeResolvedSecurityTicket, []byte(form))
		if err != nil {
			t.Fatalf("form %d: DecodePayload: %v", i, err)
		}
		it := ticketItem()
		it.Payload = p
		if got := mustFingerprint(t, testConn, it); got != want {
			t.Fatalf("form %d: fingerprint %s, want %s", i, got, want)
		}
	}
}

func TestFingerprintIgnoresProvenance(t *testing.T) {
	base := ticketItem()
	want := mustFingerprint(t, testConn, base)
	later := base
	later.Provenance = Provenance{
		Queries:          []Query{{Purpose: PurposeResolvedSample, JQL: "project = SEC", ResponseSHA256: hashB}},
		WindowFrom:       time.Date(2025, 2, 2, 9, 0, 0, 0, time.UTC),
		WindowTo:         time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC),
		ConnectorVersion: "2.3.4",
		CollectedAt:      time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC),
	}
	if got := mustFingerprint(t, testConn, later); got != want {
		t.Fatalf("provenance changed the fingerprint: %s vs %s", got, want)
	}
	none := base
	none.Provenance = Provenance{}
	if got := mustFingerprint(t, testConn, none); got != want {
		t.Fatalf("empty provenance changed the fingerprint: %s vs %s", got, want)
	}
}

func TestFingerprintEquivalentValues(t *testing.T) {
	tests := []struct {
		name string
		a, b Item
	}{
		{
			name: "same instant in another time zone and with sub-millisecond noise",
			a:    ticketItem(),
			b: func() Item {
				it := ticketItem()
				p := it.Payload.(ResolvedSecurityTicket)
				ist := time.FixedZone("IST", 5*3600+1800)
				p.Resolved = NewTimestamp(time.Date(2025, 3, 1, 16, 0, 0, 123999999, ist))
				it.Payload = p
				return it
			}(),
		},
		{
			name: "nil and empty key lists",
			a: Item{Type: TypeSecurityTicketSample, Subject: testSite, Payload: SecurityTicketSample{
				JQL: "x", WindowSeconds: 60, Requested: 5, Returned: 0, Keys: nil, Empty: true}},
			b: Item{Type: TypeSecurityTicketSample, Subject: testSite, Payload: SecurityTicketSample{
				JQL: "x", WindowSeconds: 60, Requested: 5, Returned: 0, Keys: []string{}, Empty: true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if a, b := mustFingerprint(t, testConn, tt.a), mustFingerprint(t, testConn, tt.b); a != b {
				t.Fatalf("fingerprints differ: %s vs %s", a, b)
			}
		})
	}
}

// TestFingerprintSensitivity changes one fingerprinted field at a time and requires every variant
// to have a fingerprint different from the base and from every other variant.
func TestFingerprintSensitivity(t *testing.T) {
	withTicket := func(f func(*ResolvedSecurityTicket)) Item {
		it := ticketItem()
		p := it.Payload.(ResolvedSecurityTicket)
		f(&p)
		it.Payload = p
		it.Subject = p.Key
		return it
	}
	withSample := func(f func(*SecurityTicketSample)) Item {
		it := sampleItem()
		p := it.Payload.(SecurityTicketSample)
		f(&p)
		it.Payload = p
		return it
	}
	withVolume := func(f func(*TicketVolume)) Item {
		it := volumeItem()
		p := it.Payload.(TicketVolume)
		f(&p)
		it.Payload = p
		return it
	}
	type variant struct {
		name string
		conn uuid.UUID
		item Item
	}
	bases := []variant{
		{"ticket base", testConn, ticketItem()},
		{"sample base", testConn, sampleItem()},
		{"volume base", testConn, volumeItem()},
		{"inventory base", testConn, inventoryItem()},
	}
	variants := []variant{
		{"ticket other connection", otherConn, ticketItem()},
		{"ticket key+subject", testConn, withTicket(func(p *ResolvedSecurityTicket) { p.Key = "SEC-13" })},
		{"ticket summary", testConn, withTicket(func(p *ResolvedSecurityTicket) { p.Summary += "." })},
		{"ticket summary case", testConn, withTicket(func(p *ResolvedSecurityTicket) { p.Summary = strings.ToUpper(p.Summary) })},
		{"ticket resolution", testConn, withTicket(func(p *ResolvedSecurityTicket) { p.Resolution = "Won't Do" })},
		{"ticket resolved +1ms", testConn, withTicket(func(p *ResolvedSecurityTicket) { p.Resolved = NewTimestamp(p.Resolved.Time().Add(time.Millisecond)) })},
		{"ticket priority", testConn, withTicket(func(p *ResolvedSecurityTicket) { p.Priority = "Highest" })},
		{"ticket priority empty", testConn, withTicket(func(p *ResolvedSecurityTicket) { p.Priority = "" })},
		{"ticket assignee", testConn, withTicket(func(p *ResolvedSecurityTicket) { p.Assignee = "Grace Hopper" })},
		{"ticket unassigned", testConn, withTicket(func(p *ResolvedSecurityTicket) { p.Assignee = "" })},
		{"ticket link", testConn, withTicket(func(p *ResolvedSecurityTicket) { p.Link = "https://acme.atlassian.net/browse/SEC-12?x" })},
		{"sample other site", testConn, func() Item { it := sampleItem(); it.Subject = "https://acme-eu.atlassian.net"; return it }()},
		{"sample jql", testConn, withSample(func(p *SecurityTicketSample) { p.JQL = "labels = security AND resolved >= -31d" })},
		{"sample window", testConn, withSample(func(p *SecurityTicketSample) { p.WindowSeconds++ })},
		{"sample requested", testConn, withSample(func(p *SecurityTicketSample) { p.Requested = 51 })},
		{"sample keys", testConn, withSample(func(p *SecurityTicketSample) { p.Keys = []string{"SEC-10", "SEC-8"} })},
		{"sample fewer keys", testConn, withSample(func(p *SecurityTicketSample) { p.Keys = []string{"SEC-10"}; p.Returned = 1 })},
		{"sample empty", testConn, withSample(func(p *SecurityTicketSample) { p.Keys = nil; p.Returned = 0; p.Empty = true })},
		{"volume total", testConn, withVolume(func(p *TicketVolume) { p.TotalCount++ })},
		{"volume open", testConn, withVolume(func(p *TicketVolume) { p.OpenCount++ })},
		{"volume total jql", testConn, withVolume(func(p *TicketVolume) { p.TotalJQL = "created >= -365d" })},
		{"volume open jql", testConn, withVolume(func(p *TicketVolume) { p.OpenJQL = "statusCategory != Done" })},
		{"volume jqls swapped", testConn, withVolume(func(p *TicketVolume) { p.TotalJQL, p.OpenJQL = p.OpenJQL, p.TotalJQL })},
		{"inventory count", testConn, Item{Type: TypeProjectInventory, Subject: testSite, Payload: ProjectInventory{ProjectCount: 43}}},
		{"inventory zero", testConn, Item{Type: TypeProjectInventory, Subject: testSite, Payload: ProjectInventory{ProjectCount: 0}}},
		{"inventory other connection", otherConn, inventoryItem()},
		{"inventory http site", testConn, Item{Type: TypeProjectInventory, Subject: "http://acme.atlassian.net", Payload: ProjectInventory{ProjectCount: 42}}},
		{"inventory context path", testConn, Item{Type: TypeProjectInventory, Subject: testSite + "/jira", Payload: ProjectInventory{ProjectCount: 42}}},
	}
	seen := map[string]string{}
	for _, v := range append(bases, variants...) {
		fp := mustFingerprint(t, v.conn, v.item)
		if prev, dup := seen[fp]; dup {
			t.Errorf("%q and %q share fingerprint %s", v.name, prev, fp)
		}
		seen[fp] = v.name
	}
}

func TestFingerprintRejectsInvalidItems(t *testing.T) {
	tests := []struct {
		name  string
		conn  uuid.UUID
		item  Item
		field string
	}{
		{"nil connection", uuid.Nil, inventoryItem(), "connection_id"},
		{"unknown type", testConn, Item{Type: "jira.other", Subject: testSite, Payload: ProjectInventory{ProjectCount: 1}}, "type"},
		{"missing payload", testConn, Item{Type: TypeProjectInventory, Subject: testSite}, "payload"},
		{"payload of another type", testConn, Item{Type: TypeTicketVolume, Subject: testSite, Payload: ProjectInventory{ProjectCount: 1}}, "payload"},
		{"subject not normalised", testConn, Item{Type: TypeProjectInventory, Subject: "https://ACME.atlassian.net/", Payload: ProjectInventory{ProjectCount: 1}}, "subject"},
		{"subject not a URL", testConn, Item{Type: TypeProjectInventory, Subject: "acme", Payload: ProjectInventory{ProjectCount: 1}}, "subject"},
		{"ticket subject differs from key", testConn, func() Item { it := ticketItem(); it.Subject = "SEC-99"; return it }(), "subject"},
		{"negative count", testConn, Item{Type: TypeProjectInventory, Subject: testSite, Payload: ProjectInventory{ProjectCount: -1}}, "payload.project_count"},
		{"count beyond 2^53", testConn, Item{Type: TypeProjectInventory, Subject: testSite, Payload: ProjectInventory{ProjectCount: 1 << 53}}, "payload.project_count"},
		{"open above total", testConn, Item{Type: TypeTicketVolume, Subject: testSite, Payload: TicketVolume{TotalJQL: "a", OpenJQL: "b", TotalCount: 1, OpenCount: 2}}, "payload.open_count"},
		{"invalid UTF-8 summary", testConn, func() Item {
			it := ticketItem()
			p := it.Payload.(ResolvedSecurityTicket)
			p.Summary = "bad \xff byte"
			it.Payload = p
			return it
		}(), "payload.summary"},
		{"zero resolved time", testConn, func() Item {
			it := ticketItem()
			p := it.Payload.(ResolvedSecurityTicket)
			p.Resolved = Timestamp{}
			it.Payload = p
			return it
		}(), "payload.resolved"},
		{"unsorted sample keys", testConn, func() Item {
			it := sampleItem()
			p := it.Payload.(SecurityTicketSample)
			p.Keys = []string{"SEC-9", "SEC-10"}
			it.Payload = p
			return it
		}(), "payload.keys[1]"},
		{"empty flag inconsistent", testConn, func() Item {
			it := sampleItem()
			p := it.Payload.(SecurityTicketSample)
			p.Empty = true
			it.Payload = p
			return it
		}(), "payload.empty"},
		{"keys and returned disagree", testConn, func() Item {
			it := sampleItem()
			p := it.Payload.(SecurityTicketSample)
			p.Returned = 3
			p.Requested = 3
			it.Payload = p
			return it
		}(), "payload.keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp, err := Fingerprint(tt.conn, tt.item)
			if err == nil {
				t.Fatalf("Fingerprint = %s, want an error", fp)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || !ve.Has(tt.field) {
				t.Fatalf("error %v does not name field %q", err, tt.field)
			}
		})
	}
}

func TestDecodePayload(t *testing.T) {
	tests := []struct {
		name    string
		typ     Type
		in      string
		wantErr string // empty: must decode
	}{
		{"inventory", TypeProjectInventory, `{"project_count": 3}`, ""},
		{"sample", TypeSecurityTicketSample, `{"jql":"x","window_seconds":60,"requested":5,"returned":0,"keys":[],"empty":true}`, ""},
		{"unknown type", "jira.nope", `{}`, "unknown evidence type"},
		{"unknown field", TypeProjectInventory, `{"project_count":3,"extra":1}`, "unknown field"},
		{"missing field", TypeTicketVolume, `{"total_jql":"a","total_count":1,"open_jql":"b"}`, "missing or not in canonical form"},
		{"missing keys", TypeSecurityTicketSample, `{"jql":"x","window_seconds":60,"requested":5,"returned":0,"empty":true}`, "missing or not in canonical form"},
		{"null keys", TypeSecurityTicketSample, `{"jql":"x","window_seconds":60,"requested":5,"returned":0,"keys":null,"empty":true}`, "missing or not in canonical form"},
		{"float count", TypeProjectInventory, `{"project_count":3.0}`, "only integers"},
		{"duplicate key", TypeProjectInventory, `{"project_count":3,"project_count":4}`, "duplicate"},
		{"string count", TypeProjectInventory, `{"project_count":"3"}`, "cannot unmarshal"},
		{"non-canonical timestamp", TypeResolvedSecurityTicket, `{"key":"A-1","summary":"s","resolution":"Done","resolved":"2025-03-01T10:30:00Z","priority":"","assignee":"","link":"https://x.example/browse/A-1"}`, "not in the form"},
		{"timestamp with offset", TypeResolvedSecurityTicket, `{"key":"A-1","summary":"s","resolution":"Done","resolved":"2025-03-01T10:30:00.000+01:00","priority":"","assignee":"","link":"https://x.example/browse/A-1"}`, "not in the form"},
		{"invalid payload", TypeProjectInventory, `{"project_count":-3}`, "must not be negative"},
		{"not an object", TypeProjectInventory, `[1]`, "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := DecodePayload(tt.typ, []byte(tt.in))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("DecodePayload: %v", err)
				}
				if p.EvidenceType() != tt.typ {
					t.Fatalf("decoded a %s, want %s", p.EvidenceType(), tt.typ)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("DecodePayload error = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

// TestItemJSONRoundTrip checks that items survive a Temporal/JSON hop with payload, provenance and
// fingerprint intact.
func TestItemJSONRoundTrip(t *testing.T) {
	remediation, _ := remediationOf(t, fullSync())
	for _, it := range []Item{inventoryItem(), volumeItem(), ticketItem(), sampleItem(), remediation} {
		t.Run(string(it.Type), func(t *testing.T) {
			b, err := json.Marshal(it)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			var back Item
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("Unmarshal %s: %v", b, err)
			}
			if !reflect.DeepEqual(back, it) {
				t.Fatalf("round trip changed the item:\n got %#v\nwant %#v", back, it)
			}
			if mustFingerprint(t, testConn, back) != mustFingerprint(t, testConn, it) {
				t.Fatal("round trip changed the fingerprint")
			}
		})
	}
	var it Item
	if err := json.Unmarshal([]byte(`{"type":"jira.project_inventory","subject":"https://a.example","payload":{"project_count":1},"provenance":{},"extra":1}`), &it); err == nil {
		t.Fatal("unknown item field accepted")
	}
	if err := json.Unmarshal([]byte(`{"type":"jira.project_inventory","subject":"https://a.example","payload":{"project_count":1.5},"provenance":{}}`), &it); err == nil {
		t.Fatal("non-integer payload accepted")
	}
	if _, err := json.Marshal(Item{Type: TypeProjectInventory}); err == nil {
		t.Fatal("item without payload marshalled")
	}
}

func TestItemValidateProvenance(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Provenance)
		field string
	}{
		{"no queries", func(p *Provenance) { p.Queries = nil }, "provenance.queries"},
		{"unknown purpose", func(p *Provenance) { p.Queries[0].Purpose = "other" }, "provenance.queries[0].purpose"},
		{"bad hash", func(p *Provenance) { p.Queries[0].ResponseSHA256 = strings.ToUpper(hashA) }, "provenance.queries[0].response_sha256"},
		{"short hash", func(p *Provenance) { p.Queries[0].ResponseSHA256 = "abc" }, "provenance.queries[0].response_sha256"},
		{"half a window", func(p *Provenance) { p.WindowTo = time.Time{} }, "provenance.window_from"},
		{"inverted window", func(p *Provenance) { p.WindowFrom, p.WindowTo = p.WindowTo, p.WindowFrom }, "provenance.window_from"},
		{"no version", func(p *Provenance) { p.ConnectorVersion = " " }, "provenance.connector_version"},
		{"no collected-at", func(p *Provenance) { p.CollectedAt = time.Time{} }, "provenance.collected_at"},
	}
	if err := ticketItem().Validate(); err != nil {
		t.Fatalf("valid item rejected: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it := ticketItem()
			tt.edit(&it.Provenance)
			err := it.Validate()
			var ve *ValidationError
			if !errors.As(err, &ve) || !ve.Has(tt.field) {
				t.Fatalf("Validate() = %v, want a problem with %q", err, tt.field)
			}
			// Provenance problems never block fingerprinting: they are not part of the content.
			if _, err := Fingerprint(testConn, it); err != nil {
				t.Fatalf("Fingerprint failed on a provenance problem: %v", err)
			}
		})
	}
}

func TestNormalizeSiteURL(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "https://acme.atlassian.net", want: "https://acme.atlassian.net"},
		{in: "HTTPS://Acme.Atlassian.NET/", want: "https://acme.atlassian.net"},
		{in: "https://acme.atlassian.net:443//", want: "https://acme.atlassian.net"},
		{in: "http://jira.internal:80/jira/", want: "http://jira.internal/jira"},
		{in: "http://127.0.0.1:8085", want: "http://127.0.0.1:8085"},
		{in: "https://[::1]:8443/", want: "https://[::1]:8443"},
		{in: "https://jira.example.com/My%20Jira", want: "https://jira.example.com/My%20Jira"},
		{in: "", wantErr: true},
		{in: "acme.atlassian.net", wantErr: true},
		{in: "ftp://acme.atlassian.net", wantErr: true},
		{in: "https://user:secret@acme.atlassian.net", wantErr: true},
		{in: "https://acme.atlassian.net/?x=1", wantErr: true},
		{in: "https://acme.atlassian.net/?", wantErr: true},
		{in: "https://acme.atlassian.net/#frag", wantErr: true},
		{in: "https:acme", wantErr: true},
		{in: "https://", wantErr: true},
	}
	for _, tt := range tests {
		got, err := NormalizeSiteURL(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("NormalizeSiteURL(%q) = %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeSiteURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
		if again, err := NormalizeSiteURL(got); err != nil || again != got {
			t.Errorf("NormalizeSiteURL not idempotent on %q: %q, %v", got, again, err)
		}
	}
}

func TestSecretNeverInSiteError(t *testing.T) {
	_, err := NormalizeSiteURL("https://bob:hunter2@acme.atlassian.net")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v leaks the credential", err)
	}
}

func TestIssueKeys(t *testing.T) {
	for key, want := range map[string]bool{
		"SEC-1": true, "AB_2-10": true, "sec-7": true, "A-1": true,
		"": false, "SEC": false, "SEC-": false, "-1": false, "SEC-0": false, "SEC-01": false,
		"1SEC-1": false, "_S-1": false, "SE C-1": false, "SEC-1a": false, "SEC--1": false, "SÉC-1": false,
	} {
		if got := isIssueKey(key); got != want {
			t.Errorf("isIssueKey(%q) = %t, want %t", key, got, want)
		}
	}
}

// FuzzDecodePayload checks that decoding stored payloads never panics and that whatever decodes
// re-encodes to exactly the canonical form of its input, so it fingerprints like the stored row.
func FuzzDecodePayload(f *testing.F) {
	f.Add(uint8(0), []byte(`{"project_count":42}`))
	f.Add(uint8(1), []byte(`{"total_jql":"a","total_count":2,"open_jql":"b","open_count":1}`))
	f.Add(uint8(2), []byte(`{"key":"A-1","summary":"s","resolution":"Done","resolved":"2025-03-01T10:30:00.000Z","priority":"","assignee":"","link":"https://x.example/browse/A-1"}`))
	f.Add(uint8(3), []byte(`{"jql":"x","window_seconds":60,"requested":5,"returned":1,"keys":["A-1"],"empty":false}`))
	f.Add(uint8(4), []byte(`{"empty":false,"jql":"labels = x","oldest_open":{"created":"2024-08-15T09:00:00.000Z","key":"SEC-100","priority":"Medium"},`+
		`"other_priorities":0,"priorities":[{"median_seconds":60,"open_past_sla":1,"p90_seconds":120,"priority":"High","sampled":2,"sla_seconds":3600,"within_sla":2},`+
		`{"median_seconds":null,"open_past_sla":0,"p90_seconds":null,"priority":"Low","sampled":0,"sla_seconds":7200,"within_sla":0}],`+
		`"resolved":2,"sample_complete":true,"sampled":2,"window_seconds":86400}`))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		typ := Types()[int(which)%len(Types())]
		p, err := DecodePayload(typ, data)
		if err != nil {
			return
		}
		canon, err := Canonicalize(data)
		if err != nil {
			t.Fatalf("decoded a payload that does not canonicalise: %v", err)
		}
		again, err := CanonicalPayload(p)
		if err != nil {
			t.Fatalf("decoded payload does not re-encode: %v", err)
		}
		if string(again) != string(canon) {
			t.Fatalf("re-encoding differs:\n got %s\nwant %s", again, canon)
		}
	})
}
