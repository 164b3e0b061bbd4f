package jira

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jiraconnect/jiraconnect/jira/adf"
	"github.com/jiraconnect/jiraconnect/jira/wiki"
)

// FieldValue is a typed custom-field value. Each kind knows its REST input shape, so callers
// never build field JSON by hand. Construct values with MultiSelect, SingleSelect, LabelsValue,
// TextValue and TextAreaValue.
type FieldValue interface {
	// encode returns the JSON-marshalable value for the flavor, or a validation error.
	encode(f Flavor) (any, error)
}

type multiSelect []string

// MultiSelect is a multi-select or checkbox custom field value: [{"value":"A"},{"value":"B"}].
func MultiSelect(values ...string) FieldValue { return multiSelect(values) }

func (m multiSelect) encode(Flavor) (any, error) {
	if len(m) == 0 {
		return nil, fmt.Errorf("multi-select value needs at least one option")
	}
	out := make([]map[string]string, len(m))
	for i, v := range m {
		if err := checkOption(v); err != nil {
			return nil, err
		}
		out[i] = map[string]string{"value": v}
	}
	return out, nil
}

type singleSelect string

// SingleSelect is a select-list or radio-button custom field value: {"value":"A"}.
func SingleSelect(value string) FieldValue { return singleSelect(value) }

func (s singleSelect) encode(Flavor) (any, error) {
	if err := checkOption(string(s)); err != nil {
		return nil, err
	}
	return map[string]string{"value": string(s)}, nil
}

func checkOption(v string) error {
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("option value is empty")
	}
	if !validUTF8Printable(v) || utf8.RuneCountInString(v) > 255 {
		return fmt.Errorf("option value %q is not a valid option (control characters or longer than 255)", truncate(v, 40))
	}
	return nil
}

type labelsValue []string

// LabelsValue is a labels-type custom field value: ["a","b"]. Labels cannot contain whitespace.
func LabelsValue(labels ...string) FieldValue { return labelsValue(labels) }

func (l labelsValue) encode(Flavor) (any, error) {
	if err := validateLabels(l); err != nil {
		return nil, err
	}
	return []string(l), nil
}

func validateLabels(labels []string) error {
	for _, l := range labels {
		if l == "" || utf8.RuneCountInString(l) > 255 || !utf8.ValidString(l) {
			return fmt.Errorf("label %q must be 1–255 characters", truncate(l, 40))
		}
		if strings.IndexFunc(l, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			return fmt.Errorf("label %q contains whitespace or control characters", truncate(l, 40))
		}
	}
	return nil
}

type textValue string

// TextValue is a single-line text custom field value: a string of at most 255 characters.
// Newlines and control characters are replaced with spaces; longer text is shortened with "…".
func TextValue(s string) FieldValue { return textValue(s) }

func (t textValue) encode(Flavor) (any, error) {
	return singleLine(string(t), 255), nil
}

type textAreaValue struct{ doc *adf.Doc }

// TextAreaValue is a multi-line text custom field value: ADF on Cloud, escaped wiki markup on
// Data Center.
func TextAreaValue(doc *adf.Doc) FieldValue { return textAreaValue{doc: doc} }

func (t textAreaValue) encode(f Flavor) (any, error) {
	if t.doc == nil {
		return nil, fmt.Errorf("text area value has no document")
	}
	return richText(f, t.doc), nil
}

// richText is a rich-text field value in the flavor's format.
func richText(f Flavor, doc *adf.Doc) any {
	if f == DataCenter {
		return wiki.Render(doc)
	}
	return doc
}

