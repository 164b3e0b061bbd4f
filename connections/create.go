package connections

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/jiraconnect/jiraconnect/apperr"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/egress"
	"github.com/jiraconnect/jiraconnect/jira"
)

// oauthStateTTL bounds how long a user may take to consent at Atlassian.
const oauthStateTTL = 10 * time.Minute

// CreateInput asks for a new connection; the API decodes its request body into it as is. The
// secret-bearing fields are those of the kind: email and api_token (cloud_token), pat
// (datacenter_pat), none (cloud_oauth, which consents at Atlassian).
type CreateInput struct {
	Kind     string       `json:"kind"`
	SiteURL  string       `json:"site_url"`
	Email    string       `json:"email"`
	APIToken string       `json:"api_token"`
	PAT      string       `json:"pat"`
	Config   *ConfigPatch `json:"config"`
	// FindingSync asks, for cloud_oauth, for the extra scopes finding sync needs
	// (write:jira-work, manage:jira-webhook). Evidence sync alone requests only read scopes.
	FindingSync bool `json:"finding_sync"`
}

// Created is a new connection and what is shown of it once.
type Created struct {
	Connection Connection
	// Webhook holds the secrets of the admin webhook a token or PAT connection needs registered
	// in Jira (nil for cloud_oauth, which registers dynamic webhooks itself once finding sync is
	// on).
	Webhook *WebhookSecrets
	// AuthorizeURL is where the user consents to a cloud_oauth connection.
	AuthorizeURL string
}

// createPlan is a create request that passed every check: nothing is written, sealed or sent to
// Jira before plan has accepted the whole request.
type createPlan struct {
	kind        Kind
	site        string
	creds       Credentials
	cfg         Config
	findingSync bool
}

// plan is the one place a create request is validated: field by field in the order the request
// lists them, then the site against the egress policy (which may resolve its name), before
// anything is stored or sent to Jira.
func (m *Manager) plan(ctx context.Context, in CreateInput) (createPlan, error) {
	kind, err := ParseKind(in.Kind)
	if err != nil {
		return createPlan{}, apperr.Invalid("kind", "%v", err)
	}
	site, err := NormalizeSiteURL(in.SiteURL)
	if err != nil {
		return createPlan{}, apperr.Invalid("site_url", "%v", err)
	}
	creds, err := credentialsFrom(kind, in.Email, in.APIToken, in.PAT)
	if err != nil {
		return createPlan{}, err
	}
	cfg := DefaultConfig()
	if in.Config != nil {
		cfg = in.Config.Apply(cfg)
	}
	if err := cfg.Validate(); err != nil {
		return createPlan{}, fieldFailure(err, "config.", "invalid_config", "config")
	}
	if in.FindingSync && kind != KindCloudOAuth {
		return createPlan{}, apperr.Invalid("finding_sync", "only cloud_oauth connections request scopes; configure finding sync with PUT /v1/connections/{id}/finding-sync")
	}
	if kind == KindCloudOAuth && m.OAuth == nil {
		return createPlan{}, apperr.New(apperr.KindInvalid, "oauth_not_configured", "kind",
			"kind: cloud_oauth needs JIRA_OAUTH_CLIENT_ID and JIRA_OAUTH_CLIENT_SECRET on the server")
	}
	if err := m.checkSite(ctx, site); err != nil {
		return createPlan{}, err
	}
	return createPlan{kind: kind, site: site, creds: creds, cfg: cfg, findingSync: in.FindingSync}, nil
}

