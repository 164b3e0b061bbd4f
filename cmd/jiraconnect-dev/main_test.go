package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/db/dbtest"
)

func TestDatabaseURLs(t *testing.T) {
	t.Parallel()
	env := func(kv ...string) func(string) (string, bool) {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	cases := []struct {
		name       string
		lookup     func(string) (string, bool)
		demo       bool
		owner, app string
	}{
		{"defaults", env(), false,
			"postgres://postgres@127.0.0.1:5432/jiraconnect?sslmode=disable",
			"postgres://jiraconnect_app@127.0.0.1:5432/jiraconnect?sslmode=disable"},
		{"owner set: the application logs in on its server as the app role, without its password",
			env("DATABASE_OWNER_URL", "postgres://admin:pw@db.local:6000/jc"), false,
			"postgres://admin:pw@db.local:6000/jc",
			"postgres://jiraconnect_app@db.local:6000/jc"},
		{"both set", env("DATABASE_OWNER_URL", "postgres://admin@h/jc", "DATABASE_URL", "postgres://app:pw@h/jc"), false,
			"postgres://admin@h/jc", "postgres://app:pw@h/jc"},
		{"demo: its own database, whatever the URLs name",
			env("DATABASE_OWNER_URL", "postgres://admin@h/mine", "DATABASE_URL", "postgres://app:pw@h/mine?sslmode=disable"), true,
			"postgres://admin@h/jiraconnect_demo", "postgres://app:pw@h/jiraconnect_demo?sslmode=disable"},
		{"demo defaults", env(), true,
			"postgres://postgres@127.0.0.1:5432/jiraconnect_demo?sslmode=disable",
			"postgres://jiraconnect_app@127.0.0.1:5432/jiraconnect_demo?sslmode=disable"},
	}
	for _, tc := range cases {
		owner, app, err := databaseURLs(tc.lookup, tc.demo)
		require.NoError(t, err, tc.name)
		assert.Equal(t, tc.owner, owner, tc.name)
		assert.Equal(t, tc.app, app, tc.name)
	}
	_, _, err := databaseURLs(env("DATABASE_OWNER_URL", "mysql://x"), false)
	assert.ErrorContains(t, err, "DATABASE_OWNER_URL")
}

// The dev stack's database comes up as production's does: the owner migrates, and the
// application logs in as its own role, which db.Open accepts. A second start keeps the data; a
// fresh (demo) start does not.
func TestPrepareDatabase(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := os.Getenv(dbtest.EnvAdminURL)
	if admin == "" {
		admin = dbtest.DefaultAdminURL
	}
	var b [6]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	u, err := url.Parse(admin)
	require.NoError(t, err)
	u.Path = "/jctest_dev_" + hex.EncodeToString(b[:])
	ownerURL := u.String()
	t.Cleanup(func() { assert.NoError(t, db.DropDatabase(context.Background(), ownerURL)) })
	appURL, err := db.AppLoginURL(ownerURL)
	require.NoError(t, err)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	orgs := func() int {
		d, err := db.Open(ctx, appURL, db.Options{})
		require.NoError(t, err, "the application logs in as its role")
		defer d.Close()
		ids, err := d.System().ListOrganizationIDs(ctx)
		require.NoError(t, err)
		return len(ids)
	}
	require.NoError(t, prepareDatabase(ctx, ownerURL, false, quiet))
	assert.Zero(t, orgs())
	owner, err := pgx.Connect(ctx, ownerURL)
	require.NoError(t, err)
	_, err = owner.Exec(ctx, `INSERT INTO organizations (name) VALUES ('kept')`)
	owner.Close(ctx)
	require.NoError(t, err)

	require.NoError(t, prepareDatabase(ctx, ownerURL, false, quiet))
	assert.Equal(t, 1, orgs(), "a restart keeps the data")
	require.NoError(t, prepareDatabase(ctx, ownerURL, true, quiet))
	assert.Zero(t, orgs(), "a fresh start begins empty")
}
