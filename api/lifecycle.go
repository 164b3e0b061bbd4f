package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/workflowclient"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// updateWait bounds how long an API call waits for a workflow update's result; it stays below
// the server's write timeout. An update that is accepted but not finished by then keeps running
// in the workflow (errUpdatePending).
const updateWait = 45 * time.Second

// startWorkflow starts the workflow of a connection that has just become active (or whose
// workflow is gone), through the starter the supervisor uses too
// (workflowclient.Client.StartConnection). A workflow that is already running counts as started.
func (s *Server) startWorkflow(ctx context.Context, orgID, connID uuid.UUID) error {
	if _, err := s.workflows.StartConnection(ctx, workflowclient.Start{OrgID: orgID, ConnectionID: connID}); err != nil {
		s.log.Warn("connection workflow not started", "connection_id", connID.String(), "err", err)
		return &Error{Status: http.StatusServiceUnavailable, Code: "workflow_unavailable",
			Message: "the connection was saved but its workflow could not be started; retry with POST /v1/connections/{id}/sync"}
	}
	return nil
}

// update sends a workflow update and waits for its result. A validator rejection becomes 409
// with the workflow's reason; a missing workflow becomes errNoWorkflow.
func (s *Server) update(ctx context.Context, conn connections.Connection, name string, result any, args ...any) error {
	h, err := s.deps.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: conn.WorkflowID, UpdateName: name, Args: args, WaitForStage: client.WorkflowUpdateStageAccepted,
	})
	if err == nil {
		wctx, cancel := context.WithTimeout(ctx, updateWait)
		err = h.Get(wctx, result)
		cancel()
		if err != nil && wctx.Err() != nil && ctx.Err() == nil {
			return errUpdatePending
		}
	}
	if err == nil {
		return nil
	}
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return errNoWorkflow
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return &Error{Status: http.StatusConflict, Code: "rejected", Message: appErr.Message()}
	}
	return fmt.Errorf("workflow update %s on %s: %w", name, conn.WorkflowID, err)
}

var errNoWorkflow = errors.New("connection workflow is not running")

