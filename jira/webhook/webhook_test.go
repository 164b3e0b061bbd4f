package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jiraconnect/jiraconnect/jira"
)

func load(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRecordedPayloads(t *testing.T) {
	tests := []struct {
		file string
		want Event
	}{
		{
			file: "cloud-issue-updated-resolved.json",
			want: Event{
				Type: IssueUpdated, TimestampMillis: 1550286940507, IssueID: "10040", IssueKey: "TES-41",
				Status:       &jira.Status{ID: "10002", Name: "Done", Category: jira.StatusCategory{Key: "done"}},
				StatusChange: &StatusChange{FromID: "3", FromName: "In Progress", ToID: "10002", ToName: "Done"},
				Resolution:   "Done",
				Actor:        Actor{AccountID: "5c5f880629be9642ba529340", Name: "admin", Key: "admin", DisplayName: "Test User"},
				ChangelogID:  "10228", IssueEventTypeName: "issue_generic",
			},
		},
		{
			// Data Center: same kind of change, different issue_event_type_name, no fieldId.
			file: "dc-issue-updated-resolved.json",
			want: Event{
				Type: IssueUpdated, TimestampMillis: 1565652182025, IssueID: "10300", IssueKey: "TES-4",
				Status:       &jira.Status{ID: "5", Name: "Resolved", Category: jira.StatusCategory{Key: "done"}},
				StatusChange: &StatusChange{FromID: "3", FromName: "In Progress", ToID: "5", ToName: "Resolved"},
				Resolution:   "Done",
				Actor:        Actor{Name: "admin", Key: "admin", DisplayName: "Test User"},
				ChangelogID:  "10414", IssueEventTypeName: "issue_resolved",
			},
		},
		{
			file: "cloud-issue-created.json",
			want: Event{
				Type: IssueCreated, TimestampMillis: 1550286113023, IssueID: "10040", IssueKey: "TES-41",
				Status:       &jira.Status{ID: "10001", Name: "To Do", Category: jira.StatusCategory{Key: "new"}},
				StatusChange: &StatusChange{ToID: "10001", ToName: "To Do"},
				Actor:        Actor{AccountID: "5c5f880629be9642ba529340", Name: "admin", Key: "admin", DisplayName: "Test User"},
				ChangelogID:  "10222", IssueEventTypeName: "issue_created",
			},
		},
		{
			file: "cloud-issue-deleted.json",
			want: Event{
				Type: IssueDeleted, TimestampMillis: 1562177136176, IssueID: "10303", IssueKey: "IDT-19",
				Status: &jira.Status{ID: "10004", Name: "To Do", Category: jira.StatusCategory{Key: "new"}},
				Actor:  Actor{AccountID: "5c5f880629be9642ba529340", Name: "admin", Key: "admin", DisplayName: "Test User"},
			},
		},
		{
			file: "cloud-issue-updated-dynamic.json",
			want: Event{
				Type: IssueUpdated, TimestampMillis: 1550286940507, IssueID: "10040", IssueKey: "TES-41",
				Status:       &jira.Status{ID: "10002", Name: "Done", Category: jira.StatusCategory{Key: "done"}},
				StatusChange: &StatusChange{FromID: "3", FromName: "In Progress", ToID: "10002", ToName: "Done"},
				Resolution:   "Done",
				Actor:        Actor{AccountID: "5c5f880629be9642ba529340", Name: "admin", Key: "admin", DisplayName: "Test User"},
				ChangelogID:  "10228", IssueEventTypeName: "issue_generic",
				MatchedWebhookIDs: []int64{1000, 1001},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := Parse(load(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Timestamp = time.UnixMilli(tt.want.TimestampMillis).UTC()
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(tt.want)
			if !bytes.Equal(gj, wj) {
				t.Errorf("got  %s\nwant %s", gj, wj)
			}
		})
	}
}

func mutate(t *testing.T, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(load(t, "cloud-issue-updated-resolved.json"), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func issue(m map[string]any) map[string]any  { return m["issue"].(map[string]any) }
func fields(m map[string]any) map[string]any { return issue(m)["fields"].(map[string]any) }

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name      string
		body      []byte
		wantField string
	}{
		{"missing issue key", mutate(t, func(m map[string]any) { delete(issue(m), "key") }), "issue.key"},
		{"bad issue key", mutate(t, func(m map[string]any) { issue(m)["key"] = "TES 41" }), "issue.key"},
		{"key injection", mutate(t, func(m map[string]any) { issue(m)["key"] = "TES-41/../x" }), "issue.key"},
		{"missing issue", mutate(t, func(m map[string]any) { delete(m, "issue") }), "issue"},
		{"missing issue id", mutate(t, func(m map[string]any) { delete(issue(m), "id") }), "issue.id"},
		{"non-numeric issue id", mutate(t, func(m map[string]any) { issue(m)["id"] = "abc" }), "issue.id"},
		{"missing timestamp", mutate(t, func(m map[string]any) { delete(m, "timestamp") }), "timestamp"},
		{"timestamp as string", mutate(t, func(m map[string]any) { m["timestamp"] = "1550286940507" }), "timestamp"},
		{"timestamp in seconds", mutate(t, func(m map[string]any) { m["timestamp"] = 1550286940 }), "timestamp"},
		{"fractional timestamp", mutate(t, func(m map[string]any) { m["timestamp"] = 1550286940507.5 }), "timestamp"},
		{"negative timestamp", mutate(t, func(m map[string]any) { m["timestamp"] = -1 }), "timestamp"},
		{"missing webhookEvent", mutate(t, func(m map[string]any) { delete(m, "webhookEvent") }), "webhookEvent"},
		{"missing status", mutate(t, func(m map[string]any) { delete(fields(m), "status") }), "issue.fields.status"},
		{"status without category", mutate(t, func(m map[string]any) {
			delete(fields(m)["status"].(map[string]any), "statusCategory")
		}), "issue.fields.status.statusCategory.key"},
		{"unknown category", mutate(t, func(m map[string]any) {
			fields(m)["status"].(map[string]any)["statusCategory"] = map[string]any{"key": "completed"}
		}), "issue.fields.status.statusCategory.key"},
		{"status change without target", mutate(t, func(m map[string]any) {
			items := m["changelog"].(map[string]any)["items"].([]any)
			delete(items[1].(map[string]any), "to")
		}), "changelog.items[1].to"},
		{"bad matched ids", mutate(t, func(m map[string]any) { m["matchedWebhookIds"] = []any{0} }), "matchedWebhookIds[0]"},
		{"not an object", []byte(`[1,2]`), ""},
		{"empty", []byte(``), ""},
		{"trailing data", append(load(t, "cloud-issue-created.json"), []byte(`{}`)...), ""},
		{"truncated", load(t, "cloud-issue-created.json")[:200], ""},
		{"invalid utf8", []byte("{\"webhookEvent\":\"\xff\"}"), ""},
		{"wrong type", []byte(`{"webhookEvent":"jira:issue_updated","timestamp":1550286940507,"issue":"TES-1"}`), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Parse(tt.body)
			if err == nil {
				t.Fatalf("Parse accepted invalid payload: %+v", ev)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if pe.Field != tt.wantField {
				t.Errorf("field = %q, want %q (err %v)", pe.Field, tt.wantField, err)
			}
		})
	}
}

func TestParseUnsupportedEvent(t *testing.T) {
	body := mutate(t, func(m map[string]any) { m["webhookEvent"] = "comment_created" })
	_, err := Parse(body)
	if !errors.Is(err, ErrUnsupportedEvent) {
		t.Fatalf("err = %v, want ErrUnsupportedEvent", err)
	}
}

func TestStatusChangeDetection(t *testing.T) {
	// A custom field whose display name is "Status" is not the workflow status.
	body := mutate(t, func(m map[string]any) {
		m["changelog"] = map[string]any{"id": "1", "items": []any{
			map[string]any{"field": "Status", "fieldtype": "custom", "from": nil, "to": "x", "toString": "red"},
			map[string]any{"field": "Status", "fieldtype": "custom", "fieldId": "customfield_10050", "to": "y"},
		}}
	})
	ev, err := Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if ev.StatusChange != nil {
		t.Errorf("custom field change detected as status change: %+v", ev.StatusChange)
	}
	// No changelog at all: no status change, current status still reported.
	body = mutate(t, func(m map[string]any) { delete(m, "changelog") })
	if ev, err = Parse(body); err != nil || ev.StatusChange != nil || ev.Status.Category.Key != "done" {
		t.Fatalf("ev=%+v err=%v", ev, err)
	}
}

func TestDeletedWithoutFields(t *testing.T) {
	body := []byte(`{"timestamp":1562177136176,"webhookEvent":"jira:issue_deleted","issue":{"id":10303,"key":"IDT-19"}}`)
	ev, err := Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Status != nil || ev.IssueID != "10303" {
		t.Errorf("ev = %+v", ev)
	}
	// But an update without fields is rejected.
	if _, err := Parse(bytes.Replace(body, []byte("issue_deleted"), []byte("issue_updated"), 1)); err == nil {
		t.Error("update without status accepted")
	}
}

func TestSizeLimit(t *testing.T) {
	body := load(t, "cloud-issue-created.json")
	if _, err := ParseReader(bytes.NewReader(body), int64(len(body)-1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if _, err := ParseReader(bytes.NewReader(body), int64(len(body))); err != nil {
		t.Fatalf("exact-size payload rejected: %v", err)
	}
	big := append([]byte(`{"pad":"`), bytes.Repeat([]byte("a"), DefaultMaxBytes)...)
	if _, err := Parse(big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestErrorsDoNotEchoPayload(t *testing.T) {
	secret := "s3cr3t-value-that-must-not-appear"
	body := []byte(`{"webhookEvent":"jira:issue_updated","timestamp":"` + secret + `"}`)
	_, err := Parse(body)
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("err = %v", err)
	}
	body = []byte(`{"webhookEvent":"jira:issue_updated","timestamp":1550286940507,"issue":{"id":"1","key":"A-1","fields":{"status":{"id":"1","name":"x","statusCategory":{"key":"done"}}}}, "x": ` + secret + `}`)
	_, err = Parse(body)
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"cloud-issue-updated-resolved.json", "dc-issue-updated-resolved.json", "cloud-issue-created.json", "cloud-issue-deleted.json", "cloud-issue-updated-dynamic.json"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"timestamp":1,"webhookEvent":"jira:issue_deleted","issue":{"id":"1","key":"A-1"}}`))
	f.Add([]byte(`{"changelog":{"items":[{"fieldId":"status"}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := Parse(body)
		if err != nil {
			if ev != nil {
				t.Fatal("non-nil event with error")
			}
			return
		}
		// Every accepted event satisfies the documented invariants.
		switch ev.Type {
		case IssueCreated, IssueUpdated, IssueDeleted:
		default:
			t.Fatalf("accepted event type %q", ev.Type)
		}
		if !validIssueKey(ev.IssueKey) || ev.IssueID == "" {
			t.Fatalf("accepted issue %q/%q", ev.IssueID, ev.IssueKey)
		}
		if ev.TimestampMillis < minTimestampMillis || ev.TimestampMillis >= maxTimestampMillis {
			t.Fatalf("accepted timestamp %d", ev.TimestampMillis)
		}
		if ev.Type != IssueDeleted && (ev.Status == nil || ev.Status.ID == "" || ev.Status.Category.Key == "") {
			t.Fatalf("accepted %s without status: %+v", ev.Type, ev.Status)
		}
		if ev.StatusChange != nil && ev.StatusChange.ToID == "" {
			t.Fatal("status change without target")
		}
	})
}
