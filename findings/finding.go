package findings

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Severity is a finding's severity. The values are ordered: info < low < medium < high <
// critical; compare them with Rank or AtLeast, never as strings.
type Severity string

// Severities, lowest first.
const (
	SeverityInfo     Severity = "info"
	SeverityLow      Severity = "low"
	SeverityMedium   Severity = "medium"
	SeverityHigh     Severity = "high"
	SeverityCritical Severity = "critical"
)

// Severities lists every severity in ascending order.
func Severities() []Severity {
	return []Severity{SeverityInfo, SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical}
}

// Rank is the severity's position in the order, 1 (info) to 5 (critical), or 0 for a value that
// is not a severity, so that an invalid severity never meets a threshold.
func (s Severity) Rank() int {
	switch s {
	case SeverityInfo:
		return 1
	case SeverityLow:
		return 2
	case SeverityMedium:
		return 3
	case SeverityHigh:
		return 4
	case SeverityCritical:
		return 5
	}
	return 0
}

// Valid reports whether s is one of the defined severities.
func (s Severity) Valid() bool { return s.Rank() > 0 }

// AtLeast reports whether s is at or above threshold. Invalid values on either side are never
// at least anything: a corrupt severity or threshold must not push findings to Jira.
func (s Severity) AtLeast(threshold Severity) bool {
	return s.Valid() && threshold.Valid() && s.Rank() >= threshold.Rank()
}

// Status is a finding's lifecycle status.
type Status string

// Statuses.
const (
	StatusOpen          Status = "open"
	StatusTriaged       Status = "triaged"
	StatusResolved      Status = "resolved"
	StatusAccepted      Status = "accepted"
	StatusFalsePositive Status = "false_positive"
)

// Statuses lists every status in a fixed order, which is also the order in which status-map
// entries are matched (so that matching never depends on map iteration order).
func Statuses() []Status {
	return []Status{StatusOpen, StatusTriaged, StatusResolved, StatusAccepted, StatusFalsePositive}
}

// Valid reports whether s is one of the defined statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusOpen, StatusTriaged, StatusResolved, StatusAccepted, StatusFalsePositive:
		return true
	}
	return false
}

// Limits on finding fields. They bound what one finding can cost in Postgres, in workflow
// payloads and in the Jira issue (Jira's rich-text fields hold 32,767 characters by default, so the
// excerpt must leave room for the rest of the description).
const (
	MaxExternalIDLen   = 256 // runes
	MaxTitleLen        = 500 // runes; the Jira summary is shortened further (SummaryMaxUTF16)
	MaxProbeIDLen      = 200 // runes
	MaxScanIDLen       = 200 // runes
	MaxFrameworkRefs   = 32
	MaxFrameworkRefLen = 64 // bytes (references are ASCII)
	MaxExcerptBytes    = 16 << 10
)

// frameworkRefPattern accepts references such as OWASP_LLM01, MITRE_ATLAS_AML_T0051,
// EU_AI_ACT_Art15, NIST_AI_RMF_MAP-1.1 or ISO_42001_A.6.2: an upper-case framework prefix and one
// or more underscore-separated parts of letters and digits (dots and hyphens allowed inside a
// part). The shape keeps references usable verbatim as Jira labels and multi-select options.
var frameworkRefPattern = regexp.MustCompile(`^[A-Z][A-Z0-9]*(?:_[A-Za-z0-9]+(?:[.\-][A-Za-z0-9]+)*)+$`)

// ValidFrameworkRef reports whether ref is a well-formed framework reference.
func ValidFrameworkRef(ref string) bool {
	return len(ref) <= MaxFrameworkRefLen && frameworkRefPattern.MatchString(ref)
}

// Finding is a security finding reported by a scanner. The JSON names are the API's.
type Finding struct {
	// ID is jiraconnect's id, assigned on first upsert; Validate does not require it because
	// clients do not send it.
	ID uuid.UUID `json:"id"`
	// ExternalID is the scanner's id, the upsert key within an organization.
	ExternalID    string   `json:"external_id"`
	Title         string   `json:"title"`
	Severity      Severity `json:"severity"`
	Status        Status   `json:"status"`
	ProbeID       string   `json:"probe_id,omitempty"`
	ScanID        string   `json:"scan_id,omitempty"`
	FrameworkRefs []string `json:"framework_refs,omitempty"`
	// Excerpt is the evidence text (model output, prompt, log lines). It may hold secrets or
	// personal data; it is stored as received and redacted (Redact) before it leaves for Jira.
	Excerpt string `json:"excerpt,omitempty" text:"multiline"`
}

