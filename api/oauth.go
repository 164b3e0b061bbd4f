package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

// errInvalidState is the single answer for unknown, expired, reused and foreign states, so the
// callback reveals nothing about which states exist.
func errInvalidState() *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_state",
		Message: "state: unknown, expired or already used; start again from POST /v1/connections"}
}

// oauthCallback completes Atlassian's 3LO consent: it consumes the single-use state (bound to
// org and connection), exchanges the code, resolves the cloud id of the connection's site, seals
// the tokens and activates the connection. The browser arrives here without an API key; if one
// is presented anyway, it must belong to the state's org.
func (s *Server) oauthCallback(c echo.Context) error {
	state := c.QueryParam("state")
	if state == "" || len(state) > 128 {
		return errInvalidState()
	}
	ctx := c.Request().Context()
	var caller *tenancy.Principal
	if h := c.Request().Header.Get(echo.HeaderAuthorization); h != "" {
		key, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return errUnauthorized()
		}
		p, err := s.deps.Tenancy.Authenticate(ctx, strings.TrimSpace(key))
		if err != nil {
			return errUnauthorized()
		}
		caller = &p
	}
	// Consume inside a transaction so that a state presented by another org's caller is rolled
	// back, staying usable by its rightful owner.
	var binding dbq.ConsumeOAuthStateRow
	err := pgx.BeginFunc(ctx, s.deps.DB.Pool, func(tx pgx.Tx) error {
		row, err := dbq.New(tx).ConsumeOAuthState(ctx, hashState(state))
		if errors.Is(err, pgx.ErrNoRows) {
			return errInvalidState()
		}
		if err != nil {
			return err
		}
		if caller != nil && caller.OrgID != row.OrgID {
			return errInvalidState()
		}
		binding = row
		return nil
	})
	if err != nil {
		return err
	}
	conn, err := s.deps.Connections.Get(ctx, binding.OrgID, binding.ConnectionID)
	if err != nil {
		return err
	}
	if conn.Status == connections.StatusRevoked || conn.Kind != connections.KindCloudOAuth {
		return errInvalidState()
	}
	who := audit.Actor{Type: audit.ActorSystem, ID: "oauth-callback"}
	if caller != nil {
		who = audit.Actor{Type: audit.ActorAPIKey, ID: caller.KeyID.String()}
	}
	if e := c.QueryParam("error"); e != "" {
		// The user declined (or Atlassian refused); record it without echoing Atlassian's text
		// back as markup.
		_ = s.deps.DB.InOrg(ctx, conn.OrgID, func(q *dbq.Queries) error {
			_, err := audit.Record(ctx, q, audit.Entry{OrgID: conn.OrgID, Actor: who, Action: "connection.consent_denied",
				TargetType: "connection", TargetID: conn.ID.String(), SourceIP: s.clientAddr(c), Metadata: map[string]any{"error": truncate(e, 64)}})
			return err
		})
		return &Error{Status: http.StatusBadRequest, Code: "authorization_denied", Message: "Atlassian did not grant access (" + truncate(e, 64) + ")"}
	}
	code := c.QueryParam("code")
	if code == "" || len(code) > 4096 {
		return errBadRequest("invalid_field", "code", "code: missing authorization code")
	}
	tokens, err := s.deps.OAuth.Exchange(ctx, code)
	if err != nil {
		if jira.KindOf(err) == jira.KindBadRequest || jira.KindOf(err) == jira.KindReauthRequired {
			return &Error{Status: http.StatusBadRequest, Code: "invalid_code", Field: "code", Message: "code: Atlassian rejected the authorization code (expired or already used)"}
		}
		return &Error{Status: http.StatusBadGateway, Code: "atlassian_unreachable", Message: "could not exchange the authorization code: " + err.Error()}
	}
	cloudID, err := s.deps.OAuth.CloudIDForSite(ctx, tokens.Access, conn.SiteURL)
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Code: "site_not_authorized", Field: "site_url",
			Message: "site_url: the consent did not grant access to " + conn.SiteURL + " (pick that site when consenting)"}
	}
	creds := connections.OAuthCredentials(tokens)
	conn, err = s.activate(ctx, conn.OrgID, conn, creds, cloudID, who, s.clientAddr(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"status": "connected", "connection": viewOf(conn)})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
