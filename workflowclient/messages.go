package workflowclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// Client implements the connection use cases' view of their workflows.
var _ connections.Workflows = (*Client)(nil)

// Errors of the typed methods: the values connections.Workflows defines, so callers of either
// match the same errors.
var (
	// ErrNoWorkflow: the connection's workflow is not running.
	ErrNoWorkflow = connections.ErrNoWorkflow
	// ErrUpdatePending: the workflow accepted an update and had not finished it within the
	// client's update wait; it goes on carrying it out.
	ErrUpdatePending = connections.ErrUpdatePending
	// ErrStartFailed: a lost workflow could not be started again.
	ErrStartFailed = connections.ErrStartFailed
)

// RejectedError is an update the workflow refused (connections.WorkflowRejectedError).
type RejectedError = connections.WorkflowRejectedError

// DefaultUpdateWait bounds how long a typed update waits for the workflow's answer. It stays
// below the API server's write timeout, so a slow update is answered (ErrUpdatePending) instead
// of cut off.
const DefaultUpdateWait = 45 * time.Second

// initWait bounds awaitInitialized: a fresh workflow loads its connection in its first workflow
// task, normally within milliseconds.
const initWait = 10 * time.Second

// WithUpdateWait returns a copy of the client whose updates wait at most d for their result.
func (c *Client) WithUpdateWait(d time.Duration) *Client {
	cp := *c
	cp.updateWait = d
	return &cp
}

// EnsureRunning starts the connection's workflow as active unless one runs (StartConnection,
// with a run already running or a completed run counting as success). A failure wraps
// ErrStartFailed.
func (c *Client) EnsureRunning(ctx context.Context, orgID, connID uuid.UUID) error {
	if _, err := c.StartConnection(ctx, Start{OrgID: orgID, ConnectionID: connID}); err != nil {
		return fmt.Errorf("%w: %w", ErrStartFailed, err)
	}
	return nil
}

// SyncNow sends the sync-now update and returns the sequence number of the sync it queued or
// joined. A workflow that is gone (or was never started) is started, and the update is sent
// again once it has loaded its connection: a sync requested before that still runs, under a
// number after the connection's stored runs, but the update would answer the number it had
// before the load.
func (c *Client) SyncNow(ctx context.Context, orgID, connID uuid.UUID) (int64, error) {
	var seq int64
	err := c.updateOrRestart(ctx, orgID, connID, workflows.UpdateSyncNow, &seq)
	return seq, err
}

// Test sends the test update and returns the connection test's report.
func (c *Client) Test(ctx context.Context, connID uuid.UUID) (connections.TestResult, error) {
	var res connections.TestResult
	err := c.update(ctx, connID, workflows.UpdateTest, &res)
	return res, err
}

// Reauthorized sends the reauthorized update and returns once the workflow has stored the
// connection's new status. A workflow that is gone is started first, as in SyncNow: a new run
// carries on from the stored state, which would schedule the next sync a cadence after the last
// attempt; the update makes it sync now.
func (c *Client) Reauthorized(ctx context.Context, orgID, connID uuid.UUID) error {
	var ignored any
	return c.updateOrRestart(ctx, orgID, connID, workflows.UpdateReauthorized, &ignored)
}

// Revoke sends the revoke update (a workflows.RevokeRequest naming by) and returns once the
// workflow's revoke cleanup is done.
func (c *Client) Revoke(ctx context.Context, connID uuid.UUID, by audit.Actor) error {
	var ignored any
	return c.update(ctx, connID, workflows.UpdateRevoke, &ignored, revokeRequest(by))
}

// SignalRevoke sends the revoke signal (the fire-and-forget form of Revoke, with the same
// payload).
func (c *Client) SignalRevoke(ctx context.Context, connID uuid.UUID, by audit.Actor) error {
	return c.signal(ctx, connID, workflows.SignalRevoke, revokeRequest(by))
}

func revokeRequest(by audit.Actor) workflows.RevokeRequest {
	return workflows.RevokeRequest{ActorType: string(by.Type), ActorID: by.ID}
}