// FieldError is a validation error naming the offending field as the API spells it
// ("title", "framework_refs[2]", "finding_sync.project_key").
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Normalize returns f with surrounding whitespace trimmed from its single-line fields and
// framework references, and exact duplicate references removed (first occurrence kept). The API
// normalizes before validating so that harmless client sloppiness is not an error; Validate
// still rejects duplicates for callers that skip this step.
func (f Finding) Normalize() Finding {
	f.ExternalID = strings.TrimSpace(f.ExternalID)
	f.Title = strings.TrimSpace(f.Title)
	f.ProbeID = strings.TrimSpace(f.ProbeID)
	f.ScanID = strings.TrimSpace(f.ScanID)
	if f.FrameworkRefs != nil {
		refs := make([]string, 0, len(f.FrameworkRefs))
		seen := make(map[string]bool, len(f.FrameworkRefs))
		for _, r := range f.FrameworkRefs {
			r = strings.TrimSpace(r)
			if seen[r] {
				continue
			}
			seen[r] = true
			refs = append(refs, r)
		}
		f.FrameworkRefs = refs
	}
	return f
}

// Validate checks every field and returns the first problem, in field order, as a *FieldError.
func (f Finding) Validate() error {
	if err := checkLine("external_id", f.ExternalID, true, MaxExternalIDLen); err != nil {
		return err
	}
	if err := checkLine("title", f.Title, true, MaxTitleLen); err != nil {
		return err
	}
	if !f.Severity.Valid() {
		return fieldErr("severity", "must be one of info, low, medium, high, critical")
	}
	if !f.Status.Valid() {
		return fieldErr("status", "must be one of open, triaged, resolved, accepted, false_positive")
	}
	if err := checkLine("probe_id", f.ProbeID, false, MaxProbeIDLen); err != nil {
		return err
	}
	if err := checkLine("scan_id", f.ScanID, false, MaxScanIDLen); err != nil {
		return err
	}
	if err := checkFrameworkRefs(f.FrameworkRefs); err != nil {
		return err
	}
	switch {
	case len(f.Excerpt) > MaxExcerptBytes:
		return fieldErr("excerpt", "must be at most %d bytes", MaxExcerptBytes)
	case !utf8.ValidString(f.Excerpt):
		return fieldErr("excerpt", "must be valid UTF-8")
	case strings.ContainsRune(f.Excerpt, 0):
		// Postgres text columns cannot store NUL.
		return fieldErr("excerpt", "must not contain NUL characters")
	}
	return nil
}

func checkFrameworkRefs(refs []string) error {
	if len(refs) > MaxFrameworkRefs {
		return fieldErr("framework_refs", "must have at most %d references", MaxFrameworkRefs)
	}
	first := make(map[string]int, len(refs))
	for i, r := range refs {
		field := fmt.Sprintf("framework_refs[%d]", i)
		if !ValidFrameworkRef(r) {
			return fieldErr(field, "%s is not a framework reference such as OWASP_LLM01 or MITRE_ATLAS_AML_T0051 (upper-case framework prefix, underscore-separated parts, at most %d characters)", quoteShort(r), MaxFrameworkRefLen)
		}
		if j, dup := first[r]; dup {
			return fieldErr(field, "duplicates framework_refs[%d]", j)
		}
		first[r] = i
	}
	return nil
}

// checkLine validates a single-line text field: valid UTF-8, no control or bidirectional-override
// characters (which would let a title render differently from what it says), at most maxRunes,
// and non-blank when required.
func checkLine(field, s string, required bool, maxRunes int) error {
	if strings.TrimSpace(s) == "" {
		if required {
			return fieldErr(field, "is required")
		}
		if s == "" {
			return nil
		}
		return fieldErr(field, "must not be only whitespace")
	}
	if !utf8.ValidString(s) {
		return fieldErr(field, "must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(s); n > maxRunes {
		return fieldErr(field, "must be at most %d characters (got %d)", maxRunes, n)
	}
	if i := strings.IndexFunc(s, badLineRune); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		return fieldErr(field, "must be a single line without control characters (found %U at byte %d)", r, i)
	}
	return nil
}

// badLineRune reports characters not allowed in single-line fields: C0/C1 controls (including
// newline and tab), the Unicode line and paragraph separators, and bidirectional controls.
func badLineRune(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r)
}

// quoteShort quotes s for an error message, shortened so that an oversized input does not
// produce an oversized error.
func quoteShort(s string) string {
	const max = 40
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max]) + "…"
	}
	return fmt.Sprintf("%q", s)
}
