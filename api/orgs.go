package api

import (
	"net/http"
	"strconv"
	"strings"
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

type apiKeyView struct {
	ID         uuid.UUID  `json:"id"`
	Name       string     `json:"name"`
	Role       string     `json:"role"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	// Key is present only in the response that created it.
	Key string `json:"key,omitempty"`
}

func (s *Server) listAPIKeys(c echo.Context) error {
	ctx := c.Request().Context()
	var out []apiKeyView
	err := s.deps.DB.InOrg(ctx, principal(c).OrgID, func(q *dbq.Queries) error {
		rows, err := q.ListAPIKeys(ctx)
		if err != nil {
			return err
		}
		out = make([]apiKeyView, 0, len(rows))
		for _, r := range rows {
			out = append(out, apiKeyView{ID: r.ID, Name: r.Name, Role: r.Role, Prefix: r.Prefix,
				CreatedAt: r.CreatedAt.UTC(), LastUsedAt: r.LastUsedAt, RevokedAt: r.RevokedAt})
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"api_keys": out})
}

type createAPIKeyRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

func (s *Server) createAPIKey(c echo.Context) error {
	var req createAPIKeyRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 200 {
		return errInvalidField("name", "must be 1-200 characters")
	}
	role, err := tenancy.ParseRole(req.Role)
	if err != nil {
		return errInvalidField("role", "must be admin, member or auditor")
	}
	key, err := s.deps.Tenancy.CreateKey(c.Request().Context(), principal(c).OrgID, req.Name, role, actor(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, apiKeyView{ID: key.ID, Name: req.Name, Role: string(role), Prefix: key.Prefix,
		CreatedAt: time.Now().UTC(), Key: key.Plaintext})
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

// queryInt parses an optional integer query parameter within [min, max].
func queryInt(c echo.Context, name string, def, min, max int) (int, error) {
	raw := c.QueryParam(name)
	if raw == "" {
		return def, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < min || n > max {
		return 0, errInvalidField(name, "must be an integer between %d and %d", min, max)
	}
	return n, nil
}

// queryCursor parses the optional keyset cursor of listings ordered by (created_at, id) desc.
func queryCursor(c echo.Context) (*time.Time, *uuid.UUID, error) {
	cursor := c.QueryParam("cursor")
	if cursor == "" {
		return nil, nil, nil
	}
	ts, id, ok := strings.Cut(cursor, "_")
	t, terr := time.Parse(time.RFC3339Nano, ts)
	uid, uerr := uuid.Parse(id)
	if !ok || terr != nil || uerr != nil {
		return nil, nil, errInvalidField("cursor", "must be a next_cursor value from a previous page")
	}
	return &t, &uid, nil
}

// cursorOf is the next_cursor of a page whose last row is (createdAt, id).
func cursorOf(createdAt time.Time, id uuid.UUID) string {
	return createdAt.UTC().Format(time.RFC3339Nano) + "_" + id.String()
}
