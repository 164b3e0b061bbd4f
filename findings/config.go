package findings

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/strictjson"

	"github.com/jiraconnect/jiraconnect/jira"
)

// Jira status category keys: the stable identifiers of Jira's three status categories. Status
// names are per-site display text; categories are what every site shares.
const (
	CategoryNew           = "new"
	CategoryIndeterminate = "indeterminate"
	CategoryDone          = "done"
)

// StatusTarget is the Jira status a finding status maps to. Name is matched case-insensitively
// in both directions; CategoryKey is the fallback when no status of that name is reachable (a
// site whose "Open" status is called "To Do") and tells inbound mapping what a status means. ID,
// when known, is matched before the name because ids survive renames.
type StatusTarget struct {
	ID          string `json:"id,omitempty"`
	Name        string `json:"name"`
	CategoryKey string `json:"category_key"`
	// Resolution is sent with the transition when its screen has the resolution field (Jira
	// requires one on many done transitions); empty sends none.
	Resolution string `json:"resolution,omitempty"`
}

// SyncConfig is a connection's finding-sync configuration (the "finding_sync" object of the
// connection configuration). Start from DefaultSyncConfig or ParseSyncConfig, which fill the
// documented defaults; the zero value is not a usable configuration.
type SyncConfig struct {
	// ProjectKey is the Jira project issues are created in.
	ProjectKey string `json:"project_key"`
	// IssueType is an issue type id (preferred: names are per-site display text) or name.
	IssueType string `json:"issue_type"`
	// SeverityThreshold and PushStatuses form the mapping rule: a finding gets an issue when its
	// severity is at least the threshold and its status is one of PushStatuses.
	SeverityThreshold Severity `json:"severity_threshold"`
	PushStatuses      []Status `json:"push_statuses"`
	// TitlePrefix starts every summary; empty for none.
	TitlePrefix string `json:"title_prefix"`
	// Labels are set on every issue, in addition to one label per framework reference and the
	// issue marker.
	Labels []string `json:"labels"`
	// FrameworkField is the id of a multi-select custom field that receives the framework
	// references (each must be an option of the field); empty for none.
	FrameworkField string `json:"framework_field,omitempty"`
	// FindingIDField is the id of a single-line text custom field that receives the finding id,
	// for people and reports; empty for none. Retries find issues by the marker label, not by it.
	FindingIDField string `json:"finding_id_field,omitempty"`
	// StatusMap maps every finding status to a Jira status, for transitions and inbound mapping.
	StatusMap map[Status]StatusTarget `json:"status_map"`
	// LinkTemplate is the URL of a finding in the jiraconnect UI with an {id} placeholder, put in
	// the issue description as the link back; empty for no link.
	LinkTemplate string `json:"link_template,omitempty"`
}

// Defaults.
const (
	DefaultTitlePrefix       = "[jiraconnect]"
	DefaultSeverityThreshold = SeverityHigh
)

// DefaultLabels are the labels every issue gets unless the configuration replaces them.
func DefaultLabels() []string { return []string{"jiraconnect", "security-finding"} }

// DefaultStatusMap is the documented default mapping: open↔Open, triaged↔In Progress,
// resolved↔Done, accepted↔Won't Do, false_positive↔Cancelled. Done-category targets name a
// resolution of the same name, which Jira wants on done transitions whose screen asks for one.
func DefaultStatusMap() map[Status]StatusTarget {
	return map[Status]StatusTarget{
		StatusOpen:          {Name: "Open", CategoryKey: CategoryNew},
		StatusTriaged:       {Name: "In Progress", CategoryKey: CategoryIndeterminate},
		StatusResolved:      {Name: "Done", CategoryKey: CategoryDone, Resolution: "Done"},
		StatusAccepted:      {Name: "Won't Do", CategoryKey: CategoryDone, Resolution: "Won't Do"},
		StatusFalsePositive: {Name: "Cancelled", CategoryKey: CategoryDone, Resolution: "Cancelled"},
	}
}

// DefaultSyncConfig returns the defaults; ProjectKey and IssueType have none and must be set.
func DefaultSyncConfig() SyncConfig {
	return SyncConfig{
		SeverityThreshold: DefaultSeverityThreshold,
		PushStatuses:      []Status{StatusOpen},
		TitlePrefix:       DefaultTitlePrefix,
		Labels:            DefaultLabels(),
		StatusMap:         DefaultStatusMap(),
	}
}

