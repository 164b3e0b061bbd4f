package connections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/apperr"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/egress"
	"github.com/jiraconnect/jiraconnect/findings"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jirasim"
	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

// workflows stands in for the connection workflows (workflowclient.Client, which needs Temporal
// and is covered by its own tests and the e2e suite): it records every call, in order, and
// answers what the test set.
type workflows struct {
	mu    sync.Mutex
	calls []string
	// err answers the call of that name ("ensure", "sync", "test", "reauthorized", "revoke",
	// "signal-revoke", "config-changed", "findings-pending").
	err    map[string]error
	seq    int64
	result connections.TestResult
}

func (w *workflows) call(name string, connID uuid.UUID, extra ...string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, strings.Join(append([]string{name, connID.String()}, extra...), " "))
	return w.err[name]
}

// made returns the calls so far and forgets them.
func (w *workflows) made() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.calls
	w.calls = nil
	return out
}

func (w *workflows) EnsureRunning(_ context.Context, orgID, connID uuid.UUID) error {
	return w.call("ensure", connID, "org="+orgID.String())
}

func (w *workflows) SyncNow(_ context.Context, orgID, connID uuid.UUID) (int64, error) {
	return w.seq, w.call("sync", connID, "org="+orgID.String())
}

func (w *workflows) Test(_ context.Context, connID uuid.UUID) (connections.TestResult, error) {
	return w.result, w.call("test", connID)
}

func (w *workflows) Reauthorized(_ context.Context, orgID, connID uuid.UUID) error {
	return w.call("reauthorized", connID, "org="+orgID.String())
}

func (w *workflows) Revoke(_ context.Context, connID uuid.UUID, by audit.Actor) error {
	return w.call("revoke", connID, string(by.Type)+":"+by.ID)
}

func (w *workflows) SignalRevoke(_ context.Context, connID uuid.UUID, by audit.Actor) error {
	return w.call("signal-revoke", connID, string(by.Type)+":"+by.ID)
}

func (w *workflows) ConfigChanged(_ context.Context, connID uuid.UUID) error {
	return w.call("config-changed", connID)
}

func (w *workflows) FindingsPending(_ context.Context, connID uuid.UUID) error {
	return w.call("findings-pending", connID)
}

// revoker runs the real revoke cleanup (the activity the API runs when no workflow does).
type revoker struct{ a *activities.Activities }

func (r revoker) RevokeCleanup(ctx context.Context, orgID, connID uuid.UUID, by audit.Actor) error {
	return r.a.RevokeCleanup(ctx, activities.RevokeInput{ConnectionRef: activities.ConnectionRef{OrgID: orgID, ConnectionID: connID},
		ActorType: string(by.Type), ActorID: by.ID})
}

// world is a Manager on real Postgres, sealing, egress policy (loopback allowed) and Jira
// simulators (Cloud with an OAuth app, Data Center), with the workflows stood in for.
type world struct {
	t     *testing.T
	db    *db.DB
	m     *connections.Manager
	wf    *workflows
	cloud *jirasim.Server
	dc    *jirasim.Server
	org   uuid.UUID
	by    audit.Caller
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cloud := jirasim.NewServer(jirasim.Options{Flavor: jirasim.Cloud, Logger: quiet, RandSeed: 1})
	t.Cleanup(cloud.Close)
	dc := jirasim.NewServer(jirasim.Options{Flavor: jirasim.DataCenter, Logger: quiet, RandSeed: 2})
	t.Cleanup(dc.Close)
	for _, sim := range []*jirasim.Server{cloud, dc} {
		_, err := sim.Seed(3, jirasim.SeedSpec{Projects: 1, Issues: 5})
		require.NoError(t, err)
	}
	d := testDB.Open(t)
	kr, err := seal.OpenLocalKeyring(t.TempDir())
	require.NoError(t, err)
	sealer, err := seal.New(kr, tenancy.KeyStore{DB: d}, seal.Options{})
	require.NoError(t, err)
	org, _, err := (&tenancy.Service{DB: d, Sealer: sealer}).CreateOrg(ctx, "manager-"+uuid.NewString()[:8], audit.Actor{Type: audit.ActorCLI, ID: "test"})
	require.NoError(t, err)
	allow, err := egress.ParseAllowList(egress.Loopback)
	require.NoError(t, err)
	policy := egress.New(allow, egress.Options{})
	id, secret := cloud.OAuthClient()
	app := &jira.OAuthApp{ClientID: id, ClientSecret: jira.NewSecret(secret), RedirectURL: "https://app.example.com/callback",
		AuthBaseURL: cloud.URL, APIBaseURL: cloud.URL, HTTPClient: policy.HTTPClient(), Logger: quiet}
	svc := &connections.Service{DB: d, Sealer: sealer, OAuth: app, HTTPClient: policy.HTTPClient(), Log: quiet}
	acts, err := activities.New(activities.Deps{DB: d, Connections: svc, Log: quiet, Version: "test"})
	require.NoError(t, err)
	wf := &workflows{err: map[string]error{}}
	m := &connections.Manager{DB: d, Sealer: sealer, Connections: svc, Egress: policy, OAuth: app, Workflows: wf,
		Revoker: revoker{acts}, Log: quiet}
	by := audit.Caller{Actor: audit.Actor{Type: audit.ActorAPIKey, ID: uuid.NewString()}, SourceIP: netip.MustParseAddr("198.51.100.7")}
	return &world{t: t, db: d, m: m, wf: wf, cloud: cloud, dc: dc, org: org.ID, by: by}
}

