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

// The banner names the API as a developer reaches it, whatever host API_ADDR binds.
func TestLocalURL(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		":8080":          "http://localhost:8080",
		"0.0.0.0:8080":   "http://localhost:8080",
		"[::]:8080":      "http://localhost:8080",
		"127.0.0.1:8080": "http://127.0.0.1:8080",
		"[::1]:8080":     "http://[::1]:8080",
		"dev.local:9000": "http://dev.local:9000",
	} {
		assert.Equal(t, want, localURL(addr), addr)
	}
}

// The demo banner does not tell the developer to create an organization the demo creates itself;
// the dev stack's does, and both name the keyring every process must share.
func TestBanner(t *testing.T) {
	t.Parallel()
	info := bannerInfo{api: localURL("127.0.0.1:8080"), ops: localURL("127.0.0.1:9090"), keyring: "/home/dev/.jiraconnect", kms: "local"}
	dev := banner(info)
	assert.Contains(t, dev, "API            http://127.0.0.1:8080   (try: curl http://127.0.0.1:8080/readyz)")
	assert.NotContains(t, dev, "localhost127")
	assert.Contains(t, dev, "orgs create")
	assert.Contains(t, dev, "Keyring        /home/dev/.jiraconnect")
	info.demo = true
	demo := banner(info)
	assert.NotContains(t, demo, "orgs create")
	assert.Contains(t, demo, "demo organization")
}

// The dev stack and `jiraconnect orgs create` find the local keyring in the same place:
// LOCAL_KEYRING_DIR (default .jiraconnect), never a directory derived from --data-dir.
func TestDevStackKeepsTheKeyringWhereTheCLIDoes(t *testing.T) {
	t.Parallel()
	_, overridden := devDefaults(7233)["LOCAL_KEYRING_DIR"]
	assert.False(t, overridden, "the dev stack must not move the keyring")
}
