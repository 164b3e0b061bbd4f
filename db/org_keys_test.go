package db_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/seal"
)

// sealedUnder is a stand-in for a value sealed under key version v: the header is all the schema
// reads.
func sealedUnder(v byte) []byte {
	b := make([]byte, 40)
	_, _ = rand.Read(b)
	b[0], b[1], b[2], b[3], b[4] = 1, 0, 0, 0, v
	return b
}

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// keyedOrg creates, through the application role, an organization with data key versions
// 1..versions (the last current) and one connection, and returns their ids.
func keyedOrg(t *testing.T, d *db.DB, versions int) (org, conn uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	org, conn = uuid.New(), uuid.New()
	err := d.InOrg(ctx, org, func(q *dbq.Queries) error {
		if _, err := q.CreateOrganization(ctx, dbq.CreateOrganizationParams{ID: org, Name: "keys"}); err != nil {
			return err
		}
		for v := int32(1); v <= int32(versions); v++ {
			if err := q.InsertOrgDataKey(ctx, dbq.InsertOrgDataKeyParams{OrgID: org, Version: v, WrappedKey: []byte{1, 2, 3}, KeyID: "local:test"}); err != nil {
				return err
			}
			if err := q.SetCurrentOrgDataKey(ctx, dbq.SetCurrentOrgDataKeyParams{ID: org, Version: v}); err != nil {
				return err
			}
		}
		_, err := q.CreateConnection(ctx, dbq.CreateConnectionParams{ID: conn, OrgID: org, Kind: "cloud_token", SiteUrl: "https://x.atlassian.net",
			Status: "active", Config: []byte(`{}`), Scopes: []string{}, WorkflowID: "wf"})
		return err
	})
	require.NoError(t, err)
	return org, conn
}

func inOrg(t *testing.T, d *db.DB, org uuid.UUID, sql string, args ...any) error {
	t.Helper()
	return pgx.BeginFunc(context.Background(), d.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(context.Background(), `SELECT set_config('app.org_id', $1, true)`, org.String()); err != nil {
			return err
		}
		_, err := tx.Exec(context.Background(), sql, args...)
		return err
	})
}

