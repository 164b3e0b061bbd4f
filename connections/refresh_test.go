package connections_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/db/dbtest"
	"github.com/jiraconnect/jiraconnect/egress"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jirasim"
	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, &testDB)) }

// oauthBundle is one OAuth connection stored in Postgres, its simulated site (with no refresh
// reuse leeway at all) and what a process needs to build its own connections.Service.
type oauthBundle struct {
	sim    *jirasim.Server
	db     *db.DB
	sealer *seal.Sealer
	app    *jira.OAuthApp
	orgID  uuid.UUID
	connID uuid.UUID
}

func setupOAuthConnection(t *testing.T) *oauthBundle {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sim := jirasim.NewServer(jirasim.Options{Flavor: jirasim.Cloud, Logger: quiet, RandSeed: 1, RefreshLeeway: -1})
	t.Cleanup(sim.Close)
	d := testDB.Open(t)
	kr, err := seal.OpenLocalKeyring(t.TempDir())
	require.NoError(t, err)
	sealer, err := seal.New(kr, tenancy.KeyStore{DB: d}, seal.Options{})
	require.NoError(t, err)
	org, _, err := (&tenancy.Service{DB: d, Sealer: sealer}).CreateOrg(ctx, "refresh-"+uuid.NewString()[:8], audit.Actor{Type: audit.ActorCLI, ID: "test"})
	require.NoError(t, err)

	id, secret := sim.OAuthClient()
	app := &jira.OAuthApp{ClientID: id, ClientSecret: jira.NewSecret(secret), RedirectURL: "https://app.example.com/cb",
		AuthBaseURL: sim.URL, APIBaseURL: sim.URL, Now: sim.Now, Logger: quiet}
	granted, err := sim.GrantOAuth(sim.AdminUser().Email, jira.Scopes(jira.Features{})...)
	require.NoError(t, err)
	tokens := jira.Tokens{Access: jira.NewSecret(granted.AccessToken), Refresh: jira.NewSecret(granted.RefreshToken),
		Expiry: sim.Now().Add(time.Duration(granted.ExpiresIn) * time.Second), Issued: sim.Now()}
	connID := uuid.New()
	sealed, err := connections.SealCredentials(ctx, sealer, org.ID, connID, connections.OAuthCredentials(tokens))
	require.NoError(t, err)
	cloudID := sim.CloudID()
	cfg, err := json.Marshal(connections.DefaultConfig())
	require.NoError(t, err)
	require.NoError(t, d.InOrg(ctx, org.ID, func(q *dbq.Queries) error {
		_, err := q.CreateConnection(ctx, dbq.CreateConnectionParams{ID: connID, OrgID: org.ID, Kind: string(connections.KindCloudOAuth),
			SiteUrl: sim.URL, CloudID: &cloudID, Status: string(connections.StatusActive), Config: cfg, Scopes: []string{},
			SealedCredentials: sealed, WorkflowID: "jira-connection/" + connID.String()})
		return err
	}))
	return &oauthBundle{sim: sim, db: d, sealer: sealer, app: app, orgID: org.ID, connID: connID}
}

// process is what one API or worker process holds: its own Service, hence its own token sources.
func (b *oauthBundle) process() *connections.Service {
	allow, err := egress.ParseAllowList(egress.Loopback)
	if err != nil {
		panic(err)
	}
	return &connections.Service{DB: b.db, Sealer: b.sealer, OAuth: b.app, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		HTTPClient: egress.New(allow, egress.Options{}).HTTPClient()}
}

// tokenCalls returns how many token-endpoint calls the site answered, and how many it refused.
func (b *oauthBundle) tokenCalls(since time.Time) (calls, refused int) {
	for _, r := range b.sim.Requests() {
		if r.Path == "/oauth/token" && !r.Time.Before(since) {
			calls++
			if r.Status != 200 {
				refused++
			}
		}
	}
	return calls, refused
}

// TestRefreshIsSingleFlightAcrossProcesses: four processes (each its own connections.Service,
// as an API process and workers are) call Jira for one connection at once after its access token
// expired, on a site that revokes the grant at the first reuse of a rotated refresh token. Exactly
// one refresh happens per expiry, nobody presents a spent refresh token, and every call succeeds.
func TestRefreshIsSingleFlightAcrossProcesses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupOAuthConnection(t)
	procs := []*connections.Service{b.process(), b.process(), b.process(), b.process()}
	for round := 1; round <= 3; round++ {
		b.sim.AdvanceClock(59 * time.Minute) // inside every token's two-minute refresh margin
		since := b.sim.Now()
		var wg sync.WaitGroup
		errs := make(chan error, len(procs)*5)
		for _, p := range procs {
			for range 5 {
				wg.Go(func() {
					client, _, err := p.Client(ctx, b.orgID, b.connID, nil)
					if err == nil {
						_, err = client.Myself(ctx)
					}
					if err != nil {
						errs <- err
					}
				})
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: %v", round, err)
		}
		calls, refused := b.tokenCalls(since)
		assert.Equal(t, 1, calls, "round %d: refreshes per expiry", round)
		assert.Zero(t, refused, "round %d: refresh requests refused (invalid_grant: a spent refresh token was presented)", round)
	}
	var version int32
	require.NoError(t, b.db.InOrg(ctx, b.orgID, func(q *dbq.Queries) error {
		row, err := q.GetConnection(ctx, b.connID)
		version = row.CredentialsVersion
		return err
	}))
	assert.Equal(t, int32(3), version, "one stored rotation per expiry")
}
