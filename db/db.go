// Package db owns jiraconnect's Postgres access: the embedded migrations, the connection pool
// that always runs as the row-level-security-bound application role, and per-org transactions.
//
// Every tenant query goes through InOrg, which sets app.org_id for exactly one transaction
// (set_config(..., true)); a query issued outside it sees no tenant rows at all, because the
// policies compare org_id with a setting that is then unset.
package db

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jiraconnect/jiraconnect/db/dbq"
)

// DefaultAppRole is the role created by the migrations for the application.
const DefaultAppRole = "jiraconnect_app"

var roleNamePattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Options tunes the pool.
type Options struct {
	// AppRole is the role every pooled session switches to (SET ROLE) right after connecting, so
	// that RLS applies even when DATABASE_URL names a superuser, as it does in the dev stack.
	AppRole string
	// MaxConns caps the pool; zero keeps pgxpool's default.
	MaxConns int32
}

// DB is the application's handle on Postgres.
type DB struct {
	Pool *pgxpool.Pool
}

// Open connects a pool whose sessions run as the application role and verifies that the role
// really is bound by row-level security (not a superuser, no BYPASSRLS). It fails closed: a
// misconfigured role is a start-up error, not a silent loss of tenant isolation.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	if opts.AppRole == "" {
		opts.AppRole = DefaultAppRole
	}
	if !roleNamePattern.MatchString(opts.AppRole) {
		return nil, fmt.Errorf("open database: invalid application role name %q", opts.AppRole)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open database: parse DATABASE_URL: %w", redactParseError(err))
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	role := opts.AppRole
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, "SET ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
			return fmt.Errorf("switch to application role %s: %w", role, err)
		}
		var super, bypass bool
		if err := conn.QueryRow(ctx,
			`SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`).Scan(&super, &bypass); err != nil {
			return fmt.Errorf("inspect application role %s: %w", role, err)
		}
		if super || bypass {
			return fmt.Errorf("application role %s bypasses row-level security (superuser=%t, bypassrls=%t)", role, super, bypass)
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open database: ping: %w", err)
	}
	return &DB{Pool: pool}, nil
}

// Close releases the pool.
func (d *DB) Close() { d.Pool.Close() }

// Ping checks that Postgres answers; used by /readyz.
func (d *DB) Ping(ctx context.Context) error { return d.Pool.Ping(ctx) }

// InOrg runs fn in one transaction scoped to orgID. Row-level security admits only that org's
// rows for reads and writes. The transaction commits if fn returns nil and rolls back otherwise.
func (d *DB) InOrg(ctx context.Context, orgID uuid.UUID, fn func(q *dbq.Queries) error) error {
	if orgID == uuid.Nil {
		return errors.New("org transaction: no organization id")
	}
	return pgx.BeginFunc(ctx, d.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('app.org_id', $1, true)`, orgID.String()); err != nil {
			return fmt.Errorf("set organization for transaction: %w", err)
		}
		return fn(dbq.New(tx))
	})
}

// System returns queries that run without any org set. Only the SECURITY DEFINER entry points
// (API key authentication, webhook routing, OAuth state consumption, listing org ids) return
// anything there; every tenant table reads as empty.
func (d *DB) System() *dbq.Queries { return dbq.New(d.Pool) }

// redactParseError replaces pgx's parse error, which can echo the connection string and with it a
// password, by a generic one.
func redactParseError(error) error { return errors.New("invalid connection string") }
