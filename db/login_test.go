package db_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/db/dbq"
)

// These tests are about who the application logs in as. The roles they create are cluster-wide,
// so each has a unique name and is dropped when its test ends.

const appRoleName = "jiraconnect_app"

// loginURL is the test database's URL with user logging in (trust authentication, no password).
func loginURL(t *testing.T, dbURL, user string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	u.User = url.User(user)
	return u.String()
}

func uniqueName(t *testing.T, prefix string) string {
	t.Helper()
	var b [4]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return prefix + hex.EncodeToString(b[:])
}

// newRole creates a role with attrs, runs setup (each statement with %[1]s standing for the
// quoted role name) as the superuser in the test database, and drops both when the test ends.
func newRole(t *testing.T, attrs string, setup ...string) string {
	t.Helper()
	ctx := context.Background()
	name := uniqueName(t, "jct_")
	quoted := pgx.Identifier{name}.Sanitize()
	owner := testDB.Owner(t)
	_, err := owner.Exec(ctx, "CREATE ROLE "+quoted+" "+attrs)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, testDB.OwnerURL)
		if err != nil {
			t.Errorf("drop role %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		for _, stmt := range []string{"DROP OWNED BY " + quoted, "DROP ROLE " + quoted} {
			if _, err := conn.Exec(ctx, stmt); err != nil {
				t.Errorf("%s: %v", stmt, err)
			}
		}
	})
	for _, stmt := range setup {
		_, err := owner.Exec(ctx, strings.ReplaceAll(stmt, "%[1]s", quoted))
		require.NoError(t, err, stmt)
	}
	return name
}

// openAs opens an application pool logged in at dbURL, closed when the test ends.
func openAs(t *testing.T, dbURL string) (*db.DB, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := db.Open(ctx, dbURL, db.Options{})
	if err == nil {
		t.Cleanup(d.Close)
	}
	return d, err
}

// A login that could escape row-level security or the application role's grants is refused, with
// an error naming the login and the reason. Every refused role except the superuser is a member
// of the application role, so that switching to it (SET ROLE) would have worked: the refusal is
// about the login, not about a missing grant.
func TestOpenRefusesPrivilegedLogins(t *testing.T) {
	t.Parallel()
	grantApp := "GRANT " + appRoleName + " TO %[1]s"
	cases := []struct {
		name  string
		login func(t *testing.T) (user, dbURL string)
		want  string
	}{
		{"superuser", func(t *testing.T) (string, string) {
			u, err := url.Parse(testDB.OwnerURL)
			require.NoError(t, err)
			return u.User.Username(), testDB.OwnerURL
		}, "is a superuser"},
		{"bypassrls", func(t *testing.T) (string, string) {
			r := newRole(t, "LOGIN BYPASSRLS", grantApp)
			return r, loginURL(t, testDB.OwnerURL, r)
		}, "has BYPASSRLS"},
		{"owns a table", func(t *testing.T) (string, string) {
			r := newRole(t, "LOGIN", grantApp, "CREATE TABLE %[1]s (id int)", "ALTER TABLE %[1]s OWNER TO %[1]s")
			return r, loginURL(t, testDB.OwnerURL, r)
		}, "owns 1 object(s) in this database, e.g. table"},
		{"member of a table owner", func(t *testing.T) (string, string) {
			owner := newRole(t, "NOLOGIN", "CREATE TABLE %[1]s (id int)", "ALTER TABLE %[1]s OWNER TO %[1]s")
			r := newRole(t, "LOGIN", grantApp, "GRANT "+pgx.Identifier{owner}.Sanitize()+" TO %[1]s")
			return r, loginURL(t, testDB.OwnerURL, r)
		}, "which owns 1 object(s) in this database"},
		{"member of a superuser", func(t *testing.T) (string, string) {
			super, err := url.Parse(testDB.OwnerURL)
			require.NoError(t, err)
			r := newRole(t, "LOGIN", grantApp, "GRANT "+pgx.Identifier{super.User.Username()}.Sanitize()+" TO %[1]s")
			return r, loginURL(t, testDB.OwnerURL, r)
		}, "is a member of the superuser"},
		{"createrole", func(t *testing.T) (string, string) {
			r := newRole(t, "LOGIN CREATEROLE", grantApp)
			return r, loginURL(t, testDB.OwnerURL, r)
		}, "has CREATEROLE"},
		{"reads and writes around the grants", func(t *testing.T) (string, string) {
			r := newRole(t, "LOGIN", grantApp, "GRANT pg_write_all_data TO %[1]s")
			return r, loginURL(t, testDB.OwnerURL, r)
		}, `is a member of the predefined role pg_write_all_data`},
		{"may create tables", func(t *testing.T) (string, string) {
			r := newRole(t, "LOGIN", grantApp, "GRANT CREATE ON SCHEMA public TO %[1]s")
			return r, loginURL(t, testDB.OwnerURL, r)
		}, "may create objects in schema public"},
		{"switches roles after logging in", func(t *testing.T) (string, string) {
			r := newRole(t, "LOGIN", grantApp)
			return r, loginURL(t, testDB.OwnerURL, r) + "&options=-c%20role%3D" + appRoleName
		}, "switched to the role " + appRoleName + " after logging in"},
		{"lacks the application role", func(t *testing.T) (string, string) {
			r := newRole(t, "LOGIN")
			return r, loginURL(t, testDB.OwnerURL, r)
		}, "does not hold the privileges of " + appRoleName},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			user, dbURL := tc.login(t)
			_, err := openAs(t, dbURL)
			require.Error(t, err, "Open accepted the login %s", user)
			msg := err.Error()
			t.Log(msg)
			assert.Contains(t, msg, `"`+user+`"`, "the error names the login")
			assert.Contains(t, msg, tc.want)
			assert.Contains(t, msg, "DATABASE_URL must log in as "+appRoleName, "the error says what to do")
		})
	}
}

