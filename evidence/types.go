package evidence

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Type names a kind of evidence. The string values are stored in Postgres and referenced by the
// control catalogue, so they are part of the schema: never rename one, add a new type instead.
type Type string

const (
	// TypeProjectInventory is the number of projects the connection can see on the site.
	TypeProjectInventory Type = "jira.project_inventory"
	// TypeTicketVolume is the total and open ticket counts, each with the JQL that produced it.
	TypeTicketVolume Type = "jira.ticket_volume"
	// TypeResolvedSecurityTicket is one recently resolved security ticket (one row per ticket).
	TypeResolvedSecurityTicket Type = "jira.resolved_security_ticket"
	// TypeSecurityTicketSample summarises the resolved-ticket sample: how it was drawn and which
	// tickets it returned. It exists so that an empty sample is recorded as such, rather than
	// leaving no trace that the question was asked.
	TypeSecurityTicketSample Type = "jira.security_ticket_sample"
	// TypeSecurityRemediation is how security tickets were remediated over a rolling window:
	// resolutions, time to resolve per priority against its SLA, tickets open past their SLA and
	// the oldest open one (see SecurityRemediation).
	TypeSecurityRemediation Type = "jira.security_remediation"
)

// Types returns every evidence type, in a fixed order.
func Types() []Type {
	return []Type{TypeProjectInventory, TypeTicketVolume, TypeSecurityTicketSample, TypeResolvedSecurityTicket, TypeSecurityRemediation}
}

// Valid reports whether t is one of the types this package defines.
func (t Type) Valid() bool {
	switch t {
	case TypeProjectInventory, TypeTicketVolume, TypeResolvedSecurityTicket, TypeSecurityTicketSample, TypeSecurityRemediation:
		return true
	}
	return false
}

// Payload is the typed content of an evidence item. It is a closed set (the unexported method keeps
// other packages from adding kinds the catalogue and fingerprints know nothing about):
// [ProjectInventory], [TicketVolume], [ResolvedSecurityTicket], [SecurityTicketSample] and
// [SecurityRemediation].
//
// Every payload field is always encoded (no omitempty), so a payload has exactly one canonical
// form and a missing field in a stored row is detectable — except a field added to a type after
// rows of it were stored, whose zero value means "as before" (SecurityTicketSample.Incomplete):
// it is omitted when zero, so the rows stored before it keep their fingerprints.
type Payload interface {
	// EvidenceType is the Type this payload belongs to.
	EvidenceType() Type
	// IsEmpty reports whether the observation proves nothing: a fetch that succeeded but found
	// nothing to show (zero projects, zero tickets, an empty sample). Empty items are recorded,
	// because "we looked and found nothing" is itself worth keeping, but they never count as
	// compliance evidence.
	IsEmpty() bool
	validate(v *validator, field string)
}

// ProjectInventory is the payload of TypeProjectInventory.
type ProjectInventory struct {
	ProjectCount int64 `json:"project_count"`
}

// EvidenceType implements Payload.
func (ProjectInventory) EvidenceType() Type { return TypeProjectInventory }

// IsEmpty implements Payload: a site where the connection sees no projects almost always means
// the connection lacks browse permission, not that the organisation tracks no work.
func (p ProjectInventory) IsEmpty() bool { return p.ProjectCount == 0 }

func (p ProjectInventory) validate(v *validator, field string) {
	v.count(field+".project_count", p.ProjectCount)
}

// TicketVolume is the payload of TypeTicketVolume. The JQL is part of the content, not only of the
// provenance, because a count means nothing without the query that defines it.
type TicketVolume struct {
	TotalJQL   string `json:"total_jql"`
	TotalCount int64  `json:"total_count"`
	OpenJQL    string `json:"open_jql"`
	OpenCount  int64  `json:"open_count"`
}

// EvidenceType implements Payload.
func (TicketVolume) EvidenceType() Type { return TypeTicketVolume }

// IsEmpty implements Payload: zero tickets in total shows no tracked work. Zero open tickets with a
// non-zero total is a legitimate (good) state and is not empty.
func (p TicketVolume) IsEmpty() bool { return p.TotalCount == 0 }

func (p TicketVolume) validate(v *validator, field string) {
	v.text(field+".total_jql", p.TotalJQL, true)
	v.text(field+".open_jql", p.OpenJQL, true)
	v.count(field+".total_count", p.TotalCount)
	v.count(field+".open_count", p.OpenCount)
	if p.OpenCount > p.TotalCount {
		v.add(field+".open_count", "open count %d exceeds total count %d", p.OpenCount, p.TotalCount)
	}
}