// tokenInput asks for a cloud_token connection to the Cloud simulator.
func (w *world) tokenInput() connections.CreateInput {
	return connections.CreateInput{Kind: "cloud_token", SiteURL: w.cloud.URL, Email: "admin@example.com",
		APIToken: w.cloud.APIToken("admin@example.com")}
}

// create creates a connection and forgets the workflow calls it made.
func (w *world) create(in connections.CreateInput) connections.Created {
	w.t.Helper()
	created, err := w.m.Create(context.Background(), w.org, in, w.by)
	require.NoError(w.t, err)
	w.wf.made()
	return created
}

// auditRow is one audit row as the owner reads it back.
type auditRow struct {
	Action, ActorType, ActorID, TargetID, SourceIP string
	Metadata                                       map[string]any
}

// audits returns the organization's audit rows about connections, oldest first.
func (w *world) audits() []auditRow {
	w.t.Helper()
	rows, err := testDB.Owner(w.t).Query(context.Background(), `SELECT action, actor_type, actor_id, target_id,
		coalesce(host(source_ip), ''), coalesce(metadata, '{}'::jsonb) FROM audit_log
		WHERE org_id = $1 AND target_type = 'connection' ORDER BY id`, w.org)
	require.NoError(w.t, err)
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var r auditRow
		var meta []byte
		require.NoError(w.t, rows.Scan(&r.Action, &r.ActorType, &r.ActorID, &r.TargetID, &r.SourceIP, &meta))
		require.NoError(w.t, json.Unmarshal(meta, &r.Metadata))
		out = append(out, r)
	}
	require.NoError(w.t, rows.Err())
	return out
}

// actions is the audit rows' actions.
func (w *world) actions() []string {
	var out []string
	for _, r := range w.audits() {
		out = append(out, r.Action)
	}
	return out
}

// count counts the organization's rows of a table.
func (w *world) count(table string) int {
	w.t.Helper()
	var n int
	require.NoError(w.t, testDB.Owner(w.t).QueryRow(context.Background(), "SELECT count(*) FROM "+table+" WHERE org_id = $1", w.org).Scan(&n))
	return n
}

// requireFailure asserts err is the use-case failure kind/code/field.
func requireFailure(t *testing.T, err error, kind apperr.Kind, code, field string) *apperr.Error {
	t.Helper()
	var f *apperr.Error
	require.ErrorAs(t, err, &f, "want the %s failure", code)
	assert.Equal(t, kind, f.Kind, "kind of %s", f.Message)
	assert.Equal(t, code, f.Code, f.Message)
	assert.Equal(t, field, f.Field, f.Message)
	return f
}

// consent follows the simulator's authorize redirect and returns the callback's query.
func consent(t *testing.T, authorizeURL string) url.Values {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authorizeURL)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	loc, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	require.Equal(t, "app.example.com", loc.Host)
	return loc.Query()
}

