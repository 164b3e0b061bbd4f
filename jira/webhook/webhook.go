// Package webhook parses Jira issue webhook deliveries (jira:issue_created, jira:issue_updated,
// jira:issue_deleted) into a typed Event.
//
// Parsing is strict about what the connector relies on and lenient about everything else: the
// event name, the millisecond timestamp, the issue id and key and (for created/updated) the
// current status with its category key must be present and well-formed, while the hundreds of
// other fields a real payload carries are ignored. Invalid input is an error, never a panic and
// never a half-filled Event.
//
// Transitions are detected from changelog items (fieldId "status", or field "status" on older and
// Data Center payloads that lack fieldId), not from issue_event_type_name, which differs between
// Cloud ("issue_generic") and Data Center ("issue_resolved") for the same change.
package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jiraconnect/jiraconnect/jira"
)

// DefaultMaxBytes bounds a payload. Jira sends the whole issue (description, comments, worklogs
// …), so payloads of a few hundred KiB are normal; multi-MiB bodies are not.
const DefaultMaxBytes = 4 << 20

// EventType is a Jira webhook event name.
type EventType string

// The issue events the connector handles.
const (
	IssueCreated EventType = "jira:issue_created"
	IssueUpdated EventType = "jira:issue_updated"
	IssueDeleted EventType = "jira:issue_deleted"
)

// StatusChange is the status transition recorded in the changelog. FromID is empty for a
// newly created issue.
type StatusChange struct {
	FromID, FromName string
	ToID, ToName     string
}

// Actor is the user whose action triggered the event. Cloud sets AccountID; Data Center sets
// Name and Key. It is empty for events without a user (automation on some sites).
type Actor struct {
	AccountID   string
	Name        string
	Key         string
	DisplayName string
}

// Event is a parsed issue webhook.
type Event struct {
	Type      EventType
	Timestamp time.Time // from the payload's epoch-millisecond timestamp, UTC
	// TimestampMillis is the raw value, for ordering deliveries of the same issue.
	TimestampMillis int64
	IssueID         string
	IssueKey        string
	// Status is the issue's status after the change, as the REST API describes a status (only
	// the category's key is read; match on it, not on names, which are display text); nil only
	// for jira:issue_deleted payloads that carry no fields.
	Status *jira.Status
	// StatusChange is non-nil when the changelog contains a status change.
	StatusChange *StatusChange
	// Resolution is the current resolution name ("" when unresolved or absent).
	Resolution string
	Actor      Actor
	// MatchedWebhookIDs lists the dynamic webhooks whose filters matched (REST-registered
	// webhooks only).
	MatchedWebhookIDs []int64
	// IssueEventTypeName is informational only; it differs between Cloud and Data Center.
	IssueEventTypeName string
	ChangelogID        string
}

// ErrUnsupportedEvent is returned (wrapped) for valid payloads of events this package does not
// handle (comment_created, issue_property_set, …), so a receiver can acknowledge and skip them.
var ErrUnsupportedEvent = errors.New("webhook: unsupported event")

// ErrTooLarge is returned (wrapped) when a payload exceeds the size limit.
var ErrTooLarge = errors.New("webhook: payload too large")

// ParseError describes why a payload was rejected. Field is a JSON path such as "issue.key".
type ParseError struct {
	Field string
	Msg   string
}

func (e *ParseError) Error() string {
	if e.Field == "" {
		return "webhook: " + e.Msg
	}
	return "webhook: " + e.Field + ": " + e.Msg
}