// awaitInitialized waits (at most initWait) until a workflow just started has loaded its
// connection. A sync requested before that still runs, under a number after the connection's
// stored runs, but the update would answer the number it had before the load. Queries add nothing
// to the workflow's history; a workflow that is slow to load is simply not waited for longer.
func (s *Server) awaitInitialized(ctx context.Context, conn connections.Connection) {
	ctx, cancel := context.WithTimeout(ctx, initWait)
	defer cancel()
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		v, err := s.deps.Temporal.QueryWorkflow(ctx, conn.WorkflowID, "", workflows.QueryState)
		var st workflows.ConnectionState
		if err == nil && v.Get(&st) == nil && st.Initialized {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// initWait bounds awaitInitialized: a fresh workflow loads its connection in its first workflow
// task, normally within milliseconds.
const initWait = 10 * time.Second

// errUpdatePending: the workflow accepted the update and is still carrying it out.
var errUpdatePending = errors.New("workflow update still running")

func (s *Server) syncNow(c echo.Context) error {
	conn, err := s.loadConnection(c)
	if err != nil {
		return err
	}
	if err := requireStatus(conn, connections.StatusActive); err != nil {
		return err
	}
	ctx := c.Request().Context()
	var seq int64
	err = s.update(ctx, conn, workflows.UpdateSyncNow, &seq)
	if errors.Is(err, errNoWorkflow) {
		// The workflow is gone or was never started (e.g. Temporal was down at creation): start
		// it now, then ask it to sync once it has loaded the connection, so that the sync number
		// answered is the one the run carries.
		if err := s.startWorkflow(ctx, conn.OrgID, conn.ID); err != nil {
			return err
		}
		s.awaitInitialized(ctx, conn)
		err = s.update(ctx, conn, workflows.UpdateSyncNow, &seq)
	}
	if err != nil {
		return err
	}
	if err := s.auditConnection(ctx, c, conn, "connection.sync_requested", map[string]any{"seq": seq}); err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, map[string]any{"connection_id": conn.ID, "sync_seq": seq})
}

func (s *Server) testConnection(c echo.Context) error {
	conn, err := s.loadConnection(c)
	if err != nil {
		return err
	}
	if err := requireStatus(conn, connections.StatusActive, connections.StatusNeedsReauth); err != nil {
		return err
	}
	var res activities.TestResult
	ctx := c.Request().Context()
	if err := s.update(ctx, conn, workflows.UpdateTest, &res); err != nil {
		if errors.Is(err, errUpdatePending) {
			// The test goes on and may still write its synthetic issue: the request is audited now,
			// the run report names the issue.
			if aerr := s.auditTest(c, conn, map[string]any{"outcome": "still_running"}); aerr != nil {
				return aerr
			}
			return &Error{Status: http.StatusGatewayTimeout, Code: "test_still_running",
				Message: "the connection test is still running (Jira is slow to answer); its result will appear in GET /v1/connections/{id}/runs"}
		}
		if errors.Is(err, errNoWorkflow) {
			return &Error{Status: http.StatusConflict, Code: "workflow_not_running", Message: "the connection's workflow is not running"}
		}
		return err
	}
	meta := map[string]any{"outcome": "passed"}
	if !res.OK {
		meta["outcome"] = "failed"
		var failed []string
		for _, ch := range res.Checks {
			if !ch.OK {
				failed = append(failed, ch.Name)
			}
		}
		meta["failed_checks"] = failed
	}
	if key := res.TestIssueKey(); key != "" {
		meta["test_issue_key"] = key
	}
	if err := s.auditTest(c, conn, meta); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

// auditTest records a connection test, which can create and transition an issue in Jira.
func (s *Server) auditTest(c echo.Context, conn connections.Connection, meta map[string]any) error {
	ctx := c.Request().Context()
	p := principal(c)
	return s.deps.DB.InOrg(ctx, p.OrgID, func(q *dbq.Queries) error {
		_, err := audit.Record(ctx, q, audit.Entry{OrgID: p.OrgID, Actor: actor(c), Action: "connection.test",
			TargetType: "connection", TargetID: conn.ID.String(), SourceIP: s.clientAddr(c), Metadata: meta})
		return err
	})
}

// requireStatus answers 409 unless the connection is in one of the given states.
func requireStatus(conn connections.Connection, allowed ...connections.Status) error {
	for _, st := range allowed {
		if conn.Status == st {
			return nil
		}
	}
	return &Error{Status: http.StatusConflict, Code: "connection_" + string(conn.Status),
		Message: fmt.Sprintf("not possible while the connection is %s", conn.Status)}
}

type reauthRequest struct {
	Email    string `json:"email"`
	APIToken string `json:"api_token"`
	PAT      string `json:"pat"`
	// FindingSync (cloud_oauth) asks for the scopes finding sync needs; it is implied when finding
	// sync is already configured.
	FindingSync bool `json:"finding_sync"`
}

// reauth starts re-authorization: a new consent URL for OAuth, or new verified credentials for
// token and PAT connections (applied at once).
func (s *Server) reauth(c echo.Context) error {
	conn, err := s.loadConnection(c)
	if err != nil {
		return err
	}
	if err := requireStatus(conn, connections.StatusActive, connections.StatusNeedsReauth, connections.StatusPendingAuth); err != nil {
		return err
	}
	var req reauthRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	p := principal(c)
	if conn.Kind == connections.KindCloudOAuth {
		if req.Email != "" || req.APIToken != "" || req.PAT != "" {
			return errInvalidField("api_token", "cloud_oauth connections re-authorize by consenting at the returned authorize_url")
		}
		if s.deps.OAuth == nil {
			return &Error{Status: http.StatusBadRequest, Code: "oauth_not_configured", Message: "OAuth is not configured on the server"}
		}
		var state string
		err := s.deps.DB.InOrg(ctx, p.OrgID, func(q *dbq.Queries) error {
			var err error
			if state, err = createOAuthState(ctx, q, p.OrgID, conn.ID); err != nil {
				return err
			}
			_, err = audit.Record(ctx, q, audit.Entry{OrgID: p.OrgID, Actor: actor(c), Action: "connection.reauth_requested",
				TargetType: "connection", TargetID: conn.ID.String(), SourceIP: s.clientAddr(c)})
			return err
		})
		if err != nil {
			return err
		}
		view := viewOf(conn)
		if view.AuthorizeURL, err = s.deps.OAuth.AuthorizeURL(state, oauthScopes(req.FindingSync || conn.Config.FindingSync != nil)); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, view)
	}
	if req.FindingSync {
		return errInvalidField("finding_sync", "only cloud_oauth connections request scopes")
	}
	creds, err := credentialsFrom(conn.Kind, req.Email, req.APIToken, req.PAT)
	if err != nil {
		return err
	}
	// The stored site is checked again: the operator's policy may have narrowed, or the site's
	// name may resolve elsewhere now.
	if err := s.checkSite(ctx, conn.SiteURL); err != nil {
		return err
	}
	if err := s.verifyCredentials(ctx, conn.ID, conn.SiteURL, creds); err != nil {
		return err
	}
	conn, err = s.activate(ctx, p.OrgID, conn, creds, "", actor(c), s.clientAddr(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewOf(conn))
}

// activate stores verified credentials, makes the connection active and tells (or starts) its
// workflow. Shared by token re-auth and the OAuth callback.
func (s *Server) activate(ctx context.Context, orgID uuid.UUID, conn connections.Connection, creds connections.Credentials,
	cloudID string, who audit.Actor, ip netip.Addr) (connections.Connection, error) {
	sealed, err := connections.SealCredentials(ctx, s.deps.Sealer, orgID, conn.ID, creds)
	if err != nil {
		return conn, err
	}
	wasPending := conn.Status == connections.StatusPendingAuth
	var cloud *string
	if cloudID != "" {
		cloud = &cloudID
	}
	scopes := creds.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	err = s.deps.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		row, err := q.ActivateConnection(ctx, dbq.ActivateConnectionParams{ID: conn.ID, SealedCredentials: sealed, CloudID: cloud, Scopes: scopes})
		if errors.Is(err, pgx.ErrNoRows) {
			return errNotFound("connection")
		}
		if err != nil {
			return err
		}
		if conn, err = connections.FromRow(row); err != nil {
			return err
		}
		action := "connection.reauthorize"
		if wasPending {
			action = "connection.connect"
		}
		_, err = audit.Record(ctx, q, audit.Entry{OrgID: orgID, Actor: who, Action: action, TargetType: "connection",
			TargetID: conn.ID.String(), SourceIP: ip, Metadata: map[string]any{"kind": string(conn.Kind), "scopes": scopes}})
		return err
	})
	if err != nil {
		return conn, err
	}
	s.deps.Connections.Forget(conn.ID)
	if wasPending {
		return conn, s.startWorkflow(ctx, orgID, conn.ID)
	}
	var ignored any
	err = s.update(ctx, conn, workflows.UpdateReauthorized, &ignored)
	if errors.Is(err, errNoWorkflow) {
		// The workflow is gone: a new one carries on from the stored state, which would schedule
		// the next sync a cadence after the last attempt; the update makes it sync now.
		if err = s.startWorkflow(ctx, orgID, conn.ID); err == nil {
			s.awaitInitialized(ctx, conn)
			err = s.update(ctx, conn, workflows.UpdateReauthorized, &ignored)
		}
	}
	return conn, err
}