func TestCreateTokenConnection(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	in := w.tokenInput()
	sync := connections.Duration(12 * 3600e9)
	in.Config = &connections.ConfigPatch{SyncCadence: &sync}
	created, err := w.m.Create(ctx, w.org, in, w.by)
	require.NoError(t, err)
	conn := created.Connection
	assert.Equal(t, connections.StatusActive, conn.Status)
	assert.Equal(t, connections.KindCloudToken, conn.Kind)
	assert.Equal(t, w.cloud.URL, conn.SiteURL)
	assert.Equal(t, "12h0m0s", conn.Config.SyncCadence.D().String())
	assert.Equal(t, connections.WorkflowID(conn.ID), conn.WorkflowID)
	assert.Empty(t, created.AuthorizeURL)
	require.NotNil(t, created.Webhook)
	assert.NotEmpty(t, created.Webhook.SigningSecret, "token connections sign their admin webhook")
	assert.Equal(t, []string{"ensure " + conn.ID.String() + " org=" + w.org.String()}, w.wf.made())

	// What is stored: sealed credentials Jira accepted, the URL secret's hash, the sealed signing
	// secret — and the audit row, from the caller's address.
	var secretHash, sealedSigning []byte
	require.NoError(t, testDB.Owner(t).QueryRow(ctx, `SELECT webhook_secret_hash, webhook_signing_secret FROM connections WHERE id = $1`,
		conn.ID).Scan(&secretHash, &sealedSigning))
	assert.Equal(t, connections.HashURLSecret(created.Webhook.URLSecret), secretHash)
	signing, ok, err := w.m.Connections.WebhookSigningSecret(ctx, w.org, conn.ID)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, created.Webhook.SigningSecret, string(signing))
	client, _, err := w.m.Connections.Client(ctx, w.org, conn.ID, nil)
	require.NoError(t, err)
	_, err = client.Myself(ctx)
	require.NoError(t, err, "the stored credentials are the ones given")
	rows := w.audits()
	require.Len(t, rows, 1)
	assert.Equal(t, auditRow{Action: "connection.create", ActorType: "api_key", ActorID: w.by.Actor.ID, TargetID: conn.ID.String(),
		SourceIP: "198.51.100.7", Metadata: map[string]any{"kind": "cloud_token", "site_url": w.cloud.URL}}, rows[0])

	// A Data Center connection with a PAT.
	dc, err := w.m.Create(ctx, w.org, connections.CreateInput{Kind: "datacenter_pat", SiteURL: w.dc.URL + "/", PAT: w.dc.PAT("admin")}, w.by)
	require.NoError(t, err)
	assert.Equal(t, w.dc.URL, dc.Connection.SiteURL, "the site URL is stored in its canonical form")
	assert.Equal(t, connections.KindDataCenterPAT, dc.Connection.Kind)

	// Temporal down: the connection is stored, the answer says its workflow could not start.
	w.wf.err["ensure"] = fmt.Errorf("%w: temporal is unavailable", connections.ErrStartFailed)
	_, err = w.m.Create(ctx, w.org, w.tokenInput(), w.by)
	requireFailure(t, err, apperr.KindUnavailable, "workflow_unavailable", "")
	assert.Equal(t, 3, w.count("connections"))
}