// Create validates the request, verifies token and PAT credentials with Jira (who-am-I), seals
// them, stores the connection with its webhook secrets, its OAuth state (cloud_oauth) and the
// connection.create audit row in one transaction, then starts the workflow of a token or PAT
// connection (a cloud_oauth connection starts once consented, in CompleteOAuth).
//
// A workflow that cannot be started is workflow_unavailable; the connection is stored by then.
func (m *Manager) Create(ctx context.Context, orgID uuid.UUID, in CreateInput, by audit.Caller) (Created, error) {
	p, err := m.plan(ctx, in)
	if err != nil {
		return Created{}, err
	}
	connID := uuid.New()
	if p.kind != KindCloudOAuth {
		if err := m.verifyCredentials(ctx, connID, p.site, p.creds); err != nil {
			return Created{}, err
		}
	}
	cfgJSON, err := json.Marshal(p.cfg)
	if err != nil {
		return Created{}, err
	}
	status := StatusActive
	var sealed []byte
	if p.kind == KindCloudOAuth {
		status = StatusPendingAuth
	} else if sealed, err = SealCredentials(ctx, m.Sealer, orgID, connID, p.creds); err != nil {
		return Created{}, err
	}
	// Token and PAT connections get an admin webhook with an HMAC signing secret; OAuth
	// connections register dynamic webhooks, which Jira does not HMAC-sign.
	hook, err := NewWebhookSecrets(p.kind != KindCloudOAuth)
	if err != nil {
		return Created{}, err
	}
	sealedSigning, err := m.Connections.SealSigningSecret(ctx, orgID, connID, hook.SigningSecret)
	if err != nil {
		return Created{}, err
	}
	var out Created
	var state string
	err = m.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		row, err := q.CreateConnection(ctx, dbq.CreateConnectionParams{
			ID: connID, OrgID: orgID, Kind: string(p.kind), SiteUrl: p.site, Status: string(status),
			Config: cfgJSON, Scopes: []string{}, SealedCredentials: sealed, WorkflowID: WorkflowID(connID),
			WebhookSecretHash: HashURLSecret(hook.URLSecret),
		})
		if err != nil {
			return err
		}
		if _, err := q.SetWebhookSecrets(ctx, dbq.SetWebhookSecretsParams{ID: connID,
			SecretHash: HashURLSecret(hook.URLSecret), SigningSecret: sealedSigning}); err != nil {
			return err
		}
		if out.Connection, err = FromRow(row); err != nil {
			return err
		}
		if p.kind == KindCloudOAuth {
			if state, err = newOAuthState(ctx, q, orgID, connID); err != nil {
				return err
			}
		}
		return recordIn(ctx, q, orgID, connID, "connection.create", by, map[string]any{"kind": string(p.kind), "site_url": p.site})
	})
	if err != nil {
		return Created{}, fmt.Errorf("create connection: %w", err)
	}
	if p.kind == KindCloudOAuth {
		if out.AuthorizeURL, err = m.OAuth.AuthorizeURL(state, oauthScopes(p.findingSync)); err != nil {
			return Created{}, err
		}
		return out, nil
	}
	out.Webhook = &hook
	if err := m.ensureRunning(ctx, orgID, connID); err != nil {
		return Created{}, err
	}
	return out, nil
}

// oauthScopes are the minimum scopes for what the connection will do.
func oauthScopes(findingSync bool) []string {
	return jira.Scopes(jira.Features{FindingSync: findingSync, DynamicWebhooks: findingSync})
}

// credentialsFrom validates the secret-bearing fields for token and PAT connections.
func credentialsFrom(kind Kind, email, apiToken, pat string) (Credentials, error) {
	switch kind {
	case KindCloudToken:
		email = strings.TrimSpace(email)
		if email == "" || !strings.Contains(email, "@") || len(email) > 320 {
			return Credentials{}, apperr.Invalid("email", "must be the Atlassian account email")
		}
		if strings.TrimSpace(apiToken) == "" || len(apiToken) > 4096 {
			return Credentials{}, apperr.Invalid("api_token", "must be a non-empty Atlassian API token")
		}
		if pat != "" {
			return Credentials{}, apperr.Invalid("pat", "is only for datacenter_pat connections")
		}
		return Credentials{Kind: kind, Email: email, APIToken: jira.NewSecret(strings.TrimSpace(apiToken))}, nil
	case KindDataCenterPAT:
		if strings.TrimSpace(pat) == "" || len(pat) > 4096 {
			return Credentials{}, apperr.Invalid("pat", "must be a non-empty personal access token")
		}
		if email != "" || apiToken != "" {
			return Credentials{}, apperr.Invalid("api_token", "email and api_token are only for cloud_token connections")
		}
		return Credentials{Kind: kind, PAT: jira.NewSecret(strings.TrimSpace(pat))}, nil
	}
	if email != "" || apiToken != "" || pat != "" {
		return Credentials{}, apperr.Invalid("api_token", "cloud_oauth connections take no credentials; consent at the returned authorize_url")
	}
	return Credentials{Kind: kind}, nil
}

