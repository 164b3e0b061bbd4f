package activities_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/egress"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jirasim"
	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/seal/kmslocal"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

// rotationHarness is a harness with one connection of every kind, each with a webhook signing
// secret, on seeded simulators.
type rotationHarness struct {
	*harness
	refs    []activities.ConnectionRef
	secrets map[uuid.UUID]string
	seq     int64
}

func newRotationHarness(t *testing.T) *rotationHarness {
	t.Helper()
	h := newHarness(t)
	cloud := startSim(t, jirasim.Cloud, h.log)
	dc := startSim(t, jirasim.DataCenter, h.log)
	seedFixture(t, cloud)
	seedFixture(t, dc)
	r := &rotationHarness{harness: h, secrets: map[uuid.UUID]string{}}
	r.refs = []activities.ConnectionRef{
		h.connect(connections.KindCloudToken, cloud, nil),
		h.connect(connections.KindDataCenterPAT, dc, nil),
		h.connect(connections.KindCloudOAuth, cloud, nil),
	}
	ctx := context.Background()
	for _, ref := range r.refs {
		secret := "whsec-" + ref.ConnectionID.String()
		sealed, err := h.conns.SealSigningSecret(ctx, h.org, ref.ConnectionID, secret)
		require.NoError(t, err)
		require.NoError(t, h.db.InOrg(ctx, h.org, func(q *dbq.Queries) error {
			_, err := q.SetWebhookSecrets(ctx, dbq.SetWebhookSecretsParams{SecretHash: []byte{1}, SigningSecret: sealed, ID: ref.ConnectionID})
			return err
		}))
		r.secrets[ref.ConnectionID] = secret
	}
	return r
}

// assertUsable checks, after a step of a rotation, that every connection's credentials open
// through the normal path (connections.Service.Client, with a cold key cache as in another
// process) and work against Jira, that its webhook signing secret opens, and that an evidence
// sync succeeds.
func (r *rotationHarness) assertUsable(step string) {
	t := r.t
	t.Helper()
	ctx := context.Background()
	r.sealer.Purge()
	for _, ref := range r.refs {
		client, _, err := r.conns.Client(ctx, ref.OrgID, ref.ConnectionID, nil)
		require.NoError(t, err, "%s: credentials of %s", step, ref.ConnectionID)
		_, err = client.Myself(ctx)
		require.NoError(t, err, "%s: Jira call of %s", step, ref.ConnectionID)
		secret, ok, err := r.conns.WebhookSigningSecret(ctx, ref.OrgID, ref.ConnectionID)
		require.NoError(t, err, "%s: webhook signing secret of %s", step, ref.ConnectionID)
		require.True(t, ok)
		require.Equal(t, r.secrets[ref.ConnectionID], string(secret), step)
		r.seq++
		res, err := r.sync(ref, r.seq)
		require.NoError(t, err, "%s: sync of %s", step, ref.ConnectionID)
		require.Equal(t, activities.OutcomeSuccess, res.Outcome, "%s: sync of %s", step, ref.ConnectionID)
	}
}

// versions returns the key version of every stored sealed value of the harness's connections.
func (r *rotationHarness) versions() map[int32]int {
	out := map[int32]int{}
	rows, err := r.owner().Query(context.Background(), `SELECT sealed_credentials, webhook_signing_secret FROM connections WHERE org_id = $1`, r.org)
	require.NoError(r.t, err)
	defer rows.Close()
	for rows.Next() {
		var creds, secret []byte
		require.NoError(r.t, rows.Scan(&creds, &secret))
		for _, b := range [][]byte{creds, secret} {
			if b != nil {
				v, err := seal.SealedKeyVersion(b)
				require.NoError(r.t, err)
				out[v]++
			}
		}
	}
	require.NoError(r.t, rows.Err())
	return out
}

