// Package workflows holds jiraconnect's Temporal workflows and the pure state machines they
// drive. Everything here is deterministic: no I/O, no wall clock, no randomness, no goroutines —
// only workflow APIs. The world is touched through activities (package activities).
package workflows

import (
	"fmt"

	"github.com/google/uuid"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// TaskQueue is where connection workflows and their activities run.
const TaskQueue = "jira-connections"

// WorkflowIDPrefix prefixes every connection workflow id.
const WorkflowIDPrefix = "jira-connection/"

// WorkflowID is the stable id of a connection's workflow. It is derived from the connection id
// only, so the API can signal or query it without a lookup, and a duplicate start is rejected.
func WorkflowID(connectionID uuid.UUID) string { return WorkflowIDPrefix + connectionID.String() }

// Search attributes that let operators filter connection workflows in the Temporal UI.
var (
	AttrOrgID            = temporal.NewSearchAttributeKeyKeyword("JiraConnectOrgId")
	AttrConnectionStatus = temporal.NewSearchAttributeKeyKeyword("JiraConnectionStatus")
	AttrStale            = temporal.NewSearchAttributeKeyBool("JiraConnectionStale")
	AttrNeedsReauth      = temporal.NewSearchAttributeKeyBool("JiraConnectionNeedsReauth")
)

// Names of the workflow's message handlers, shared with the API.
const (
	QueryState   = "state"
	SignalRevoke = "revoke"
)

// ConnectionInput starts a connection workflow. It carries ids only — never a credential: the
// activities load and unseal credentials themselves, so no secret enters workflow history.
type ConnectionInput struct {
	OrgID        uuid.UUID `json:"org_id"`
	ConnectionID uuid.UUID `json:"connection_id"`
}

// ConnectionState is what the state query returns.
type ConnectionState struct {
	OrgID        uuid.UUID `json:"org_id"`
	ConnectionID uuid.UUID `json:"connection_id"`
	Status       string    `json:"status"`
}

// ConnectionWorkflow is the long-lived workflow of one Jira connection.
//
// This is the foundation's version: it registers its search attributes and state query and lives
// until the connection is revoked. Syncing, staleness and finding sync build on it.
func ConnectionWorkflow(ctx workflow.Context, in ConnectionInput) error {
	if in.OrgID == uuid.Nil || in.ConnectionID == uuid.Nil {
		return temporal.NewNonRetryableApplicationError("connection workflow needs org and connection ids", "invalid_input", nil)
	}
	state := ConnectionState{OrgID: in.OrgID, ConnectionID: in.ConnectionID, Status: "active"}
	if err := workflow.SetQueryHandler(ctx, QueryState, func() (ConnectionState, error) { return state, nil }); err != nil {
		return fmt.Errorf("register state query: %w", err)
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx,
		AttrOrgID.ValueSet(in.OrgID.String()),
		AttrConnectionStatus.ValueSet(state.Status),
		AttrStale.ValueSet(false),
		AttrNeedsReauth.ValueSet(false),
	); err != nil {
		return fmt.Errorf("upsert search attributes: %w", err)
	}
	workflow.GetSignalChannel(ctx, SignalRevoke).Receive(ctx, nil)
	state.Status = "revoked"
	return workflow.UpsertTypedSearchAttributes(ctx, AttrConnectionStatus.ValueSet(state.Status))
}
