// Package db owns jiraconnect's Postgres access: the embedded migrations, the connection pool
// that logs in as the row-level-security-bound application role (and refuses any login that could
// escape it), and per-org transactions.
//
// Every tenant query goes through InOrg, which sets app.org_id for exactly one transaction
// (set_config(..., true)); a query issued outside it sees no tenant rows at all, because the
// policies compare org_id with a setting that is then unset.
package db

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jiraconnect/jiraconnect/db/dbq"
)

// AppRole is the role the application's sessions run as: the api and the worker log in as it (or
// as a login role that is a member of it). The migrations create it if it is missing and grant it
// exactly the privileges the application needs; it is cluster-wide, like every Postgres role.
const AppRole = "jiraconnect_app"

// Options tunes the pool.
type Options struct {
	// MaxConns caps the pool; zero keeps pgxpool's default.
	MaxConns int32
	// AllowPrivilegedLogin accepts a login that LoginError would refuse (a superuser, a role with
	// BYPASSRLS, the schema owner, …) and switches each of its sessions to AppRole with SET ROLE.
	// That switch is only as strong as the guarantee that no SQL ever reaching the session says
	// RESET ROLE, so it is for development against a Postgres whose roles cannot be changed, and
	// is logged as a warning.
	AllowPrivilegedLogin bool
	// Logger receives that warning; nil discards it.
	Logger *slog.Logger
}

// DB is the application's handle on Postgres.
type DB struct {
	Pool *pgxpool.Pool
}

// Open connects a pool for the application and verifies, on every new connection, that the login
// role is bound by row-level security for good: it logs in as AppRole (or a member of it) and can
// neither bypass RLS nor become a role that can (see LoginError). A session that switched roles
// with SET ROLE after logging in as a privileged user would fall back to that user on RESET ROLE,
// so the login itself must be unprivileged. Open fails closed: a privileged login is a start-up
// error naming the role and the reasons, not a silent loss of tenant isolation.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open database: parse DATABASE_URL: %w", redactParseError(err))
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var warnOnce sync.Once
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		loginErr, err := checkLogin(ctx, conn)
		if err != nil {
			return err
		}
		if loginErr == nil {
			return nil
		}
		if !opts.AllowPrivilegedLogin {
			return loginErr
		}
		warnOnce.Do(func() {
			log.WarnContext(ctx, "DATABASE_ALLOW_PRIVILEGED_LOGIN: the database login could bypass row-level security; "+
				"sessions switch to "+AppRole+" with SET ROLE, which any SQL reaching a session can undo with RESET ROLE. "+
				"Development only: never use this in production",
				"login", loginErr.Login, "problems", loginErr.Problems)
		})
		return setAppRole(ctx, conn)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	return &DB{Pool: pool}, nil
}

// LoginError is the refusal of a login role that could escape row-level security or the
// application role's grants.
type LoginError struct {
	// Login is the session_user of the refused connection.
	Login string
	// Problems are the reasons, each a phrase about the login ("is a superuser").
	Problems []string
}

func (e *LoginError) Error() string {
	problems := e.Problems
	more := ""
	if len(problems) > 4 {
		more = fmt.Sprintf(" (and %d more)", len(problems)-4)
		problems = problems[:4]
	}
	return fmt.Sprintf("the database login %q may not run the application: it %s%s. "+
		"DATABASE_URL must log in as %s, or as a role that is a member of it, created with "+
		"LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOREPLICATION and owning nothing; "+
		"the schema owner belongs in DATABASE_OWNER_URL, which only `jiraconnect migrate` uses "+
		"(README, \"Database roles\")",
		e.Login, strings.Join(problems, "; it "), more, AppRole)
}

