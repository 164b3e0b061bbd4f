package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/egress"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// oauthStateTTL bounds how long a user may take to consent at Atlassian.
const oauthStateTTL = 10 * time.Minute

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

type createConnectionRequest struct {
	Kind     string                   `json:"kind"`
	SiteURL  string                   `json:"site_url"`
	Email    string                   `json:"email"`
	APIToken string                   `json:"api_token"`
	PAT      string                   `json:"pat"`
	Config   *connections.ConfigPatch `json:"config"`
	// FindingSync asks, for cloud_oauth, for the extra scopes finding sync needs
	// (write:jira-work, manage:jira-webhook). Evidence sync alone requests only read scopes.
	FindingSync bool `json:"finding_sync"`
}

// oauthScopes are the minimum scopes for what the connection will do.
func oauthScopes(findingSync bool) []string {
	return jira.Scopes(jira.Features{FindingSync: findingSync, DynamicWebhooks: findingSync})
}

// credentialsFrom validates the secret-bearing fields for token and PAT connections.
func credentialsFrom(kind connections.Kind, email, apiToken, pat string) (connections.Credentials, error) {
	switch kind {
	case connections.KindCloudToken:
		email = strings.TrimSpace(email)
		if email == "" || !strings.Contains(email, "@") || len(email) > 320 {
			return connections.Credentials{}, errInvalidField("email", "must be the Atlassian account email")
		}
		if strings.TrimSpace(apiToken) == "" || len(apiToken) > 4096 {
			return connections.Credentials{}, errInvalidField("api_token", "must be a non-empty Atlassian API token")
		}
		if pat != "" {
			return connections.Credentials{}, errInvalidField("pat", "is only for datacenter_pat connections")
		}
		return connections.Credentials{Kind: kind, Email: email, APIToken: jira.NewSecret(strings.TrimSpace(apiToken))}, nil
	case connections.KindDataCenterPAT:
		if strings.TrimSpace(pat) == "" || len(pat) > 4096 {
			return connections.Credentials{}, errInvalidField("pat", "must be a non-empty personal access token")
		}
		if email != "" || apiToken != "" {
			return connections.Credentials{}, errInvalidField("api_token", "email and api_token are only for cloud_token connections")
		}
		return connections.Credentials{Kind: kind, PAT: jira.NewSecret(strings.TrimSpace(pat))}, nil
	}
	if email != "" || apiToken != "" || pat != "" {
		return connections.Credentials{}, errInvalidField("api_token", "cloud_oauth connections take no credentials; consent at the returned authorize_url")
	}
	return connections.Credentials{Kind: kind}, nil
}

// checkSite applies the egress policy to a site URL before anything is stored or called: a
// destination the policy refuses is 400 egress_denied naming the policy (and the variable an
// operator sets), never the address the name resolved to.
func (s *Server) checkSite(ctx context.Context, siteURL string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.deps.Egress.CheckURL(ctx, siteURL); err != nil {
		s.log.WarnContext(ctx, "site URL refused by the egress policy", "site_url", siteURL, "err", err.Error())
		return egressDeniedError(err)
	}
	return nil
}

