package connections_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/jirasim"
	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

var rotationActor = audit.Actor{Type: audit.ActorSystem, ID: "test"}

func (b *oauthBundle) rotate(t *testing.T) tenancy.Rotation {
	t.Helper()
	r, err := (&tenancy.Service{DB: b.db, Sealer: b.sealer}).RotateDataKey(context.Background(), b.orgID, audit.Caller{Actor: rotationActor}, "test")
	require.NoError(t, err)
	return r
}

// stored returns the connection's stored credentials and their key version.
func (b *oauthBundle) stored(t *testing.T) (dbq.Connection, int32) {
	t.Helper()
	var row dbq.Connection
	require.NoError(t, b.db.InOrg(context.Background(), b.orgID, func(q *dbq.Queries) error {
		var err error
		row, err = q.GetConnection(context.Background(), b.connID)
		return err
	}))
	v, err := seal.SealedKeyVersion(row.SealedCredentials)
	require.NoError(t, err)
	return row, v
}

// A re-seal moves the credentials and the webhook signing secret to the current key version in
// one audited step, keeps credentials_version (the credentials did not change), and the connection
// works before, during and after.
func TestResealMovesValuesToTheCurrentVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupOAuthConnection(t)
	p := b.process()
	secret, err := p.SealSigningSecret(ctx, b.orgID, b.connID, "whsec-before-rotation")
	require.NoError(t, err)
	require.NoError(t, b.db.InOrg(ctx, b.orgID, func(q *dbq.Queries) error {
		_, err := q.SetWebhookSecrets(ctx, dbq.SetWebhookSecretsParams{SecretHash: []byte{1}, SigningSecret: secret, ID: b.connID})
		return err
	}))
	before, v := b.stored(t)
	require.Equal(t, int32(1), v)

	r := b.rotate(t)
	require.Equal(t, int32(2), r.Version)
	client, _, err := p.Client(ctx, b.orgID, b.connID, nil)
	require.NoError(t, err, "credentials under version 1 still work after the rotation")
	_, err = client.Myself(ctx)
	require.NoError(t, err)

	page, err := p.ResealPage(ctx, b.orgID, uuid.Nil, 10, rotationActor)
	require.NoError(t, err)
	assert.True(t, page.Done)
	assert.Equal(t, 1, page.Examined)
	assert.Equal(t, map[string]int{seal.PurposeOAuthTokens: 1, seal.PurposeWebhookSecret: 1}, page.Resealed)
	assert.Equal(t, int32(2), page.Version)
	after, v := b.stored(t)
	assert.Equal(t, int32(2), v)
	assert.Equal(t, before.CredentialsVersion, after.CredentialsVersion, "a re-seal is not a credential change")
	sv, err := seal.SealedKeyVersion(after.WebhookSigningSecret)
	require.NoError(t, err)
	assert.Equal(t, int32(2), sv)

	fresh := b.process()
	got, ok, err := fresh.WebhookSigningSecret(ctx, b.orgID, b.connID)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "whsec-before-rotation", string(got))
	client, _, err = fresh.Client(ctx, b.orgID, b.connID, nil)
	require.NoError(t, err)
	_, err = client.Myself(ctx)
	require.NoError(t, err)

	again, err := p.ResealPage(ctx, b.orgID, uuid.Nil, 10, rotationActor)
	require.NoError(t, err)
	assert.Zero(t, again.Examined, "nothing left under an older version")

	var rows int
	var meta map[string]any
	require.NoError(t, testDB.Owner(t).QueryRow(ctx, `SELECT count(*) OVER (), metadata FROM audit_log WHERE org_id = $1 AND action = 'org_key.resealed'`, b.orgID).Scan(&rows, &meta))
	assert.Equal(t, 1, rows)
	assert.EqualValues(t, 2, meta["resealed"])
	assert.EqualValues(t, 2, meta["version"])
}

// waitForRefreshLock waits until some session holds the connection's credential refresh lock.
func waitForRefreshLock(t *testing.T) {
	t.Helper()
	owner := testDB.Owner(t)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var held int
		require.NoError(t, owner.QueryRow(context.Background(),
			`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&held))
		if held > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no refresh took the lock")
}

// A token refresh in flight while the re-seal reads the credentials is never lost: the refresh
// holds the connection's refresh lock while Atlassian rotates the refresh token (a slow token
// endpoint here, with no reuse leeway: presenting a spent refresh token revokes the grant), the
// re-seal waits for it, finds the stored bytes changed and leaves the refresh's tokens in place.
func TestResealNeverLosesAConcurrentRefresh(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupOAuthConnection(t)
	b.rotate(t)
	refresher, resealer := b.process(), b.process()
	require.NoError(t, b.sim.SetFault("POST /oauth/token", jirasim.Fault{Latency: 2 * time.Second, Times: 1}))
	b.sim.AdvanceClock(59 * time.Minute) // the access token is inside its refresh margin
	since := b.sim.Now()
	refreshed := make(chan error, 1)
	go func() {
		client, _, err := refresher.Client(ctx, b.orgID, b.connID, nil)
		if err == nil {
			_, err = client.Myself(ctx)
		}
		refreshed <- err
	}()
	waitForRefreshLock(t)
	page, err := resealer.ResealPage(ctx, b.orgID, uuid.Nil, 10, rotationActor)
	require.NoError(t, err)
	require.NoError(t, <-refreshed)
	assert.Equal(t, 1, page.Examined, "the re-seal read the credentials before the refresh stored its rotation")
	assert.Equal(t, 1, page.Changed, "and did not overwrite them")
	assert.Zero(t, page.Total())

	row, v := b.stored(t)
	assert.Equal(t, int32(1), row.CredentialsVersion, "the refresh's rotation is stored")
	assert.Equal(t, int32(2), v, "sealed by the refresh under the current version")
	// The stored tokens are the live ones: a new process uses them, and after the next expiry
	// refreshes with the rotated refresh token, which Atlassian accepts.
	b.sim.AdvanceClock(59 * time.Minute)
	client, _, err := b.process().Client(ctx, b.orgID, b.connID, nil)
	require.NoError(t, err)
	_, err = client.Myself(ctx)
	require.NoError(t, err)
	calls, refused := b.tokenCalls(since)
	assert.Equal(t, 2, calls)
	assert.Zero(t, refused, "no spent refresh token was ever presented")
}

// The re-seal does not bump credentials_version, so a refresh that read the credentials before the
// re-seal stored its copy still stores its rotation (its compare-and-set on the version holds).
func TestResealKeepsARefreshsCompareAndSet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupOAuthConnection(t)
	readByRefresh, _ := b.stored(t)
	b.rotate(t)
	page, err := b.process().ResealPage(ctx, b.orgID, uuid.Nil, 10, rotationActor)
	require.NoError(t, err)
	require.Equal(t, 1, page.Total())

	creds, err := connections.OpenCredentials(ctx, b.sealer, b.orgID, b.connID, connections.KindCloudOAuth, readByRefresh.SealedCredentials)
	require.NoError(t, err)
	rotated, err := connections.SealCredentials(ctx, b.sealer, b.orgID, b.connID, creds)
	require.NoError(t, err)
	require.NoError(t, b.db.InOrg(ctx, b.orgID, func(q *dbq.Queries) error {
		_, err := q.RotateConnectionCredentials(ctx, dbq.RotateConnectionCredentialsParams{SealedCredentials: rotated, ID: b.connID,
			ExpectedVersion: readByRefresh.CredentialsVersion})
		return err
	}), "the refresh's compare-and-set succeeds after the re-seal")
}