// Every refusal happens before anything is written, sealed, sent to Jira or to a workflow.
func TestCreateRefusesBadInputAndChangesNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	// A loopback site that answers, but is no Jira; and one where nobody listens.
	notJira := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notJira.Close)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	token := w.cloud.APIToken("admin@example.com")
	bad := func(mod func(*connections.CreateInput)) connections.CreateInput {
		in := w.tokenInput()
		mod(&in)
		return in
	}
	zero := 0
	soon := connections.Duration(1e9)
	cases := []struct {
		name        string
		in          connections.CreateInput
		kind        apperr.Kind
		code, field string
	}{
		{"unknown kind", bad(func(in *connections.CreateInput) { in.Kind = "jira_server" }), apperr.KindInvalid, "invalid_field", "kind"},
		{"not a URL", bad(func(in *connections.CreateInput) { in.SiteURL = "not a url" }), apperr.KindInvalid, "invalid_field", "site_url"},
		{"credentials in the URL", bad(func(in *connections.CreateInput) { in.SiteURL = "https://u:p@x.atlassian.net" }), apperr.KindInvalid, "invalid_field", "site_url"},
		{"no email", bad(func(in *connections.CreateInput) { in.Email = "" }), apperr.KindInvalid, "invalid_field", "email"},
		{"no token", bad(func(in *connections.CreateInput) { in.APIToken = " " }), apperr.KindInvalid, "invalid_field", "api_token"},
		{"a PAT for a token connection", bad(func(in *connections.CreateInput) { in.PAT = "x" }), apperr.KindInvalid, "invalid_field", "pat"},
		{"credentials for OAuth", bad(func(in *connections.CreateInput) { in.Kind = "cloud_oauth" }), apperr.KindInvalid, "invalid_field", "api_token"},
		{"cadence too short", bad(func(in *connections.CreateInput) { in.Config = &connections.ConfigPatch{SyncCadence: &soon} }), apperr.KindInvalid, "invalid_field", "config.sync_cadence"},
		{"sample size zero", bad(func(in *connections.CreateInput) { in.Config = &connections.ConfigPatch{SampleSize: &zero} }), apperr.KindInvalid, "invalid_field", "config.sample_size"},
		{"finding sync scopes for a token", bad(func(in *connections.CreateInput) { in.FindingSync = true }), apperr.KindInvalid, "invalid_field", "finding_sync"},
		{"private address", bad(func(in *connections.CreateInput) { in.SiteURL = "https://10.1.2.3" }), apperr.KindInvalid, "egress_denied", "site_url"},
		// OAuth connections call nothing before consent: the policy alone refuses the site.
		{"OAuth to a private address", connections.CreateInput{Kind: "cloud_oauth", SiteURL: "https://192.168.1.10"}, apperr.KindInvalid, "egress_denied", "site_url"},
		{"plain http off the allow list", bad(func(in *connections.CreateInput) { in.SiteURL = "http://example.atlassian.net" }), apperr.KindInvalid, "egress_denied", "site_url"},
		{"wrong token", bad(func(in *connections.CreateInput) { in.APIToken = "wrong" }), apperr.KindInvalid, "credentials_rejected", "api_token"},
		{"wrong PAT", connections.CreateInput{Kind: "datacenter_pat", SiteURL: w.dc.URL, PAT: "not-a-pat"}, apperr.KindInvalid, "credentials_rejected", "pat"},
		{"no Jira there", bad(func(in *connections.CreateInput) { in.SiteURL = notJira.URL }), apperr.KindInvalid, "not_jira", "site_url"},
		{"nobody listening", bad(func(in *connections.CreateInput) { in.SiteURL = gone.URL }), apperr.KindUpstream, "jira_unreachable", ""},
	}
	for _, c := range cases {
		_, err := w.m.Create(ctx, w.org, c.in, w.by)
		f := requireFailure(t, err, c.kind, c.code, c.field)
		assert.NotContains(t, f.Message, token, c.name)
	}
	// OAuth on a server without an OAuth app.
	noOAuth := *w.m
	noOAuth.OAuth = nil
	_, err := noOAuth.Create(ctx, w.org, connections.CreateInput{Kind: "cloud_oauth", SiteURL: w.cloud.URL}, w.by)
	requireFailure(t, err, apperr.KindInvalid, "oauth_not_configured", "kind")

	assert.Zero(t, w.count("connections"))
	assert.Zero(t, w.count("oauth_states"))
	assert.Empty(t, w.audits())
	assert.Empty(t, w.wf.made())
}

