package findings

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/jira/jql"
)

// MaxLabelUTF16 is Jira's label length limit. Jira counts Java characters (UTF-16 code units), so
// a label of astral-plane characters holds half as many of them.
const MaxLabelUTF16 = 255

// SanitizeLabel turns s into a valid Jira label: surrounding whitespace is trimmed, each run of
// whitespace or control characters inside becomes one underscore (Jira splits labels on spaces,
// so "EU AI Act" would otherwise become three labels), invalid UTF-8 becomes U+FFFD, and the result
// is cut to MaxLabelUTF16 code units on a character boundary. It returns "" when nothing is left.
func SanitizeLabel(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	sep := func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '\u2028' || r == '\u2029' }
	parts := strings.FieldsFunc(s, sep)
	return truncateUTF16(strings.Join(parts, "_"), MaxLabelUTF16)
}

// truncateUTF16 cuts s to at most max UTF-16 code units without splitting a character.
func truncateUTF16(s string, max int) string {
	n := 0
	for i, r := range s {
		w := utf16.RuneLen(r)
		if w < 0 {
			w = 1
		}
		if n+w > max {
			return s[:i]
		}
		n += w
	}
	return s
}

// utf16Len is the length of s in UTF-16 code units, the unit of Jira's field limits.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		if w := utf16.RuneLen(r); w > 0 {
			n += w
		} else {
			n++
		}
	}
	return n
}

// Scope identifies whose issue a finding's issue is: the organization and the connection it is
// synced through. It is part of the issue marker.
type Scope struct {
	OrgID        uuid.UUID
	ConnectionID uuid.UUID
}

func (s Scope) validate() error {
	if s.OrgID == uuid.Nil || s.ConnectionID == uuid.Nil {
		return fmt.Errorf("issue scope needs an organization and a connection id")
	}
	return nil
}

// markerPrefix starts every issue marker label; configured labels may not use it.
const markerPrefix = "jc-"

// markerDomain separates marker hashes from any other use of SHA-256 over the same ids, and
// versions the scheme: changing it would make retries miss issues created under the old one.
const markerDomain = "jiraconnect/issue-marker/v1"

// IssueMarker is the label that marks the issue of one finding on one connection, so that a
// retried create can find an issue whose creation response was lost: "jc-" and the first 16 hex
// digits (64 bits) of SHA-256(domain, org, connection, finding). Collisions within a site would
// need billions of findings. The label reveals nothing but that the issue came from jiraconnect.
func IssueMarker(scope Scope, findingID uuid.UUID) string {
	h := sha256.New()
	h.Write([]byte(markerDomain))
	h.Write([]byte{0})
	h.Write(scope.OrgID[:])
	h.Write(scope.ConnectionID[:])
	h.Write(findingID[:])
	return markerPrefix + hex.EncodeToString(h.Sum(nil)[:8])
}

// IsIssueMarker reports whether label has the shape of an issue marker.
func IsIssueMarker(label string) bool {
	rest, ok := strings.CutPrefix(label, markerPrefix)
	if !ok || len(rest) != 16 {
		return false
	}
	_, err := hex.DecodeString(rest)
	return err == nil && strings.ToLower(rest) == rest
}

// MarkerQuery is the JQL that finds the issue carrying marker in the configured project:
// project = "KEY" AND labels = "jc-…". Build it with jql.Query{Where: …}.Build().
//
// On Jira Cloud the search is eventually consistent, so an issue created moments before may not be
// returned yet. A create retry should therefore only conclude "no issue exists" after the
// ambiguous attempt is older than the search lag (or after a second search later), never from a
// single search made right after a lost response.
func MarkerQuery(projectKey, marker string) jql.Clause {
	return jql.And(jql.Eq("project", projectKey), jql.Eq("labels", marker))
}

// IssueLabels returns the labels of a finding's issue, in order and without duplicates: the
// configured labels, one sanitized label per framework reference, then the issue marker.
func IssueLabels(scope Scope, f Finding, cfg SyncConfig) []string {
	out := make([]string, 0, len(cfg.Labels)+len(f.FrameworkRefs)+1)
	seen := map[string]bool{}
	add := func(l string) {
		if l == "" || seen[l] || !utf8.ValidString(l) {
			return
		}
		seen[l] = true
		out = append(out, l)
	}
	for _, l := range cfg.Labels {
		add(SanitizeLabel(l))
	}
	for _, r := range f.FrameworkRefs {
		add(SanitizeLabel(r))
	}
	add(IssueMarker(scope, f.ID))
	return out
}