func perr(field, format string, args ...any) error {
	return &ParseError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// ParseReader reads at most maxBytes (DefaultMaxBytes when ≤ 0) from r and parses them.
func ParseReader(r io.Reader, maxBytes int64) (*Event, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	body, err := io.ReadAll(io.LimitReader(r, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("webhook: read payload: %w", err)
	}
	if int64(len(body)) > maxBytes {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, maxBytes)
	}
	return parse(body)
}

// wire types: pointers and RawMessage let the parser tell "absent" from "zero" and check types.

type wireUser struct {
	AccountID   string `json:"accountId"`
	Name        string `json:"name"`
	Key         string `json:"key"`
	DisplayName string `json:"displayName"`
}

type wireStatus struct {
	ID             json.RawMessage `json:"id"`
	Name           *string         `json:"name"`
	StatusCategory *struct {
		Key *string `json:"key"`
	} `json:"statusCategory"`
}

type wireItem struct {
	Field      string  `json:"field"`
	FieldType  string  `json:"fieldtype"`
	FieldID    string  `json:"fieldId"`
	From       *string `json:"from"`
	FromString *string `json:"fromString"`
	To         *string `json:"to"`
	ToString   *string `json:"toString"`
}

type wirePayload struct {
	Timestamp          json.RawMessage `json:"timestamp"`
	WebhookEvent       *string         `json:"webhookEvent"`
	IssueEventTypeName string          `json:"issue_event_type_name"`
	User               *wireUser       `json:"user"`
	MatchedWebhookIDs  []json.Number   `json:"matchedWebhookIds"`
	Issue              *struct {
		ID     json.RawMessage `json:"id"`
		Key    *string         `json:"key"`
		Fields *struct {
			Status     *wireStatus `json:"status"`
			Resolution *struct {
				Name string `json:"name"`
			} `json:"resolution"`
		} `json:"fields"`
	} `json:"issue"`
	Changelog *struct {
		ID    json.RawMessage `json:"id"`
		Items []wireItem      `json:"items"`
	} `json:"changelog"`
}

// Timestamps outside [2000-01-01, 2200-01-01) are rejected: a value in seconds (a common
// producer bug) falls below the lower bound.
const (
	minTimestampMillis = 946684800000
	maxTimestampMillis = 7258118400000
)

// Parse parses one payload (at most DefaultMaxBytes).
func Parse(body []byte) (*Event, error) {
	if len(body) > DefaultMaxBytes {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, DefaultMaxBytes)
	}
	return parse(body)
}

