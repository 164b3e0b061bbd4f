package jira

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Flavor selects the Jira deployment and with it the REST API version and rich-text format.
type Flavor string

const (
	// Cloud is Jira Cloud: REST API v3, rich text as Atlassian Document Format, users by accountId.
	Cloud Flavor = "cloud"
	// DataCenter is Jira Data Center / Server: REST API v2, rich text as wiki markup, users by name.
	DataCenter Flavor = "datacenter"
)

// User is a Jira user as returned by /myself, issue fields and webhook payloads. Cloud fills
// AccountID; Data Center fills Name and Key. Email may be hidden by the user's privacy settings.
type User struct {
	AccountID   string `json:"accountId,omitempty"`
	Name        string `json:"name,omitempty"`
	Key         string `json:"key,omitempty"`
	DisplayName string `json:"displayName,omitempty"`
	Email       string `json:"emailAddress,omitempty"`
	Active      bool   `json:"active"`
	TimeZone    string `json:"timeZone,omitempty"`
}

// StatusCategory is one of Jira's fixed status categories. Key is the stable identifier
// ("new", "indeterminate", "done"); Name is display text and differs between sites.
type StatusCategory struct {
	ID   int    `json:"id"`
	Key  string `json:"key"`
	Name string `json:"name"`
}

// Status is a workflow status.
type Status struct {
	ID       string         `json:"id"`
	Name     string         `json:"name"`
	Category StatusCategory `json:"statusCategory"`
}

// Resolution is an issue resolution.
type Resolution struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Priority is an issue priority.
type Priority struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// IssueType is an issue type as seen in an issue or in createmeta.
type IssueType struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Subtask bool   `json:"subtask"`
}

// Project is a project reference.
type Project struct {
	ID   string `json:"id"`
	Key  string `json:"key"`
	Name string `json:"name"`
}

// Issue is an issue from search or GET issue. Only requested fields are present: Jira's new
// search returns just the id unless fields are asked for.
type Issue struct {
	ID     string
	Key    string
	Fields IssueFields
	// Raw holds every returned field by id, including custom fields and rich-text fields whose
	// format depends on the flavor (ADF object on Cloud v3, wiki string on Data Center).
	Raw map[string]json.RawMessage
}

// IssueFields are the typed system fields. Absent fields are zero values / nil pointers.
type IssueFields struct {
	Summary        string
	Status         *Status
	Resolution     *Resolution
	ResolutionDate time.Time
	Created        time.Time
	Updated        time.Time
	Labels         []string
	IssueType      *IssueType
	Priority       *Priority
	Project        *Project
	Assignee       *User
	Reporter       *User
}

// wire shapes. IDs are decoded leniently (string or number) because Jira is inconsistent about
// them (statusCategory.id is a number, most ids are strings, webhook ids are numbers).

type wireID string

func (w *wireID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*w = ""
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*w = wireID(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("id is neither a string nor a number: %w", err)
	}
	*w = wireID(n.String())
	return nil
}

type wireStatusCategory struct {
	ID   wireID `json:"id"`
	Key  string `json:"key"`
	Name string `json:"name"`
}

type wireStatus struct {
	ID             wireID              `json:"id"`
	Name           string              `json:"name"`
	StatusCategory *wireStatusCategory `json:"statusCategory"`
}

func (w *wireStatus) status() *Status {
	if w == nil {
		return nil
	}
	s := &Status{ID: string(w.ID), Name: w.Name}
	if w.StatusCategory != nil {
		id, _ := strconv.Atoi(string(w.StatusCategory.ID))
		s.Category = StatusCategory{ID: id, Key: w.StatusCategory.Key, Name: w.StatusCategory.Name}
	}
	return s
}

type wireNamed struct {
	ID      wireID `json:"id"`
	Key     string `json:"key"`
	Name    string `json:"name"`
	Subtask bool   `json:"subtask"`
}

type wireIssue struct {
	ID     wireID                     `json:"id"`
	Key    string                     `json:"key"`
	Fields map[string]json.RawMessage `json:"fields"`
}

// UnmarshalJSON decodes an issue bean, typing the system fields and keeping all fields raw.
// A system field of the wrong JSON type is an error, not a silently empty value.
func (i *Issue) UnmarshalJSON(b []byte) error {
	var w wireIssue
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	out := Issue{ID: string(w.ID), Key: w.Key, Raw: w.Fields}
	f := &out.Fields
	for name, raw := range w.Fields {
		if isJSONNull(raw) {
			continue
		}
		var err error
		switch name {
		case "summary":
			err = json.Unmarshal(raw, &f.Summary)
		case "status":
			var s wireStatus
			if err = json.Unmarshal(raw, &s); err == nil {
				f.Status = s.status()
			}
		case "resolution":
			var r wireNamed
			if err = json.Unmarshal(raw, &r); err == nil {
				f.Resolution = &Resolution{ID: string(r.ID), Name: r.Name}
			}
		case "resolutiondate":
			err = unmarshalTime(raw, &f.ResolutionDate)
		case "created":
			err = unmarshalTime(raw, &f.Created)
		case "updated":
			err = unmarshalTime(raw, &f.Updated)
		case "labels":
			err = json.Unmarshal(raw, &f.Labels)
		case "issuetype":
			var t wireNamed
			if err = json.Unmarshal(raw, &t); err == nil {
				f.IssueType = &IssueType{ID: string(t.ID), Name: t.Name, Subtask: t.Subtask}
			}
		case "priority":
			var p wireNamed
			if err = json.Unmarshal(raw, &p); err == nil {
				f.Priority = &Priority{ID: string(p.ID), Name: p.Name}
			}
		case "project":
			var p wireNamed
			if err = json.Unmarshal(raw, &p); err == nil {
				f.Project = &Project{ID: string(p.ID), Key: p.Key, Name: p.Name}
			}
		case "assignee":
			f.Assignee = new(User)
			err = json.Unmarshal(raw, f.Assignee)
		case "reporter":
			f.Reporter = new(User)
			err = json.Unmarshal(raw, f.Reporter)
		}
		if err != nil {
			return fmt.Errorf("issue %s field %q: %w", w.Key, name, err)
		}
	}
	*i = out
	return nil
}

func isJSONNull(raw json.RawMessage) bool {
	return len(raw) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// ParseTime parses a Jira timestamp string.
//
// Jira timestamps use a numeric zone offset without a colon (2019-02-15T19:15:40.470-0800), which
// time.RFC3339 rejects; the other layouts cover RFC 3339 producers and date-only values.
func ParseTime(s string) (time.Time, error) {
	layouts := [...]string{
		"2006-01-02T15:04:05.000-0700",
		"2006-01-02T15:04:05-0700",
		"2006-01-02T15:04:05.000Z0700",
		time.RFC3339Nano,
		"2006-01-02",
	}
	for _, l := range layouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("unrecognised Jira timestamp %q", s)
}

// unmarshalTime accepts a Jira timestamp string, epoch milliseconds, or null.
func unmarshalTime(raw json.RawMessage, dst *time.Time) error {
	raw = bytes.TrimSpace(raw)
	if isJSONNull(raw) {
		*dst = time.Time{}
		return nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		t, err := ParseTime(s)
		if err != nil {
			return err
		}
		*dst = t
		return nil
	}
	var ms int64
	if err := json.Unmarshal(raw, &ms); err != nil {
		return fmt.Errorf("timestamp is neither a string nor integer milliseconds: %w", err)
	}
	*dst = time.UnixMilli(ms).UTC()
	return nil
}
