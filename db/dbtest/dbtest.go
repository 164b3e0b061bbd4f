// Package dbtest gives each test package a fresh, migrated Postgres database of its own and drops
// it afterwards, so packages can run in parallel without seeing each other's rows.
//
// Use it from TestMain:
//
//	var testDB *dbtest.Database
//
//	func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, &testDB)) }
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jiraconnect/jiraconnect/db"
)

// EnvAdminURL names the variable holding a superuser URL of the test Postgres server.
const EnvAdminURL = "JIRACONNECT_TEST_DATABASE_URL"

// DefaultAdminURL is the machine's local Postgres (trust auth).
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Database is one throwaway database.
type Database struct {
	Name     string
	adminURL string
	// OwnerURL connects as the owner (superuser in tests): migrations and assertions that must see
	// past row-level security use it.
	OwnerURL string
	// AppURL logs in as the application role (db.AppRole), as DATABASE_URL does in production:
	// what the API, the worker and `orgs create` of a test use.
	AppURL string
}

// Run creates and migrates a database, stores it in *dst, runs the tests and drops it. It returns
// the exit code for os.Exit.
func Run(m *testing.M, dst **Database) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	d, err := Create(ctx)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "dbtest: %v\n", err)
		return 1
	}
	*dst = d
	code := m.Run()
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.Drop(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "dbtest: %v\n", err)
	}
	return code
}

// Create makes a new uniquely named database, applies the migrations to it and lets the
// application role log in (the test server trusts local connections, so AppURL has no password).
func Create(ctx context.Context) (*Database, error) {
	adminURL := os.Getenv(EnvAdminURL)
	if adminURL == "" {
		adminURL = DefaultAdminURL
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	name := "jctest_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, fmt.Errorf("connect to test Postgres (%s; set %s): %w", EnvAdminURL, EnvAdminURL, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create test database: %w", err)
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", EnvAdminURL, err)
	}
	u.Path = "/" + name
	d := &Database{Name: name, adminURL: adminURL, OwnerURL: u.String()}
	if err := db.Migrate(ctx, d.OwnerURL, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		_ = d.Drop(ctx)
		return nil, err
	}
	if err := db.EnableAppLogin(ctx, d.OwnerURL); err != nil {
		_ = d.Drop(ctx)
		return nil, err
	}
	if d.AppURL, err = db.AppLoginURL(d.OwnerURL); err != nil {
		_ = d.Drop(ctx)
		return nil, err
	}
	return d, nil
}

// Drop removes the database, disconnecting any session still attached.
func (d *Database) Drop(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, d.adminURL)
	if err != nil {
		return fmt.Errorf("drop test database %s: %w", d.Name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.Name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop test database %s: %w", d.Name, err)
	}
	return nil
}

// Open returns an application pool, logged in as the RLS-bound application role, closed when the
// test ends.
func (d *Database) Open(tb testing.TB) *db.DB {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := db.Open(ctx, d.AppURL, db.Options{})
	if err != nil {
		tb.Fatalf("open application pool: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// Owner returns a connection as the owner, which bypasses row-level security: for assertions
// about what is really stored.
func (d *Database) Owner(tb testing.TB) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.OwnerURL)
	if err != nil {
		tb.Fatalf("connect as owner: %v", err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
