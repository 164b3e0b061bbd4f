package db_test

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/db"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// migrationDB is an empty database of its own for a test that walks the migrations itself (to a
// version, seeding rows, then on): a goose provider over it and an owner connection. Both and the
// database go when the test ends.
type migrationDB struct {
	url      string
	provider *goose.Provider
	conn     *pgx.Conn
}

func newMigrationDB(t *testing.T, prefix string) *migrationDB {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testDB.OwnerURL)
	require.NoError(t, err)
	name := "jctest_" + prefix + "_" + uuid.NewString()[:8]
	_, err = admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		_ = admin.Close(context.Background())
	})
	u, err := url.Parse(testDB.OwnerURL)
	require.NoError(t, err)
	u.Path = "/" + name
	cfg, err := pgx.ParseConfig(u.String())
	require.NoError(t, err)
	sqlDB := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { _ = sqlDB.Close() })
	provider, err := goose.NewProvider(goose.DialectPostgres, sqlDB, db.Migrations())
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, u.String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return &migrationDB{url: u.String(), provider: provider, conn: conn}
}

// upTo migrates the database to version.
func (m *migrationDB) upTo(t *testing.T, version int64) {
	t.Helper()
	_, err := m.provider.UpTo(context.Background(), version)
	require.NoError(t, err)
}