// An OAuth connection waits for consent; the callback activates it (and starts its workflow)
// exactly once, only for the state's organization, and records a declined consent.
func TestOAuthConnectAndCallback(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	created, err := w.m.Create(ctx, w.org, connections.CreateInput{Kind: "cloud_oauth", SiteURL: w.cloud.URL, FindingSync: true}, w.by)
	require.NoError(t, err)
	conn := created.Connection
	assert.Equal(t, connections.StatusPendingAuth, conn.Status)
	assert.Nil(t, created.Webhook, "OAuth connections register dynamic webhooks themselves")
	authURL, err := url.Parse(created.AuthorizeURL)
	require.NoError(t, err)
	assert.Contains(t, authURL.Query().Get("scope"), "write:jira-work", "finding sync asked for its scopes")
	assert.Empty(t, w.wf.made(), "a connection waiting for consent has no workflow")
	assert.Equal(t, 1, w.count("oauth_states"))

	back := consent(t, created.AuthorizeURL)
	cb := connections.OAuthCallback{State: back.Get("state"), Code: back.Get("code")}
	browser := audit.Caller{SourceIP: netip.MustParseAddr("203.0.113.9")}

	// Another organization's key cannot use the state, and does not burn it.
	foreign := cb
	foreign.KeyOrg = uuid.New()
	_, err = w.m.CompleteOAuth(ctx, foreign, browser)
	requireFailure(t, err, apperr.KindInvalid, "invalid_state", "")
	for _, state := range []string{"", strings.Repeat("x", 129), "forged"} {
		_, err = w.m.CompleteOAuth(ctx, connections.OAuthCallback{State: state, Code: "c"}, browser)
		requireFailure(t, err, apperr.KindInvalid, "invalid_state", "")
	}

	done, err := w.m.CompleteOAuth(ctx, cb, browser)
	require.NoError(t, err)
	assert.Equal(t, connections.StatusActive, done.Status)
	assert.Equal(t, w.cloud.CloudID(), done.CloudID)
	assert.Contains(t, done.Scopes, "write:jira-work")
	assert.Equal(t, []string{"ensure " + conn.ID.String() + " org=" + w.org.String()}, w.wf.made())
	_, err = w.m.CompleteOAuth(ctx, cb, browser)
	requireFailure(t, err, apperr.KindInvalid, "invalid_state", "")

	rows := w.audits()
	require.Len(t, rows, 2)
	assert.Equal(t, "connection.connect", rows[1].Action)
	assert.Equal(t, "system", rows[1].ActorType)
	assert.Equal(t, "oauth-callback", rows[1].ActorID)
	assert.Equal(t, "203.0.113.9", rows[1].SourceIP)

	// Re-authorization hands out a new state; a declined consent is recorded and refused.
	re, err := w.m.Reauth(ctx, w.org, conn.ID, connections.ReauthInput{}, w.by)
	require.NoError(t, err)
	require.NotEmpty(t, re.AuthorizeURL)
	again := consent(t, re.AuthorizeURL)
	_, err = w.m.CompleteOAuth(ctx, connections.OAuthCallback{State: again.Get("state"), Error: "access_denied"}, browser)
	f := requireFailure(t, err, apperr.KindInvalid, "authorization_denied", "")
	assert.Contains(t, f.Message, "access_denied")
	assert.Equal(t, []string{"connection.create", "connection.connect", "connection.reauth_requested", "connection.consent_denied"}, w.actions())

	// A consent whose code Atlassian refuses.
	third, err := w.m.Reauth(ctx, w.org, conn.ID, connections.ReauthInput{}, w.by)
	require.NoError(t, err)
	_, err = w.m.CompleteOAuth(ctx, connections.OAuthCallback{State: consent(t, third.AuthorizeURL).Get("state"), Code: "forged"}, browser)
	requireFailure(t, err, apperr.KindInvalid, "invalid_code", "code")

	// Token fields are refused for OAuth connections.
	_, err = w.m.Reauth(ctx, w.org, conn.ID, connections.ReauthInput{APIToken: "x"}, w.by)
	requireFailure(t, err, apperr.KindInvalid, "invalid_field", "api_token")
}

func TestReauthTokenConnection(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	conn := w.create(w.tokenInput()).Connection

	_, err := w.m.Reauth(ctx, w.org, conn.ID, connections.ReauthInput{Email: "admin@example.com", APIToken: "wrong"}, w.by)
	requireFailure(t, err, apperr.KindInvalid, "credentials_rejected", "api_token")
	_, err = w.m.Reauth(ctx, w.org, conn.ID, connections.ReauthInput{FindingSync: true}, w.by)
	requireFailure(t, err, apperr.KindInvalid, "invalid_field", "finding_sync")
	_, err = w.m.Reauth(ctx, w.org, uuid.New(), connections.ReauthInput{}, w.by)
	requireFailure(t, err, apperr.KindNotFound, "not_found", "")
	assert.Empty(t, w.wf.made())
	assert.Equal(t, []string{"connection.create"}, w.actions())

	re, err := w.m.Reauth(ctx, w.org, conn.ID, connections.ReauthInput{Email: "admin@example.com", APIToken: w.cloud.APIToken("admin@example.com")}, w.by)
	require.NoError(t, err)
	assert.Equal(t, connections.StatusActive, re.Connection.Status)
	assert.Empty(t, re.AuthorizeURL)
	assert.Greater(t, re.Connection.CredentialsVersion, conn.CredentialsVersion)
	assert.Equal(t, []string{"reauthorized " + conn.ID.String() + " org=" + w.org.String()}, w.wf.made())
	assert.Equal(t, []string{"connection.create", "connection.reauthorize"}, w.actions())

	// The workflow refuses (its connection was revoked meanwhile): the stored credentials stay,
	// the answer is the workflow's reason.
	w.wf.err["reauthorized"] = &connections.WorkflowRejectedError{Reason: "not possible while the connection is revoked"}
	_, err = w.m.Reauth(ctx, w.org, conn.ID, connections.ReauthInput{Email: "admin@example.com", APIToken: w.cloud.APIToken("admin@example.com")}, w.by)
	f := requireFailure(t, err, apperr.KindConflict, "rejected", "")
	assert.Equal(t, "not possible while the connection is revoked", f.Message)
}