// Clone returns a deep copy, so that patching a configuration never aliases the original's
// slices or map.
func (c SyncConfig) Clone() SyncConfig {
	c.PushStatuses = slices.Clone(c.PushStatuses)
	c.Labels = slices.Clone(c.Labels)
	if c.StatusMap != nil {
		m := make(map[Status]StatusTarget, len(c.StatusMap))
		for k, v := range c.StatusMap {
			m[k] = v
		}
		c.StatusMap = m
	}
	return c
}

// Matches reports whether f falls under the mapping rule: severity at or above the threshold
// and status among PushStatuses. It decides issue creation only; a linked issue follows its
// finding's status whatever the rule says.
func (c SyncConfig) Matches(f Finding) bool {
	return f.Severity.AtLeast(c.SeverityThreshold) && slices.Contains(c.PushStatuses, f.Status)
}

// configField is the API name of a configuration field.
func configField(name string) string { return "finding_sync." + name }

// ParseSyncConfig decodes a finding-sync configuration strictly (unknown fields and wrong types
// are *FieldErrors naming the field) over DefaultSyncConfig: absent fields keep their default,
// present ones replace it — except status_map, whose entries replace the default entries of the
// same status one by one. Empty input or null yields the defaults. The result is not validated.
func ParseSyncConfig(raw []byte) (SyncConfig, error) {
	c := DefaultSyncConfig()
	if err := decodeStrict(raw, &c); err != nil {
		return SyncConfig{}, err
	}
	return c, nil
}

// SyncConfigPatch is a partial update of a SyncConfig: nil fields keep their value. StatusMap
// entries replace the entries of the same status. Optional fields are cleared with "" (JSON null
// means "unchanged", like an absent field).
type SyncConfigPatch struct {
	ProjectKey        *string                 `json:"project_key"`
	IssueType         *string                 `json:"issue_type"`
	SeverityThreshold *Severity               `json:"severity_threshold"`
	PushStatuses      *[]Status               `json:"push_statuses"`
	TitlePrefix       *string                 `json:"title_prefix"`
	Labels            *[]string               `json:"labels"`
	FrameworkField    *string                 `json:"framework_field"`
	FindingIDField    *string                 `json:"finding_id_field"`
	StatusMap         map[Status]StatusTarget `json:"status_map"`
	LinkTemplate      *string                 `json:"link_template"`
}

// SyncConfigUpdate is the body of a finding-sync configuration request: Enabled false removes the
// configuration (the other fields are then checked but ignored); absent or true applies the patch.
type SyncConfigUpdate struct {
	Enabled *bool `json:"enabled"`
	SyncConfigPatch
}

// ParseSyncConfigUpdate decodes an update strictly: `"enabled": "true"` or `0` is a *FieldError
// naming finding_sync.enabled, never a silent "off".
func ParseSyncConfigUpdate(raw []byte) (SyncConfigUpdate, error) {
	var u SyncConfigUpdate
	if err := decodeStrict(raw, &u); err != nil {
		return SyncConfigUpdate{}, err
	}
	return u, nil
}

// ParseSyncConfigPatch decodes a patch strictly; errors are *FieldErrors naming the field.
func ParseSyncConfigPatch(raw []byte) (SyncConfigPatch, error) {
	var p SyncConfigPatch
	if err := decodeStrict(raw, &p); err != nil {
		return SyncConfigPatch{}, err
	}
	return p, nil
}

// Apply returns a copy of c with the patch applied (not yet validated).
func (p SyncConfigPatch) Apply(c SyncConfig) SyncConfig {
	c = c.Clone()
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&c.ProjectKey, p.ProjectKey)
	set(&c.IssueType, p.IssueType)
	set(&c.TitlePrefix, p.TitlePrefix)
	set(&c.FrameworkField, p.FrameworkField)
	set(&c.FindingIDField, p.FindingIDField)
	set(&c.LinkTemplate, p.LinkTemplate)
	if p.SeverityThreshold != nil {
		c.SeverityThreshold = *p.SeverityThreshold
	}
	if p.PushStatuses != nil {
		c.PushStatuses = slices.Clone(*p.PushStatuses)
	}
	if p.Labels != nil {
		c.Labels = slices.Clone(*p.Labels)
	}
	if len(p.StatusMap) > 0 && c.StatusMap == nil {
		c.StatusMap = make(map[Status]StatusTarget, len(p.StatusMap))
	}
	for k, v := range p.StatusMap {
		c.StatusMap[k] = v
	}
	return c
}