// ConfigChanged sends the config-changed signal (no payload): the workflow reloads the stored
// configuration.
func (c *Client) ConfigChanged(ctx context.Context, connID uuid.UUID) error {
	return c.signal(ctx, connID, workflows.SignalConfigChanged, nil)
}

// FindingsPending sends the findings-pending signal (no payload): the finding queue has work.
func (c *Client) FindingsPending(ctx context.Context, connID uuid.UUID) error {
	return c.signal(ctx, connID, workflows.SignalFindingsPending, nil)
}

// NudgeInbox sends the inbox-nudge signal (no payload): the webhook inbox has deliveries.
func (c *Client) NudgeInbox(ctx context.Context, connID uuid.UUID) error {
	return c.signal(ctx, connID, workflows.SignalInboxNudge, nil)
}

// State queries the workflow's state. Queries add nothing to the workflow's history.
func (c *Client) State(ctx context.Context, connID uuid.UUID) (workflows.ConnectionState, error) {
	var st workflows.ConnectionState
	v, err := c.temporal.QueryWorkflow(ctx, workflows.WorkflowID(connID), "", workflows.QueryState)
	if err == nil {
		err = v.Get(&st)
	}
	if err != nil {
		return workflows.ConnectionState{}, c.fail(err, "query state of", connID)
	}
	return st, nil
}

// updateOrRestart is update, and when no workflow runs: start it, wait until it has loaded its
// connection, and update again.
func (c *Client) updateOrRestart(ctx context.Context, orgID, connID uuid.UUID, name string, result any) error {
	err := c.update(ctx, connID, name, result)
	if !errors.Is(err, ErrNoWorkflow) {
		return err
	}
	if err := c.EnsureRunning(ctx, orgID, connID); err != nil {
		return err
	}
	c.awaitInitialized(ctx, connID)
	return c.update(ctx, connID, name, result)
}

// update sends a workflow update, waits (at most the update wait) for its result and decodes it
// into result.
func (c *Client) update(ctx context.Context, connID uuid.UUID, name string, result any, args ...any) error {
	h, err := c.temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: workflows.WorkflowID(connID), UpdateName: name, Args: args, WaitForStage: client.WorkflowUpdateStageAccepted,
	})
	if err == nil {
		wctx, cancel := context.WithTimeout(ctx, c.updateWait)
		err = h.Get(wctx, result)
		// Only the wait running out makes an update pending; the caller's own context ending is
		// its own error. Read before cancel, which ends wctx in any case.
		pending := err != nil && errors.Is(wctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
		cancel()
		if pending {
			return ErrUpdatePending
		}
	}
	if err == nil {
		return nil
	}
	var nf *serviceerror.NotFound
	var appErr *temporal.ApplicationError
	if !errors.As(err, &nf) && errors.As(err, &appErr) {
		return &RejectedError{Reason: appErr.Message()}
	}
	return c.fail(err, "update "+name+" of", connID)
}

// signal sends a signal to the connection's workflow. The payload goes as given: nil for the
// signals that carry none.
func (c *Client) signal(ctx context.Context, connID uuid.UUID, name string, arg any) error {
	if err := c.temporal.SignalWorkflow(ctx, workflows.WorkflowID(connID), "", name, arg); err != nil {
		return c.fail(err, "signal "+name+" to", connID)
	}
	return nil
}

// fail names what failed; Temporal's not-found becomes ErrNoWorkflow.
func (c *Client) fail(err error, what string, connID uuid.UUID) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return fmt.Errorf("%s workflow of connection %s: %w", what, connID, ErrNoWorkflow)
	}
	return fmt.Errorf("%s workflow of connection %s: %w", what, connID, err)
}

// awaitInitialized waits (at most initWait) until a workflow just started has loaded its
// connection. A workflow that is slow to load is simply not waited for longer.
func (c *Client) awaitInitialized(ctx context.Context, connID uuid.UUID) {
	ctx, cancel := context.WithTimeout(ctx, initWait)
	defer cancel()
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		if st, err := c.State(ctx, connID); err == nil && st.Initialized {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}