// The schema keeps the promises of key rotation whoever writes: a version that is current or that
// a stored value references is never retired or deleted, a retired version never changes again, no
// value sealed under a retired version is stored, and the current version only moves forward to a
// live version of the same organization. The application role cannot delete versions at all.
func TestOrgDataKeyGuards(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := testDB.Open(t)
	owner := testDB.Owner(t)
	org, conn := keyedOrg(t, d, 3)
	retire := `UPDATE org_data_keys SET retired_at = now(), wrapped_key = NULL WHERE org_id = $1 AND version = $2`

	// The application role: no DELETE, no rewriting a version's identity.
	assert.Equal(t, "42501", pgCode(inOrg(t, d, org, `DELETE FROM org_data_keys WHERE org_id = $1 AND version = 1`, org)), "app DELETE")
	assert.Equal(t, "42501", pgCode(inOrg(t, d, org, `UPDATE org_data_keys SET version = 9 WHERE org_id = $1 AND version = 1`, org)), "app changes a version number")
	assert.Equal(t, "42501", pgCode(inOrg(t, d, org, `UPDATE org_data_keys SET created_at = now() WHERE org_id = $1`, org)), "app changes created_at")

	// Values sealed under versions 1 (credentials) and 2 (webhook signing secret) pin them.
	require.NoError(t, inOrg(t, d, org, `UPDATE connections SET sealed_credentials = $2, webhook_signing_secret = $3 WHERE id = $1`,
		conn, sealedUnder(1), sealedUnder(2)))
	for _, v := range []int{1, 2, 3} {
		assert.Equal(t, "55006", pgCode(inOrg(t, d, org, retire, org, v)), "app retires version %d (in use or current)", v)
		_, err := owner.Exec(ctx, retire, org, v)
		assert.Equal(t, "55006", pgCode(err), "owner retires version %d", v)
		_, err = owner.Exec(ctx, `DELETE FROM org_data_keys WHERE org_id = $1 AND version = $2`, org, v)
		assert.NotEmpty(t, pgCode(err), "owner deletes version %d: %v", v, err)
	}

	// Re-sealing the credentials under version 3 frees version 1 (not 2: the secret still uses it).
	require.NoError(t, inOrg(t, d, org, `UPDATE connections SET sealed_credentials = $2 WHERE id = $1`, conn, sealedUnder(3)))
	require.NoError(t, inOrg(t, d, org, retire, org, 1))
	assert.Equal(t, "55006", pgCode(inOrg(t, d, org, retire, org, 2)))

	// A retired version is final, and nothing may be sealed under it again.
	assert.Equal(t, "42501", pgCode(inOrg(t, d, org, `UPDATE org_data_keys SET wrapped_key = '\x01', retired_at = NULL WHERE org_id = $1 AND version = 1`, org)))
	assert.Equal(t, "42501", pgCode(inOrg(t, d, org, `UPDATE org_data_keys SET key_id = 'local:x' WHERE org_id = $1 AND version = 1`, org)))
	assert.Equal(t, "55000", pgCode(inOrg(t, d, org, `UPDATE connections SET sealed_credentials = $2 WHERE id = $1`, conn, sealedUnder(1))))
	_, err := owner.Exec(ctx, `UPDATE connections SET webhook_signing_secret = $2 WHERE id = $1`, conn, sealedUnder(1))
	assert.Equal(t, "55000", pgCode(err), "not even the owner stores a value under a retired version")
	_, err = owner.Exec(ctx, `INSERT INTO connections (org_id, kind, site_url, workflow_id, sealed_credentials) VALUES ($1, 'cloud_token', 'https://y.atlassian.net', 'wf', $2)`, org, sealedUnder(1))
	assert.Equal(t, "55000", pgCode(err), "insert under a retired version")
	// Versions the organization does not have are the application's business (they never open).
	require.NoError(t, inOrg(t, d, org, `UPDATE connections SET sealed_credentials = $2 WHERE id = $1`, conn, sealedUnder(9)))

	// The current version moves forward only, to a live version of its own organization.
	assert.Equal(t, "42501", pgCode(inOrg(t, d, org, `UPDATE organizations SET data_key_version = 2 WHERE id = $1`, org)), "backwards")
	assert.Equal(t, "42501", pgCode(inOrg(t, d, org, `UPDATE organizations SET data_key_version = NULL WHERE id = $1`, org)), "to nothing")
	other, _ := keyedOrg(t, d, 5)
	_, err = owner.Exec(ctx, `UPDATE organizations SET data_key_version = 5 WHERE id = $1`, org)
	assert.Equal(t, "23503", pgCode(err), "to a version only another organization has")
	require.NoError(t, inOrg(t, d, other, retire, other, 2))
	_, err = owner.Exec(ctx, `INSERT INTO org_data_keys (org_id, version, wrapped_key, key_id) VALUES ($1, 4, '\x01', 'k')`, org)
	require.NoError(t, err)
	_, err = owner.Exec(ctx, `UPDATE org_data_keys SET retired_at = now(), wrapped_key = NULL WHERE org_id = $1 AND version = 4`, org)
	require.NoError(t, err)
	_, err = owner.Exec(ctx, `UPDATE organizations SET data_key_version = 4 WHERE id = $1`, org)
	assert.Equal(t, "42501", pgCode(err), "to a retired version")

	// Row-level security: another organization's versions are invisible and unwritable.
	var n int
	require.NoError(t, pgx.BeginFunc(ctx, d.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('app.org_id', $1, true)`, org.String()); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM org_data_keys WHERE org_id = $1`, other).Scan(&n)
	}))
	assert.Zero(t, n)
	assert.Equal(t, "42501", pgCode(inOrg(t, d, org, `INSERT INTO org_data_keys (org_id, version, wrapped_key, key_id) VALUES ($1, 6, '\x01', 'k')`, other)))
}

