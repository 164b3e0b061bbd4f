package findings

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jira/adf"
)

// SummaryMaxUTF16 is Jira's summary limit. Jira counts Java characters (UTF-16 code units), so
// the limit is applied in those units: 255 emoji would be 510 units and rejected.
const SummaryMaxUTF16 = 255

// Summary returns the issue summary for a title: prefix, a space, and the redacted title, on one
// line (control characters and line breaks become spaces, runs of spaces collapse), shortened to
// SummaryMaxUTF16 code units on a character boundary with a trailing "…" when it had to be cut.
func Summary(prefix, title string) string {
	s := singleLine(Redact(title))
	if p := singleLine(prefix); p != "" {
		s = p + " " + s
	}
	if utf16Len(s) <= SummaryMaxUTF16 {
		return s
	}
	return strings.TrimRightFunc(truncateUTF16(s, SummaryMaxUTF16-1), unicode.IsSpace) + "…"
}

// singleLine replaces every control, separator and bidirectional-control character with a space
// and collapses whitespace, so user text cannot break the summary onto several lines.
func singleLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if badLineRune(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	return strings.Join(strings.Fields(s), " ")
}

// BuildIssue returns the Jira issue for a finding: the summary (Summary), the description
// (Description), the labels (IssueLabels, including the issue marker that lets a retry find the
// issue), the framework-reference multi-select field and the finding-id text field when
// configured.
//
// It takes no flavor: jira.IssueInput carries the description as an ADF document and the jira
// client renders it as escaped wiki markup when it talks to Data Center, so one payload serves
// both. Custom field values are the jira package's typed values, which encode the REST shapes
// ([{"value": ref}] for the multi-select, a string for the text field).
//
// The configuration and the finding are validated first; a *FieldError (errors.As) names the
// problem. The finding must have its id.
func BuildIssue(scope Scope, f Finding, cfg SyncConfig) (jira.IssueInput, error) {
	if err := cfg.Validate(); err != nil {
		return jira.IssueInput{}, fmt.Errorf("finding sync configuration: %w", err)
	}
	if err := scope.validate(); err != nil {
		return jira.IssueInput{}, err
	}
	if f.ID == uuid.Nil {
		return jira.IssueInput{}, fieldErr("id", "is required to build an issue")
	}
	if err := f.Validate(); err != nil {
		return jira.IssueInput{}, fmt.Errorf("finding %s: %w", f.ID, err)
	}
	desc, err := Description(scope, f, cfg)
	if err != nil {
		return jira.IssueInput{}, err
	}
	in := jira.IssueInput{
		Project:     cfg.ProjectKey,
		IssueType:   cfg.IssueType,
		Summary:     Summary(cfg.TitlePrefix, f.Title),
		Description: desc,
		Labels:      IssueLabels(scope, f, cfg),
	}
	fields := map[string]jira.FieldValue{}
	if cfg.FrameworkField != "" && len(f.FrameworkRefs) > 0 {
		fields[cfg.FrameworkField] = jira.MultiSelect(f.FrameworkRefs...)
	}
	if cfg.FindingIDField != "" {
		fields[cfg.FindingIDField] = jira.TextValue(f.ID.String())
	}
	if len(fields) > 0 {
		in.CustomFields = fields
	}
	return in, nil
}

// Description headings and labels. They are constants so tests and readers of the issue can rely
// on them.
const (
	DescriptionIntro   = "Security finding reported by jiraconnect."
	ExcerptHeading     = "Excerpt (redacted)"
	LinkText           = "View this finding in jiraconnect"
	descSeverity       = "Severity: "
	descStatus         = "Status when reported: "
	descProbe          = "Probe: "
	descScan           = "Scan: "
	descExternalID     = "Scanner finding id: "
	descFrameworks     = "Framework references: "
	descFooterFinding  = "jiraconnect finding "
	descFooterStatuses = ". Status changes sync both ways between this issue and the finding."
)

// Description builds the issue description as an ADF document — a data structure, never a
// template — so no finding text can inject markup: the redacted title, a list of severity,
// status, probe, scan, scanner id and framework references, the redacted excerpt in a code block,
// the link back to the finding and a footer naming the finding id. Optional parts are left out
// when empty. On Data Center the jira client renders the same document as escaped wiki markup.
func Description(scope Scope, f Finding, cfg SyncConfig) (*adf.Doc, error) {
	link, err := cfg.FindingURL(f.ID)
	if err != nil {
		return nil, err
	}
	blocks := []adf.Node{
		adf.Paragraph(adf.Text(DescriptionIntro, adf.Strong())),
		adf.Paragraph(adf.Text(Redact(f.Title))),
	}
	items := []adf.Node{
		adf.Item(adf.Text(descSeverity, adf.Strong()), adf.Text(string(f.Severity))),
		adf.Item(adf.Text(descStatus, adf.Strong()), adf.Text(string(f.Status))),
	}
	for _, kv := range []struct{ label, value string }{
		{descProbe, f.ProbeID}, {descScan, f.ScanID}, {descExternalID, f.ExternalID},
	} {
		if kv.value != "" {
			items = append(items, adf.Item(adf.Text(kv.label, adf.Strong()), adf.Text(kv.value, adf.Code())))
		}
	}
	if len(f.FrameworkRefs) > 0 {
		inl := []adf.Node{adf.Text(descFrameworks, adf.Strong())}
		for i, r := range f.FrameworkRefs {
			if i > 0 {
				inl = append(inl, adf.Text(", "))
			}
			inl = append(inl, adf.Text(r, adf.Code()))
		}
		items = append(items, adf.Item(inl...))
	}
	blocks = append(blocks, adf.BulletList(items...))
	if excerpt := Redact(f.Excerpt); strings.TrimSpace(excerpt) != "" {
		blocks = append(blocks,
			adf.Heading(3, adf.Text(ExcerptHeading)),
			adf.CodeBlock("", excerpt))
	}
	if link != "" {
		node, err := adf.LinkText(LinkText, link)
		if err != nil {
			return nil, fieldErr(configField("link_template"), "expands to an unusable link: %v", err)
		}
		blocks = append(blocks, adf.Paragraph(node))
	}
	blocks = append(blocks, adf.Rule(), adf.Paragraph(
		adf.Text(descFooterFinding), adf.Text(f.ID.String(), adf.Code()),
		adf.Text(" ("), adf.Text(IssueMarker(scope, f.ID), adf.Code()), adf.Text(")"),
		adf.Text(descFooterStatuses)))
	return adf.NewDoc(blocks...), nil
}
