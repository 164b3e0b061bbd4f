package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/findings"
)

// connectionView is a connection as the API shows it: never a secret.
type connectionView struct {
	ID            uuid.UUID          `json:"id"`
	Kind          connections.Kind   `json:"kind"`
	SiteURL       string             `json:"site_url"`
	CloudID       string             `json:"cloud_id,omitempty"`
	Status        connections.Status `json:"status"`
	Scopes        []string           `json:"scopes"`
	Config        connections.Config `json:"config"`
	Stale         bool               `json:"stale"`
	LastSyncAt    *time.Time         `json:"last_sync_at"`
	LastSuccessAt *time.Time         `json:"last_success_at"`
	NextSyncAt    *time.Time         `json:"next_sync_at"`
	LastError     string             `json:"last_error,omitempty"`
	LastErrorKind string             `json:"last_error_kind,omitempty"`
	// FindingSyncError is a finding push that failed for a configuration reason; it stays until
	// the finding-sync configuration is saved again.
	FindingSyncError *connections.FindingSyncError `json:"finding_sync_error,omitempty"`
	WorkflowID       string                        `json:"workflow_id"`
	CreatedAt        time.Time                     `json:"created_at"`
	RevokedAt        *time.Time                    `json:"revoked_at,omitempty"`
	// AuthorizeURL is set when the user must (re-)consent at Atlassian.
	AuthorizeURL string `json:"authorize_url,omitempty"`
	// Webhook describes where Jira delivers issue changes. Its secrets appear only in the
	// response that created them.
	Webhook *webhookView `json:"webhook,omitempty"`
}

// webhookView tells an admin how to register the Jira webhook. URL embeds the URL secret and,
// like SigningSecret, is shown once (on creation and on rotation).
type webhookView struct {
	URL           string   `json:"url,omitempty"`
	SigningSecret string   `json:"signing_secret,omitempty"`
	Signed        bool     `json:"signed"`
	Events        []string `json:"events"`
}

