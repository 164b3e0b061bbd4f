package jira

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// createmeta page limits: Jira caps maxResults at 200; the page budget bounds a misbehaving
// server (200 × 25 = 5,000 fields or issue types, far beyond any real project).
const (
	createMetaPageSize = 200
	createMetaMaxPages = 25
)

// FieldSchema is the schema of a field in createmeta.
type FieldSchema struct {
	Type     string `json:"type"`
	Items    string `json:"items,omitempty"`
	System   string `json:"system,omitempty"`
	Custom   string `json:"custom,omitempty"`
	CustomID int64  `json:"customId,omitempty"`
}

// AllowedValue is one allowed value of an option-like field.
type AllowedValue struct {
	ID    string
	Value string
	Name  string
}

// FieldMeta is a field of a create (or transition) screen.
type FieldMeta struct {
	FieldID         string
	Key             string
	Name            string
	Required        bool
	HasDefaultValue bool
	Schema          FieldSchema
	Operations      []string
	AllowedValues   []AllowedValue
}

// FieldKind is the input shape of a field, derived from its schema.
type FieldKind string

// Field kinds that decide which FieldValue to send.
const (
	FieldKindMultiSelect FieldKind = "multiselect" // MultiSelect
	FieldKindSelect      FieldKind = "select"      // SingleSelect
	FieldKindLabels      FieldKind = "labels"      // LabelsValue
	FieldKindText        FieldKind = "textfield"   // TextValue
	FieldKindTextArea    FieldKind = "textarea"    // TextAreaValue
	FieldKindOther       FieldKind = "other"
)

// Kind classifies the field by its schema's custom type key (or array/option shape).
func (f FieldMeta) Kind() FieldKind {
	custom := f.Schema.Custom
	if i := strings.LastIndexByte(custom, ':'); i >= 0 {
		custom = custom[i+1:]
	}
	switch custom {
	case "multiselect", "multicheckboxes":
		return FieldKindMultiSelect
	case "select", "radiobuttons":
		return FieldKindSelect
	case "labels":
		return FieldKindLabels
	case "textfield":
		return FieldKindText
	case "textarea":
		return FieldKindTextArea
	}
	switch {
	case f.Schema.Type == "array" && f.Schema.Items == "option":
		return FieldKindMultiSelect
	case f.Schema.Type == "option":
		return FieldKindSelect
	case f.Schema.Type == "array" && f.Schema.Items == "string" && (f.Schema.System == "labels" || f.FieldID == "labels"):
		return FieldKindLabels
	}
	return FieldKindOther
}

type wireAllowed struct {
	ID    wireID `json:"id"`
	Value string `json:"value"`
	Name  string `json:"name"`
}