// The two guards meet on the version's row, so a retirement and a write of a value under that
// version cannot both succeed, whichever starts first.
func TestRetirementAndConcurrentWriteSerialize(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := testDB.Open(t)
	begin := func(org uuid.UUID) pgx.Tx {
		tx, err := d.Pool.Begin(ctx)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `SELECT set_config('app.org_id', $1, true)`, org.String())
		require.NoError(t, err)
		return tx
	}
	retire := `UPDATE org_data_keys SET retired_at = now(), wrapped_key = NULL WHERE org_id = $1 AND version = 1`
	write := `UPDATE connections SET sealed_credentials = $2 WHERE id = $1`

	t.Run("write first", func(t *testing.T) {
		org, conn := keyedOrg(t, d, 2)
		writer := begin(org)
		_, err := writer.Exec(ctx, write, conn, sealedUnder(1))
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- inOrg(t, d, org, retire, org) }()
		waitForLockWait(t, done, "UPDATE org_data_keys")
		require.NoError(t, writer.Commit(ctx))
		assert.Equal(t, "55006", pgCode(<-done), "the retirement sees the committed value")
	})
	t.Run("retire first", func(t *testing.T) {
		org, conn := keyedOrg(t, d, 2)
		retirer := begin(org)
		_, err := retirer.Exec(ctx, retire, org)
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- inOrg(t, d, org, write, conn, sealedUnder(1)) }()
		waitForLockWait(t, done, "UPDATE connections")
		require.NoError(t, retirer.Commit(ctx))
		assert.Equal(t, "55000", pgCode(<-done), "the write sees the retirement")
	})
}