func viewOf(c connections.Connection) connectionView {
	scopes := c.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return connectionView{
		ID: c.ID, Kind: c.Kind, SiteURL: c.SiteURL, CloudID: c.CloudID, Status: c.Status, Scopes: scopes,
		Config: c.Config, Stale: c.Stale, LastSyncAt: utc(c.LastSyncAt), LastSuccessAt: utc(c.LastSuccessAt),
		NextSyncAt: utc(c.NextSyncAt), LastError: c.LastError, LastErrorKind: c.LastErrorKind, FindingSyncError: c.FindingSyncError,
		WorkflowID: c.WorkflowID, CreatedAt: c.CreatedAt.UTC(), RevokedAt: utc(c.DeletedAt),
	}
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// webhookViewOf renders the registration details of freshly generated webhook secrets.
func (s *Server) webhookViewOf(connID uuid.UUID, hook connections.WebhookSecrets) *webhookView {
	return &webhookView{
		URL:           s.deps.PublicURL + "/webhooks/jira/" + connID.String() + "/" + hook.URLSecret,
		SigningSecret: hook.SigningSecret,
		Signed:        hook.SigningSecret != "",
		Events:        []string{"jira:issue_created", "jira:issue_updated"},
	}
}

// The handlers below decode the request, call one connections.Manager method and encode its
// answer; the Manager's failures are mapped to HTTP in errors.go.

func (s *Server) createConnection(c echo.Context) error {
	var in connections.CreateInput
	if err := s.decodeJSON(c, &in); err != nil {
		return err
	}
	created, err := s.conns.Create(c.Request().Context(), principal(c).OrgID, in, s.caller(c))
	if err != nil {
		return err
	}
	view := viewOf(created.Connection)
	view.AuthorizeURL = created.AuthorizeURL
	if created.Webhook != nil {
		view.Webhook = s.webhookViewOf(created.Connection.ID, *created.Webhook)
	}
	return c.JSON(http.StatusCreated, view)
}

func (s *Server) getConnection(c echo.Context) error {
	conn, err := s.loadConnection(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewOf(conn))
}

// loadConnection returns the caller's connection named in the path, or 404 (also for other
// orgs' connections).
func (s *Server) loadConnection(c echo.Context) (connections.Connection, error) {
	id, err := pathID(c, "connection")
	if err != nil {
		return connections.Connection{}, err
	}
	conn, err := s.deps.Connections.Get(c.Request().Context(), principal(c).OrgID, id)
	if errors.Is(err, connections.ErrNotFound) {
		return connections.Connection{}, errNotFound("connection")
	}
	return conn, err
}

func (s *Server) listConnections(c echo.Context) error {
	limit, err := queryInt(c, "limit", 100, 1, 500)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	out := []connectionView{}
	err = s.deps.DB.InOrg(ctx, principal(c).OrgID, func(q *dbq.Queries) error {
		rows, err := q.ListConnections(ctx, int32(limit))
		if err != nil {
			return err
		}
		for _, r := range rows {
			conn, err := connections.FromRow(r)
			if err != nil {
				return err
			}
			out = append(out, viewOf(conn))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"connections": out})
}

func (s *Server) patchConnection(c echo.Context) error {
	id, err := pathID(c, "connection")
	if err != nil {
		return err
	}
	var patch connections.ConfigPatch
	if err := s.decodeJSON(c, &patch); err != nil {
		return err
	}
	conn, err := s.conns.Configure(c.Request().Context(), principal(c).OrgID, id, patch, s.caller(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewOf(conn))
}

// putFindingSync sets (or, with {"enabled": false}, removes) a connection's finding-sync
// configuration, validated against the connection's Jira createmeta.
func (s *Server) putFindingSync(c echo.Context) error {
	id, err := pathID(c, "connection")
	if err != nil {
		return err
	}
	body, err := s.readBody(c)
	if err != nil {
		return err
	}
	update, err := findings.ParseSyncConfigUpdate(body)
	if err != nil {
		return findingFieldError(err)
	}
	conn, err := s.conns.ConfigureFindingSync(c.Request().Context(), principal(c).OrgID, id, update, s.caller(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewOf(conn))
}

// rotateWebhookSecret replaces the webhook URL secret (and signing secret) and shows the new ones
// once. Deliveries to the old URL get 401 from then on.
func (s *Server) rotateWebhookSecret(c echo.Context) error {
	id, err := pathID(c, "connection")
	if err != nil {
		return err
	}
	conn, hook, err := s.conns.RotateWebhookSecret(c.Request().Context(), principal(c).OrgID, id, s.caller(c))
	if err != nil {
		return err
	}
	view := viewOf(conn)
	view.Webhook = s.webhookViewOf(conn.ID, hook)
	return c.JSON(http.StatusOK, view)
}

func (s *Server) syncNow(c echo.Context) error {
	id, err := pathID(c, "connection")
	if err != nil {
		return err
	}
	seq, err := s.conns.SyncNow(c.Request().Context(), principal(c).OrgID, id, s.caller(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, map[string]any{"connection_id": id, "sync_seq": seq})
}

func (s *Server) testConnection(c echo.Context) error {
	id, err := pathID(c, "connection")
	if err != nil {
		return err
	}
	res, err := s.conns.Test(c.Request().Context(), principal(c).OrgID, id, s.caller(c))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

// reauth starts re-authorization: a new consent URL for OAuth, or new verified credentials for
// token and PAT connections (applied at once).
func (s *Server) reauth(c echo.Context) error {
	id, err := pathID(c, "connection")
	if err != nil {
		return err
	}
	var in connections.ReauthInput
	if err := s.decodeJSON(c, &in); err != nil {
		return err
	}
	re, err := s.conns.Reauth(c.Request().Context(), principal(c).OrgID, id, in, s.caller(c))
	if err != nil {
		return err
	}
	view := viewOf(re.Connection)
	view.AuthorizeURL = re.AuthorizeURL
	return c.JSON(http.StatusOK, view)
}

// revokeConnection revokes at once, or answers 202 while the workflow is still cleaning up.
func (s *Server) revokeConnection(c echo.Context) error {
	id, err := pathID(c, "connection")
	if err != nil {
		return err
	}
	conn, pending, err := s.conns.Revoke(c.Request().Context(), principal(c).OrgID, id, s.caller(c))
	if err != nil {
		return err
	}
	if pending {
		return c.JSON(http.StatusAccepted, map[string]any{"connection_id": conn.ID, "status": "revoking"})
	}
	return c.JSON(http.StatusOK, viewOf(conn))
}

func (s *Server) listRuns(c echo.Context) error {
	conn, err := s.loadConnection(c)
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", defaultPageSize, 1, maxPageSize)
	if err != nil {
		return err
	}
	before, err := queryTime(c, "before")
	if err != nil {
		return err
	}
	type runView struct {
		ID         uuid.UUID  `json:"id"`
		Kind       string     `json:"kind"`
		Outcome    string     `json:"outcome"`
		StartedAt  time.Time  `json:"started_at"`
		FinishedAt *time.Time `json:"finished_at"`
		Error      *string    `json:"error,omitempty"`
		ErrorKind  *string    `json:"error_kind,omitempty"`
		JiraCalls  int32      `json:"jira_calls"`
		WorkflowID string     `json:"workflow_id"`
		RunID      string     `json:"run_id"`
	}
	ctx := c.Request().Context()
	out := []runView{}
	err = s.deps.DB.InOrg(ctx, principal(c).OrgID, func(q *dbq.Queries) error {
		rows, err := q.ListConnectorRuns(ctx, dbq.ListConnectorRunsParams{ConnectionID: conn.ID, Before: before, PageSize: int32(limit)})
		for _, r := range rows {
			out = append(out, runView{ID: r.ID, Kind: r.Kind, Outcome: r.Outcome, StartedAt: r.StartedAt.UTC(), FinishedAt: utc(r.FinishedAt),
				Error: r.Error, ErrorKind: r.ErrorKind, JiraCalls: r.JiraCalls, WorkflowID: r.WorkflowID, RunID: r.RunID})
		}
		return err
	})
	if err != nil {
		return err
	}
	resp := map[string]any{"runs": out}
	if len(out) == limit {
		resp["next_before"] = out[len(out)-1].StartedAt
	}
	return c.JSON(http.StatusOK, resp)
}
