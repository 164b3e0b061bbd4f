package findings

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jira/webhook"
)

// The inbox record's JSON is stored in webhook_deliveries.change and crosses Temporal (recorded
// workflow histories hold it), so its bytes are pinned here.
func TestIssueChangeFromWebhookAndItsJSON(t *testing.T) {
	t.Parallel()
	body, err := os.ReadFile("../jira/webhook/testdata/cloud-issue-updated-resolved.json")
	require.NoError(t, err)
	ev, err := webhook.Parse(body)
	require.NoError(t, err)
	received := time.Date(2026, 3, 2, 9, 0, 0, 123000000, time.FixedZone("CET", 3600))

	c := ChangeFromWebhook("delivery-1", ev, received)
	assert.Equal(t, IssueChange{
		DeliveryID: "delivery-1", Event: "jira:issue_updated", IssueID: "10040", IssueKey: "TES-41",
		Status:        JiraStatus{ID: "10002", Name: "Done", CategoryKey: "done"},
		StatusChanged: true, FromStatusName: "In Progress",
		TimestampMillis: 1550286940507, ReceivedAt: received.UTC(),
	}, c)
	assert.Equal(t, time.UnixMilli(1550286940507).UTC(), c.At())

	raw, err := json.Marshal(c)
	require.NoError(t, err)
	assert.Equal(t, `{"delivery_id":"delivery-1","event":"jira:issue_updated","issue_id":"10040","issue_key":"TES-41",`+
		`"status":{"id":"10002","name":"Done","category_key":"done"},"status_changed":true,"from_status_name":"In Progress",`+
		`"timestamp_millis":1550286940507,"received_at":"2026-03-02T08:00:00.123Z"}`, string(raw), "member order and spelling are a stored format")

	// A change without a status (a deleted issue) still writes every status member, as records
	// stored and histories recorded before this type existed do.
	raw, err = json.Marshal(IssueChange{DeliveryID: "d", Event: "jira:issue_deleted", IssueID: "1", IssueKey: "A-1"})
	require.NoError(t, err)
	assert.Equal(t, `{"delivery_id":"d","event":"jira:issue_deleted","issue_id":"1","issue_key":"A-1",`+
		`"status":{"id":"","name":"","category_key":""},"status_changed":false,"timestamp_millis":0,"received_at":"0001-01-01T00:00:00Z"}`, string(raw))
}

func TestIssueChangeFromIssue(t *testing.T) {
	t.Parallel()
	updated := time.Date(2026, 3, 2, 8, 30, 0, 0, time.UTC)
	received := updated.Add(time.Minute)
	is := jira.Issue{ID: "10001", Key: "SEC-1", Fields: jira.IssueFields{Updated: updated,
		Status: &jira.Status{ID: "3", Name: "In Progress", Category: jira.StatusCategory{ID: 4, Key: "indeterminate", Name: "In Progress"}}}}
	c := ChangeFromIssue(is, received)
	assert.Equal(t, IssueChange{Event: EventReconcile, IssueID: "10001", IssueKey: "SEC-1",
		Status:          JiraStatus{ID: "3", Name: "In Progress", CategoryKey: "indeterminate"},
		TimestampMillis: updated.UnixMilli(), ReceivedAt: received}, c)
	assert.Equal(t, updated, c.At())
}

func TestIssueChangeAtFallsBackToReceipt(t *testing.T) {
	t.Parallel()
	received := time.Date(2026, 3, 2, 8, 30, 0, 0, time.UTC)
	assert.Equal(t, received, IssueChange{ReceivedAt: received}.At())
	assert.True(t, IssueChange{}.At().IsZero())
}
