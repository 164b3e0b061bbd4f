package db_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
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
	m := newMigrationDB(t, "keymig")
	m.upTo(t, 6)
	conn, dbURL := m.conn, m.url
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
	_, err = m.provider.DownTo(ctx, 6)
	require.NoError(t, err)
	require.NoError(t, db.Migrate(ctx, dbURL, discardLogger()))
}