func TestSyncNowAndTest(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	conn := w.create(w.tokenInput()).Connection
	id := conn.ID.String()

	w.wf.seq = 7
	seq, err := w.m.SyncNow(ctx, w.org, conn.ID, w.by)
	require.NoError(t, err)
	assert.Equal(t, int64(7), seq)
	w.wf.err["sync"] = fmt.Errorf("%w: no frontend", connections.ErrStartFailed)
	_, err = w.m.SyncNow(ctx, w.org, conn.ID, w.by)
	requireFailure(t, err, apperr.KindUnavailable, "workflow_unavailable", "")
	w.wf.err["sync"] = &connections.WorkflowRejectedError{Reason: "not possible while the connection is needs_reauth"}
	_, err = w.m.SyncNow(ctx, w.org, conn.ID, w.by)
	requireFailure(t, err, apperr.KindConflict, "rejected", "")
	w.wf.err["sync"] = fmt.Errorf("update sync: %w", connections.ErrUpdatePending)
	_, err = w.m.SyncNow(ctx, w.org, conn.ID, w.by)
	requireFailure(t, err, apperr.KindTimeout, "still_running", "")
	w.wf.err["sync"] = errors.New("temporal: deadline exceeded")
	_, err = w.m.SyncNow(ctx, w.org, conn.ID, w.by)
	var f *apperr.Error
	require.False(t, errors.As(err, &f), "an unexpected failure is internal: %v", err)

	w.wf.result = connections.TestResult{OK: false, Checks: []connections.Check{{Name: "auth", OK: true},
		{Name: "project_visible", OK: false}, {Name: "create_issue", OK: true, IssueKey: "SEC-4"}}}
	res, err := w.m.Test(ctx, w.org, conn.ID, w.by)
	require.NoError(t, err)
	assert.Equal(t, w.wf.result, res)
	w.wf.err["test"] = connections.ErrUpdatePending
	_, err = w.m.Test(ctx, w.org, conn.ID, w.by)
	requireFailure(t, err, apperr.KindTimeout, "test_still_running", "")
	w.wf.err["test"] = fmt.Errorf("update test: %w", connections.ErrNoWorkflow)
	_, err = w.m.Test(ctx, w.org, conn.ID, w.by)
	requireFailure(t, err, apperr.KindConflict, "workflow_not_running", "")

	assert.Equal(t, []string{"sync " + id + " org=" + w.org.String(), "sync " + id + " org=" + w.org.String(),
		"sync " + id + " org=" + w.org.String(), "sync " + id + " org=" + w.org.String(), "sync " + id + " org=" + w.org.String(), "test " + id, "test " + id, "test " + id}, w.wf.made())
	rows := w.audits()
	require.Len(t, rows, 4)
	assert.Equal(t, "connection.sync_requested", rows[1].Action)
	assert.Equal(t, map[string]any{"seq": float64(7)}, rows[1].Metadata)
	assert.Equal(t, "connection.test", rows[2].Action)
	assert.Equal(t, map[string]any{"outcome": "failed", "failed_checks": []any{"project_visible"}, "test_issue_key": "SEC-4"}, rows[2].Metadata)
	assert.Equal(t, map[string]any{"outcome": "still_running"}, rows[3].Metadata)

	// Neither is possible for a connection that waits for consent.
	pending := w.create(connections.CreateInput{Kind: "cloud_oauth", SiteURL: w.cloud.URL}).Connection
	_, err = w.m.SyncNow(ctx, w.org, pending.ID, w.by)
	requireFailure(t, err, apperr.KindConflict, "connection_pending_auth", "")
	_, err = w.m.Test(ctx, w.org, pending.ID, w.by)
	requireFailure(t, err, apperr.KindConflict, "connection_pending_auth", "")
	assert.Empty(t, w.wf.made())
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	key := audit.Actor{Type: audit.ActorAPIKey, ID: w.by.Actor.ID}

	// The workflow revokes (the stand-in answers without doing it): the answer is the stored row.
	running := w.create(w.tokenInput()).Connection
	conn, pending, err := w.m.Revoke(ctx, w.org, running.ID, w.by)
	require.NoError(t, err)
	assert.False(t, pending)
	assert.Equal(t, running.ID, conn.ID)
	assert.Equal(t, []string{"revoke " + running.ID.String() + " api_key:" + key.ID}, w.wf.made())

	// Still cleaning up when the wait ends.
	w.wf.err["revoke"] = connections.ErrUpdatePending
	_, pending, err = w.m.Revoke(ctx, w.org, running.ID, w.by)
	require.NoError(t, err)
	assert.True(t, pending)
	w.wf.made()

	// No workflow: the cleanup runs here, and a workflow started meanwhile is told.
	w.wf.err["revoke"] = fmt.Errorf("update revoke: %w", connections.ErrNoWorkflow)
	w.wf.err["signal-revoke"] = fmt.Errorf("signal: %w", connections.ErrNoWorkflow)
	conn, pending, err = w.m.Revoke(ctx, w.org, running.ID, w.by)
	require.NoError(t, err)
	assert.False(t, pending)
	assert.Equal(t, connections.StatusRevoked, conn.Status)
	assert.NotNil(t, conn.DeletedAt)
	assert.False(t, conn.HasCredentials)
	assert.Equal(t, []string{"revoke " + running.ID.String() + " api_key:" + key.ID, "signal-revoke " + running.ID.String() + " api_key:" + key.ID}, w.wf.made())
	revokes := 0
	for _, r := range w.audits() {
		if r.Action == "connection.revoke" {
			revokes++
			assert.Equal(t, key.ID, r.ActorID)
		}
	}
	assert.Equal(t, 1, revokes)

	// Revoking again answers the revoked connection and asks nothing of any workflow.
	again, _, err := w.m.Revoke(ctx, w.org, running.ID, w.by)
	require.NoError(t, err)
	assert.Equal(t, connections.StatusRevoked, again.Status)
	assert.Empty(t, w.wf.made())

	// A connection waiting for consent has no workflow to do it, whatever Temporal answers.
	w.wf.err = map[string]error{}
	pendingConn := w.create(connections.CreateInput{Kind: "cloud_oauth", SiteURL: w.cloud.URL}).Connection
	conn, _, err = w.m.Revoke(ctx, w.org, pendingConn.ID, w.by)
	require.NoError(t, err)
	assert.Equal(t, connections.StatusRevoked, conn.Status)

	// Nothing else is possible on a revoked connection.
	_, err = w.m.SyncNow(ctx, w.org, running.ID, w.by)
	requireFailure(t, err, apperr.KindConflict, "connection_revoked", "")
	_, _, err = w.m.RotateWebhookSecret(ctx, w.org, running.ID, w.by)
	requireFailure(t, err, apperr.KindConflict, "connection_revoked", "")
	_, err = w.m.Configure(ctx, w.org, running.ID, connections.ConfigPatch{}, w.by)
	requireFailure(t, err, apperr.KindConflict, "connection_revoked", "")
	_, err = w.m.Reauth(ctx, w.org, running.ID, connections.ReauthInput{}, w.by)
	requireFailure(t, err, apperr.KindConflict, "connection_revoked", "")
}