// verifyCredentials calls who-am-I with credentials that are not stored yet: a connection is
// only created (or re-authorized) with credentials Jira accepts. The call goes through the
// connections' egress-guarded client, so the policy is checked again on the address dialled.
func (s *Server) verifyCredentials(ctx context.Context, connID uuid.UUID, siteURL string, creds connections.Credentials) error {
	auth := jira.APIToken(creds.Email, creds.APIToken)
	if creds.Kind == connections.KindDataCenterPAT {
		auth = jira.PAT(creds.PAT)
	}
	client, err := s.deps.Connections.NewJiraClient(jira.Config{Flavor: connections.Flavor(creds.Kind), BaseURL: siteURL, Auth: auth,
		Logger: s.log.With("connection_id", connID.String(), "site_url", siteURL)})
	if errors.Is(err, connections.ErrNoHTTPClient) {
		return err
	}
	if err != nil {
		return errInvalidField("site_url", "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := client.Myself(ctx); err != nil {
		return jiraVerifyError(creds.Kind, err)
	}
	return nil
}

// jiraVerifyError answers a failed credential check with a category (credentials_rejected,
// not_jira, egress_denied, tls_error, jira_unreachable). The message is the jira.Error's, which
// carries no network error text and no body of a non-Jira answer.
func jiraVerifyError(kind connections.Kind, err error) error {
	field := "api_token"
	if kind == connections.KindDataCenterPAT {
		field = "pat"
	}
	switch jira.KindOf(err) {
	case jira.KindUnauthorized, jira.KindReauthRequired, jira.KindForbidden:
		return &Error{Status: http.StatusBadRequest, Code: "credentials_rejected", Field: field,
			Message: field + ": Jira rejected these credentials (who-am-I answered " + fmt.Sprint(statusOf(err)) + ")"}
	case jira.KindNotFound, jira.KindGone:
		return &Error{Status: http.StatusBadRequest, Code: "not_jira", Field: "site_url",
			Message: "site_url: no Jira REST API answered at this URL"}
	}
	return siteCallError("could not verify the credentials with Jira", err)
}

// siteCallError answers a failed call to a tenant's Jira site that no more specific answer
// covers: egress_denied (400: the site is not a destination this server may reach), tls_error or
// jira_unreachable (502), with what was being done and the jira.Error's safe text.
func siteCallError(what string, err error) *Error {
	switch jira.KindOf(err) {
	case jira.KindEgressDenied:
		return egressDeniedError(err)
	case jira.KindTLS:
		return &Error{Status: http.StatusBadGateway, Code: "tls_error", Field: "site_url", Message: what + ": " + err.Error()}
	}
	return &Error{Status: http.StatusBadGateway, Code: "jira_unreachable", Message: what + ": " + err.Error()}
}

// egressDeniedError is the 400 for a site the egress policy refuses, in the policy's public words.
func egressDeniedError(err error) *Error {
	msg := "the site is not a destination this server's egress policy allows (" + egress.EnvVar + ")"
	var de *egress.DeniedError
	if errors.As(err, &de) {
		msg = de.Public()
	}
	return &Error{Status: http.StatusBadRequest, Code: "egress_denied", Field: "site_url", Message: "site_url: " + msg}
}

func statusOf(err error) int {
	var je *jira.Error
	if errors.As(err, &je) {
		return je.Status
	}
	return 0
}

// createPlan is a connection request that passed every check: nothing is written, sealed or sent
// to Jira before planCreate has accepted the whole request.
type createPlan struct {
	kind        connections.Kind
	site        string
	creds       connections.Credentials
	cfg         connections.Config
	findingSync bool
}

// planCreate is the one place a connection request is validated: field by field in the order the
// request lists them, then the site against the egress policy (which may resolve its name), before
// anything is stored or sent to Jira.
func (s *Server) planCreate(ctx context.Context, req createConnectionRequest) (createPlan, error) {
	kind, err := connections.ParseKind(req.Kind)
	if err != nil {
		return createPlan{}, errInvalidField("kind", "%v", err)
	}
	site, err := connections.NormalizeSiteURL(req.SiteURL)
	if err != nil {
		return createPlan{}, errInvalidField("site_url", "%v", err)
	}
	creds, err := credentialsFrom(kind, req.Email, req.APIToken, req.PAT)
	if err != nil {
		return createPlan{}, err
	}
	cfg := connections.DefaultConfig()
	if req.Config != nil {
		cfg = req.Config.Apply(cfg)
	}
	if err := cfg.Validate(); err != nil {
		return createPlan{}, configFieldError(err)
	}
	if req.FindingSync && kind != connections.KindCloudOAuth {
		return createPlan{}, errInvalidField("finding_sync", "only cloud_oauth connections request scopes; configure finding sync with PUT /v1/connections/{id}/finding-sync")
	}
	if kind == connections.KindCloudOAuth && s.deps.OAuth == nil {
		return createPlan{}, &Error{Status: http.StatusBadRequest, Code: "oauth_not_configured", Field: "kind",
			Message: "kind: cloud_oauth needs JIRA_OAUTH_CLIENT_ID and JIRA_OAUTH_CLIENT_SECRET on the server"}
	}
	if err := s.checkSite(ctx, site); err != nil {
		return createPlan{}, err
	}
	return createPlan{kind: kind, site: site, creds: creds, cfg: cfg, findingSync: req.FindingSync}, nil
}

func (s *Server) createConnection(c echo.Context) error {
	var req createConnectionRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	plan, err := s.planCreate(ctx, req)
	if err != nil {
		return err
	}
	kind, site, creds, cfg := plan.kind, plan.site, plan.creds, plan.cfg
	connID := uuid.New()
	if kind != connections.KindCloudOAuth {
		if err := s.verifyCredentials(ctx, connID, site, creds); err != nil {
			return err
		}
	}

	p := principal(c)
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	status := connections.StatusActive
	var sealed []byte
	var state string
	if kind == connections.KindCloudOAuth {
		status = connections.StatusPendingAuth
	} else if sealed, err = connections.SealCredentials(ctx, s.deps.Sealer, p.OrgID, connID, creds); err != nil {
		return err
	}
	// Token and PAT connections get an admin webhook with an HMAC signing secret; OAuth
	// connections register dynamic webhooks, which Jira does not HMAC-sign.
	hook, err := connections.NewWebhookSecrets(kind != connections.KindCloudOAuth)
	if err != nil {
		return err
	}
	sealedSigning, err := s.deps.Connections.SealSigningSecret(ctx, p.OrgID, connID, hook.SigningSecret)
	if err != nil {
		return err
	}
	var conn connections.Connection
	err = s.deps.DB.InOrg(ctx, p.OrgID, func(q *dbq.Queries) error {
		row, err := q.CreateConnection(ctx, dbq.CreateConnectionParams{
			ID: connID, OrgID: p.OrgID, Kind: string(kind), SiteUrl: site, Status: string(status),
			Config: cfgJSON, Scopes: []string{}, SealedCredentials: sealed, WorkflowID: workflows.WorkflowID(connID),
			WebhookSecretHash: connections.HashURLSecret(hook.URLSecret),
		})
		if err != nil {
			return err
		}
		if _, err := q.SetWebhookSecrets(ctx, dbq.SetWebhookSecretsParams{ID: connID,
			SecretHash: connections.HashURLSecret(hook.URLSecret), SigningSecret: sealedSigning}); err != nil {
			return err
		}
		if conn, err = connections.FromRow(row); err != nil {
			return err
		}
		if kind == connections.KindCloudOAuth {
			if state, err = createOAuthState(ctx, q, p.OrgID, connID); err != nil {
				return err
			}
		}
		_, err = audit.Record(ctx, q, audit.Entry{OrgID: p.OrgID, Actor: actor(c), Action: "connection.create",
			TargetType: "connection", TargetID: connID.String(), SourceIP: s.clientAddr(c),
			Metadata: map[string]any{"kind": string(kind), "site_url": site}})
		return err
	})
	if err != nil {
		return fmt.Errorf("create connection: %w", err)
	}
	view := viewOf(conn)
	if kind != connections.KindCloudOAuth {
		// OAuth connections register a dynamic webhook themselves (with its own URL secret) once
		// finding sync is on; token and PAT connections need an admin to register this one.
		view.Webhook = s.webhookView(conn.ID, hook)
	}
	if kind == connections.KindCloudOAuth {
		if view.AuthorizeURL, err = s.deps.OAuth.AuthorizeURL(state, oauthScopes(plan.findingSync)); err != nil {
			return err
		}
		return c.JSON(http.StatusCreated, view)
	}
	if err := s.startWorkflow(ctx, p.OrgID, connID); err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, view)
}

