package db

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the embedded SQL migrations (also read by sqlc as the schema).
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(fmt.Sprintf("embedded migrations: %v", err)) // the embed pattern guarantees the directory
	}
	return sub
}

// Migrate applies every pending migration to the database at ownerURL, as the owner role. It is
// safe to run concurrently from several processes: goose takes a Postgres advisory lock.
func Migrate(ctx context.Context, ownerURL string, log *slog.Logger) error {
	cfg, err := pgx.ParseConfig(ownerURL)
	if err != nil {
		return fmt.Errorf("migrate: %w", redactParseError(err))
	}
	sqlDB := stdlib.OpenDB(*cfg)
	defer sqlDB.Close()

	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("migrate: session locker: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, sqlDB, Migrations(), goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate: apply: %w", err)
	}
	for _, r := range results {
		log.InfoContext(ctx, "migration applied", "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration)
	}
	return nil
}

// EnsureDatabase creates the database named in url if it does not exist yet, connecting to the
// server's maintenance database "postgres" to do so. The dev stack uses it so that `make dev`
// works against a fresh Postgres.
func EnsureDatabase(ctx context.Context, dbURL string) error {
	u, err := url.Parse(dbURL)
	if err != nil || u.Scheme == "" {
		return errors.New("ensure database: DATABASE_URL must be a postgres:// URL")
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" {
		return errors.New("ensure database: DATABASE_URL names no database")
	}
	admin := *u
	admin.Path = "/postgres"
	conn, err := pgx.Connect(ctx, admin.String())
	if err != nil {
		return fmt.Errorf("ensure database %s: connect to maintenance database: %w", name, redactConnectError(err))
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("ensure database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // created concurrently
			return nil
		}
		return fmt.Errorf("ensure database %s: create: %w", name, err)
	}
	return nil
}

// redactConnectError keeps pgconn's useful cause but never the connection string.
func redactConnectError(err error) error {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return fmt.Errorf("cannot connect: %w", ce.Unwrap())
	}
	return err
}

// DropDatabase drops the database named in dbURL, disconnecting its sessions, so that
// EnsureDatabase creates it afresh.
// Only the throwaway demo database is ever dropped.
func DropDatabase(ctx context.Context, dbURL string) error {
	u, err := url.Parse(dbURL)
	if err != nil {
		return errors.New("drop database: invalid URL")
	}
	name := strings.TrimPrefix(u.Path, "/")
	admin := *u
	admin.Path = "/postgres"
	conn, err := pgx.Connect(ctx, admin.String())
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, redactConnectError(err))
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: drop: %w", name, err)
	}
	return nil
}

// AppLoginURL is ownerURL with the application role as its user and no password: the URL the dev
// stack and the tests log the application in with, on a local Postgres that trusts connections
// from the machine. Production gives the role a password and DATABASE_URL names it.
func AppLoginURL(ownerURL string) (string, error) {
	u, err := url.Parse(ownerURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", errors.New("application login URL: the owner URL must be a postgres:// URL")
	}
	u.User = url.User(AppRole)
	return u.String(), nil
}

// EnableAppLogin lets the application role log in (ALTER ROLE … LOGIN), connecting as the owner
// at ownerURL after the migrations created the role. The migrations leave LOGIN to the operator,
// who creates the role with a password in production; the dev stack and the tests, whose owner is
// the local superuser, use this instead. Roles are cluster-wide, so concurrent callers may race:
// only a login the role still lacks afterwards is an error.
func EnableAppLogin(ctx context.Context, ownerURL string) error {
	conn, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		return fmt.Errorf("enable login of %s: %w", AppRole, redactConnectError(err))
	}
	defer conn.Close(ctx)
	canLogin := func() (bool, error) {
		var ok bool
		err := conn.QueryRow(ctx, `SELECT rolcanlogin FROM pg_roles WHERE rolname = $1`, AppRole).Scan(&ok)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, fmt.Errorf("enable login of %s: the role does not exist; apply the migrations first", AppRole)
		}
		return ok, err
	}
	ok, err := canLogin()
	if err != nil || ok {
		return err
	}
	_, alterErr := conn.Exec(ctx, "ALTER ROLE "+pgx.Identifier{AppRole}.Sanitize()+" LOGIN")
	if ok, err := canLogin(); err != nil || ok {
		return err
	}
	return fmt.Errorf("enable login of %s (ALTER ROLE %s LOGIN as a superuser or a role with CREATEROLE): %w", AppRole, AppRole, alterErr)
}