// ResolvedSecurityTicket is the payload of TypeResolvedSecurityTicket.
type ResolvedSecurityTicket struct {
	Key        string    `json:"key"`
	Summary    string    `json:"summary"`
	Resolution string    `json:"resolution"`
	Resolved   Timestamp `json:"resolved"`
	Priority   string    `json:"priority"` // empty when the site has no priority field on the ticket
	Assignee   string    `json:"assignee"` // display name; empty when unassigned
	Link       string    `json:"link"`     // browse URL of the ticket
}

// EvidenceType implements Payload.
func (ResolvedSecurityTicket) EvidenceType() Type { return TypeResolvedSecurityTicket }

// IsEmpty implements Payload: a resolved ticket always shows something was handled.
func (ResolvedSecurityTicket) IsEmpty() bool { return false }

func (p ResolvedSecurityTicket) validate(v *validator, field string) {
	v.issueKey(field+".key", p.Key)
	v.text(field+".summary", p.Summary, true)
	v.text(field+".resolution", p.Resolution, true)
	v.timestamp(field+".resolved", p.Resolved)
	v.text(field+".priority", p.Priority, false)
	v.text(field+".assignee", p.Assignee, false)
	v.link(field+".link", p.Link)
}

// SecurityTicketSample is the payload of TypeSecurityTicketSample.
//
// The window is recorded as a length, not as absolute bounds: the JQL is relative ("resolved >=
// -30d"), and absolute bounds would make the same sample a new evidence row every day. The absolute
// bounds are kept in the item's Provenance. Keys are sorted so that the order Jira returned them
// in does not change the fingerprint. Empty is redundant with Returned == 0 and is stored anyway so
// that anyone reading the row (or writing SQL over it) sees that the sample proves nothing.
// Incomplete, when set, says why the sample stopped before it was full or reached Jira's last page
// (the page bound); such a sample is recorded as it was read but does not count as evidence. It is
// left out of the encoding when empty, so complete samples keep their fingerprints.
type SecurityTicketSample struct {
	JQL           string   `json:"jql"`
	WindowSeconds int64    `json:"window_seconds"`
	Requested     int64    `json:"requested"`
	Returned      int64    `json:"returned"`
	Keys          []string `json:"keys"`
	Empty         bool     `json:"empty"`
	Incomplete    string   `json:"incomplete,omitempty"`
}

// EvidenceType implements Payload.
func (SecurityTicketSample) EvidenceType() Type { return TypeSecurityTicketSample }

// IsEmpty implements Payload.
func (p SecurityTicketSample) IsEmpty() bool { return p.Empty || p.Returned == 0 || p.Incomplete != "" }

// MarshalJSON encodes Keys as [] rather than null when there are none, so that a nil and an empty
// slice (which mean the same thing) cannot produce two fingerprints.
func (p SecurityTicketSample) MarshalJSON() ([]byte, error) {
	type plain SecurityTicketSample
	if p.Keys == nil {
		p.Keys = []string{}
	}
	return json.Marshal(plain(p))
}

func (p SecurityTicketSample) validate(v *validator, field string) {
	v.text(field+".jql", p.JQL, true)
	if p.WindowSeconds <= 0 {
		v.add(field+".window_seconds", "must be positive, got %d", p.WindowSeconds)
	}
	if p.Requested <= 0 || p.Requested > MaxSampleSize {
		v.add(field+".requested", "must be between 1 and %d, got %d", MaxSampleSize, p.Requested)
	}
	v.count(field+".returned", p.Returned)
	if p.Returned > p.Requested {
		v.add(field+".returned", "returned %d exceeds requested %d", p.Returned, p.Requested)
	}
	if int64(len(p.Keys)) != p.Returned {
		v.add(field+".keys", "has %d keys but returned is %d", len(p.Keys), p.Returned)
	}
	for i, k := range p.Keys {
		v.issueKey(fmt.Sprintf("%s.keys[%d]", field, i), k)
		if i > 0 && k <= p.Keys[i-1] {
			v.add(fmt.Sprintf("%s.keys[%d]", field, i), "keys must be sorted and unique (%q after %q)", k, p.Keys[i-1])
		}
	}
	if p.Empty != (p.Returned == 0) {
		v.add(field+".empty", "is %t but returned is %d", p.Empty, p.Returned)
	}
	v.text(field+".incomplete", p.Incomplete, false)
	if len(p.Incomplete) > maxReasonLen {
		v.add(field+".incomplete", "must be at most %d bytes", maxReasonLen)
	}
}

// maxReasonLen bounds a recorded reason, so evidence stays small whatever an error says.
const maxReasonLen = 500