// The application role itself, and a login role that is only a member of it (as a secrets manager
// issues them), run the application.
func TestOpenAcceptsTheApplicationRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	member := newRole(t, "LOGIN", "GRANT "+appRoleName+" TO %[1]s")
	for _, user := range []string{appRoleName, member} {
		d, err := openAs(t, loginURL(t, testDB.OwnerURL, user))
		require.NoError(t, err, user)
		var session, current string
		require.NoError(t, d.Pool.QueryRow(ctx, `SELECT session_user, current_user`).Scan(&session, &current))
		assert.Equal(t, user, session)
		assert.Equal(t, user, current)
		org := seedOrg(t, d, "accept-"+user)
		var keys int
		require.NoError(t, d.InOrg(ctx, org, func(q *dbq.Queries) error {
			rows, err := q.ListAPIKeys(ctx)
			keys = len(rows)
			return err
		}))
		assert.Equal(t, 1, keys, "%s sees its own organization's key", user)
	}
}

// RESET ROLE (or any other role switch) in an application session gains nothing: the session's
// login is the application role, which stays bound by row-level security and by its grants.
func TestResetRoleInAnApplicationSessionGainsNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := testDB.Open(t)
	orgA := seedOrg(t, d, "reset-a")
	orgB := seedOrg(t, d, "reset-b")
	superURL, err := url.Parse(testDB.OwnerURL)
	require.NoError(t, err)
	super := superURL.User.Username()

	conn, err := d.Pool.Acquire(ctx)
	require.NoError(t, err)
	// The session is tampered with below: it never goes back to the pool.
	defer func() { _ = conn.Hijack().Close(ctx) }()
	_, err = conn.Exec(ctx, `RESET ROLE`)
	require.NoError(t, err)

	var session, current string
	var rolsuper, bypass bool
	require.NoError(t, conn.QueryRow(ctx,
		`SELECT session_user, current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`).
		Scan(&session, &current, &rolsuper, &bypass))
	assert.Equal(t, appRoleName, session)
	assert.Equal(t, appRoleName, current)
	assert.False(t, rolsuper || bypass, "after RESET ROLE: superuser=%t bypassrls=%t", rolsuper, bypass)

	// Still RLS-bound: nothing without an org, nothing of org B inside org A.
	for _, table := range append(tenantTables(t), "organizations") {
		col := "org_id"
		if table == "organizations" {
			col = "id"
		}
		var none int
		require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&none), table)
		assert.Zero(t, none, "%s: rows visible without an org after RESET ROLE", table)
		var foreign int
		require.NoError(t, pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('app.org_id', $1, true)`, orgA.String()); err != nil {
				return err
			}
			return tx.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()+` WHERE `+col+` = $1`, orgB).Scan(&foreign)
		}), table)
		assert.Zero(t, foreign, "%s: org A sees org B's rows after RESET ROLE", table)
	}

	// And no way up: each of these needs a privilege the login does not have.
	for _, stmt := range []string{
		`SET ROLE ` + pgx.Identifier{super}.Sanitize(),
		`SET SESSION AUTHORIZATION ` + pgx.Identifier{super}.Sanitize(),
		`ALTER TABLE api_keys DISABLE ROW LEVEL SECURITY`,
		`ALTER TABLE audit_log DISABLE TRIGGER USER`,
		`SET session_replication_role = replica`,
		`UPDATE audit_log SET action = 'tampered.action'`,
		`CREATE TABLE stolen (id uuid)`,
	} {
		_, err := conn.Exec(ctx, stmt)
		assert.Error(t, err, "the application session ran %q", stmt)
	}
}

// The production setup: a schema owner that is not a superuser owns the database and runs the
// migrations; the application logs in as its own role. The migrations need no superuser, the
// pre-tenant SECURITY DEFINER entry points work under a non-superuser owner, and the owner's own
// login is refused for the application.
func TestProductionRoles(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	owner := newRole(t, "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB")
	dbName := uniqueName(t, "jctest_prod_")
	_, err := testDB.Owner(t).Exec(ctx, "CREATE DATABASE "+pgx.Identifier{dbName}.Sanitize()+" OWNER "+pgx.Identifier{owner}.Sanitize())
	require.NoError(t, err)
	// Registered after newRole's cleanup, so it runs first: the database goes before its owner.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, testDB.OwnerURL)
		if err != nil {
			t.Errorf("drop database %s: %v", dbName, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{dbName}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", dbName, err)
		}
	})
	u, err := url.Parse(testDB.OwnerURL)
	require.NoError(t, err)
	u.Path = "/" + dbName
	ownerURL := loginURL(t, u.String(), owner)

	require.NoError(t, db.Migrate(ctx, ownerURL, discardLogger()), "migrations as a non-superuser owner")

	d, err := openAs(t, loginURL(t, ownerURL, appRoleName))
	require.NoError(t, err)
	orgID := uuid.New()
	hash := []byte("production-roles-" + uuid.NewString())
	require.NoError(t, d.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		if _, err := q.CreateOrganization(ctx, dbq.CreateOrganizationParams{ID: orgID, Name: "prod"}); err != nil {
			return err
		}
		_, err := q.CreateAPIKey(ctx, dbq.CreateAPIKeyParams{OrgID: orgID, Name: "k", Role: "admin", Prefix: "jck_p", KeyHash: hash})
		return err
	}))
	row, err := d.System().AuthenticateAPIKey(ctx, hash)
	require.NoError(t, err, "SECURITY DEFINER entry point under a non-superuser owner")
	assert.Equal(t, orgID, row.OrgID)

	_, err = openAs(t, ownerURL)
	require.Error(t, err, "the schema owner's login was accepted for the application")
	assert.Contains(t, err.Error(), `"`+owner+`"`)
	assert.Contains(t, err.Error(), "owns the database "+dbName)
	assert.Contains(t, err.Error(), "object(s) in this database")
}