func (r *rotationHarness) reseal(in activities.ResealInput) activities.ResealResult {
	r.t.Helper()
	val, err := r.env().ExecuteActivity(activities.NameResealOrgSecrets, in)
	require.NoError(r.t, err)
	var res activities.ResealResult
	require.NoError(r.t, val.Get(&res))
	r.record(res, nil)
	return res
}

// retire runs RetireOrgKeyVersions with grace (0: the worker's default, KEY_CACHE_TTL + 1m).
func (r *rotationHarness) retire(grace time.Duration) activities.RetireResult {
	r.t.Helper()
	val, err := r.env().ExecuteActivity(activities.NameRetireOrgKeyVersions, activities.RetireInput{OrgID: r.org, Grace: grace})
	require.NoError(r.t, err)
	var res activities.RetireResult
	require.NoError(r.t, val.Get(&res))
	return res
}

// A data key rotation interrupted after any step — the new version stored, the re-seal stopped
// between any two connections, the re-seal done but the old version not retired — leaves every
// credential and webhook signing secret readable through the normal path and every sync working;
// so does the finished rotation, after which the old version is retired, and running any step again
// changes nothing.
func TestRotationInterruptedAtEveryStepLeavesCredentialsUsable(t *testing.T) {
	r := newRotationHarness(t)
	ctx := context.Background()
	r.assertUsable("before the rotation")
	require.Equal(t, map[int32]int{1: 6}, r.versions())

	rot, err := (&tenancy.Service{DB: r.db, Sealer: r.sealer}).RotateDataKey(ctx, r.org, audit.Caller{Actor: audit.Actor{Type: audit.ActorCLI, ID: "test"}}, "test")
	require.NoError(t, err)
	require.Equal(t, int32(2), rot.Version)
	r.assertUsable("after the new version is stored, before any re-seal")

	// The re-seal, one connection per activity: stop after each.
	in := activities.ResealInput{OrgID: r.org, Limit: 1, PageSize: 1}
	var total activities.ResealResult
	for step := 1; ; step++ {
		res := r.reseal(in)
		total.Add(res)
		if res.Next == nil {
			break
		}
		r.assertUsable(fmt.Sprintf("re-seal stopped after connection %d", step))
		in.After = *res.Next
		require.Less(t, step, 10)
	}
	assert.Equal(t, 6, total.Resealed)
	assert.Equal(t, map[string]int{seal.PurposeAPIToken: 1, seal.PurposePAT: 1, seal.PurposeOAuthTokens: 1, seal.PurposeWebhookSecret: 3}, total.ByPurpose)
	// The syncs between the steps may have refreshed the OAuth tokens, sealing them under the
	// current version themselves: everything is under version 2 either way.
	assert.Equal(t, map[int32]int{2: 6}, r.versions())
	r.assertUsable("after the re-seal, before the retirement")

	res := r.retire(0)
	assert.Greater(t, res.WaitFor, 5*time.Minute, "the worker's default grace: version 2 is younger than KEY_CACHE_TTL + 1m")
	assert.Empty(t, res.Retired)
	res = r.retire(time.Nanosecond)
	assert.Equal(t, []int32{1}, res.Retired)
	r.assertUsable("after the retirement")

	again := r.reseal(activities.ResealInput{OrgID: r.org})
	assert.Zero(t, again.Examined)
	assert.Empty(t, r.retire(time.Nanosecond).Retired)
	keys, err := (&tenancy.Service{DB: r.db, Sealer: r.sealer}).ListDataKeys(ctx, r.org)
	require.NoError(t, err)
	require.Len(t, keys, 2)
	assert.Equal(t, tenancy.DataKeyRetired, keys[1].State)
	assert.Equal(t, int64(6), keys[0].SealedValues)

	assert.Equal(t, 1, r.count(`SELECT count(*) FROM audit_log WHERE org_id = $1 AND action = 'org_key.rotate'`, r.org))
	assert.Equal(t, 1, r.count(`SELECT count(*) FROM audit_log WHERE org_id = $1 AND action = 'org_key.retire'`, r.org))
	assert.Equal(t, 6, r.count(`SELECT coalesce(sum((metadata->>'resealed')::int), 0) FROM audit_log WHERE org_id = $1 AND action = 'org_key.resealed'`, r.org),
		"the audit rows count exactly the values re-sealed")
}