// MaxSampleSize bounds the resolved-ticket sample. A sync's Jira call count must not grow with the
// site's size, and a sample larger than this is a configuration mistake rather than evidence.
const MaxSampleSize = 1000

// MaxClockSkew is how far into the future (relative to the collector's clock) a time reported by
// Jira may be before it is treated as invalid. Jira's clock and ours are not the same clock.
const MaxClockSkew = 5 * time.Minute

// timestampLayout is RFC 3339 in UTC with exactly three fractional digits. Jira reports times to
// the millisecond, and a fixed precision means one instant has one spelling.
const timestampLayout = "2006-01-02T15:04:05.000Z"

// Timestamp is an instant as evidence payloads carry it: UTC, truncated to the millisecond, and
// encoded as RFC 3339 with exactly three fractional digits ("2025-03-01T09:30:00.000Z"). Using a
// dedicated type instead of time.Time keeps time zones and nanoseconds out of fingerprints: the
// same instant reported as 10:00+01:00 or 09:00Z fingerprints identically.
type Timestamp struct {
	t time.Time
}

// NewTimestamp converts t to a Timestamp (UTC, truncated to the millisecond).
func NewTimestamp(t time.Time) Timestamp {
	if t.IsZero() {
		return Timestamp{}
	}
	return Timestamp{t: t.UTC().Truncate(time.Millisecond)}
}

// Time returns the instant in UTC.
func (ts Timestamp) Time() time.Time { return ts.t }

// IsZero reports whether the timestamp is unset.
func (ts Timestamp) IsZero() bool { return ts.t.IsZero() }

// String returns the canonical encoding, or "" for the zero Timestamp.
func (ts Timestamp) String() string {
	if ts.t.IsZero() {
		return ""
	}
	return ts.t.Format(timestampLayout)
}

// MarshalJSON encodes the canonical form. A zero or out-of-range timestamp is an error rather than
// "0001-01-01T00:00:00.000Z", so an unset time can never be fingerprinted as if it were data.
func (ts Timestamp) MarshalJSON() ([]byte, error) {
	if ts.t.IsZero() {
		return nil, fmt.Errorf("evidence: zero timestamp")
	}
	if y := ts.t.Year(); y < 1 || y > 9999 {
		return nil, fmt.Errorf("evidence: timestamp year %d outside 0001..9999", y)
	}
	return json.Marshal(ts.String())
}

// UnmarshalJSON accepts only the canonical form, so that a decoded payload re-encodes to the same
// bytes (and therefore the same fingerprint) as the row it was read from.
func (ts *Timestamp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("evidence: timestamp must be a string: %w", err)
	}
	t, err := time.Parse(timestampLayout, s)
	if err != nil || t.Format(timestampLayout) != s {
		return fmt.Errorf("evidence: timestamp %q is not in the form %s", s, timestampLayout)
	}
	ts.t = t
	return nil
}

// Query records one Jira call that contributed to an item.
type Query struct {
	Purpose        string `json:"purpose"`         // one of the Purpose* constants
	JQL            string `json:"jql,omitempty"`   // empty for calls that take no JQL (project search)
	ResponseSHA256 string `json:"response_sha256"` // lower-case hex sha256 of the response body bytes
	// Approximate marks a count that is Jira's estimate (Cloud's search/approximate-count) rather
	// than an exact figure. Omitted when false, so provenance stored before it reads the same.
	Approximate bool `json:"approximate,omitempty"`
}

// Query purposes, naming which part of a sync a Jira call served.
const (
	PurposeProjectCount   = "project_count"
	PurposeTotalCount     = "total_count"
	PurposeOpenCount      = "open_count"
	PurposeResolvedSample = "resolved_sample"
	// The security-remediation queries (TypeSecurityRemediation).
	PurposeRemediationResolvedCount = "remediation_resolved_count"
	PurposeRemediationSample        = "remediation_resolved_sample"
	PurposeRemediationOpenPastSLA   = "remediation_open_past_sla"
	PurposeRemediationOldestOpen    = "remediation_oldest_open"
)

// Provenance is how and when an item was obtained. It is stored with the evidence row but is not
// part of the fingerprint: the same content fetched on another day (different collected-at,
// window and response hash) is the same evidence, observed again.
//
// An item can come from several calls (ticket volume needs a total and an open count), so the JQL
// and response hash are recorded per call in Queries.
type Provenance struct {
	Queries          []Query   `json:"queries"`
	WindowFrom       time.Time `json:"window_from,omitzero"` // zero for items that are not windowed
	WindowTo         time.Time `json:"window_to,omitzero"`
	ConnectorVersion string    `json:"connector_version"`
	CollectedAt      time.Time `json:"collected_at"`
}

