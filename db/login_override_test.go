package db_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/db"
)

// The refusal is a typed error: the login and each reason.
func TestLoginErrorNamesLoginAndReasons(t *testing.T) {
	t.Parallel()
	_, err := db.Open(context.Background(), testDB.OwnerURL, db.Options{})
	var le *db.LoginError
	require.True(t, errors.As(err, &le), "got %v", err)
	u, err := url.Parse(testDB.OwnerURL)
	require.NoError(t, err)
	assert.Equal(t, u.User.Username(), le.Login)
	assert.Equal(t, []string{"is a superuser"}, le.Problems)
}

// DATABASE_ALLOW_PRIVILEGED_LOGIN: the privileged login is accepted, each session switches to the
// application role (so RLS applies to what the application does), and one warning says so.
func TestAllowPrivilegedLoginSwitchesRoleAndWarns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var logs syncBuffer
	d, err := db.Open(ctx, testDB.OwnerURL, db.Options{AllowPrivilegedLogin: true, MaxConns: 3,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	// Three sessions held at once are three connections, each through AfterConnect.
	for range 3 {
		conn, err := d.Pool.Acquire(ctx)
		require.NoError(t, err)
		defer conn.Release()
		var session, current string
		require.NoError(t, conn.QueryRow(ctx, `SELECT session_user, current_user`).Scan(&session, &current))
		assert.Equal(t, db.AppRole, current)
		assert.NotEqual(t, db.AppRole, session)
	}
	assert.Equal(t, int32(3), d.Pool.Stat().TotalConns())
	out := logs.String()
	assert.Equal(t, 1, strings.Count(out, "DATABASE_ALLOW_PRIVILEGED_LOGIN"), "one warning per pool: %s", out)
	assert.Contains(t, out, `"level":"WARN"`)
	assert.Contains(t, out, "is a superuser")
}

func TestAppLoginURL(t *testing.T) {
	t.Parallel()
	got, err := db.AppLoginURL("postgres://postgres:s3cret@db.example:6543/jc?sslmode=require")
	require.NoError(t, err)
	assert.Equal(t, "postgres://jiraconnect_app@db.example:6543/jc?sslmode=require", got)
	_, err = db.AppLoginURL("mysql://x")
	assert.Error(t, err)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
