package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/workflowclient"
)

// startWorkflow starts the workflow of a connection that has just become active (or whose
// workflow is gone), through the starter the supervisor uses too
// (workflowclient.Client.StartConnection). A workflow that is already running counts as started.
func (s *Server) startWorkflow(ctx context.Context, orgID, connID uuid.UUID) error {
	if err := s.workflows.EnsureRunning(ctx, orgID, connID); err != nil {
		return s.startFailed(connID, err)
	}
	return nil
}

// startFailed answers a workflow that could not be started with 503.
func (s *Server) startFailed(connID uuid.UUID, err error) error {
	s.log.Warn("connection workflow not started", "connection_id", connID.String(), "err", err)
	return &Error{Status: http.StatusServiceUnavailable, Code: "workflow_unavailable",
		Message: "the connection was saved but its workflow could not be started; retry with POST /v1/connections/{id}/sync"}
}

// errNoWorkflow and errUpdatePending are the workflow client's answers the handlers act on.
var (
	errNoWorkflow    = workflowclient.ErrNoWorkflow
	errUpdatePending = workflowclient.ErrUpdatePending
)

// workflowError answers a workflow's refusal with 409 and its reason.
func workflowError(err error) error {
	var rejected *workflowclient.RejectedError
	if errors.As(err, &rejected) {
		return &Error{Status: http.StatusConflict, Code: "rejected", Message: rejected.Reason}
	}
	return err
}

func (s *Server) syncNow(c echo.Context) error {
	conn, err := s.loadConnection(c)
	if err != nil {
		return err
	}
	if err := requireStatus(conn, connections.StatusActive); err != nil {
		return err
	}
	ctx := c.Request().Context()
	// A workflow that is gone or was never started (e.g. Temporal was down at creation) is
	// started and asked once it has loaded the connection.
	seq, err := s.workflows.SyncNow(ctx, conn.OrgID, conn.ID)
	if errors.Is(err, workflowclient.ErrStartFailed) {
		return s.startFailed(conn.ID, err)
	}
	if err != nil {
		return workflowError(err)
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
	ctx := c.Request().Context()
	res, err := s.workflows.Test(ctx, conn.ID)
	if err != nil {
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
		return workflowError(err)
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
	err = s.workflows.Reauthorized(ctx, orgID, conn.ID)
	if errors.Is(err, workflowclient.ErrStartFailed) {
		return conn, s.startFailed(conn.ID, err)
	}
	return conn, workflowError(err)
}

func (s *Server) revokeConnection(c echo.Context) error {
	conn, err := s.loadConnection(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if conn.Status != connections.StatusRevoked {
		err = s.workflows.Revoke(ctx, conn.ID, actor(c))
		if errors.Is(err, errNoWorkflow) || conn.Status == connections.StatusPendingAuth {
			// No workflow to do it (never started, or already gone): clean up here, with the
			// same code the workflow would run.
			err = s.deps.Revoker.RevokeCleanup(ctx, activities.RevokeInput{
				ConnectionRef: activities.ConnectionRef{OrgID: conn.OrgID, ConnectionID: conn.ID},
				ActorType:     "api_key", ActorID: principal(c).KeyID.String(),
			})
			if err == nil {
				s.stopLateWorkflow(ctx, conn, actor(c))
			}
		}
		if errors.Is(err, errUpdatePending) {
			// The workflow stops the in-flight sync and cleans up on its own; the row shows
			// "revoked" once it has.
			return c.JSON(http.StatusAccepted, map[string]any{"connection_id": conn.ID, "status": "revoking"})
		}
		if err != nil {
			return workflowError(err)
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
func (s *Server) stopLateWorkflow(ctx context.Context, conn connections.Connection, by audit.Actor) {
	err := s.workflows.SignalRevoke(ctx, conn.ID, by)
	if err != nil && !errors.Is(err, errNoWorkflow) {
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