// Item is one piece of evidence: a Type, the Subject it is about (the site URL, or the ticket key
// for a resolved ticket), its Payload and its Provenance.
type Item struct {
	Type       Type
	Subject    string
	Payload    Payload
	Provenance Provenance
}

// CountsAsEvidence reports whether the item can satisfy a control. It depends on the payload only,
// so it can be recomputed from a stored row and never disagrees with the fingerprinted content.
func (it Item) CountsAsEvidence() bool {
	return it.Payload != nil && !it.Payload.IsEmpty()
}

// Validate checks the whole item, content and provenance.
func (it Item) Validate() error {
	var v validator
	it.validateContent(&v)
	it.Provenance.validate(&v, "provenance")
	return v.err()
}

// validateContent checks exactly the parts that are fingerprinted.
func (it Item) validateContent(v *validator) {
	if !it.Type.Valid() {
		v.add("type", "unknown evidence type %q", it.Type)
	}
	if it.Payload == nil {
		v.add("payload", "is missing")
	} else {
		if it.Payload.EvidenceType() != it.Type {
			v.add("payload", "is a %s payload but the item type is %q", it.Payload.EvidenceType(), it.Type)
		}
		it.Payload.validate(v, "payload")
	}
	switch it.Type {
	case TypeResolvedSecurityTicket:
		if p, ok := it.Payload.(ResolvedSecurityTicket); ok && it.Subject != p.Key {
			v.add("subject", "must be the ticket key %q, got %q", p.Key, it.Subject)
		}
	case TypeProjectInventory, TypeTicketVolume, TypeSecurityTicketSample, TypeSecurityRemediation:
		// The subject must already be in normal form: normalising here would make two different
		// stored subjects share one fingerprint.
		if norm, err := NormalizeSiteURL(it.Subject); err != nil {
			v.add("subject", "%v", err)
		} else if norm != it.Subject {
			v.add("subject", "site URL %q is not normalised (want %q)", it.Subject, norm)
		}
	}
}

func (p Provenance) validate(v *validator, field string) {
	if len(p.Queries) == 0 {
		v.add(field+".queries", "is empty")
	}
	for i, q := range p.Queries {
		f := fmt.Sprintf("%s.queries[%d]", field, i)
		switch q.Purpose {
		case PurposeTotalCount, PurposeOpenCount, PurposeRemediationResolvedCount, PurposeRemediationOpenPastSLA:
		case PurposeProjectCount, PurposeResolvedSample, PurposeRemediationSample, PurposeRemediationOldestOpen:
			if q.Approximate {
				v.add(f+".approximate", "only a ticket count can be approximate, not %q", q.Purpose)
			}
		default:
			v.add(f+".purpose", "unknown purpose %q", q.Purpose)
		}
		v.text(f+".jql", q.JQL, false)
		v.sha256Hex(f+".response_sha256", q.ResponseSHA256)
	}
	if p.WindowFrom.IsZero() != p.WindowTo.IsZero() {
		v.add(field+".window_from", "window_from and window_to must both be set or both be zero")
	} else if !p.WindowFrom.IsZero() && !p.WindowFrom.Before(p.WindowTo) {
		v.add(field+".window_from", "must be before window_to")
	}
	v.text(field+".connector_version", p.ConnectorVersion, true)
	if p.CollectedAt.IsZero() {
		v.add(field+".collected_at", "is missing")
	}
}

// itemJSON is the wire form of an Item, used when items cross a Temporal payload or an API
// response. The payload is embedded in canonical form so that a round trip cannot change the
// fingerprint.
type itemJSON struct {
	Type       Type            `json:"type"`
	Subject    string          `json:"subject"`
	Payload    json.RawMessage `json:"payload"`
	Provenance Provenance      `json:"provenance"`
}

// MarshalJSON encodes the item with its payload in canonical form.
func (it Item) MarshalJSON() ([]byte, error) {
	if it.Payload == nil {
		return nil, fmt.Errorf("evidence: item %s %q has no payload", it.Type, it.Subject)
	}
	payload, err := CanonicalPayload(it.Payload)
	if err != nil {
		return nil, err
	}
	return json.Marshal(itemJSON{Type: it.Type, Subject: it.Subject, Payload: payload, Provenance: it.Provenance})
}

