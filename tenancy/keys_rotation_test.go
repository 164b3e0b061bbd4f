package tenancy_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/seal/kmslocal"
	"github.com/jiraconnect/jiraconnect/tenancy"
)

var rotator = audit.Caller{Actor: cli}

// storeSealed seals value for a new connection of org and stores it as the connection's
// credentials (through the owner: the test is about keys, not connections), returning the
// connection id and the sealed bytes.
func storeSealed(t *testing.T, s *seal.Sealer, org uuid.UUID, value string) (uuid.UUID, []byte) {
	t.Helper()
	ctx := context.Background()
	conn := uuid.New()
	sealed, err := s.Seal(ctx, seal.Binding{OrgID: org, ConnectionID: conn, Purpose: seal.PurposePAT}, []byte(value))
	require.NoError(t, err)
	_, err = testDB.Owner(t).Exec(ctx, `INSERT INTO connections (id, org_id, kind, site_url, workflow_id, sealed_credentials)
		VALUES ($1, $2, 'datacenter_pat', 'https://jira.example.com', 'wf', $3)`, conn, org, sealed)
	require.NoError(t, err)
	return conn, sealed
}

func keyAudits(t *testing.T, org uuid.UUID, action string) []map[string]any {
	t.Helper()
	rows, err := testDB.Owner(t).Query(context.Background(), `SELECT metadata FROM audit_log WHERE org_id = $1 AND action = $2 ORDER BY id`, org, action)
	require.NoError(t, err)
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		var m map[string]any
		require.NoError(t, rows.Scan(&m))
		out = append(out, m)
	}
	require.NoError(t, rows.Err())
	return out
}

// A rotation adds the next version and makes it current in one audited step; concurrent rotations
// each get their own version; values sealed before keep opening; another organization is not
// affected and does not see the versions.
func TestRotateDataKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	org, _, err := svc.CreateOrg(ctx, "rotating", cli)
	require.NoError(t, err)
	other, _, err := svc.CreateOrg(ctx, "bystander", cli)
	require.NoError(t, err)
	c1, v1 := storeSealed(t, svc.Sealer, org.ID, "pat-1")

	r, err := svc.RotateDataKey(ctx, org.ID, rotator, "test")
	require.NoError(t, err)
	assert.Equal(t, int32(2), r.Version)
	assert.Equal(t, int32(1), r.PreviousVersion)
	assert.NotEmpty(t, r.MasterKeyID)
	c2, v2 := storeSealed(t, svc.Sealer, org.ID, "pat-2")
	got, err := seal.SealedKeyVersion(v2)
	require.NoError(t, err)
	assert.Equal(t, int32(2), got, "the rotating process seals under the new version at once")

	var wg sync.WaitGroup
	versions := make(chan int32, 5)
	for range 5 {
		wg.Go(func() {
			r, err := svc.RotateDataKey(ctx, org.ID, rotator, "test")
			if assert.NoError(t, err) {
				versions <- r.Version
			}
		})
	}
	wg.Wait()
	close(versions)
	var vs []int
	for v := range versions {
		vs = append(vs, int(v))
	}
	sort.Ints(vs)
	assert.Equal(t, []int{3, 4, 5, 6, 7}, vs, "concurrent rotations serialize on the organization")

	keys, err := svc.ListDataKeys(ctx, org.ID)
	require.NoError(t, err)
	require.Len(t, keys, 7)
	assert.Equal(t, tenancy.KeyVersion{Version: 7, State: tenancy.DataKeyCurrent}, tenancy.KeyVersion{Version: keys[0].Version, State: keys[0].State})
	assert.Equal(t, int32(1), keys[6].Version)
	assert.Equal(t, tenancy.DataKeyPrevious, keys[6].State)
	assert.Equal(t, int64(1), keys[6].SealedValues, "counted from the stored values")
	assert.Equal(t, int64(1), keys[5].SealedValues)

	svc.Sealer.Purge() // cold, as another process
	for conn, v := range map[uuid.UUID][]byte{c1: v1, c2: v2} {
		_, err := svc.Sealer.Open(ctx, seal.Binding{OrgID: org.ID, ConnectionID: conn, Purpose: seal.PurposePAT}, v)
		require.NoError(t, err, "values sealed under versions 1 and 2 open while version 7 is current")
	}

	audits := keyAudits(t, org.ID, tenancy.ActionDataKeyRotate)
	require.Len(t, audits, 6)
	assert.EqualValues(t, 2, audits[0]["version"])
	assert.EqualValues(t, 1, audits[0]["previous_version"])
	assert.Equal(t, "test", audits[0]["reason"])

	otherKeys, err := svc.ListDataKeys(ctx, other.ID)
	require.NoError(t, err)
	require.Len(t, otherKeys, 1)
	assert.Equal(t, int32(1), otherKeys[0].Version)
	assert.Empty(t, keyAudits(t, other.ID, tenancy.ActionDataKeyRotate))
}