// webhookView renders the webhook registration details for freshly generated secrets.
func (s *Server) webhookView(connID uuid.UUID, hook connections.WebhookSecrets) *webhookView {
	return &webhookView{
		URL:           s.deps.PublicURL + "/webhooks/jira/" + connID.String() + "/" + hook.URLSecret,
		SigningSecret: hook.SigningSecret,
		Signed:        hook.SigningSecret != "",
		Events:        []string{"jira:issue_created", "jira:issue_updated"},
	}
}

// rotateWebhookSecret replaces the webhook URL secret (and signing secret, for admin webhooks) and
// shows the new ones once. Deliveries to the old URL get 401 from then on.
func (s *Server) rotateWebhookSecret(c echo.Context) error {
	conn, err := s.loadConnection(c)
	if err != nil {
		return err
	}
	if conn.Status == connections.StatusRevoked {
		return requireStatus(conn, connections.StatusActive)
	}
	if conn.Kind == connections.KindCloudOAuth {
		return &Error{Status: http.StatusConflict, Code: "dynamic_webhook",
			Message: "OAuth connections use a dynamic webhook that jiraconnect registers and rotates itself"}
	}
	hook, err := connections.NewWebhookSecrets(true)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	p := principal(c)
	sealedSigning, err := s.deps.Connections.SealSigningSecret(ctx, p.OrgID, conn.ID, hook.SigningSecret)
	if err != nil {
		return err
	}
	err = s.deps.DB.InOrg(ctx, p.OrgID, func(q *dbq.Queries) error {
		if _, err := q.SetWebhookSecrets(ctx, dbq.SetWebhookSecretsParams{ID: conn.ID,
			SecretHash: connections.HashURLSecret(hook.URLSecret), SigningSecret: sealedSigning}); err != nil {
			return err
		}
		_, err := audit.Record(ctx, q, audit.Entry{OrgID: p.OrgID, Actor: actor(c), Action: "connection.webhook_secret_rotate",
			TargetType: "connection", TargetID: conn.ID.String(), SourceIP: s.clientAddr(c)})
		return err
	})
	if err != nil {
		return err
	}
	view := viewOf(conn)
	view.Webhook = s.webhookView(conn.ID, hook)
	return c.JSON(http.StatusOK, view)
}

