package api

import (
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

type orgView struct {
	ID        uuid.UUID `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Role      string    `json:"role"`
}

func (s *Server) getOrgMe(c echo.Context) error {
	p := principal(c)
	org, err := s.deps.Tenancy.GetOrg(c.Request().Context(), p.OrgID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, orgView{ID: org.ID, Name: org.Name, CreatedAt: org.CreatedAt, Role: string(p.Role)})
}

// apiKeyView is a key as the API shows it: never its secret or hash, except the secret once in
// the response that created it.
type apiKeyView struct {
	tenancy.KeyInfo
	// Key is present only in the response that created it.
	Key string `json:"key,omitempty"`
}

func (s *Server) listAPIKeys(c echo.Context) error {
	keys, err := s.deps.Tenancy.ListKeys(c.Request().Context(), principal(c).OrgID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"api_keys": keys})
}

// createAPIKeyRequest: expires_in is a Go duration ("720h"), expires_at an RFC 3339 time; both are
// strings so that a malformed value is reported under its own name.
type createAPIKeyRequest struct {
	Name      string  `json:"name"`
	Role      string  `json:"role"`
	ExpiresIn *string `json:"expires_in"`
	ExpiresAt *string `json:"expires_at"`
}

func (s *Server) createAPIKey(c echo.Context) error {
	var req createAPIKeyRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	key, err := s.deps.Tenancy.CreateKey(c.Request().Context(), principal(c).OrgID,
		tenancy.KeyRequest{Name: req.Name, Role: req.Role, ExpiresIn: req.ExpiresIn, ExpiresAt: req.ExpiresAt}, s.caller(c))
	if err != nil {
		return keyError(err)
	}
	return c.JSON(http.StatusCreated, apiKeyView{KeyInfo: key.KeyInfo, Key: key.Plaintext})
}

// revokeAPIKey revokes a key of the caller's organization at once. Revoking a revoked key answers
// the key as it is. The organization's last active admin key needs ?force=true.
func (s *Server) revokeAPIKey(c echo.Context) error {
	force, err := queryBool(c, "force")
	if err != nil {
		return err
	}
	id, err := uuid.Parse(c.Param("id"))
	if err != nil {
		return errNotFound("api key")
	}
	info, _, err := s.deps.Tenancy.RevokeKey(c.Request().Context(), principal(c).OrgID, id, force, s.caller(c))
	if err != nil {
		return keyError(err)
	}
	return c.JSON(http.StatusOK, apiKeyView{KeyInfo: info})
}

const (
	defaultPageSize = 50
	maxPageSize     = 200
)

// listAuditLog pages newest first with an opaque-enough cursor: the last id seen.
func (s *Server) listAuditLog(c echo.Context) error {
	limit, err := queryInt(c, "limit", defaultPageSize, 1, maxPageSize)
	if err != nil {
		return err
	}
	before, err := queryInt(c, "before", 0, 1, 1<<62)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	var entries []audit.View
	err = s.deps.DB.InOrg(ctx, principal(c).OrgID, func(q *dbq.Queries) error {
		var err error
		entries, err = audit.List(ctx, q, int64(before), limit)
		return err
	})
	if err != nil {
		return err
	}
	resp := map[string]any{"entries": entries}
	if len(entries) == limit {
		resp["next_before"] = entries[len(entries)-1].ID
	}
	return c.JSON(http.StatusOK, resp)
}