// decodeStrict decodes one JSON object (or null/empty) into dst through strictjson, the strict
// decoding path of every API body, with errors that name the configuration field.
func decodeStrict(raw []byte, dst any) error {
	raw = bytes.Trim(raw, " \t\n\r")
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	if err := strictjson.Decode(raw, dst); err != nil {
		var se *strictjson.Error
		if errors.As(err, &se) {
			p := se.WithPrefix("finding_sync")
			return &FieldError{Field: p.Field, Message: strings.TrimPrefix(p.Message, p.Field+": ")}
		}
		return fieldErr("finding_sync", "malformed JSON")
	}
	return nil
}

// Limits on configuration values.
const (
	MaxTitlePrefixLen = 50 // runes
	MaxConfigLabels   = 20
	maxIssueTypeLen   = 255
	maxStatusNameLen  = 255
	maxLinkTemplate   = 1024 // bytes, leaving room below adf's 2048-byte link limit
)

// Validate checks every field and returns the first problem, in field order, as a *FieldError
// naming it (finding_sync.project_key, finding_sync.status_map.accepted.name, …).
func (c SyncConfig) Validate() error {
	if c.ProjectKey == "" {
		return fieldErr(configField("project_key"), "is required")
	}
	if !validProjectKey(c.ProjectKey) {
		return fieldErr(configField("project_key"), "%s is not a Jira project key (a letter followed by letters, digits or underscores)", quoteShort(c.ProjectKey))
	}
	if err := checkLine(configField("issue_type"), c.IssueType, true, maxIssueTypeLen); err != nil {
		return err
	}
	if !c.SeverityThreshold.Valid() {
		return fieldErr(configField("severity_threshold"), "must be one of info, low, medium, high, critical")
	}
	if err := c.validatePushStatuses(); err != nil {
		return err
	}
	if err := checkLine(configField("title_prefix"), c.TitlePrefix, false, MaxTitlePrefixLen); err != nil {
		return err
	}
	if err := validateConfigLabels(c.Labels); err != nil {
		return err
	}
	for _, f := range []struct{ name, id string }{{"framework_field", c.FrameworkField}, {"finding_id_field", c.FindingIDField}} {
		if f.id != "" && !jira.ValidCustomFieldID(f.id) {
			return fieldErr(configField(f.name), "%s is not a custom field id such as customfield_10010", quoteShort(f.id))
		}
	}
	if c.FrameworkField != "" && c.FrameworkField == c.FindingIDField {
		return fieldErr(configField("finding_id_field"), "must differ from framework_field: one field cannot be both a multi-select and a text field")
	}
	if err := c.validateStatusMap(); err != nil {
		return err
	}
	if c.LinkTemplate != "" {
		if err := ValidateLinkTemplate(c.LinkTemplate); err != nil {
			return fieldErr(configField("link_template"), "%s", err.Error())
		}
	}
	return nil
}

func (c SyncConfig) validatePushStatuses() error {
	if len(c.PushStatuses) == 0 {
		return fieldErr(configField("push_statuses"), "must list at least one status (disable finding sync instead of pushing nothing)")
	}
	for i, s := range c.PushStatuses {
		field := configField(fmt.Sprintf("push_statuses[%d]", i))
		if !s.Valid() {
			return fieldErr(field, "must be one of open, triaged, resolved, accepted, false_positive")
		}
		if j := slices.Index(c.PushStatuses, s); j < i {
			return fieldErr(field, "duplicates push_statuses[%d]", j)
		}
	}
	return nil
}

func validateConfigLabels(labels []string) error {
	if len(labels) > MaxConfigLabels {
		return fieldErr(configField("labels"), "must have at most %d labels", MaxConfigLabels)
	}
	for i, l := range labels {
		field := configField(fmt.Sprintf("labels[%d]", i))
		switch {
		case l == "":
			return fieldErr(field, "must not be empty")
		case SanitizeLabel(l) != l:
			return fieldErr(field, "%s is not a valid Jira label (no whitespace or control characters, at most %d characters)", quoteShort(l), MaxLabelUTF16)
		case strings.HasPrefix(strings.ToLower(l), markerPrefix):
			return fieldErr(field, "must not start with %q, which is reserved for issue markers", markerPrefix)
		}
		if j := slices.Index(labels, l); j < i {
			return fieldErr(field, "duplicates labels[%d]", j)
		}
	}
	return nil
}

