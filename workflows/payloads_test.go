package workflows

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/client"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/findings"
)

// payloadCheck decodes a recorded payload into its Go type and encodes it again.
type payloadCheck func(data []byte) ([]byte, error)

func as[T any]() payloadCheck {
	return func(data []byte) ([]byte, error) {
		var v T
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		return json.Marshal(v)
	}
}

// TestRecordedPayloadsKeepTheirJSON decodes every finding-sync activity input and result and every
// jira-issue-changed signal in the recorded histories into the type that carries it today and
// encodes it again: the bytes must be the recorded ones. Replay compares commands, not payloads,
// so this is what pins the JSON of these types (which moved between packages) to the contract
// that running workflows and stored inbox records already hold.
func TestRecordedPayloadsKeepTheirJSON(t *testing.T) {
	inputs := map[string]payloadCheck{
		activities.NameDrainFindingQueue:     as[activities.DrainInput](),
		activities.NameApplyJiraChanges:      as[activities.ApplyInput](),
		activities.NameApplyInboxChanges:     as[activities.InboxInput](),
		activities.NameReconcileLinkedIssues: as[activities.ConnectionRef](),
		activities.NameRegisterWebhooks:      as[activities.ConnectionRef](),
		activities.NameRefreshWebhooks:       as[activities.ConnectionRef](),
	}
	results := map[string]payloadCheck{
		activities.NameDrainFindingQueue:     as[activities.DrainResult](),
		activities.NameApplyJiraChanges:      as[activities.ApplyResult](),
		activities.NameApplyInboxChanges:     as[activities.InboxResult](),
		activities.NameReconcileLinkedIssues: as[activities.ReconcileResult](),
		activities.NameRegisterWebhooks:      as[activities.WebhookResult](),
		activities.NameRefreshWebhooks:       as[activities.WebhookResult](),
	}
	signals := map[string]payloadCheck{SignalJiraIssueChanged: as[findings.IssueChange]()}

	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded histories: %v", err)
	}
	seen := map[string]int{}
	check := func(file, what string, c payloadCheck, data []byte) {
		t.Helper()
		got, err := c(data)
		if err != nil {
			t.Errorf("%s: %s: recorded payload does not decode: %v\n%s", file, what, err, data)
			return
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s: %s: JSON changed\nrecorded %s\nnow      %s", file, what, data, got)
		}
		seen[what]++
	}
	for _, f := range files {
		r, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		h, err := client.HistoryFromJSON(r, client.HistoryJSONOptions{})
		_ = r.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		scheduled := map[int64]string{}
		for _, e := range h.GetEvents() {
			if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
				name := a.GetActivityType().GetName()
				scheduled[e.GetEventId()] = name
				if c, ok := inputs[name]; ok {
					for _, p := range a.GetInput().GetPayloads() {
						check(f, name+" input", c, p.GetData())
					}
				}
			}
			if a := e.GetActivityTaskCompletedEventAttributes(); a != nil {
				name := scheduled[a.GetScheduledEventId()]
				if c, ok := results[name]; ok {
					for _, p := range a.GetResult().GetPayloads() {
						check(f, name+" result", c, p.GetData())
					}
				}
			}
			if a := e.GetWorkflowExecutionSignaledEventAttributes(); a != nil {
				if c, ok := signals[a.GetSignalName()]; ok {
					for _, p := range a.GetInput().GetPayloads() {
						check(f, a.GetSignalName()+" signal", c, p.GetData())
					}
				}
			}
		}
	}
	// The histories must exercise every type checked, or the test proves nothing about it.
	for name := range inputs {
		if seen[name+" input"] == 0 {
			t.Errorf("no recorded %s input", name)
		}
	}
	for name := range results {
		if seen[name+" result"] == 0 {
			t.Errorf("no recorded %s result", name)
		}
	}
	if seen[SignalJiraIssueChanged+" signal"] == 0 {
		t.Errorf("no recorded %s signal", SignalJiraIssueChanged)
	}
	t.Logf("payloads checked: %v", seen)
}