func parse(body []byte) (*Event, error) {
	if !utf8.Valid(body) {
		return nil, perr("", "payload is not valid UTF-8")
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, perr("", "payload is not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	var w wirePayload
	if err := dec.Decode(&w); err != nil {
		return nil, perr("", "invalid JSON: %s", describeJSONError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, perr("", "trailing data after the JSON object")
	}

	if w.WebhookEvent == nil || *w.WebhookEvent == "" {
		return nil, perr("webhookEvent", "missing")
	}
	ev := &Event{Type: EventType(*w.WebhookEvent), IssueEventTypeName: clip(w.IssueEventTypeName, 100)}
	switch ev.Type {
	case IssueCreated, IssueUpdated, IssueDeleted:
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedEvent, clip(*w.WebhookEvent, 100))
	}

	ms, err := parseMillis(w.Timestamp)
	if err != nil {
		return nil, err
	}
	ev.TimestampMillis = ms
	ev.Timestamp = time.UnixMilli(ms).UTC()

	if w.Issue == nil {
		return nil, perr("issue", "missing")
	}
	if ev.IssueID, err = parseID("issue.id", w.Issue.ID, true); err != nil {
		return nil, err
	}
	if w.Issue.Key == nil || *w.Issue.Key == "" {
		return nil, perr("issue.key", "missing")
	}
	if !validIssueKey(*w.Issue.Key) {
		return nil, perr("issue.key", "%q is not an issue key (PROJECT-123)", clip(*w.Issue.Key, 64))
	}
	ev.IssueKey = *w.Issue.Key

	if f := w.Issue.Fields; f != nil {
		if f.Status != nil {
			st, err := parseStatus(f.Status)
			if err != nil {
				return nil, err
			}
			ev.Status = st
		}
		if f.Resolution != nil {
			ev.Resolution = clip(f.Resolution.Name, 255)
		}
	}
	if ev.Status == nil && ev.Type != IssueDeleted {
		return nil, perr("issue.fields.status", "missing")
	}

	if w.User != nil {
		ev.Actor = Actor{AccountID: clip(w.User.AccountID, 128), Name: clip(w.User.Name, 255), Key: clip(w.User.Key, 255), DisplayName: clip(w.User.DisplayName, 255)}
	}
	for i, n := range w.MatchedWebhookIDs {
		id, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil || id <= 0 {
			return nil, perr(fmt.Sprintf("matchedWebhookIds[%d]", i), "not a positive integer")
		}
		ev.MatchedWebhookIDs = append(ev.MatchedWebhookIDs, id)
	}

	if cl := w.Changelog; cl != nil {
		if ev.ChangelogID, err = parseID("changelog.id", cl.ID, false); err != nil {
			return nil, err
		}
		for i, it := range cl.Items {
			if !isStatusItem(it) {
				continue
			}
			if it.To == nil || *it.To == "" {
				return nil, perr(fmt.Sprintf("changelog.items[%d].to", i), "status change without a target status id")
			}
			sc := &StatusChange{ToID: clip(*it.To, 64), FromID: clip(deref(it.From), 64), FromName: clip(deref(it.FromString), 255), ToName: clip(deref(it.ToString), 255)}
			ev.StatusChange = sc
		}
	}
	return ev, nil
}

// isStatusItem recognises the workflow status field. fieldId is authoritative when present;
// without it (older and Data Center payloads) the system field is named "status" — a custom
// field that happens to be called "Status" has fieldtype "custom" and is not matched.
func isStatusItem(it wireItem) bool {
	if it.FieldID != "" {
		return it.FieldID == "status"
	}
	return strings.EqualFold(it.Field, "status") && it.FieldType != "custom"
}

func parseMillis(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, perr("timestamp", "missing")
	}
	s := string(raw)
	if strings.HasPrefix(s, `"`) {
		return 0, perr("timestamp", "must be a number of epoch milliseconds, not a string")
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, perr("timestamp", "must be an integer number of epoch milliseconds")
	}
	if ms < minTimestampMillis || ms >= maxTimestampMillis {
		return 0, perr("timestamp", "%d is not a plausible epoch-millisecond time (seconds instead of milliseconds?)", ms)
	}
	return ms, nil
}

// parseID accepts a numeric id given as a JSON string or number.
func parseID(field string, raw json.RawMessage, required bool) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		if required {
			return "", perr(field, "missing")
		}
		return "", nil
	}
	s := string(raw)
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", perr(field, "invalid string")
		}
	}
	if _, err := strconv.ParseUint(s, 10, 64); err != nil {
		return "", perr(field, "%q is not a numeric id", clip(s, 32))
	}
	return s, nil
}

func parseStatus(w *wireStatus) (*jira.Status, error) {
	id, err := parseID("issue.fields.status.id", w.ID, true)
	if err != nil {
		return nil, err
	}
	if w.Name == nil || *w.Name == "" {
		return nil, perr("issue.fields.status.name", "missing")
	}
	if w.StatusCategory == nil || w.StatusCategory.Key == nil {
		return nil, perr("issue.fields.status.statusCategory.key", "missing")
	}
	key := *w.StatusCategory.Key
	switch key {
	case "new", "indeterminate", "done", "undefined":
	default:
		return nil, perr("issue.fields.status.statusCategory.key", "unknown status category %q", clip(key, 32))
	}
	return &jira.Status{ID: id, Name: clip(*w.Name, 255), Category: jira.StatusCategory{Key: key}}, nil
}

// validIssueKey accepts PROJECT-123: a project key (letter, then letters, digits or underscores)
// and a positive number.
func validIssueKey(k string) bool {
	if len(k) > 255 {
		return false
	}
	proj, num, ok := strings.Cut(k, "-")
	if !ok || proj == "" || num == "" {
		return false
	}
	for i, r := range proj {
		letter := r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z'
		if (i == 0 && !letter) || (!letter && !(r >= '0' && r <= '9') && r != '_') {
			return false
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	return err == nil && n > 0 && num[0] != '0'
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// clip bounds strings copied from the payload (they end up in logs and workflow history).
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// describeJSONError reports a decoding error without echoing payload content.
func describeJSONError(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at offset %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("field %s has the wrong type (%s)", te.Field, te.Value)
		}
		return fmt.Sprintf("wrong type (%s)", te.Value)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "unexpected end of input"
	}
	return "malformed"
}