func (s *Server) revokeConnection(c echo.Context) error {
	conn, err := s.loadConnection(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if conn.Status != connections.StatusRevoked {
		var ignored any
		err = s.update(ctx, conn, workflows.UpdateRevoke, &ignored, workflows.RevokeRequest{ActorType: "api_key", ActorID: principal(c).KeyID.String()})
		if errors.Is(err, errNoWorkflow) || conn.Status == connections.StatusPendingAuth {
			// No workflow to do it (never started, or already gone): clean up here, with the
			// same code the workflow would run.
			err = s.deps.Revoker.RevokeCleanup(ctx, activities.RevokeInput{
				ConnectionRef: activities.ConnectionRef{OrgID: conn.OrgID, ConnectionID: conn.ID},
				ActorType:     "api_key", ActorID: principal(c).KeyID.String(),
			})
			if err == nil {
				s.stopLateWorkflow(ctx, conn, workflows.RevokeRequest{ActorType: "api_key", ActorID: principal(c).KeyID.String()})
			}
		}
		if errors.Is(err, errUpdatePending) {
			// The workflow stops the in-flight sync and cleans up on its own; the row shows
			// "revoked" once it has.
			return c.JSON(http.StatusAccepted, map[string]any{"connection_id": conn.ID, "status": "revoking"})
		}
		if err != nil {
			return err
		}
	}
	conn, err = s.deps.Connections.Get(ctx, conn.OrgID, conn.ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewOf(conn))
}

// stopLateWorkflow ends a workflow that started after the revoke found none — the supervisor may
// restart a lost workflow between the revoke's update attempt and its cleanup. Such a workflow
// ends by itself once it reads the revoked row, but one that read the row just before the cleanup
// committed would otherwise wait for its next deadline to find out; the revoke signal makes it
// run the (idempotent) cleanup and end now. No workflow running is the normal case.
func (s *Server) stopLateWorkflow(ctx context.Context, conn connections.Connection, req workflows.RevokeRequest) {
	err := s.deps.Temporal.SignalWorkflow(ctx, conn.WorkflowID, "", workflows.SignalRevoke, req)
	var nf *serviceerror.NotFound
	if err != nil && !errors.As(err, &nf) {
		s.log.WarnContext(ctx, "revoke signal to a late-started workflow not delivered; it ends at its next activity",
			"connection_id", conn.ID.String(), "err", err)
	}
}

func (s *Server) auditConnection(ctx context.Context, c echo.Context, conn connections.Connection, action string, meta map[string]any) error {
	return s.deps.DB.InOrg(ctx, conn.OrgID, func(q *dbq.Queries) error {
		_, err := audit.Record(ctx, q, audit.Entry{OrgID: conn.OrgID, Actor: actor(c), Action: action,
			TargetType: "connection", TargetID: conn.ID.String(), SourceIP: s.clientAddr(c), Metadata: meta})
		return err
	})
}

// clientAddr is the caller's address for audit rows: the direct peer, or — when the peer is a
// trusted proxy — the right-most X-Forwarded-For hop that is not itself a trusted proxy. Every
// X-Forwarded-For header line counts, in order, as one list: a proxy that appends its own line
// (HAProxy's option forwardfor) must not let a forged first line speak for the client.
func (s *Server) clientAddr(c echo.Context) netip.Addr {
	return clientIP(c.Request(), s.deps.TrustedProxies)
}

func clientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := peer.Addr().Unmap()
	if !inAny(addr, trusted) {
		return addr
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return addr // a malformed chain is not believed past this point
		}
		a = a.Unmap()
		if !inAny(a, trusted) {
			return a
		}
		addr = a
	}
	return addr
}

func inAny(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
