package db_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/db"
)

// Keys that existed before the key lifecycle get their creator from the audit log: the
// api_key.create row that names them, or for an organization's first admin key the org.create
// row that names its prefix. A key with neither keeps no creator rather than an invented one. The
// migration also rolls back cleanly.
func TestAPIKeyLifecycleMigrationBackfillsCreators(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testDB.OwnerURL)
	require.NoError(t, err)
	defer admin.Close(ctx)
	name := "jctest_keymig_" + uuid.NewString()[:8]
	_, err = admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	u, err := url.Parse(testDB.OwnerURL)
	require.NoError(t, err)
	u.Path = "/" + name
	dbURL := u.String()

	cfg, err := pgx.ParseConfig(dbURL)
	require.NoError(t, err)
	sqlDB := stdlib.OpenDB(*cfg)
	defer sqlDB.Close()
	provider, err := goose.NewProvider(goose.DialectPostgres, sqlDB, db.Migrations())
	require.NoError(t, err)
	_, err = provider.UpTo(ctx, 6)
	require.NoError(t, err)

	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	org, first, second, orphan := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	for _, stmt := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO organizations (id, name) VALUES ($1, 'legacy')`, []any{org}},
		{`INSERT INTO api_keys (id, org_id, name, role, prefix, key_hash) VALUES
		    ($2, $1, 'initial admin key', 'admin', 'jck_first', '\x01'),
		    ($3, $1, 'second', 'member', 'jck_secnd', '\x02'),
		    ($4, $1, 'orphan', 'member', 'jck_orphn', '\x03')`, []any{org, first, second, orphan}},
		{`INSERT INTO audit_log (org_id, actor_type, actor_id, action, target_type, target_id, metadata) VALUES
		    ($1, 'cli', 'jiraconnect orgs create', 'org.create', 'organization', $4, '{"admin_key_prefix":"jck_first"}'),
		    ($1, 'api_key', $2, 'api_key.create', 'api_key', $3, '{"prefix":"jck_secnd"}')`, []any{org, first.String(), second.String(), org.String()}},
	} {
		_, err := conn.Exec(ctx, stmt.sql, stmt.args...)
		require.NoError(t, err)
	}

	require.NoError(t, db.Migrate(ctx, dbURL, discardLogger()))
	creators := map[uuid.UUID][2]*string{}
	rows, err := conn.Query(ctx, `SELECT id, created_by_type, created_by_id FROM api_keys`)
	require.NoError(t, err)
	for rows.Next() {
		var id uuid.UUID
		var typ, by *string
		require.NoError(t, rows.Scan(&id, &typ, &by))
		creators[id] = [2]*string{typ, by}
	}
	require.NoError(t, rows.Err())
	s := func(v string) *string { return &v }
	assert.Equal(t, [2]*string{s("cli"), s("jiraconnect orgs create")}, creators[first])
	assert.Equal(t, [2]*string{s("api_key"), s(first.String())}, creators[second])
	assert.Equal(t, [2]*string{nil, nil}, creators[orphan])

	// The migration can be rolled back and applied again.
	_, err = provider.DownTo(ctx, 6)
	require.NoError(t, err)
	require.NoError(t, db.Migrate(ctx, dbURL, discardLogger()))
}