// loginCheckSQL lists what is wrong with the session's login role for running the application,
// one phrase per row, most serious first. "reach" is every role whose rights the login holds or can
// take with SET ROLE: itself and every role it is a member of, directly or not (pg_has_role MEMBER;
// a database's owner is also an implicit member of pg_database_owner, the owner of schema public).
// Each of these would let SQL reaching a session escape row-level security or the grants:
//   - SUPERUSER and BYPASSRLS skip RLS; CREATEROLE can grant itself the schema owner's role
//     (before Postgres 16) and REPLICATION can copy every table through a replication connection;
//   - owning a table skips its RLS (no table uses FORCE, so that the SECURITY DEFINER entry points
//     work) and owning the database, a schema or a function allows redefining what the policies
//     and the SECURITY DEFINER functions rely on (app_current_org, search_path);
//   - pg_read_all_data and pg_write_all_data override the per-table grants (audit_log and evidence
//     have no UPDATE grant), and pg_read_server_files, pg_write_server_files and
//     pg_execute_server_program reach the data directory itself;
//   - CREATE on a schema lets the login create objects and so own them.
//
// A login that is or can become a superuser gets only that reason, which covers all the others.
// The login must also be the session's role (no role= option that only looks like the app role)
// and hold AppRole's privileges without SET ROLE, or nothing would work.
const loginCheckSQL = `
WITH me AS (
    SELECT r.oid, r.rolname FROM pg_roles r WHERE r.rolname = session_user
), reach AS (
    SELECT r.oid, r.rolname, r.rolsuper, r.rolbypassrls, r.rolcreaterole, r.rolreplication,
           r.oid = me.oid AS self
    FROM pg_roles r, me
    WHERE pg_has_role(me.oid, r.oid, 'MEMBER')
), this_db AS (
    SELECT d.oid, d.datname, d.datdba FROM pg_database d WHERE d.datname = current_database()
), owned AS (
    SELECT rc.self, rc.rolname, s.classid, s.objid, s.objsubid
    FROM pg_shdepend s JOIN reach rc ON rc.oid = s.refobjid, this_db
    WHERE s.deptype = 'o' AND s.dbid = this_db.oid AND s.refclassid = 'pg_authid'::regclass
)
SELECT problem FROM (
    SELECT 1 AS rank, 'switched to the role ' || quote_ident(current_user) || ' after logging in (remove the role option from DATABASE_URL)' AS problem
    WHERE session_user <> current_user
    UNION ALL
    SELECT 2, CASE WHEN self THEN 'is a superuser' ELSE format('is a member of the superuser %I', rolname) END
    FROM reach WHERE rolsuper AND (self OR NOT EXISTS (SELECT 1 FROM reach s WHERE s.self AND s.rolsuper))
    UNION ALL
    SELECT 3, CASE WHEN self THEN 'has BYPASSRLS' ELSE format('is a member of %I, which has BYPASSRLS', rolname) END
    FROM reach WHERE rolbypassrls
    UNION ALL
    SELECT 4, CASE WHEN self THEN 'has CREATEROLE' ELSE format('is a member of %I, which has CREATEROLE', rolname) END
    FROM reach WHERE rolcreaterole
    UNION ALL
    SELECT 5, CASE WHEN self THEN 'has REPLICATION' ELSE format('is a member of %I, which has REPLICATION', rolname) END
    FROM reach WHERE rolreplication
    UNION ALL
    SELECT 6, CASE WHEN r.self THEN format('owns the database %I', d.datname)
                   ELSE format('is a member of %I, which owns the database %I', r.rolname, d.datname) END
    FROM this_db d JOIN reach r ON r.oid = d.datdba
    UNION ALL
    SELECT 7, format('%s %s object(s) in this database, e.g. %s',
                     CASE WHEN bool_or(self) THEN 'owns' ELSE 'is a member of ' || quote_ident(min(rolname)) || ', which owns' END,
                     count(*), min(pg_describe_object(classid, objid, objsubid)))
    FROM owned HAVING count(*) > 0
    UNION ALL
    SELECT 8, format('is a member of the predefined role %I, which goes around table privileges', rolname)
    FROM reach WHERE rolname IN ('pg_read_all_data', 'pg_write_all_data', 'pg_read_server_files',
                                 'pg_write_server_files', 'pg_execute_server_program')
    UNION ALL
    SELECT 9, format('may create objects in schema %I', n.nspname)
    FROM pg_namespace n, me
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'
      AND n.nspname NOT LIKE 'pg\_temp\_%' AND has_schema_privilege(me.oid, n.oid, 'CREATE')
    UNION ALL
    SELECT 10, format('does not hold the privileges of %I (GRANT %I TO the login, with INHERIT; '
                      'if the role does not exist yet, run migrate first)', $1::text, $1::text)
    WHERE NOT EXISTS (SELECT 1 FROM pg_roles a, me WHERE a.rolname = $1 AND pg_has_role(me.oid, a.oid, 'USAGE'))
) problems
-- A superuser may do anything (and is a member of every role): that reason says it all.
WHERE rank <= 2 OR NOT EXISTS (SELECT 1 FROM reach WHERE rolsuper)
ORDER BY rank, problem`

// checkLogin returns a LoginError if the connection's login may not run the application, nil if
// it may, and an error if the check itself failed.
func checkLogin(ctx context.Context, conn *pgx.Conn) (*LoginError, error) {
	var login string
	if err := conn.QueryRow(ctx, `SELECT session_user`).Scan(&login); err != nil {
		return nil, fmt.Errorf("check database login: %w", err)
	}
	rows, err := conn.Query(ctx, loginCheckSQL, AppRole)
	if err != nil {
		return nil, fmt.Errorf("check database login %s: %w", login, err)
	}
	problems, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("check database login %s: %w", login, err)
	}
	if len(problems) == 0 {
		return nil, nil
	}
	return &LoginError{Login: login, Problems: problems}, nil
}

// setAppRole switches a privileged session to AppRole (DATABASE_ALLOW_PRIVILEGED_LOGIN only) and
// makes sure that role at least cannot bypass row-level security.
func setAppRole(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, "SET ROLE "+pgx.Identifier{AppRole}.Sanitize()); err != nil {
		return fmt.Errorf("switch to application role %s: %w", AppRole, err)
	}
	var super, bypass bool
	if err := conn.QueryRow(ctx,
		`SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`).Scan(&super, &bypass); err != nil {
		return fmt.Errorf("inspect application role %s: %w", AppRole, err)
	}
	if super || bypass {
		return fmt.Errorf("application role %s bypasses row-level security (superuser=%t, bypassrls=%t)", AppRole, super, bypass)
	}
	return nil
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