func (c SyncConfig) validateStatusMap() error {
	// Unknown keys first, in a stable order, so the error does not depend on map iteration.
	var unknown []string
	for k := range c.StatusMap {
		if !k.Valid() {
			unknown = append(unknown, string(k))
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return fieldErr(configField("status_map"), "%s is not a finding status", quoteShort(unknown[0]))
	}
	names := map[string]Status{}
	ids := map[string]Status{}
	for _, s := range Statuses() {
		base := configField("status_map." + string(s))
		t, ok := c.StatusMap[s]
		if !ok {
			return fieldErr(base, "is required: every finding status needs a Jira status")
		}
		if err := checkLine(base+".name", t.Name, true, maxStatusNameLen); err != nil {
			return err
		}
		switch t.CategoryKey {
		case CategoryNew, CategoryIndeterminate, CategoryDone:
		default:
			return fieldErr(base+".category_key", "must be one of new, indeterminate, done")
		}
		if t.ID != "" {
			if _, err := strconv.ParseUint(t.ID, 10, 64); err != nil {
				return fieldErr(base+".id", "must be a numeric Jira status id")
			}
			if prev, dup := ids[t.ID]; dup {
				return fieldErr(base+".id", "is also the status of %s; inbound changes would be ambiguous", prev)
			}
			ids[t.ID] = s
		}
		if err := checkLine(base+".resolution", t.Resolution, false, maxStatusNameLen); err != nil {
			return err
		}
		key := strings.ToLower(strings.TrimSpace(t.Name))
		if prev, dup := names[key]; dup {
			return fieldErr(base+".name", "%s is also the status of %s; inbound changes would be ambiguous", quoteShort(t.Name), prev)
		}
		names[key] = s
	}
	return nil
}

// validProjectKey accepts Jira project keys: a letter, then letters, digits or underscores.
func validProjectKey(s string) bool {
	if len(s) > 255 {
		return false
	}
	for i, r := range s {
		letter := r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z'
		if !letter && (i == 0 || !(r >= '0' && r <= '9' || r == '_')) {
			return false
		}
	}
	return s != ""
}

// linkPlaceholder is replaced by the finding id in LinkTemplate.
const linkPlaceholder = "{id}"

// ValidateLinkTemplate checks a link-back template: an absolute https URL (http only for a
// loopback host, for local development) without credentials, with the {id} placeholder in its
// path, query or fragment and no other {…} placeholder. The link ends up in every issue, so a
// template that could point elsewhere per finding, or at a non-web scheme, is refused here rather
// than discovered in Jira.
func ValidateLinkTemplate(tmpl string) error {
	if len(tmpl) > maxLinkTemplate {
		return fmt.Errorf("must be at most %d bytes", maxLinkTemplate)
	}
	if !utf8.ValidString(tmpl) || strings.IndexFunc(tmpl, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return errors.New("must not contain whitespace or control characters")
	}
	if !strings.Contains(tmpl, linkPlaceholder) {
		return errors.New("must contain the {id} placeholder, e.g. https://app.example.com/findings/{id}")
	}
	if rest := strings.ReplaceAll(tmpl, linkPlaceholder, ""); strings.ContainsAny(rest, "{}") {
		return errors.New("must not contain placeholders other than {id}")
	}
	// Parse an expansion, since {id} itself is not valid in a URL.
	const probe = "00000000-0000-0000-0000-000000000000"
	u, err := url.Parse(strings.ReplaceAll(tmpl, linkPlaceholder, probe))
	if err != nil {
		return errors.New("must be an absolute URL such as https://app.example.com/findings/{id}")
	}
	if u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		return errors.New("must be an absolute URL such as https://app.example.com/findings/{id}")
	}
	if u.User != nil {
		return errors.New("must not contain credentials")
	}
	if strings.Contains(u.Host, probe) {
		return errors.New("must not put {id} in the host")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopbackHost(u.Hostname()) {
			return errors.New("must use https (http is allowed only for localhost)")
		}
	default:
		return errors.New("must use https")
	}
	return nil
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// FindingURL expands LinkTemplate for a finding id. The id is path-escaped (a UUID needs no
// escaping today; the escaping keeps the template safe if ids ever change shape). It returns ""
// when no template is configured.
func (c SyncConfig) FindingURL(id uuid.UUID) (string, error) {
	if c.LinkTemplate == "" {
		return "", nil
	}
	if err := ValidateLinkTemplate(c.LinkTemplate); err != nil {
		return "", fieldErr(configField("link_template"), "%s", err.Error())
	}
	return strings.ReplaceAll(c.LinkTemplate, linkPlaceholder, url.PathEscape(id.String())), nil
}