// UnmarshalJSON decodes an item, decoding the payload strictly according to its type.
func (it *Item) UnmarshalJSON(b []byte) error {
	var w itemJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("evidence: decode item: %w", err)
	}
	p, err := DecodePayload(w.Type, w.Payload)
	if err != nil {
		return err
	}
	*it = Item{Type: w.Type, Subject: w.Subject, Payload: p, Provenance: w.Provenance}
	return nil
}

// NormalizeSiteURL returns the normal form of a Jira site (or Data Center base) URL, used as the
// subject of site-level evidence: lower-case scheme and host, no default port, no trailing slash.
// A context path (Data Center servers often live under /jira) is kept. URLs with credentials,
// a query or a fragment are rejected: a credential must never end up in an evidence subject, and
// a query or fragment would make one site look like many.
func NormalizeSiteURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("invalid site URL: %v", err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return "", fmt.Errorf("site URL must be http or https, got %q", raw)
	}
	if u.User != nil {
		return "", fmt.Errorf("site URL must not contain credentials")
	}
	if u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("site URL %q has no host", raw)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
		return "", fmt.Errorf("site URL %q must not have a query or fragment", raw)
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") { // IPv6 literal
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host + strings.TrimRight(u.EscapedPath(), "/"), nil
}

// isIssueKey reports whether s is a Jira issue key: a project key (a letter, then letters, digits
// or underscores) and a positive issue number. Lower case is accepted because some Data Center
// instances are configured with non-default project key patterns.
func isIssueKey(s string) bool {
	dash := strings.LastIndexByte(s, '-')
	if dash < 1 || dash == len(s)-1 {
		return false
	}
	project, number := s[:dash], s[dash+1:]
	for i := 0; i < len(project); i++ {
		c := project[i]
		letter := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '_')) {
			return false
		}
	}
	if number[0] == '0' {
		return false
	}
	for i := 0; i < len(number); i++ {
		if number[i] < '0' || number[i] > '9' {
			return false
		}
	}
	return true
}

// FieldError names one invalid input field and what is wrong with it.
type FieldError struct {
	Field   string // dotted path, e.g. "resolved.tickets[2].key"
	Problem string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Problem }

// ValidationError lists every problem found in an input, not just the first, so a broken
// collector can be fixed in one round. Callers detect it with errors.As.
type ValidationError struct {
	Problems []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Error()
	}
	return "invalid evidence input: " + strings.Join(parts, "; ")
}

// Has reports whether a problem was recorded for field.
func (e *ValidationError) Has(field string) bool {
	for _, p := range e.Problems {
		if p.Field == field {
			return true
		}
	}
	return false
}

// validator accumulates field problems.
type validator struct {
	problems []FieldError
}

func (v *validator) add(field, format string, args ...any) {
	v.problems = append(v.problems, FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
}

func (v *validator) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	return &ValidationError{Problems: v.problems}
}

func (v *validator) count(field string, n int64) {
	if n < 0 {
		v.add(field, "must not be negative, got %d", n)
	} else if n > maxSafeInteger {
		v.add(field, "%d is too large to encode exactly", n)
	}
}

// text checks that s is valid UTF-8 (encoding/json would silently replace invalid bytes, letting
// two different strings share a fingerprint) and, if required, not blank.
func (v *validator) text(field, s string, required bool) {
	switch {
	case !utf8.ValidString(s):
		v.add(field, "is not valid UTF-8")
	case required && strings.TrimSpace(s) == "":
		v.add(field, "is required")
	}
}

func (v *validator) issueKey(field, key string) {
	if key == "" {
		v.add(field, "is required")
	} else if !isIssueKey(key) {
		v.add(field, "%q is not a Jira issue key", key)
	}
}

func (v *validator) timestamp(field string, ts Timestamp) {
	if ts.IsZero() {
		v.add(field, "is missing")
	} else if y := ts.t.Year(); y < 1970 || y > 9999 {
		v.add(field, "year %d is out of range", y)
	}
}

func (v *validator) link(field, s string) {
	if s == "" {
		v.add(field, "is required")
		return
	}
	u, err := url.Parse(s)
	switch {
	case !utf8.ValidString(s) || err != nil:
		v.add(field, "is not a valid URL")
	case u.Scheme != "https" && u.Scheme != "http":
		v.add(field, "must be an absolute http(s) URL, got %q", s)
	case u.Host == "":
		v.add(field, "has no host")
	case u.User != nil:
		v.add(field, "must not contain credentials")
	}
}

func (v *validator) sha256Hex(field, s string) {
	if len(s) != 64 {
		v.add(field, "must be 64 lower-case hex characters, got %d characters", len(s))
		return
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			v.add(field, "must be lower-case hex")
			return
		}
	}
}
