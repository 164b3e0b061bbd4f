package connections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/apperr"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/egress"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/seal"
)

// Manager carries out what a tenant asks of its connections: create one (Create), re-authorize
// it (Reauth, and CompleteOAuth when Atlassian sends the consenting browser back), revoke it,
// rotate its webhook secret, configure its evidence sync and its finding sync, test it and sync
// it now. Each method validates the whole request before the first write, writes its change and
// its audit row in one transaction, and then tells the connection's workflow.
//
// Failures the caller can act on are *apperr.Error values; any other error is internal.
//
// Manager is apart from Service: Service is the process-wide access to stored connections (the
// OAuth token sources, Jira clients, sealed secrets) that the worker's activities share, and is
// built before them; Manager is what the API serves, and needs the connection workflows and the
// revoke cleanup, which the activities provide.
type Manager struct {
	DB     *db.DB
	Sealer *seal.Sealer
	// Connections loads connections and builds their Jira clients; it is the process's shared
	// Service, so a re-authorization drops the token source the process holds.
	Connections *Service
	// Egress is the operator's egress policy: a site URL is checked against it before anything is
	// stored or called (the calls themselves go through Connections' guarded client).
	Egress *egress.Policy
	// OAuth is the Atlassian OAuth app; nil when OAuth is not configured.
	OAuth *jira.OAuthApp
	// Workflows reaches the connections' workflows.
	Workflows Workflows
	// Revoker runs the revoke cleanup for a connection that has no running workflow to do it.
	Revoker Revoker
	Log     *slog.Logger
}

// Revoker runs the revoke cleanup — what a connection's workflow runs when it is revoked — for
// a connection whose workflow does not run. It is idempotent.
type Revoker interface {
	RevokeCleanup(ctx context.Context, orgID, connID uuid.UUID, by audit.Actor) error
}

func (m *Manager) log() *slog.Logger {
	if m.Log != nil {
		return m.Log
	}
	return slog.New(slog.DiscardHandler)
}

// load returns a connection of the organization, or the not_found failure (also for other
// organizations' connections).
func (m *Manager) load(ctx context.Context, orgID, connID uuid.UUID) (Connection, error) {
	conn, err := m.Connections.Get(ctx, orgID, connID)
	if errors.Is(err, ErrNotFound) {
		return Connection{}, apperr.NotFound("connection")
	}
	return conn, err
}

// requireStatus is the conflict connection_<status> unless the connection is in one of the
// given states.
func requireStatus(conn Connection, allowed ...Status) error {
	for _, st := range allowed {
		if conn.Status == st {
			return nil
		}
	}
	return apperr.Conflict("connection_"+string(conn.Status), fmt.Sprintf("not possible while the connection is %s", conn.Status))
}

// record writes one audit row about the connection in a transaction of its own.
func (m *Manager) record(ctx context.Context, conn Connection, action string, by audit.Caller, meta map[string]any) error {
	return m.DB.InOrg(ctx, conn.OrgID, func(q *dbq.Queries) error {
		return recordIn(ctx, q, conn.OrgID, conn.ID, action, by, meta)
	})
}

// recordIn writes one audit row about the connection in the transaction of q.
func recordIn(ctx context.Context, q *dbq.Queries, orgID, connID uuid.UUID, action string, by audit.Caller, meta map[string]any) error {
	_, err := audit.Record(ctx, q, audit.Entry{OrgID: orgID, Actor: by.Actor, Action: action, TargetType: "connection",
		TargetID: connID.String(), SourceIP: by.SourceIP, Metadata: meta})
	return err
}

// ensureRunning starts the connection's workflow unless one runs.
func (m *Manager) ensureRunning(ctx context.Context, orgID, connID uuid.UUID) error {
	return m.workflowFailure(connID, m.Workflows.EnsureRunning(ctx, orgID, connID))
}

// workflowFailure turns the workflow answers a caller can act on into failures: a workflow that
// could not be started is workflow_unavailable (the change is stored; a sync now starts it), a
// request the workflow refused is the conflict "rejected" with the workflow's reason, and a
// request the workflow has but has not answered within the client's wait is still_running (the
// change is stored and the workflow carries it out; the connection's status and runs show when).
func (m *Manager) workflowFailure(connID uuid.UUID, err error) error {
	var rejected *WorkflowRejectedError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrStartFailed):
		m.log().Warn("connection workflow not started", "connection_id", connID.String(), "err", err)
		return apperr.New(apperr.KindUnavailable, "workflow_unavailable", "",
			"the connection was saved but its workflow could not be started; retry with POST /v1/connections/{id}/sync")
	case errors.As(err, &rejected):
		return apperr.Conflict("rejected", rejected.Reason)
	case errors.Is(err, ErrUpdatePending):
		return apperr.New(apperr.KindTimeout, "still_running", "",
			"the connection's workflow has the request but has not answered yet (Temporal or Jira is slow); "+
				"the connection's status and runs show when it is done — check them before retrying")
	}
	return err
}

// fieldFailure turns a configuration's validation error into the invalid_field failure of its
// field, spelled with prefix ("config." for the configuration inside a create request). Other
// errors are invalidCode failures without a field.
func fieldFailure(err error, prefix, invalidCode, invalidField string) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		return apperr.Invalid(prefix+fe.Field, "%s", fe.Message)
	}
	var ffe *findings.FieldError
	if errors.As(err, &ffe) {
		return apperr.Invalid(prefix+ffe.Field, "%s", ffe.Message)
	}
	return apperr.New(apperr.KindInvalid, invalidCode, invalidField, err.Error())
}