// Only versions that no stored value references are retired — counted by scanning the values —
// and only once the current version is older than the grace; each retirement is audited, and
// the values of a retired version no longer open.
func TestRetireUnusedDataKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	org, _, err := svc.CreateOrg(ctx, "retiring", cli)
	require.NoError(t, err)
	conn, v1 := storeSealed(t, svc.Sealer, org.ID, "pat")
	_, err = svc.RotateDataKey(ctx, org.ID, rotator, "test")
	require.NoError(t, err)

	res, err := svc.RetireUnusedDataKeys(ctx, org.ID, time.Hour, rotator)
	require.NoError(t, err)
	assert.Greater(t, res.WaitFor, 59*time.Minute, "a young rotation: processes may still seal under version 1")
	assert.Empty(t, res.Retired)

	res, err = svc.RetireUnusedDataKeys(ctx, org.ID, 0, rotator)
	require.NoError(t, err)
	assert.Empty(t, res.Retired)
	assert.Equal(t, map[int32]int64{1: 1}, res.InUse, "version 1 still seals the connection's credentials")

	b := seal.Binding{OrgID: org.ID, ConnectionID: conn, Purpose: seal.PurposePAT}
	resealed, changed, err := svc.Sealer.Reseal(ctx, b, v1)
	require.NoError(t, err)
	require.True(t, changed)
	_, err = testDB.Owner(t).Exec(ctx, `UPDATE connections SET sealed_credentials = $2 WHERE id = $1`, conn, resealed)
	require.NoError(t, err)

	res, err = svc.RetireUnusedDataKeys(ctx, org.ID, 0, rotator)
	require.NoError(t, err)
	assert.Equal(t, []int32{1}, res.Retired)
	assert.Empty(t, res.InUse)
	audits := keyAudits(t, org.ID, tenancy.ActionDataKeyRetire)
	require.Len(t, audits, 1)
	assert.EqualValues(t, 1, audits[0]["version"])

	keys, err := svc.ListDataKeys(ctx, org.ID)
	require.NoError(t, err)
	assert.Equal(t, tenancy.DataKeyRetired, keys[1].State)
	assert.NotNil(t, keys[1].RetiredAt)
	var wrapped []byte
	require.NoError(t, testDB.Owner(t).QueryRow(ctx, `SELECT wrapped_key FROM org_data_keys WHERE org_id = $1 AND version = 1`, org.ID).Scan(&wrapped))
	assert.Nil(t, wrapped, "retiring destroys the wrapped key")

	got, err := svc.Sealer.Open(ctx, b, resealed)
	require.NoError(t, err)
	assert.Equal(t, "pat", string(got))
	_, err = svc.Sealer.Open(ctx, b, v1)
	require.ErrorIs(t, err, seal.ErrOpen)

	res, err = svc.RetireUnusedDataKeys(ctx, org.ID, 0, rotator)
	require.NoError(t, err)
	assert.Empty(t, res.Retired, "nothing left to retire")
	require.Len(t, keyAudits(t, org.ID, tenancy.ActionDataKeyRetire), 1)
}

// kmsTenancy is a tenancy service over the test database whose sealer uses kmslocal through the
// real AWS SDK, with keyID as the KMS key.
func kmsTenancy(t *testing.T, svc *tenancy.Service, endpoint, keyID string) *tenancy.Service {
	t.Helper()
	p, err := seal.NewKMSProvider(context.Background(), seal.KMSConfig{KeyID: keyID, Region: "us-east-1", Endpoint: endpoint,
		AccessKeyID: "AKIDTEST", SecretAccessKey: "test-secret"})
	require.NoError(t, err)
	s, err := seal.New(p, tenancy.KeyStore{DB: svc.DB}, seal.Options{})
	require.NoError(t, err)
	return &tenancy.Service{DB: svc.DB, Sealer: s}
}