// checkSite applies the egress policy to a site URL before anything is stored or called: a
// destination the policy refuses is egress_denied naming the policy (and the variable an
// operator sets), never the address the name resolved to.
func (m *Manager) checkSite(ctx context.Context, siteURL string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := m.Egress.CheckURL(ctx, siteURL); err != nil {
		m.log().WarnContext(ctx, "site URL refused by the egress policy", "site_url", siteURL, "err", err.Error())
		return egressDenied(err)
	}
	return nil
}

// verifyCredentials calls who-am-I with credentials that are not stored yet: a connection is
// only created (or re-authorized) with credentials Jira accepts. The call goes through the
// connections' egress-guarded client, so the policy is checked again on the address dialled.
func (m *Manager) verifyCredentials(ctx context.Context, connID uuid.UUID, siteURL string, creds Credentials) error {
	auth := jira.APIToken(creds.Email, creds.APIToken)
	if creds.Kind == KindDataCenterPAT {
		auth = jira.PAT(creds.PAT)
	}
	client, err := m.Connections.NewJiraClient(jira.Config{Flavor: Flavor(creds.Kind), BaseURL: siteURL, Auth: auth,
		Logger: m.log().With("connection_id", connID.String(), "site_url", siteURL)})
	if errors.Is(err, ErrNoHTTPClient) {
		return err
	}
	if err != nil {
		return apperr.Invalid("site_url", "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := client.Myself(ctx); err != nil {
		return verifyFailure(creds.Kind, err)
	}
	return nil
}

// verifyFailure answers a failed credential check with a category (credentials_rejected,
// not_jira, egress_denied, tls_error, jira_unreachable). The message is the jira.Error's, which
// carries no network error text and no body of a non-Jira answer.
func verifyFailure(kind Kind, err error) error {
	field := "api_token"
	if kind == KindDataCenterPAT {
		field = "pat"
	}
	switch jira.KindOf(err) {
	case jira.KindUnauthorized, jira.KindReauthRequired, jira.KindForbidden:
		return apperr.New(apperr.KindInvalid, "credentials_rejected", field,
			field+": Jira rejected these credentials (who-am-I answered "+fmt.Sprint(statusOf(err))+")")
	case jira.KindNotFound, jira.KindGone:
		return apperr.New(apperr.KindInvalid, "not_jira", "site_url", "site_url: no Jira REST API answered at this URL")
	}
	return siteCallFailure("could not verify the credentials with Jira", err)
}

// siteCallFailure answers a failed call to a tenant's Jira site that no more specific answer
// covers: egress_denied (the site is not a destination this server may reach), tls_error or
// jira_unreachable (upstream), with what was being done and the jira.Error's safe text.
func siteCallFailure(what string, err error) *apperr.Error {
	switch jira.KindOf(err) {
	case jira.KindEgressDenied:
		return egressDenied(err)
	case jira.KindTLS:
		return apperr.New(apperr.KindUpstream, "tls_error", "site_url", what+": "+err.Error())
	}
	return apperr.New(apperr.KindUpstream, "jira_unreachable", "", what+": "+err.Error())
}

// egressDenied is the failure for a site the egress policy refuses, in the policy's public words.
func egressDenied(err error) *apperr.Error {
	msg := "the site is not a destination this server's egress policy allows (" + egress.EnvVar + ")"
	var de *egress.DeniedError
	if errors.As(err, &de) {
		msg = de.Public()
	}
	return apperr.New(apperr.KindInvalid, "egress_denied", "site_url", "site_url: "+msg)
}

func statusOf(err error) int {
	var je *jira.Error
	if errors.As(err, &je) {
		return je.Status
	}
	return 0
}

// newOAuthState stores the hash of a fresh single-use state bound to org and connection, and
// returns the state.
func newOAuthState(ctx context.Context, q *dbq.Queries, orgID, connID uuid.UUID) (string, error) {
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
