package workflowclient

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/jiraconnect/jiraconnect/workflows"
)

// StartOrgKeyReseal starts the re-seal that follows the rotation of orgID's data key to version
// (workflows.OrgKeyResealWorkflow), and returns its workflow id. The id is derived from the org
// and the version, so a second start while it runs is answered started=false without error;
// a run that finished may be started again (it re-seals and retires what is left). The input
// carries ids only. The id is returned whenever the arguments are valid, also with an error.
func (c *Client) StartOrgKeyReseal(ctx context.Context, orgID uuid.UUID, version int32) (id string, started bool, err error) {
	if orgID == uuid.Nil || version < 1 {
		return "", false, errors.New("start data key re-seal: org id and a positive version are required")
	}
	id = workflows.OrgKeyResealWorkflowID(orgID, version)
	if c.temporal == nil {
		return id, false, errors.New("start data key re-seal: no Temporal client")
	}
	_, err = c.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       id,
		TaskQueue:                                c.taskQueue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, workflows.OrgKeyResealWorkflow, workflows.OrgKeyResealInput{OrgID: orgID, Version: version})
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case err == nil:
		return id, true, nil
	case errors.As(err, &already):
		return id, false, nil
	}
	return id, false, fmt.Errorf("start data key re-seal of organization %s version %d: %w", orgID, version, err)
}

// StartOrgKeyRewrap starts the re-wrap of every organization's data keys under the workers'
// current master key (workflows.OrgKeyRewrapWorkflow, id org-key-rewrap), or returns the run that
// is already in progress with started=false: one pass at a time.
func (c *Client) StartOrgKeyRewrap(ctx context.Context) (run client.WorkflowRun, started bool, err error) {
	run, err = c.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       workflows.OrgKeyRewrapWorkflowID,
		TaskQueue:                                c.taskQueue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, workflows.OrgKeyRewrapWorkflow, workflows.OrgKeyRewrapInput{})
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case err == nil:
		return run, true, nil
	case errors.As(err, &already):
		return c.temporal.GetWorkflow(ctx, workflows.OrgKeyRewrapWorkflowID, ""), false, nil
	}
	return nil, false, fmt.Errorf("start data key re-wrap: %w", err)
}