// Replacing the KMS key: every live version is re-wrapped under the new key with one audit row,
// sealed values are untouched and keep opening after the old key is disabled, and a second run
// stores nothing.
func TestRewrapDataKeysUnderANewKMSKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	kms := kmslocal.New(kmslocal.Options{})
	oldKey, err := kms.CreateKey()
	require.NoError(t, err)
	newKey, err := kms.CreateKey()
	require.NoError(t, err)
	hs := httptest.NewServer(kms)
	t.Cleanup(hs.Close)

	before := kmsTenancy(t, newService(t), hs.URL, oldKey.ID)
	org, _, err := before.CreateOrg(ctx, "kms", cli)
	require.NoError(t, err)
	conn1, v1 := storeSealed(t, before.Sealer, org.ID, "pat-1")
	_, err = before.RotateDataKey(ctx, org.ID, rotator, "test")
	require.NoError(t, err)
	conn2, v2 := storeSealed(t, before.Sealer, org.ID, "pat-2")

	after := kmsTenancy(t, before, hs.URL, newKey.ID)
	res, err := after.RewrapDataKeys(ctx, org.ID, rotator)
	require.NoError(t, err)
	assert.Equal(t, tenancy.RewrapResult{Versions: 2, Rewrapped: 2, MasterKeyID: newKey.ARN}, res)
	audits := keyAudits(t, org.ID, tenancy.ActionDataKeyRewrap)
	require.Len(t, audits, 1)
	assert.Equal(t, newKey.ARN, audits[0]["master_key_id"])
	assert.Equal(t, []any{oldKey.ARN}, audits[0]["from_master_key_ids"])

	keys, err := after.ListDataKeys(ctx, org.ID)
	require.NoError(t, err)
	for _, k := range keys {
		assert.Equal(t, newKey.ARN, k.MasterKeyID)
	}
	require.NoError(t, kms.DisableKey(oldKey.ID))
	fresh := kmsTenancy(t, before, hs.URL, newKey.ID)
	for conn, v := range map[uuid.UUID][]byte{conn1: v1, conn2: v2} {
		_, err := fresh.Sealer.Open(ctx, seal.Binding{OrgID: org.ID, ConnectionID: conn, Purpose: seal.PurposePAT}, v)
		require.NoError(t, err, "a value sealed before the re-wrap opens with the old KMS key disabled")
	}
	var stored []byte
	require.NoError(t, testDB.Owner(t).QueryRow(ctx, `SELECT sealed_credentials FROM connections WHERE id = $1`, conn1).Scan(&stored))
	assert.Equal(t, v1, stored, "a re-wrap touches no sealed value")

	res, err = fresh.RewrapDataKeys(ctx, org.ID, rotator)
	require.NoError(t, err)
	assert.Equal(t, tenancy.RewrapResult{Versions: 2, Current: 2, MasterKeyID: newKey.ARN}, res)
	require.Len(t, keyAudits(t, org.ID, tenancy.ActionDataKeyRewrap), 1, "nothing re-wrapped, nothing audited")

	// A version whose old key is gone cannot be re-wrapped: the error says so and nothing changes.
	require.NoError(t, kms.EnableKey(oldKey.ID))
	third, _, err := before.CreateOrg(ctx, "stranded", cli)
	require.NoError(t, err)
	require.NoError(t, kms.DisableKey(oldKey.ID))
	_, err = fresh.RewrapDataKeys(ctx, third.ID, rotator)
	require.Error(t, err)
	require.False(t, errors.Is(err, seal.ErrOpen))
}

// The data key queries never cross organizations: a rotation of one leaves the other's versions and
// pointer alone, even through the store.
func TestDataKeyStoreIsOrgScoped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	a, _, err := svc.CreateOrg(ctx, "a", cli)
	require.NoError(t, err)
	b, _, err := svc.CreateOrg(ctx, "b", cli)
	require.NoError(t, err)
	_, err = svc.RotateDataKey(ctx, a.ID, rotator, "test")
	require.NoError(t, err)
	store := tenancy.KeyStore{DB: svc.DB}
	_, err = store.LoadOrgKeyVersion(ctx, b.ID, 2)
	require.ErrorIs(t, err, seal.ErrNoKeyVersion, "org b has no version 2, whatever org a has")
	kb, err := store.LoadOrgKey(ctx, b.ID)
	require.NoError(t, err)
	assert.Equal(t, int32(1), kb.Version)
	// The row-level security of the table: in b's transaction, a's rows do not exist.
	var n int
	require.NoError(t, svc.DB.InOrg(ctx, b.ID, func(q *dbq.Queries) error {
		rows, err := q.ListOrgDataKeys(ctx, a.ID)
		n = len(rows)
		return err
	}))
	assert.Zero(t, n)
	_, err = store.LoadOrgKeyVersion(ctx, uuid.New(), 1)
	require.ErrorIs(t, err, seal.ErrNoOrgKey)
}
