package findings

import (
	"time"

	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jira/webhook"
)

// IssueChange is one report Jira made about an issue: an accepted webhook delivery, or what the
// reconciliation pull observed. It carries ids, keys, statuses and ordering information only,
// never issue content.
//
// Its JSON form is a stored and a wire format: it is the webhook inbox record
// (webhook_deliveries.change), the input of the ApplyJiraChanges activity and part of the
// connection workflow's state. Fields and tags must not change; every status member is written,
// empty or not.
type IssueChange struct {
	DeliveryID string     `json:"delivery_id"`
	Event      string     `json:"event"`
	IssueID    string     `json:"issue_id"`
	IssueKey   string     `json:"issue_key"`
	Status     JiraStatus `json:"status"`
	// StatusChanged is set when the delivery's changelog records a status change (and
	// FromStatusName the status it left); a report without it carries the status only as the
	// issue's current one.
	StatusChanged  bool   `json:"status_changed"`
	FromStatusName string `json:"from_status_name,omitempty"`
	// TimestampMillis is Jira's time of the change (the webhook's timestamp, or the issue's
	// updated time for reconciliation); ReceivedAt the connector's time of receipt.
	TimestampMillis int64     `json:"timestamp_millis"`
	ReceivedAt      time.Time `json:"received_at"`
}

// EventReconcile is the Event of a change that the reconciliation pull observed.
const EventReconcile = "reconcile"

// ChangeFromWebhook is the change a parsed webhook delivery reports. deliveryID identifies the
// delivery (Jira's X-Atlassian-Webhook-Identifier, or a digest of the body when Jira sent none)
// and receivedAt is when the bridge accepted it.
func ChangeFromWebhook(deliveryID string, ev *webhook.Event, receivedAt time.Time) IssueChange {
	c := IssueChange{
		DeliveryID: deliveryID, Event: string(ev.Type), IssueID: ev.IssueID, IssueKey: ev.IssueKey,
		TimestampMillis: ev.TimestampMillis, ReceivedAt: receivedAt.UTC(),
	}
	if ev.Status != nil {
		c.Status = StatusFromJira(*ev.Status)
	}
	if ev.StatusChange != nil {
		c.StatusChanged = true
		c.FromStatusName = ev.StatusChange.FromName
	}
	return c
}

// ChangeFromIssue is what reconciliation observed of an issue: its current status as of its
// updated time. It is not a status change (StatusChanged is false).
func ChangeFromIssue(is jira.Issue, receivedAt time.Time) IssueChange {
	c := IssueChange{
		Event: EventReconcile, IssueID: is.ID, IssueKey: is.Key,
		TimestampMillis: is.Fields.Updated.UnixMilli(), ReceivedAt: receivedAt.UTC(),
	}
	if is.Fields.Status != nil {
		c.Status = StatusFromJira(*is.Fields.Status)
	}
	return c
}

// At is Jira's time of the change, or the time it was received when Jira gave none.
func (c IssueChange) At() time.Time {
	if c.TimestampMillis <= 0 {
		return c.ReceivedAt.UTC()
	}
	return time.UnixMilli(c.TimestampMillis).UTC()
}