// A value that does not open is never replaced, and its version is not retired while it
// references it: retiring is decided by scanning the stored values. Once the connection is revoked
// (its credentials destroyed), the version goes.
func TestOldVersionsAreRetiredOnlyWhenUnused(t *testing.T) {
	r := newRotationHarness(t)
	ctx := context.Background()
	broken := r.refs[1]
	garbage := append([]byte{1, 0, 0, 0, 1}, make([]byte, 60)...)
	_, err := r.owner().Exec(ctx, `UPDATE connections SET sealed_credentials = $2 WHERE id = $1`, broken.ConnectionID, garbage)
	require.NoError(t, err)
	_, err = (&tenancy.Service{DB: r.db, Sealer: r.sealer}).RotateDataKey(ctx, r.org, audit.Caller{Actor: activities.KeyRotationActor}, "test")
	require.NoError(t, err)

	res := r.reseal(activities.ResealInput{OrgID: r.org})
	assert.Equal(t, 5, res.Resealed)
	assert.Equal(t, 1, res.Unreadable)
	var stored []byte
	require.NoError(t, r.owner().QueryRow(ctx, `SELECT sealed_credentials FROM connections WHERE id = $1`, broken.ConnectionID).Scan(&stored))
	assert.Equal(t, garbage, stored, "an unreadable value is left as it is")

	retired := r.retire(time.Nanosecond)
	assert.Empty(t, retired.Retired)
	assert.Equal(t, map[int32]int64{1: 1}, retired.InUse)

	require.NoError(t, r.db.InOrg(ctx, r.org, func(q *dbq.Queries) error {
		_, err := q.RevokeConnection(ctx, broken.ConnectionID)
		return err
	}))
	assert.Equal(t, []int32{1}, r.retire(time.Nanosecond).Retired)
	r.refs = []activities.ConnectionRef{r.refs[0], r.refs[2]}
	r.assertUsable("after the retirement")
}