// waitForLockWait returns once a session running a statement that starts with prefix waits for a
// lock, and fails the test if the statement finished instead.
func waitForLockWait(t *testing.T, done <-chan error, prefix string) {
	t.Helper()
	owner := testDB.Owner(t)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("%s… did not wait for the other transaction: %v", prefix, err)
		default:
		}
		var waiting int
		require.NoError(t, owner.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1`, prefix+"%").Scan(&waiting))
		if waiting > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s… never waited for a lock", prefix)
}

// sealed_key_version in SQL reads the same version as seal.SealedKeyVersion, and nothing where
// Go refuses the header.
func TestSealedKeyVersionMatchesTheSealPackage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner := testDB.Owner(t)
	inputs := [][]byte{nil, {}, {1}, {1, 0, 0, 0}, {1, 0, 0, 0, 1}, {1, 0, 0, 1, 0}, {1, 0x7f, 0xff, 0xff, 0xff}, {1, 0x80, 0, 0, 0},
		{1, 0xff, 0xff, 0xff, 0xff, 9}, {2, 0, 0, 0, 1}, {0, 0, 0, 0, 1}, sealedUnder(7)}
	for range 50 {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		b[0] = 1
		inputs = append(inputs, b)
	}
	for _, in := range inputs {
		var got *int64
		require.NoError(t, owner.QueryRow(ctx, `SELECT sealed_key_version($1)`, in).Scan(&got))
		v, err := seal.SealedKeyVersion(in)
		if err != nil {
			// Go also refuses version 0 and versions beyond int32, which SQL reads as numbers that
			// no key version equals.
			if got != nil {
				assert.True(t, *got == 0 || *got > 1<<31-1, "%x: SQL %d, Go %v", in, *got, err)
			}
			continue
		}
		if assert.NotNil(t, got, "%x", in) {
			assert.Equal(t, int64(v), *got, "%x", in)
		}
	}
}

// The migration carries every existing key over as version 1 of its organization, created with
// it, and leaves organizations without a key without a current version; it goes down (while no
// organization has two live versions) and up again.
func TestOrgKeyVersionsMigration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testDB.OwnerURL)
	require.NoError(t, err)
	defer admin.Close(ctx)
	name := "jctest_keyver_" + uuid.NewString()[:8]
	_, err = admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	u, err := url.Parse(testDB.OwnerURL)
	require.NoError(t, err)
	u.Path = "/" + name
	cfg, err := pgx.ParseConfig(u.String())
	require.NoError(t, err)
	sqlDB := stdlib.OpenDB(*cfg)
	defer sqlDB.Close()
	provider, err := goose.NewProvider(goose.DialectPostgres, sqlDB, db.Migrations())
	require.NoError(t, err)
	_, err = provider.UpTo(ctx, 10)
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, u.String())
	require.NoError(t, err)
	defer conn.Close(ctx)

	keyed, bare := uuid.New(), uuid.New()
	created := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	wrapped := []byte("wrapped-by-kms")
	_, err = conn.Exec(ctx, `INSERT INTO organizations (id, name, created_at, wrapped_data_key, data_key_id, data_key_version)
		VALUES ($1, 'keyed', $3, $4, 'arn:aws:kms:us-east-1:1:key/k', 1), ($2, 'bare', now(), NULL, NULL, 0)`, keyed, bare, created, wrapped)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `INSERT INTO connections (org_id, kind, site_url, workflow_id, sealed_credentials) VALUES ($1, 'cloud_token', 'https://x.atlassian.net', 'wf', $2)`,
		keyed, sealedUnder(1))
	require.NoError(t, err)

	_, err = provider.UpTo(ctx, 11)
	require.NoError(t, err)
	var version int32
	var gotWrapped []byte
	var keyID string
	var at, wrappedAt time.Time
	require.NoError(t, conn.QueryRow(ctx, `SELECT version, wrapped_key, key_id, created_at, wrapped_at FROM org_data_keys WHERE org_id = $1`, keyed).
		Scan(&version, &gotWrapped, &keyID, &at, &wrappedAt))
	assert.Equal(t, int32(1), version)
	assert.Equal(t, wrapped, gotWrapped)
	assert.Equal(t, "arn:aws:kms:us-east-1:1:key/k", keyID)
	assert.True(t, at.Equal(created) && wrappedAt.Equal(created), "created with its organization: %s %s", at, wrappedAt)
	var current *int32
	require.NoError(t, conn.QueryRow(ctx, `SELECT data_key_version FROM organizations WHERE id = $1`, keyed).Scan(&current))
	require.NotNil(t, current)
	assert.Equal(t, int32(1), *current)
	require.NoError(t, conn.QueryRow(ctx, `SELECT data_key_version FROM organizations WHERE id = $1`, bare).Scan(&current))
	assert.Nil(t, current)
	var rows int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM org_data_keys WHERE org_id = $1`, bare).Scan(&rows))
	assert.Zero(t, rows)

	_, err = provider.DownTo(ctx, 10)
	require.NoError(t, err)
	require.NoError(t, conn.QueryRow(ctx, `SELECT wrapped_data_key, data_key_id FROM organizations WHERE id = $1`, keyed).Scan(&gotWrapped, &keyID))
	assert.Equal(t, wrapped, gotWrapped)
	assert.Equal(t, "arn:aws:kms:us-east-1:1:key/k", keyID)
	_, err = provider.UpTo(ctx, 11)
	require.NoError(t, err)

	// With a second live version, going down would lose a key that seals values: refused.
	_, err = conn.Exec(ctx, `INSERT INTO org_data_keys (org_id, version, wrapped_key, key_id) VALUES ($1, 2, '\x02', 'k2')`, keyed)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `UPDATE organizations SET data_key_version = 2 WHERE id = $1`, keyed)
	require.NoError(t, err)
	_, err = provider.DownTo(ctx, 10)
	require.ErrorContains(t, err, "more than one live data key version")
}
