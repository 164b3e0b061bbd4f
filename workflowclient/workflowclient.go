// Package workflowclient is the client side of the connection workflows, and the only code
// outside workflows that names their messages: the one way to start a connection's workflow —
// used by the API when a connection becomes active and by the supervisor when an active
// connection has lost its workflow — what Temporal says about their runs, and a typed method for
// every update, signal and query the API sends (SyncNow, Test, Reauthorized, Revoke,
// SignalRevoke, ConfigChanged, FindingsPending, NudgeInbox, State), answering typed errors
// (ErrNoWorkflow, ErrUpdatePending, ErrStartFailed, *RejectedError) instead of Temporal's.
// Keeping the start in one place keeps every caller on the same id, task queue, reuse policy,
// search attributes and input.
package workflowclient

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// Client starts, inspects and messages connection workflows. One value serves every caller
// concurrently.
type Client struct {
	temporal          client.Client
	taskQueue         string
	reconcileInterval time.Duration
	updateWait        time.Duration
}

// New returns a client that starts connection workflows on taskQueue with reconcileInterval as
// their finding reconciliation period (FINDING_RECONCILE_INTERVAL; 0 takes the workflow's
// default). Its updates wait DefaultUpdateWait for their result.
func New(c client.Client, taskQueue string, reconcileInterval time.Duration) *Client {
	return &Client{temporal: c, taskQueue: taskQueue, reconcileInterval: reconcileInterval, updateWait: DefaultUpdateWait}
}

// Start names the connection whose workflow is started and its stored state, which becomes the
// workflow's initial search attributes (the workflow corrects them from Postgres at its first
// load either way). Status empty means active.
type Start = activities.WorkflowStart

// Client implements the supervisor's view of Temporal.
var _ activities.ConnectionWorkflows = (*Client)(nil)

// StartConnection starts the connection's workflow and reports whether this call started a run.
//
// The workflow id is derived from the connection (workflows.WorkflowID), so there is at most one
// running workflow per connection: while one runs, a start is refused and StartConnection answers
// started=false with no error — a concurrent start (the API and the supervisor racing) is a
// success for both. The id reuse policy, ALLOW_DUPLICATE_FAILED_ONLY, lets a new run follow a run
// that was terminated, failed, timed out or was canceled (what the supervisor repairs), and never
// one that completed: a connection workflow completes only when its connection was revoked, so
// Temporal itself refuses to bring a revoked connection back (also started=false; Describe tells
// the two apart).
//
// The input carries ids only: no secret enters the workflow's history.
func (c *Client) StartConnection(ctx context.Context, s Start) (started bool, err error) {
	if s.OrgID == uuid.Nil || s.ConnectionID == uuid.Nil {
		return false, errors.New("start connection workflow: org and connection ids are required")
	}
	status := s.Status
	if status == "" {
		status = workflows.StatusActive
	}
	_, err = c.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       workflows.WorkflowID(s.ConnectionID),
		TaskQueue:                c.taskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		// Without it the SDK answers a refused start with a handle on the existing run, and a
		// start the reuse policy refused would look like a success.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.AttrOrgID.ValueSet(s.OrgID.String()),
			workflows.AttrConnectionStatus.ValueSet(status),
			workflows.AttrStale.ValueSet(s.Stale),
			workflows.AttrNeedsReauth.ValueSet(status == workflows.StatusNeedsReauth),
		),
	}, workflows.ConnectionWorkflow, workflows.ConnectionInput{
		OrgID: s.OrgID, ConnectionID: s.ConnectionID, ReconcileInterval: c.reconcileInterval,
	})
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &already):
		return false, nil
	}
	return false, fmt.Errorf("start workflow of connection %s: %w", s.ConnectionID, err)
}

// runStatus names a Temporal run status the way activities.ConnectionWorkflows reports it.
func runStatus(st enumspb.WorkflowExecutionStatus) string {
	switch st {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		return activities.WorkflowRunning
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		return activities.WorkflowCompleted
	case enumspb.WORKFLOW_EXECUTION_STATUS_FAILED:
		return activities.WorkflowFailed
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return activities.WorkflowCanceled
	case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
		return activities.WorkflowTerminated
	case enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW:
		return activities.WorkflowContinuedAsNew
	case enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return activities.WorkflowTimedOut
	}
	return strings.ToLower(st.String())
}

// Describe returns the latest run of the connection's workflow, its status one of the
// activities.Workflow* statuses (WorkflowNotFound when Temporal knows no run). It reads the
// workflow's own state (not the visibility store), so it is current; it costs one history-service
// read.
func (c *Client) Describe(ctx context.Context, connectionID uuid.UUID) (activities.WorkflowRun, error) {
	resp, err := c.temporal.DescribeWorkflowExecution(ctx, workflows.WorkflowID(connectionID), "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return activities.WorkflowRun{Status: activities.WorkflowNotFound}, nil
	}
	if err != nil {
		return activities.WorkflowRun{}, fmt.Errorf("describe workflow of connection %s: %w", connectionID, err)
	}
	info := resp.GetWorkflowExecutionInfo()
	run := activities.WorkflowRun{Status: runStatus(info.GetStatus()), RunID: info.GetExecution().GetRunId()}
	if ct := info.GetCloseTime(); ct != nil {
		run.CloseTime = ct.AsTime()
	}
	return run, nil
}

// MaxRunningBatch is the most connection ids Running accepts in one call: it bounds the length
// of the visibility query.
const MaxRunningBatch = 200

// Running reports which of the connections have a running workflow, with one visibility query
// (ExecutionStatus = 'Running' AND WorkflowId IN (…)). Visibility is eventually consistent: a
// workflow started or closed a moment ago may not be reflected yet, so the answer is a filter
// that saves a Describe per healthy connection, not a verdict — check a connection it reports
// as not running with Describe before acting.
func (c *Client) Running(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]bool, error) {
	running := make(map[uuid.UUID]bool, len(ids))
	if len(ids) == 0 {
		return running, nil
	}
	if len(ids) > MaxRunningBatch {
		return nil, fmt.Errorf("running workflows: %d connection ids, at most %d per call", len(ids), MaxRunningBatch)
	}
	byWorkflow := make(map[string]uuid.UUID, len(ids))
	quoted := make([]string, 0, len(ids))
	for _, id := range ids {
		wf := workflows.WorkflowID(id)
		byWorkflow[wf] = id
		quoted = append(quoted, "'"+wf+"'") // a uuid needs no escaping
	}
	req := &workflowservice.ListWorkflowExecutionsRequest{
		PageSize: int32(len(ids)),
		Query:    "ExecutionStatus = 'Running' AND WorkflowId IN (" + strings.Join(quoted, ", ") + ")",
	}
	for {
		resp, err := c.temporal.ListWorkflow(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("list running connection workflows: %w", err)
		}
		for _, e := range resp.GetExecutions() {
			if id, ok := byWorkflow[e.GetExecution().GetWorkflowId()]; ok {
				running[id] = true
			}
		}
		if len(resp.GetNextPageToken()) == 0 {
			return running, nil
		}
		req.NextPageToken = resp.GetNextPageToken()
	}
}