func TestConfigureAndRotate(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	created := w.create(w.tokenInput())
	conn := created.Connection

	tooShort := connections.Duration(60e9)
	_, err := w.m.Configure(ctx, w.org, conn.ID, connections.ConfigPatch{SyncCadence: &tooShort}, w.by)
	requireFailure(t, err, apperr.KindInvalid, "invalid_field", "sync_cadence")
	jql := "  project = SEC  "
	size := 10
	got, err := w.m.Configure(ctx, w.org, conn.ID, connections.ConfigPatch{ResolvedJQL: &jql, SampleSize: &size}, w.by)
	require.NoError(t, err)
	assert.Equal(t, "project = SEC", got.Config.ResolvedJQL)
	assert.Equal(t, 10, got.Config.SampleSize)
	assert.Equal(t, []string{"config-changed " + conn.ID.String()}, w.wf.made())
	rows := w.audits()
	require.Len(t, rows, 2)
	assert.Equal(t, "connection.configure", rows[1].Action)
	assert.Equal(t, float64(25), rows[1].Metadata["old"].(map[string]any)["sample_size"])
	assert.Equal(t, "project = SEC", rows[1].Metadata["new"].(map[string]any)["resolved_jql"])

	// A lost signal does not fail the change (the stored configuration is authoritative).
	w.wf.err["config-changed"] = errors.New("temporal is unavailable")
	_, err = w.m.Configure(ctx, w.org, conn.ID, connections.ConfigPatch{}, w.by)
	require.NoError(t, err)
	w.wf.made()

	// A connection waiting for consent has no workflow to tell.
	pending := w.create(connections.CreateInput{Kind: "cloud_oauth", SiteURL: w.cloud.URL}).Connection
	_, err = w.m.Configure(ctx, w.org, pending.ID, connections.ConfigPatch{SampleSize: &size}, w.by)
	require.NoError(t, err)
	assert.Empty(t, w.wf.made())

	rotated, hook, err := w.m.RotateWebhookSecret(ctx, w.org, conn.ID, w.by)
	require.NoError(t, err)
	assert.Equal(t, conn.ID, rotated.ID)
	assert.NotEqual(t, created.Webhook.URLSecret, hook.URLSecret)
	assert.NotEqual(t, created.Webhook.SigningSecret, hook.SigningSecret)
	var secretHash []byte
	require.NoError(t, testDB.Owner(t).QueryRow(ctx, `SELECT webhook_secret_hash FROM connections WHERE id = $1`, conn.ID).Scan(&secretHash))
	assert.Equal(t, connections.HashURLSecret(hook.URLSecret), secretHash)
	signing, _, err := w.m.Connections.WebhookSigningSecret(ctx, w.org, conn.ID)
	require.NoError(t, err)
	assert.Equal(t, hook.SigningSecret, string(signing))
	assert.Equal(t, "connection.webhook_secret_rotate", w.actions()[len(w.actions())-1])
	_, _, err = w.m.RotateWebhookSecret(ctx, w.org, pending.ID, w.by)
	requireFailure(t, err, apperr.KindConflict, "dynamic_webhook", "")
}