// UnmarshalJSON accepts an option object or a bare string: the spec's own transition example
// lists allowedValues as plain strings.
func (w *wireAllowed) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*w = wireAllowed{Value: s}
		return nil
	}
	var obj struct {
		ID    wireID `json:"id"`
		Value string `json:"value"`
		Name  string `json:"name"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		// Other shapes (numbers, nested objects of unknown types) carry nothing we use.
		var anyv any
		if json.Unmarshal(b, &anyv) != nil {
			return err
		}
		*w = wireAllowed{}
		return nil
	}
	*w = wireAllowed(obj)
	return nil
}

type wireFieldMeta struct {
	FieldID         string        `json:"fieldId"`
	Key             string        `json:"key"`
	Name            string        `json:"name"`
	Required        bool          `json:"required"`
	HasDefaultValue bool          `json:"hasDefaultValue"`
	Schema          FieldSchema   `json:"schema"`
	Operations      []string      `json:"operations"`
	AllowedValues   []wireAllowed `json:"allowedValues"`
}

func (w wireFieldMeta) meta(fallbackID string) FieldMeta {
	f := FieldMeta{FieldID: w.FieldID, Key: w.Key, Name: w.Name, Required: w.Required, HasDefaultValue: w.HasDefaultValue,
		Schema: w.Schema, Operations: w.Operations}
	if f.FieldID == "" {
		f.FieldID = w.Key
	}
	if f.FieldID == "" {
		f.FieldID = fallbackID
	}
	for _, a := range w.AllowedValues {
		f.AllowedValues = append(f.AllowedValues, AllowedValue{ID: string(a.ID), Value: a.Value, Name: a.Name})
	}
	return f
}

// createMetaPage is a createmeta page. Cloud names the list issueTypes/fields; Data Center (and
// older servers) name it values: both are decoded.
type createMetaPage struct {
	StartAt    int               `json:"startAt"`
	MaxResults int               `json:"maxResults"`
	Total      *int              `json:"total"`
	IsLast     *bool             `json:"isLast"`
	IssueTypes []json.RawMessage `json:"issueTypes"`
	Fields     []json.RawMessage `json:"fields"`
	Values     []json.RawMessage `json:"values"`
}

// pageCreateMeta walks a createmeta collection, calling item for each element.
func (c *Client) pageCreateMeta(ctx context.Context, op, path string, listKey string, item func(json.RawMessage) error) error {
	startAt := 0
	for range createMetaMaxPages {
		q := url.Values{"startAt": {strconv.Itoa(startAt)}, "maxResults": {strconv.Itoa(createMetaPageSize)}}
		var page createMetaPage
		if err := c.do(ctx, &request{op: op, method: http.MethodGet, path: path, query: q, out: &page}); err != nil {
			return err
		}
		list := page.Values
		switch {
		case listKey == "issueTypes" && page.IssueTypes != nil:
			list = page.IssueTypes
		case listKey == "fields" && page.Fields != nil:
			list = page.Fields
		}
		if list == nil {
			return &Error{Kind: KindMalformedResponse, Op: op, Method: http.MethodGet, Path: c.fullPath(path), Status: http.StatusOK,
				Detail: "createmeta page has neither " + listKey + " nor values"}
		}
		for _, raw := range list {
			if err := item(raw); err != nil {
				return &Error{Kind: KindMalformedResponse, Op: op, Method: http.MethodGet, Path: c.fullPath(path), Status: http.StatusOK, Detail: "decode createmeta entry", Err: err}
			}
		}
		startAt += len(list)
		last := len(list) == 0 || (page.IsLast != nil && *page.IsLast) || (page.Total != nil && startAt >= *page.Total)
		if page.IsLast == nil && page.Total == nil {
			// Without either marker a short page is the last one.
			last = last || len(list) < createMetaPageSize
		}
		if last {
			return nil
		}
	}
	return &Error{Kind: KindMalformedResponse, Op: op, Method: http.MethodGet, Path: c.fullPath(path), Detail: fmt.Sprintf("more than %d createmeta pages", createMetaMaxPages), Err: ErrPageLimit}
}

// IssueTypes lists the issue types the credential can create in project
// (GET issue/createmeta/{project}/issuetypes, all pages).
func (c *Client) IssueTypes(ctx context.Context, project string) ([]IssueType, error) {
	const op = "createmeta.issuetypes"
	if !validProjectRef(project) {
		return nil, configError(op, "invalid project key or id")
	}
	var out []IssueType
	err := c.pageCreateMeta(ctx, op, apiPath("issue", "createmeta", project, "issuetypes"), "issueTypes", func(raw json.RawMessage) error {
		var t wireNamed
		if err := json.Unmarshal(raw, &t); err != nil {
			return err
		}
		if t.ID == "" {
			return fmt.Errorf("issue type without id")
		}
		out = append(out, IssueType{ID: string(t.ID), Name: t.Name, Subtask: t.Subtask})
		return nil
	})
	return out, err
}

// CreateFields lists the create-screen fields of an issue type in a project
// (GET issue/createmeta/{project}/issuetypes/{id}, all pages).
func (c *Client) CreateFields(ctx context.Context, project, issueTypeID string) ([]FieldMeta, error) {
	const op = "createmeta.fields"
	if !validProjectRef(project) {
		return nil, configError(op, "invalid project key or id")
	}
	if _, err := strconv.ParseUint(issueTypeID, 10, 64); err != nil {
		return nil, configError(op, "issue type id must be numeric")
	}
	var out []FieldMeta
	err := c.pageCreateMeta(ctx, op, apiPath("issue", "createmeta", project, "issuetypes", issueTypeID), "fields", func(raw json.RawMessage) error {
		var w wireFieldMeta
		if err := json.Unmarshal(raw, &w); err != nil {
			return err
		}
		f := w.meta("")
		if f.FieldID == "" {
			return fmt.Errorf("field without fieldId or key")
		}
		out = append(out, f)
		return nil
	})
	return out, err
}

func validProjectRef(p string) bool {
	if validProjectKey(p) {
		return true
	}
	_, err := strconv.ParseUint(p, 10, 64)
	return err == nil
}

// CreateConfig is a finding-sync configuration to check against the site before it is saved.
type CreateConfig struct {
	Project string
	// IssueType is an id or a name.
	IssueType string
	// CustomFields maps the connector's roles ("framework_refs", "finding_id", …) to field ids.
	CustomFields map[string]string
	// ProvidedFields are other field ids the connector will fill on create (e.g. "description",
	// "labels", "priority"). project, issuetype and summary are always provided.
	ProvidedFields []string
}

// ProblemCode identifies a configuration problem.
type ProblemCode string

// Configuration problems reported by ValidateCreateConfig.
const (
	ProblemCustomFieldUnknown ProblemCode = "customfield_unknown"
	ProblemIssueTypeNotFound  ProblemCode = "issuetype_not_in_project"
	ProblemRequiredUnfilled   ProblemCode = "required_field_unfilled"
)

// ConfigProblem is one reason a CreateConfig would fail to create issues.
type ConfigProblem struct {
	Code    ProblemCode
	Role    string // for custom field problems
	FieldID string
	Message string
}

// CreateConfigReport is the result of ValidateCreateConfig.
type CreateConfigReport struct {
	// IssueType is the resolved issue type (zero when not found).
	IssueType IssueType
	// Fields are the create-screen fields of the mapped custom fields, by role, so callers can
	// check each role's FieldKind.
	Fields   map[string]FieldMeta
	Problems []ConfigProblem
}

// OK reports whether no problem was found.
func (r *CreateConfigReport) OK() bool { return len(r.Problems) == 0 }

// Err returns nil when OK, else a KindConfig *Error listing the problems (or
// KindCustomFieldUnknown when that is the only kind of problem).
func (r *CreateConfigReport) Err() error {
	if r.OK() {
		return nil
	}
	msgs := make([]string, len(r.Problems))
	kind := KindCustomFieldUnknown
	for i, p := range r.Problems {
		msgs[i] = p.Message
		if p.Code != ProblemCustomFieldUnknown {
			kind = KindConfig
		}
	}
	return &Error{Kind: kind, Op: "createmeta.validate", Messages: msgs}
}

// ValidateCreateConfig checks cfg against the project's createmeta: the issue type must be
// creatable in the project, every mapped custom field must be on its create screen, and every
// required field without a default must be one the configuration fills. Problems are reported in
// the CreateConfigReport; the error is for failures to ask (e.g. the project does not exist or is
// invisible: KindNotFound).
func (c *Client) ValidateCreateConfig(ctx context.Context, cfg CreateConfig) (*CreateConfigReport, error) {
	for role, id := range cfg.CustomFields {
		if !ValidCustomFieldID(id) {
			return nil, configError("createmeta.validate", fmt.Sprintf("role %q: field id %q is not of the form customfield_NNNNN", role, truncate(id, 40)))
		}
	}
	types, err := c.IssueTypes(ctx, cfg.Project)
	if err != nil {
		return nil, err
	}
	rep := &CreateConfigReport{Fields: map[string]FieldMeta{}}
	found := false
	for _, t := range types {
		if t.ID == cfg.IssueType || strings.EqualFold(t.Name, cfg.IssueType) {
			rep.IssueType, found = t, true
			break
		}
	}
	if !found {
		names := make([]string, len(types))
		for i, t := range types {
			names[i] = t.Name + " (" + t.ID + ")"
		}
		rep.Problems = append(rep.Problems, ConfigProblem{Code: ProblemIssueTypeNotFound,
			Message: fmt.Sprintf("issue type %q cannot be created in project %s; available: %s", cfg.IssueType, cfg.Project, strings.Join(names, ", "))})
		return rep, nil
	}
	fields, err := c.CreateFields(ctx, cfg.Project, rep.IssueType.ID)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]FieldMeta, len(fields))
	for _, f := range fields {
		byID[f.FieldID] = f
	}
	provided := map[string]bool{"project": true, "issuetype": true, "summary": true}
	for _, f := range cfg.ProvidedFields {
		provided[f] = true
	}
	roles := make([]string, 0, len(cfg.CustomFields))
	for role := range cfg.CustomFields {
		roles = append(roles, role)
	}
	slices.Sort(roles)
	for _, role := range roles {
		id := cfg.CustomFields[role]
		provided[id] = true
		f, ok := byID[id]
		if !ok {
			rep.Problems = append(rep.Problems, ConfigProblem{Code: ProblemCustomFieldUnknown, Role: role, FieldID: id,
				Message: fmt.Sprintf("custom field %s (%s) is not on the create screen of %s in project %s", id, role, rep.IssueType.Name, cfg.Project)})
			continue
		}
		rep.Fields[role] = f
	}
	for _, f := range fields {
		if f.Required && !f.HasDefaultValue && !provided[f.FieldID] {
			rep.Problems = append(rep.Problems, ConfigProblem{Code: ProblemRequiredUnfilled, FieldID: f.FieldID,
				Message: fmt.Sprintf("field %s (%s) is required for %s in project %s and has no default; map it or make it optional", f.Name, f.FieldID, rep.IssueType.Name, cfg.Project)})
		}
	}
	return rep, nil
}