// evidenceSettings is what the audit log records of a connection's evidence-sync configuration:
// every setting that decides what is collected from Jira.
func evidenceSettings(c connections.Config) map[string]any {
	return map[string]any{"sync_cadence": c.SyncCadence.D().String(), "stale_threshold": c.StaleThreshold.D().String(),
		"resolved_jql": c.ResolvedJQL, "sample_size": c.SampleSize, "remediation": c.Remediation}
}

// configFieldError turns a connections.FieldError into an API error naming config.<field>.
func configFieldError(err error) error {
	var fe *connections.FieldError
	if errors.As(err, &fe) {
		return errInvalidField("config."+fe.Field, "%s", fe.Message)
	}
	return errBadRequest("invalid_config", "config", err.Error())
}

// createOAuthState stores the hash of a fresh single-use state bound to org and connection.
func createOAuthState(ctx context.Context, q *dbq.Queries, orgID, connID uuid.UUID) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate oauth state: %w", err)
	}
	state := base64.RawURLEncoding.EncodeToString(b[:])
	err := q.CreateOAuthState(ctx, dbq.CreateOAuthStateParams{
		StateHash: hashState(state), OrgID: orgID, ConnectionID: connID, ExpiresAt: time.Now().Add(oauthStateTTL),
	})
	if err != nil {
		return "", fmt.Errorf("store oauth state: %w", err)
	}
	return state, nil
}

func hashState(state string) []byte {
	h := sha256.Sum256([]byte(state))
	return h[:]
}

// loadConnection returns the caller's connection or 404 (also for other orgs' connections).
func (s *Server) loadConnection(c echo.Context) (connections.Connection, error) {
	id, err := uuid.Parse(c.Param("id"))
	if err != nil {
		return connections.Connection{}, errNotFound("connection")
	}
	conn, err := s.deps.Connections.Get(c.Request().Context(), principal(c).OrgID, id)
	if errors.Is(err, connections.ErrNotFound) {
		return connections.Connection{}, errNotFound("connection")
	}
	return conn, err
}

func (s *Server) getConnection(c echo.Context) error {
	conn, err := s.loadConnection(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewOf(conn))
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
	conn, err := s.loadConnection(c)
	if err != nil {
		return err
	}
	var patch connections.ConfigPatch
	if err := s.decodeJSON(c, &patch); err != nil {
		return err
	}
	if conn.Status == connections.StatusRevoked {
		return &Error{Status: http.StatusConflict, Code: "connection_revoked", Message: "the connection is revoked"}
	}
	old := conn.Config
	cfg := patch.Apply(old)
	if err := cfg.Validate(); err != nil {
		var fe *connections.FieldError
		if errors.As(err, &fe) {
			return errInvalidField(fe.Field, "%s", fe.Message)
		}
		return err
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	p := principal(c)
	err = s.deps.DB.InOrg(ctx, p.OrgID, func(q *dbq.Queries) error {
		row, err := q.UpdateConnectionConfig(ctx, dbq.UpdateConnectionConfigParams{ID: conn.ID, Config: cfgJSON})
		if err != nil {
			return err
		}
		if conn, err = connections.FromRow(row); err != nil {
			return err
		}
		_, err = audit.Record(ctx, q, audit.Entry{OrgID: p.OrgID, Actor: actor(c), Action: "connection.configure",
			TargetType: "connection", TargetID: conn.ID.String(), SourceIP: s.clientAddr(c),
			Metadata: map[string]any{"old": evidenceSettings(old), "new": evidenceSettings(cfg)}})
		return err
	})
	if err != nil {
		return err
	}
	if conn.Status != connections.StatusPendingAuth {
		if err := s.deps.Temporal.SignalWorkflow(ctx, conn.WorkflowID, "", workflows.SignalConfigChanged, nil); err != nil {
			// The stored configuration is authoritative: the workflow reloads it on its next
			// start or continue-as-new even if this signal is lost.
			s.log.WarnContext(ctx, "config-changed signal not delivered", "connection_id", conn.ID, "err", err)
		}
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

// queryTime parses an optional RFC 3339 timestamp query parameter.
func queryTime(c echo.Context, name string) (*time.Time, error) {
	raw := c.QueryParam(name)
	if raw == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		return nil, errInvalidField(name, "must be an RFC 3339 timestamp such as 2026-01-02T15:04:05Z")
	}
	return &t, nil
}