func TestConfigureFindingSync(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	conn := w.create(w.tokenInput()).Connection
	parse := func(body string) findings.SyncConfigUpdate {
		u, err := findings.ParseSyncConfigUpdate([]byte(body))
		require.NoError(t, err)
		return u
	}

	_, err := w.m.ConfigureFindingSync(ctx, w.org, conn.ID, parse(`{"project_key":"NOPE","issue_type":"10005"}`), w.by)
	requireFailure(t, err, apperr.KindInvalid, "invalid_field", "finding_sync.project_key")
	_, err = w.m.ConfigureFindingSync(ctx, w.org, conn.ID, parse(`{"project_key":"SEC","issue_type":"99999"}`), w.by)
	requireFailure(t, err, apperr.KindInvalid, "issuetype_not_in_project", "finding_sync.issue_type")
	_, err = w.m.ConfigureFindingSync(ctx, w.org, conn.ID, parse(`{"project_key":"SEC","issue_type":"10005","framework_field":"customfield_424242"}`), w.by)
	requireFailure(t, err, apperr.KindInvalid, "customfield_unknown", "finding_sync.framework_field")
	require.NoError(t, w.cloud.SetFault("GET /rest/api/3/issue/createmeta/**", jirasim.Fault{ErrorRate: 1, ErrorStatus: 401}))
	_, err = w.m.ConfigureFindingSync(ctx, w.org, conn.ID, parse(`{"project_key":"SEC","issue_type":"10005"}`), w.by)
	requireFailure(t, err, apperr.KindConflict, "reauth_required", "")
	w.cloud.ClearFaults()
	assert.Empty(t, w.wf.made())
	assert.Equal(t, []string{"connection.create"}, w.actions())

	got, err := w.m.ConfigureFindingSync(ctx, w.org, conn.ID, parse(`{"project_key":"SEC","issue_type":"10005"}`), w.by)
	require.NoError(t, err)
	require.NotNil(t, got.Config.FindingSync)
	assert.Equal(t, "SEC", got.Config.FindingSync.ProjectKey)
	assert.Equal(t, []string{"config-changed " + conn.ID.String(), "findings-pending " + conn.ID.String()}, w.wf.made())
	rows := w.audits()
	assert.Equal(t, "connection.finding_sync_configure", rows[len(rows)-1].Action)
	assert.Equal(t, true, rows[len(rows)-1].Metadata["enabled"])

	off, err := w.m.ConfigureFindingSync(ctx, w.org, conn.ID, parse(`{"enabled":false}`), w.by)
	require.NoError(t, err)
	assert.Nil(t, off.Config.FindingSync)
	assert.Equal(t, []string{"config-changed " + conn.ID.String()}, w.wf.made(), "nothing to push once finding sync is off")

	// An OAuth connection consented without the write scope must re-authorize first.
	created := w.create(connections.CreateInput{Kind: "cloud_oauth", SiteURL: w.cloud.URL})
	back := consent(t, created.AuthorizeURL)
	oauthConn, err := w.m.CompleteOAuth(ctx, connections.OAuthCallback{State: back.Get("state"), Code: back.Get("code")}, w.by)
	require.NoError(t, err)
	require.False(t, slices.Contains(oauthConn.Scopes, "write:jira-work"))
	w.wf.made()
	_, err = w.m.ConfigureFindingSync(ctx, w.org, oauthConn.ID, parse(`{"project_key":"SEC","issue_type":"10005"}`), w.by)
	requireFailure(t, err, apperr.KindConflict, "scope_missing", "finding_sync")
	assert.Empty(t, w.wf.made())
}