// singleLine makes s one line of at most max runes.
func singleLine(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > max {
		r := []rune(s)
		s = strings.TrimSpace(string(r[:max-1])) + "…"
	}
	return s
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

// IssueInput describes an issue to create.
type IssueInput struct {
	// Project is a project key or numeric id.
	Project string
	// IssueType is an issue type id (preferred: names are per-site display text) or name.
	IssueType string
	// Summary is required; it is made single-line and shortened to 255 characters.
	Summary string
	// Description is optional; ADF on Cloud, rendered to escaped wiki markup on Data Center.
	Description *adf.Doc
	Labels      []string
	// Priority is an optional priority id or name.
	Priority string
	// CustomFields are keyed by field id (customfield_10010).
	CustomFields map[string]FieldValue
}

// CreatedIssue is the result of CreateIssue.
type CreatedIssue struct {
	ID  string
	Key string
	// BrowseURL is the human link on the site (Config.SiteURL).
	BrowseURL string
}

// idOrName picks the "id" form for numeric references and "name"/"key" otherwise.
func idOrName(v, nameKey string) map[string]string {
	if _, err := strconv.ParseUint(v, 10, 64); err == nil {
		return map[string]string{"id": v}
	}
	return map[string]string{nameKey: v}
}

// ValidCustomFieldID reports whether id has the customfield_NNNNN form.
func ValidCustomFieldID(id string) bool {
	num, ok := strings.CutPrefix(id, "customfield_")
	if !ok || num == "" || len(num) > 18 {
		return false
	}
	_, err := strconv.ParseUint(num, 10, 64)
	return err == nil
}

// createFields builds the "fields" object of a create request.
func (c *Client) createFields(in IssueInput) (map[string]any, error) {
	if !validProjectKey(in.Project) {
		if _, err := strconv.ParseUint(in.Project, 10, 64); err != nil {
			return nil, fmt.Errorf("project %q is neither a project key nor an id", truncate(in.Project, 40))
		}
	}
	if strings.TrimSpace(in.IssueType) == "" || !validUTF8Printable(in.IssueType) {
		return nil, fmt.Errorf("issue type is required")
	}
	summary := singleLine(in.Summary, 255)
	if summary == "" {
		return nil, fmt.Errorf("summary is required")
	}
	fields := map[string]any{
		"project":   idOrName(in.Project, "key"),
		"issuetype": idOrName(in.IssueType, "name"),
		"summary":   summary,
	}
	if in.Description != nil {
		fields["description"] = richText(c.flavor, in.Description)
	}
	if len(in.Labels) > 0 {
		if err := validateLabels(in.Labels); err != nil {
			return nil, err
		}
		fields["labels"] = in.Labels
	}
	if in.Priority != "" {
		if !validUTF8Printable(in.Priority) {
			return nil, fmt.Errorf("invalid priority")
		}
		fields["priority"] = idOrName(in.Priority, "name")
	}
	for id, v := range in.CustomFields {
		if !ValidCustomFieldID(id) {
			return nil, fmt.Errorf("custom field id %q is not of the form customfield_NNNNN", truncate(id, 40))
		}
		if v == nil {
			return nil, fmt.Errorf("custom field %s has no value", id)
		}
		enc, err := v.encode(c.flavor)
		if err != nil {
			return nil, fmt.Errorf("custom field %s: %w", id, err)
		}
		fields[id] = enc
	}
	return fields, nil
}

// CreateIssue creates an issue. A 403 is KindIssueCreateForbidden; a rejected custom field is
// KindCustomFieldUnknown (Error.CustomFields names it).
//
// Creating is not idempotent and this client never retries it. Callers that retry (activities)
// must first look for an issue they may already have created — e.g. by a label or text custom
// field carrying the finding id — because a create whose response was lost may have succeeded.
func (c *Client) CreateIssue(ctx context.Context, in IssueInput) (*CreatedIssue, error) {
	const op = "issue.create"
	fields, err := c.createFields(in)
	if err != nil {
		return nil, &Error{Kind: KindBadRequest, Op: op, Detail: "invalid issue input", Err: err}
	}
	var res struct {
		ID  wireID `json:"id"`
		Key string `json:"key"`
	}
	err = c.do(ctx, &request{op: op, method: http.MethodPost, path: "/issue", body: map[string]any{"fields": fields}, out: &res,
		classify: func(e *Error) {
			if e.Status == http.StatusForbidden {
				e.Kind = KindIssueCreateForbidden
			}
		}})
	if err != nil {
		return nil, err
	}
	if res.ID == "" || !validIssueRef(res.Key) {
		return nil, &Error{Kind: KindMalformedResponse, Op: op, Method: http.MethodPost, Path: c.fullPath("/issue"), Status: http.StatusCreated, Detail: "created issue has no id or key"}
	}
	return &CreatedIssue{ID: string(res.ID), Key: res.Key, BrowseURL: c.BrowseURL(res.Key)}, nil
}
