package api

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
)

// oauthCallback is where Atlassian sends the consenting browser back (3LO); the state
// authenticates it, and connections.Manager.CompleteOAuth activates the connection. The browser
// arrives without an API key; if one is presented anyway, it must belong to the state's org.
func (s *Server) oauthCallback(c echo.Context) error {
	cb := connections.OAuthCallback{State: c.QueryParam("state"), Code: c.QueryParam("code"), Error: c.QueryParam("error")}
	// A state that cannot be one of ours is refused before any key is looked at.
	if err := connections.CheckOAuthState(cb.State); err != nil {
		return err
	}
	var by audit.Caller
	if h := c.Request().Header.Get(echo.HeaderAuthorization); h != "" {
		key, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return errUnauthorized()
		}
		p, err := s.deps.Tenancy.Authenticate(c.Request().Context(), strings.TrimSpace(key))
		if err != nil {
			return errUnauthorized()
		}
		cb.KeyOrg = p.OrgID
		by.Actor = audit.Actor{Type: audit.ActorAPIKey, ID: p.KeyID.String()}
	}
	by.SourceIP = s.clientAddr(c)
	conn, err := s.conns.CompleteOAuth(c.Request().Context(), cb, by)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"status": "connected", "connection": viewOf(conn)})
}