// The organizations of a scheduled pass: one due (rotated), one with an unfinished re-seal
// (listed), one current; the pass is bounded and resumable from its cursor, and a retry after
// the rotation committed does not rotate again.
func TestRotateDueOrgKeys(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	svc := &tenancy.Service{DB: h.db, Sealer: h.sealer}
	due := h.org
	// Age the key: its creation time cannot change (the schema's guard), except in a session that
	// skips triggers, which only a superuser may open.
	owner := h.owner()
	tx, err := owner.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SET LOCAL session_replication_role = replica`)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `UPDATE org_data_keys SET created_at = now() - interval '400 days' WHERE org_id = $1`, due)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	unfinished, _, err := svc.CreateOrg(ctx, "unfinished "+t.Name(), audit.Actor{Type: audit.ActorCLI, ID: "test"})
	require.NoError(t, err)
	rot, err := svc.RotateDataKey(ctx, unfinished.ID, audit.Caller{Actor: activities.KeyRotationActor}, "test")
	require.NoError(t, err)

	run := func(in activities.RotateDueInput) activities.RotateDueResult {
		t.Helper()
		val, err := h.env().ExecuteActivity(activities.NameRotateDueOrgKeys, in)
		require.NoError(t, err)
		var res activities.RotateDueResult
		require.NoError(t, val.Get(&res))
		return res
	}
	// Other tests of the package share the database: look only at these two organizations.
	collect := func(in activities.RotateDueInput) (rotated, open map[uuid.UUID]int32, calls int) {
		rotated, open = map[uuid.UUID]int32{}, map[uuid.UUID]int32{}
		for {
			calls++
			res := run(in)
			for _, r := range res.Rotated {
				rotated[r.OrgID] = r.Version
			}
			for _, r := range res.Unfinished {
				open[r.OrgID] = r.Version
			}
			if res.Next == nil {
				return rotated, open, calls
			}
			in.Cursor = *res.Next
		}
	}
	const year = 365 * 24 * time.Hour
	rotated, open, calls := collect(activities.RotateDueInput{Period: year, Limit: 1, MaxRotations: 100})
	assert.Greater(t, calls, 1, "one organization per call")
	assert.Equal(t, int32(2), rotated[due])
	assert.NotContains(t, rotated, unfinished.ID)
	assert.Equal(t, rot.Version, open[unfinished.ID])
	assert.Equal(t, 1, h.count(`SELECT count(*) FROM audit_log WHERE org_id = $1 AND action = 'org_key.rotate' AND actor_id = 'key-rotation'`, due))

	rotated, open, _ = collect(activities.RotateDueInput{Period: year, MaxRotations: 100})
	assert.NotContains(t, rotated, due, "the new version is young: a retried pass does not rotate again")
	assert.Equal(t, int32(2), open[due], "its re-seal is unfinished until it is done")

	rotated, _, _ = collect(activities.RotateDueInput{Period: 0, MaxRotations: 100})
	assert.Empty(t, rotated, "period 0 rotates nothing")
}

// kmsOrgs is a worker whose key provider is AWS KMS (kmslocal through the real SDK), with
// organizations holding one connection each to a seeded simulator.
type kmsOrgs struct {
	t    *testing.T
	kms  *kmslocal.Server
	url  string
	orgs []activities.ConnectionRef
	sim  *jirasim.Server
	hs   *httptest.Server
}

func (k *kmsOrgs) worker(keyID string) (*connections.Service, *activities.Activities) {
	k.t.Helper()
	p, err := seal.NewKMSProvider(context.Background(), seal.KMSConfig{KeyID: keyID, Region: "us-east-1", Endpoint: k.url,
		AccessKeyID: "AKIDTEST", SecretAccessKey: "test-secret"})
	require.NoError(k.t, err)
	d := testDB.Open(k.t)
	s, err := seal.New(p, tenancy.KeyStore{DB: d}, seal.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(k.t, err)
	allow, err := egress.ParseAllowList(egress.Loopback)
	require.NoError(k.t, err)
	conns := &connections.Service{DB: d, Sealer: s, HTTPClient: egress.New(allow, egress.Options{}).HTTPClient()}
	acts, err := activities.New(activities.Deps{DB: d, Connections: conns, Version: "test"})
	require.NoError(k.t, err)
	return conns, acts
}

// Replacing the KMS key and re-wrapping, interrupted between any two organizations: every
// connection of every organization stays usable through a worker configured with the new key
// (the old key still decrypts what it wrapped), and once the pass is done the old key can be
// disabled.
func TestKMSRewrapInterruptedBetweenOrganizations(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	ctx := context.Background()
	k := &kmsOrgs{t: t, kms: kmslocal.New(kmslocal.Options{})}
	oldKey, err := k.kms.CreateKey()
	require.NoError(t, err)
	k.hs = httptest.NewServer(k.kms)
	t.Cleanup(k.hs.Close)
	k.url = k.hs.URL
	k.sim = startSim(t, jirasim.DataCenter, slog.New(slog.NewTextHandler(io.Discard, nil)))
	seedFixture(t, k.sim)

	oldConns, _ := k.worker(oldKey.ID)
	svc := &tenancy.Service{DB: oldConns.DB, Sealer: oldConns.Sealer}
	mine := map[uuid.UUID]bool{}
	for i := range 3 {
		org, _, err := svc.CreateOrg(ctx, fmt.Sprintf("kms org %d", i), audit.Actor{Type: audit.ActorCLI, ID: "test"})
		require.NoError(t, err)
		mine[org.ID] = true
		if i == 0 {
			_, err := svc.RotateDataKey(ctx, org.ID, audit.Caller{Actor: activities.KeyRotationActor}, "test") // two versions
			require.NoError(t, err)
		}
		conn := uuid.New()
		sealed, err := connections.SealCredentials(ctx, oldConns.Sealer, org.ID, conn,
			connections.Credentials{Kind: connections.KindDataCenterPAT, PAT: jira.NewSecret(k.sim.PAT("admin"))})
		require.NoError(t, err)
		require.NoError(t, oldConns.DB.InOrg(ctx, org.ID, func(q *dbq.Queries) error {
			_, err := q.CreateConnection(ctx, dbq.CreateConnectionParams{ID: conn, OrgID: org.ID, Kind: string(connections.KindDataCenterPAT),
				SiteUrl: k.sim.URL, Status: "active", Config: []byte(`{}`), Scopes: []string{}, SealedCredentials: sealed, WorkflowID: "wf"})
			return err
		}))
		k.orgs = append(k.orgs, activities.ConnectionRef{OrgID: org.ID, ConnectionID: conn})
	}
	newKey, err := k.kms.CreateKey()
	require.NoError(t, err)
	var seq int64
	usable := func(step string) {
		t.Helper()
		conns, acts := k.worker(newKey.ID) // a process started with the new KMS_KEY_ID, cold cache
		var suite testsuite.WorkflowTestSuite
		env := suite.NewTestActivityEnvironment()
		acts.Register(env)
		for _, ref := range k.orgs {
			client, _, err := conns.Client(ctx, ref.OrgID, ref.ConnectionID, nil)
			require.NoError(t, err, step)
			_, err = client.Myself(ctx)
			require.NoError(t, err, step)
			seq++
			val, err := env.ExecuteActivity(activities.NameSyncEvidence, activities.SyncInput{ConnectionRef: ref, Seq: seq,
				Trigger: "schedule", WorkflowID: "jira-connection/" + ref.ConnectionID.String(), RunID: "run-1"})
			require.NoError(t, err, "%s: sync", step)
			var res activities.SyncResult
			require.NoError(t, val.Get(&res))
			require.Equal(t, activities.OutcomeSuccess, res.Outcome, step)
		}
	}
	usable("KMS_KEY_ID changed, nothing re-wrapped yet")

	_, acts := k.worker(newKey.ID)
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	acts.Register(env)
	in := activities.RewrapInput{Limit: 1}
	var total activities.RewrapResult
	for {
		val, err := env.ExecuteActivity(activities.NameRewrapOrgKeys, in)
		require.NoError(t, err)
		var res activities.RewrapResult
		require.NoError(t, val.Get(&res))
		total.Add(res)
		if res.Next == nil {
			break
		}
		in.Cursor = *res.Next
		usable(fmt.Sprintf("re-wrap stopped after %d organizations", total.Orgs))
	}
	for _, org := range total.FailedOrgs {
		assert.False(t, mine[org], "organization %s failed", org) // other tests' orgs use local keyrings
	}
	var ours int
	for org := range mine {
		var n int
		require.NoError(t, testDB.Owner(t).QueryRow(ctx, `SELECT count(*) FROM org_data_keys WHERE org_id = $1 AND retired_at IS NULL AND key_id = $2`,
			org, newKey.ARN).Scan(&n))
		ours += n
	}
	assert.Equal(t, 4, ours, "every version of our organizations is under the new key")
	assert.Equal(t, 4, k.audited(ctx, mine), "one org_key.rewrap row per organization, naming its versions")

	require.NoError(t, k.kms.DisableKey(oldKey.ID))
	usable("after the re-wrap, with the old KMS key disabled")
}

// audited sums the versions named by the org_key.rewrap audit rows of orgs.
func (k *kmsOrgs) audited(ctx context.Context, orgs map[uuid.UUID]bool) int {
	n := 0
	for org := range orgs {
		var v int
		require.NoError(k.t, testDB.Owner(k.t).QueryRow(ctx, `SELECT coalesce(sum(jsonb_array_length(metadata->'versions')), 0)
			FROM audit_log WHERE org_id = $1 AND action = 'org_key.rewrap'`, org).Scan(&v))
		n += v
	}
	return n
}
