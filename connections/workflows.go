package connections

import (
	"context"
	"errors"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/audit"
)

// Workflows is what the connection use cases ask of a connection's workflow.
// workflowclient.Client implements it over Temporal; it speaks in connection ids and this
// package's types, so connections does not depend on Temporal and its tests can stand in for it.
//
// Errors are the values below (matched with errors.Is / errors.As); anything else is a failure
// to reach Temporal.
type Workflows interface {
	// EnsureRunning starts the connection's workflow as active unless one runs. A connection
	// whose workflow completed (it was revoked) is never started again, and that is not an error
	// either. A failed start wraps ErrStartFailed.
	EnsureRunning(ctx context.Context, orgID, connID uuid.UUID) error
	// SyncNow asks for a sync and returns its sequence number as soon as it is queued. A
	// workflow that is gone is started and asked once it has loaded its connection, so the
	// number answered is the one the sync carries.
	SyncNow(ctx context.Context, orgID, connID uuid.UUID) (seq int64, err error)
	// Test runs the connection test in the workflow and returns its report. ErrNoWorkflow when
	// no workflow runs; ErrUpdatePending when it has not finished within the client's wait.
	Test(ctx context.Context, connID uuid.UUID) (TestResult, error)
	// Reauthorized tells the workflow that new credentials are stored: it becomes active and
	// syncs at once. A workflow that is gone is started first, like SyncNow.
	Reauthorized(ctx context.Context, orgID, connID uuid.UUID) error
	// Revoke asks the workflow to stop any sync, run the revoke cleanup and end, and returns once
	// the cleanup is done (ErrUpdatePending when that takes longer than the client's wait).
	Revoke(ctx context.Context, connID uuid.UUID, by audit.Actor) error
	// SignalRevoke is Revoke without waiting for anything, for a workflow that may have started
	// behind the caller's back.
	SignalRevoke(ctx context.Context, connID uuid.UUID, by audit.Actor) error
	// ConfigChanged tells the workflow to reload the stored configuration.
	ConfigChanged(ctx context.Context, connID uuid.UUID) error
	// FindingsPending tells the workflow that its finding queue has work.
	FindingsPending(ctx context.Context, connID uuid.UUID) error
}

// Errors of Workflows.
var (
	// ErrNoWorkflow: the connection's workflow is not running (never started, ended, or lost).
	ErrNoWorkflow = errors.New("connection workflow is not running")
	// ErrUpdatePending: the workflow accepted the request and is still carrying it out.
	ErrUpdatePending = errors.New("workflow update still running")
	// ErrStartFailed: the connection's workflow could not be started.
	ErrStartFailed = errors.New("connection workflow could not be started")
)

// WorkflowRejectedError is a request the workflow refused (its validator, or its handler,
// answered an error); Reason is the workflow's own explanation, safe to show.
type WorkflowRejectedError struct {
	Reason string
}

func (e *WorkflowRejectedError) Error() string {
	return "rejected by the connection workflow: " + e.Reason
}
