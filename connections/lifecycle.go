package connections

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/jiraconnect/jiraconnect/apperr"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/jira"
)

// ReauthInput asks to re-authorize a connection; the API decodes its request body into it as
// is. Token and PAT connections give new credentials (email and api_token, or pat); cloud_oauth
// connections give none and get a new consent URL.
type ReauthInput struct {
	Email    string `json:"email"`
	APIToken string `json:"api_token"`
	PAT      string `json:"pat"`
	// FindingSync (cloud_oauth) asks for the scopes finding sync needs; it is implied when finding
	// sync is already configured.
	FindingSync bool `json:"finding_sync"`
}

// Reauthorization is the connection after Reauth: re-authorized (token, PAT), or unchanged with
// the URL at which the user consents again (cloud_oauth).
type Reauthorization struct {
	Connection   Connection
	AuthorizeURL string
}

// Reauth re-authorizes a connection that is active, needs re-authorization or waits for its
// first consent. For cloud_oauth it stores a new single-use state (audited
// connection.reauth_requested) and returns the consent URL; CompleteOAuth finishes. For token and
// PAT connections the new credentials are checked against the egress policy and verified with
// Jira, then stored and the workflow told (activate).
func (m *Manager) Reauth(ctx context.Context, orgID, connID uuid.UUID, in ReauthInput, by audit.Caller) (Reauthorization, error) {
	conn, err := m.load(ctx, orgID, connID)
	if err != nil {
		return Reauthorization{}, err
	}
	if err := requireStatus(conn, StatusActive, StatusNeedsReauth, StatusPendingAuth); err != nil {
		return Reauthorization{}, err
	}
	if conn.Kind == KindCloudOAuth {
		if in.Email != "" || in.APIToken != "" || in.PAT != "" {
			return Reauthorization{}, apperr.Invalid("api_token", "cloud_oauth connections re-authorize by consenting at the returned authorize_url")
		}
		if m.OAuth == nil {
			return Reauthorization{}, apperr.New(apperr.KindInvalid, "oauth_not_configured", "", "OAuth is not configured on the server")
		}
		var state string
		err := m.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
			var err error
			if state, err = newOAuthState(ctx, q, orgID, conn.ID); err != nil {
				return err
			}
			return recordIn(ctx, q, orgID, conn.ID, "connection.reauth_requested", by, nil)
		})
		if err != nil {
			return Reauthorization{}, err
		}
		url, err := m.OAuth.AuthorizeURL(state, oauthScopes(in.FindingSync || conn.Config.FindingSync != nil))
		if err != nil {
			return Reauthorization{}, err
		}
		return Reauthorization{Connection: conn, AuthorizeURL: url}, nil
	}
	if in.FindingSync {
		return Reauthorization{}, apperr.Invalid("finding_sync", "only cloud_oauth connections request scopes")
	}
	creds, err := credentialsFrom(conn.Kind, in.Email, in.APIToken, in.PAT)
	if err != nil {
		return Reauthorization{}, err
	}
	// The stored site is checked again: the operator's policy may have narrowed, or the site's
	// name may resolve elsewhere now.
	if err := m.checkSite(ctx, conn.SiteURL); err != nil {
		return Reauthorization{}, err
	}
	if err := m.verifyCredentials(ctx, conn.ID, conn.SiteURL, creds); err != nil {
		return Reauthorization{}, err
	}
	conn, err = m.activate(ctx, conn, creds, "", by)
	return Reauthorization{Connection: conn}, err
}

// OAuthCallback is what Atlassian sends the consenting browser back with.
type OAuthCallback struct {
	// State is the single-use state Reauth or Create handed out.
	State string
	// Code is the authorization code; Error what Atlassian sent instead when the user declined.
	Code  string
	Error string
	// KeyOrg is the organization of the API key presented with the callback; uuid.Nil when none
	// was (a browser presents none). A key of another organization cannot use the state.
	KeyOrg uuid.UUID
}

// invalidOAuthState is the single answer for unknown, expired, reused and foreign states, so the
// callback reveals nothing about which states exist.
func invalidOAuthState() *apperr.Error {
	return apperr.New(apperr.KindInvalid, "invalid_state", "",
		"state: unknown, expired or already used; start again from POST /v1/connections")
}

// CheckOAuthState refuses, with the invalid_state failure, a state that cannot be one this
// server handed out (empty or too long), before anything is looked up.
func CheckOAuthState(state string) error {
	if state == "" || len(state) > 128 {
		return invalidOAuthState()
	}
	return nil
}

