package db_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jiraconnect/jiraconnect/db"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/db/dbtest"
)

var testDB *dbtest.Database

func TestMain(m *testing.M) { os.Exit(dbtest.Run(m, &testDB)) }

// seedOrg creates an org with a connection, an API key, an audit row, a finding and evidence,
// through the application role, and returns the org id.
func seedOrg(t *testing.T, d *db.DB, name string) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	orgID := uuid.New()
	err := d.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		if _, err := q.CreateOrganization(ctx, dbq.CreateOrganizationParams{ID: orgID, Name: name}); err != nil {
			return err
		}
		if _, err := q.CreateAPIKey(ctx, dbq.CreateAPIKeyParams{OrgID: orgID, Name: "k", Role: "admin", Prefix: "jck_" + name, KeyHash: []byte(name + uuid.NewString())}); err != nil {
			return err
		}
		if _, err := q.InsertAuditEntry(ctx, dbq.InsertAuditEntryParams{OrgID: orgID, ActorType: "system", Action: "org.create"}); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("seed org %s: %v", name, err)
	}
	return orgID
}

// tenantTables lists every table with an org_id column, read from the catalog so that a new
// table cannot escape these tests.
func tenantTables(t *testing.T) []string {
	t.Helper()
	owner := testDB.Owner(t)
	rows, err := owner.Query(context.Background(), `
		SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind = 'r'
		  AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped)
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 10 {
		t.Fatalf("expected the schema's tenant tables, found only %v", names)
	}
	return names
}

func TestEveryTenantTableHasRLS(t *testing.T) {
	owner := testDB.Owner(t)
	for _, table := range append(tenantTables(t), "organizations") {
		var enabled bool
		var policies int
		err := owner.QueryRow(context.Background(), `
			SELECT c.relrowsecurity, (SELECT count(*) FROM pg_policies p WHERE p.tablename = c.relname)
			FROM pg_class c WHERE c.relname = $1`, table).Scan(&enabled, &policies)
		if err != nil {
			t.Fatal(err)
		}
		if !enabled || policies == 0 {
			t.Errorf("table %s: row level security enabled=%t policies=%d", table, enabled, policies)
		}
	}
}

func TestRLSIsolatesOrganizations(t *testing.T) {
	ctx := context.Background()
	d := testDB.Open(t)
	orgA := seedOrg(t, d, "rls-a")
	orgB := seedOrg(t, d, "rls-b")

	tables := append(tenantTables(t), "organizations")
	for _, table := range tables {
		col := "org_id"
		if table == "organizations" {
			col = "id"
		}
		// No WHERE clause: RLS alone must keep org B's rows out.
		var foreign, total int
		err := pgx.BeginFunc(ctx, d.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('app.org_id', $1, true)`, orgA.String()); err != nil {
				return err
			}
			return tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE `+col+` <> $1), count(*) FROM `+pgx.Identifier{table}.Sanitize(), orgA).Scan(&foreign, &total)
		})
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		if foreign != 0 {
			t.Errorf("%s: org A sees %d rows of other orgs", table, foreign)
		}
		// With no org set at all, nothing is visible.
		var none int
		if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&none); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		if none != 0 {
			t.Errorf("%s: %d rows visible without an org", table, none)
		}
	}

	// Org A's own rows are visible (the test above is not vacuous).
	var keys int
	_ = d.InOrg(ctx, orgA, func(q *dbq.Queries) error {
		rows, err := q.ListAPIKeys(ctx)
		keys = len(rows)
		return err
	})
	if keys != 1 {
		t.Fatalf("org A sees %d of its own api keys, want 1", keys)
	}

	// Writing a row for org B inside org A's transaction is rejected by WITH CHECK.
	err := d.InOrg(ctx, orgA, func(q *dbq.Queries) error {
		_, err := q.InsertAuditEntry(ctx, dbq.InsertAuditEntryParams{OrgID: orgB, ActorType: "system", Action: "x.y"})
		return err
	})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("cross-org insert: got %v, want row-level security violation 42501", err)
	}
}

func TestAppRoleCannotBypass(t *testing.T) {
	d := testDB.Open(t)
	var user string
	var super, bypass bool
	err := d.Pool.QueryRow(context.Background(),
		`SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`).Scan(&user, &super, &bypass)
	if err != nil {
		t.Fatal(err)
	}
	if user != db.AppRole || super || bypass {
		t.Fatalf("sessions run as %s (super=%t bypassrls=%t), want %s without bypass", user, super, bypass, db.AppRole)
	}
}

func TestAuditLogIsAppendOnly(t *testing.T) {
	ctx := context.Background()
	d := testDB.Open(t)
	org := seedOrg(t, d, "audit")
	for _, stmt := range []string{
		`UPDATE audit_log SET action = 'tampered.action'`,
		`DELETE FROM audit_log`,
		`TRUNCATE audit_log`,
	} {
		if err := execOn(ctx, d, org, stmt); err == nil {
			t.Errorf("app role: %q succeeded", stmt)
		}
		// Even the owner, which holds every privilege, is stopped by the trigger.
		if _, err := testDB.Owner(t).Exec(ctx, stmt); err == nil || !strings.Contains(err.Error(), "not allowed") {
			t.Errorf("owner: %q: got %v, want the immutability trigger", stmt, err)
		}
	}
	var n int
	if err := testDB.Owner(t).QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE org_id = $1 AND action = 'org.create'`, org).Scan(&n); err != nil || n != 1 {
		t.Fatalf("audit row after tampering attempts: n=%d err=%v", n, err)
	}
}

