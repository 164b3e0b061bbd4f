package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

const principalKey = "jiraconnect.principal"

// authenticate resolves `Authorization: Bearer <key>` to a principal. Unknown, revoked and
// malformed keys all get the same 401 so that responses reveal nothing about which keys exist.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get(echo.HeaderAuthorization)
		scheme, key, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(key) == "" {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="jiraconnect"`)
			return errUnauthorized()
		}
		p, err := s.deps.Tenancy.Authenticate(c.Request().Context(), strings.TrimSpace(key))
		if errors.Is(err, tenancy.ErrUnauthenticated) {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="jiraconnect", error="invalid_token"`)
			return errUnauthorized()
		}
		if err != nil {
			return err
		}
		c.Set(principalKey, p)
		return next(c)
	}
}

// principal returns the authenticated caller; only valid behind authenticate.
func principal(c echo.Context) tenancy.Principal {
	p, _ := c.Get(principalKey).(tenancy.Principal)
	return p
}

// actor is the audit identity of the caller.
func actor(c echo.Context) audit.Actor {
	return audit.Actor{Type: audit.ActorAPIKey, ID: principal(c).KeyID.String()}
}

// requireRole rejects callers whose role is below min with 403.
func requireRole(min tenancy.Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if !principal(c).Role.Allows(min) {
				return &Error{Status: http.StatusForbidden, Code: "forbidden",
					Message: "this action needs the " + string(min) + " role"}
			}
			return next(c)
		}
	}
}