// CompleteOAuth completes Atlassian's 3LO consent: it consumes the single-use state (bound to
// org and connection), exchanges the code, resolves the cloud id of the connection's site, seals
// the tokens and activates the connection. by is the presented API key's identity, or zero when
// none was presented (the audit rows then name the callback itself).
func (m *Manager) CompleteOAuth(ctx context.Context, cb OAuthCallback, by audit.Caller) (Connection, error) {
	if err := CheckOAuthState(cb.State); err != nil {
		return Connection{}, err
	}
	// Consume inside a transaction so that a state presented by another org's caller is rolled
	// back, staying usable by its rightful owner.
	var binding dbq.ConsumeOAuthStateRow
	err := pgx.BeginFunc(ctx, m.DB.Pool, func(tx pgx.Tx) error {
		row, err := dbq.New(tx).ConsumeOAuthState(ctx, hashState(cb.State))
		if errors.Is(err, pgx.ErrNoRows) {
			return invalidOAuthState()
		}
		if err != nil {
			return err
		}
		if cb.KeyOrg != uuid.Nil && cb.KeyOrg != row.OrgID {
			return invalidOAuthState()
		}
		binding = row
		return nil
	})
	if err != nil {
		return Connection{}, err
	}
	conn, err := m.Connections.Get(ctx, binding.OrgID, binding.ConnectionID)
	if err != nil {
		return Connection{}, err
	}
	if conn.Status == StatusRevoked || conn.Kind != KindCloudOAuth {
		return Connection{}, invalidOAuthState()
	}
	if by.Actor.Type == "" {
		by.Actor = audit.Actor{Type: audit.ActorSystem, ID: "oauth-callback"}
	}
	if cb.Error != "" {
		// The user declined (or Atlassian refused); record it without echoing Atlassian's text
		// back as markup.
		_ = m.record(ctx, conn, "connection.consent_denied", by, map[string]any{"error": truncate(cb.Error, 64)})
		return Connection{}, apperr.New(apperr.KindInvalid, "authorization_denied", "", "Atlassian did not grant access ("+truncate(cb.Error, 64)+")")
	}
	if cb.Code == "" || len(cb.Code) > 4096 {
		return Connection{}, apperr.Invalid("code", "missing authorization code")
	}
	if m.OAuth == nil {
		return Connection{}, errors.New("complete oauth consent: OAuth is not configured")
	}
	tokens, err := m.OAuth.Exchange(ctx, cb.Code)
	if err != nil {
		if k := jira.KindOf(err); k == jira.KindBadRequest || k == jira.KindReauthRequired {
			return Connection{}, apperr.New(apperr.KindInvalid, "invalid_code", "code", "code: Atlassian rejected the authorization code (expired or already used)")
		}
		return Connection{}, apperr.New(apperr.KindUpstream, "atlassian_unreachable", "", "could not exchange the authorization code: "+err.Error())
	}
	cloudID, err := m.OAuth.CloudIDForSite(ctx, tokens.Access, conn.SiteURL)
	if err != nil {
		return Connection{}, apperr.New(apperr.KindInvalid, "site_not_authorized", "site_url",
			"site_url: the consent did not grant access to "+conn.SiteURL+" (pick that site when consenting)")
	}
	return m.activate(ctx, conn, OAuthCredentials(tokens), cloudID, by)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// activate stores verified credentials, makes the connection active (audited
// connection.connect for a first consent, connection.reauthorize otherwise) and tells its
// workflow — starting it for a first consent, or a lost one. Shared by token re-authorization and
// the OAuth callback.
func (m *Manager) activate(ctx context.Context, conn Connection, creds Credentials, cloudID string, by audit.Caller) (Connection, error) {
	orgID := conn.OrgID
	sealed, err := SealCredentials(ctx, m.Sealer, orgID, conn.ID, creds)
	if err != nil {
		return conn, err
	}
	wasPending := conn.Status == StatusPendingAuth
	var cloud *string
	if cloudID != "" {
		cloud = &cloudID
	}
	scopes := creds.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	err = m.DB.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		row, err := q.ActivateConnection(ctx, dbq.ActivateConnectionParams{ID: conn.ID, SealedCredentials: sealed, CloudID: cloud, Scopes: scopes})
		if errors.Is(err, pgx.ErrNoRows) {
			return apperr.NotFound("connection")
		}
		if err != nil {
			return err
		}
		if conn, err = FromRow(row); err != nil {
			return err
		}
		action := "connection.reauthorize"
		if wasPending {
			action = "connection.connect"
		}
		return recordIn(ctx, q, orgID, conn.ID, action, by, map[string]any{"kind": string(conn.Kind), "scopes": scopes})
	})
	if err != nil {
		return conn, err
	}
	m.Connections.Forget(conn.ID)
	if wasPending {
		return conn, m.ensureRunning(ctx, orgID, conn.ID)
	}
	return conn, m.workflowFailure(conn.ID, m.Workflows.Reauthorized(ctx, orgID, conn.ID))
}