func execOn(ctx context.Context, d *db.DB, org uuid.UUID, stmt string) error {
	return pgx.BeginFunc(ctx, d.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('app.org_id', $1, true)`, org.String()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, stmt)
		return err
	})
}

func TestApprovedEvidenceIsFrozen(t *testing.T) {
	ctx := context.Background()
	d := testDB.Open(t)
	org := seedOrg(t, d, "evidence")
	connID, evID, asmID := uuid.New(), uuid.New(), uuid.New()
	setup := []string{
		`INSERT INTO connections (id, org_id, kind, site_url, workflow_id) VALUES ('` + connID.String() + `', app_current_org(), 'cloud_token', 'https://x.atlassian.net', 'wf')`,
		`INSERT INTO evidence (id, org_id, connection_id, type, subject, payload, fingerprint, provenance) VALUES ('` + evID.String() + `', app_current_org(), '` + connID.String() + `', 'jira.project_inventory', 's', '{"projects":3}', 'fp1', '{}')`,
		`INSERT INTO assessments (id, org_id, name) VALUES ('` + asmID.String() + `', app_current_org(), 'SOC 2 2026')`,
		`INSERT INTO assessment_evidence (org_id, assessment_id, evidence_id) VALUES (app_current_org(), '` + asmID.String() + `', '` + evID.String() + `')`,
		`UPDATE assessments SET status = 'approved', approved_at = now(), approved_by = 'auditor' WHERE id = '` + asmID.String() + `'`,
	}
	for _, stmt := range setup {
		if err := execOn(ctx, d, org, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	for _, stmt := range []string{
		`UPDATE evidence SET payload = '{"projects":4}'`,
		`DELETE FROM evidence WHERE id = '` + evID.String() + `'`,
		`DELETE FROM assessment_evidence`,
		`UPDATE assessments SET status = 'draft', approved_at = NULL`,
	} {
		if err := execOn(ctx, d, org, stmt); err == nil {
			t.Errorf("app role: %q succeeded on approved evidence", stmt)
		}
		if _, err := testDB.Owner(t).Exec(ctx, stmt); err == nil {
			t.Errorf("owner: %q succeeded on approved evidence", stmt)
		}
	}
	var payload string
	if err := testDB.Owner(t).QueryRow(ctx, `SELECT payload::text FROM evidence WHERE id = $1`, evID).Scan(&payload); err != nil || payload != `{"projects": 3}` {
		t.Fatalf("evidence after tampering attempts: %q, %v", payload, err)
	}

	// Evidence not attached to an approved assessment can be deleted (retention), but never updated.
	ev2 := uuid.New()
	if err := execOn(ctx, d, org, `INSERT INTO evidence (id, org_id, connection_id, type, subject, payload, fingerprint, provenance) VALUES ('`+ev2.String()+`', app_current_org(), '`+connID.String()+`', 'jira.project_inventory', 's', '{}', 'fp2', '{}')`); err != nil {
		t.Fatal(err)
	}
	if err := execOn(ctx, d, org, `UPDATE evidence SET subject = 'x' WHERE id = '`+ev2.String()+`'`); err == nil {
		t.Error("unattached evidence was updated")
	}
	if err := execOn(ctx, d, org, `DELETE FROM evidence WHERE id = '`+ev2.String()+`'`); err != nil {
		t.Errorf("retention delete of unattached evidence: %v", err)
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	if err := db.Migrate(context.Background(), testDB.OwnerURL, discardLogger()); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
}

func TestSecurityDefinerEntryPoints(t *testing.T) {
	ctx := context.Background()
	d := testDB.Open(t)
	orgID := uuid.New()
	hash := []byte("definer-test-hash-" + uuid.NewString())
	err := d.InOrg(ctx, orgID, func(q *dbq.Queries) error {
		if _, err := q.CreateOrganization(ctx, dbq.CreateOrganizationParams{ID: orgID, Name: "definer"}); err != nil {
			return err
		}
		_, err := q.CreateAPIKey(ctx, dbq.CreateAPIKeyParams{OrgID: orgID, Name: "k", Role: "member", Prefix: "jck_x", KeyHash: hash})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	row, err := d.System().AuthenticateAPIKey(ctx, hash)
	if err != nil || row.OrgID != orgID || row.Role != "member" {
		t.Fatalf("authenticate: %+v %v", row, err)
	}
	if _, err := d.System().AuthenticateAPIKey(ctx, []byte("unknown")); !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("unknown key: %v, want no rows", err)
	}
	ids, err := d.System().ListOrganizationIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, id := range ids {
		found = found || id == orgID
	}
	if !found {
		t.Fatalf("app_org_ids does not list %s", orgID)
	}
}