// Revoke revokes a connection: its workflow stops any sync, clears the credentials and ends
// (audited by the cleanup). Without a running workflow (never started, or gone) the cleanup runs
// here, with the code the workflow would run. pending reports a workflow that is still carrying
// the revoke out when the wait ends: the connection shows revoked once it has. Revoking a revoked
// connection answers it unchanged.
func (m *Manager) Revoke(ctx context.Context, orgID, connID uuid.UUID, by audit.Caller) (conn Connection, pending bool, err error) {
	if conn, err = m.load(ctx, orgID, connID); err != nil {
		return Connection{}, false, err
	}
	if conn.Status != StatusRevoked {
		err = m.Workflows.Revoke(ctx, conn.ID, by.Actor)
		if errors.Is(err, ErrNoWorkflow) || conn.Status == StatusPendingAuth {
			err = m.Revoker.RevokeCleanup(ctx, conn.OrgID, conn.ID, by.Actor)
			if err == nil {
				m.stopLateWorkflow(ctx, conn, by.Actor)
			}
		}
		if errors.Is(err, ErrUpdatePending) {
			return conn, true, nil
		}
		if err != nil {
			return Connection{}, false, m.workflowFailure(conn.ID, err)
		}
	}
	if conn, err = m.Connections.Get(ctx, conn.OrgID, conn.ID); err != nil {
		return Connection{}, false, err
	}
	return conn, false, nil
}

// stopLateWorkflow ends a workflow that started after the revoke found none — the supervisor may
// restart a lost workflow between the revoke's update attempt and its cleanup. Such a workflow
// ends by itself once it reads the revoked row, but one that read the row just before the cleanup
// committed would otherwise wait for its next deadline to find out; the revoke signal makes it
// run the (idempotent) cleanup and end now. No workflow running is the normal case.
func (m *Manager) stopLateWorkflow(ctx context.Context, conn Connection, by audit.Actor) {
	err := m.Workflows.SignalRevoke(ctx, conn.ID, by)
	if err != nil && !errors.Is(err, ErrNoWorkflow) {
		m.log().WarnContext(ctx, "revoke signal to a late-started workflow not delivered; it ends at its next activity",
			"connection_id", conn.ID.String(), "err", err)
	}
}

// SyncNow asks an active connection's workflow for a sync (starting a lost workflow) and
// returns the sync's sequence number, audited as connection.sync_requested.
func (m *Manager) SyncNow(ctx context.Context, orgID, connID uuid.UUID, by audit.Caller) (int64, error) {
	conn, err := m.load(ctx, orgID, connID)
	if err != nil {
		return 0, err
	}
	if err := requireStatus(conn, StatusActive); err != nil {
		return 0, err
	}
	seq, err := m.Workflows.SyncNow(ctx, conn.OrgID, conn.ID)
	if err != nil {
		return 0, m.workflowFailure(conn.ID, err)
	}
	if err := m.record(ctx, conn, "connection.sync_requested", by, map[string]any{"seq": seq}); err != nil {
		return 0, err
	}
	return seq, nil
}

// Test runs the connection test in the connection's workflow and returns its report. A test
// can create and transition an issue in Jira, so every request is audited (connection.test,
// with the outcome, the failed checks and the test issue). A test still running when the wait
// ends is audited as still_running and answered test_still_running: it goes on, and the run
// report names the issue.
func (m *Manager) Test(ctx context.Context, orgID, connID uuid.UUID, by audit.Caller) (TestResult, error) {
	conn, err := m.load(ctx, orgID, connID)
	if err != nil {
		return TestResult{}, err
	}
	if err := requireStatus(conn, StatusActive, StatusNeedsReauth); err != nil {
		return TestResult{}, err
	}
	res, err := m.Workflows.Test(ctx, conn.ID)
	switch {
	case errors.Is(err, ErrUpdatePending):
		if aerr := m.record(ctx, conn, "connection.test", by, map[string]any{"outcome": "still_running"}); aerr != nil {
			return TestResult{}, aerr
		}
		return TestResult{}, apperr.New(apperr.KindTimeout, "test_still_running", "",
			"the connection test is still running (Jira is slow to answer); its result will appear in GET /v1/connections/{id}/runs")
	case errors.Is(err, ErrNoWorkflow):
		return TestResult{}, apperr.Conflict("workflow_not_running", "the connection's workflow is not running")
	case err != nil:
		return TestResult{}, m.workflowFailure(conn.ID, err)
	}
	meta := map[string]any{"outcome": "passed"}
	if !res.OK {
		meta["outcome"] = "failed"
		meta["failed_checks"] = res.FailedChecks()
	}
	if key := res.TestIssueKey(); key != "" {
		meta["test_issue_key"] = key
	}
	if err := m.record(ctx, conn, "connection.test", by, meta); err != nil {
		return TestResult{}, err
	}
	return res, nil
}
