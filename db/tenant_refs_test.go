package db_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tenantRows are one organization's parent rows, written by the owner.
type tenantRows struct {
	org, conn, run, evidence, assessment, finding uuid.UUID
}

func seedTenant(t *testing.T, ctx context.Context, owner *pgx.Conn) tenantRows {
	t.Helper()
	r := tenantRows{org: uuid.New(), conn: uuid.New(), run: uuid.New(), evidence: uuid.New(), assessment: uuid.New(), finding: uuid.New()}
	for _, stmt := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO organizations (id, name) VALUES ($1, 'tenant')`, []any{r.org}},
		{`INSERT INTO connections (id, org_id, kind, site_url, workflow_id) VALUES ($1, $2, 'cloud_token', 'https://x.atlassian.net', 'wf')`, []any{r.conn, r.org}},
		{`INSERT INTO connector_runs (id, org_id, connection_id, kind, idempotency_key, workflow_id, run_id) VALUES ($1, $2, $3, 'sync', $4, 'wf', 'run')`, []any{r.run, r.org, r.conn, r.run.String()}},
		{`INSERT INTO evidence (id, org_id, connection_id, type, subject, payload, fingerprint, provenance) VALUES ($1, $2, $3, 'jira.project_inventory', 's', '{}', $4, '{}')`, []any{r.evidence, r.org, r.conn, r.evidence.String()}},
		{`INSERT INTO assessments (id, org_id, name) VALUES ($1, $2, 'SOC 2')`, []any{r.assessment, r.org}},
		{`INSERT INTO findings (id, org_id, external_id, title, severity, status) VALUES ($1, $2, $3, 't', 'high', 'open')`, []any{r.finding, r.org, r.finding.String()}},
	} {
		_, err := owner.Exec(ctx, stmt.sql, stmt.args...)
		require.NoError(t, err, stmt.sql)
	}
	return r
}

// Every reference between tenant rows is scoped to the organization in the schema itself: even
// the owner, whom row-level security does not confine, cannot make a row of one organization point
// at a row of another — by insert or by update.
func TestCrossOrganizationReferencesAreRefusedByTheSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner := testDB.Owner(t)
	a, b := seedTenant(t, ctx, owner), seedTenant(t, ctx, owner)
	_, err := owner.Exec(ctx, `INSERT INTO alerts (org_id, connection_id, kind, message) VALUES ($1, $2, 'stale', 'm')`, a.org, a.conn)
	require.NoError(t, err)
	cases := []struct {
		name string
		sql  string
		args []any
	}{
		{"a run for another org's connection", `INSERT INTO connector_runs (org_id, connection_id, kind, idempotency_key, workflow_id, run_id) VALUES ($1, $2, 'sync', 'k-x', 'wf', 'r')`, []any{a.org, b.conn}},
		{"evidence of another org's connection", `INSERT INTO evidence (org_id, connection_id, type, subject, payload, fingerprint, provenance) VALUES ($1, $2, 't', 's', '{}', 'fp-x', '{}')`, []any{a.org, b.conn}},
		{"an observation of another org's evidence", `INSERT INTO evidence_observation_spans (org_id, evidence_id, first_run_id, last_run_id, first_observed_at, last_observed_at, observations, counts_as_evidence) VALUES ($1, $2, $3, $3, now(), now(), 1, true)`, []any{a.org, b.evidence, a.run}},
		{"an observation by another org's run", `INSERT INTO evidence_observation_spans (org_id, evidence_id, first_run_id, last_run_id, first_observed_at, last_observed_at, observations, counts_as_evidence) VALUES ($1, $2, $3, $3, now(), now(), 1, true)`, []any{a.org, a.evidence, b.run}},
		{"an assessment holding another org's evidence", `INSERT INTO assessment_evidence (org_id, assessment_id, evidence_id) VALUES ($1, $2, $3)`, []any{a.org, a.assessment, b.evidence}},
		{"evidence attached to another org's assessment", `INSERT INTO assessment_evidence (org_id, assessment_id, evidence_id) VALUES ($1, $2, $3)`, []any{a.org, b.assessment, a.evidence}},
		{"a finding linked to another org's connection", `INSERT INTO finding_issue_links (org_id, finding_id, connection_id, state) VALUES ($1, $2, $3, 'creating')`, []any{a.org, a.finding, b.conn}},
		{"a link for another org's finding", `INSERT INTO finding_issue_links (org_id, finding_id, connection_id, state) VALUES ($1, $2, $3, 'creating')`, []any{a.org, b.finding, a.conn}},
		{"a queue item for another org's connection", `INSERT INTO finding_sync_queue (org_id, connection_id, finding_id) VALUES ($1, $2, $3)`, []any{a.org, b.conn, a.finding}},
		{"a queue item for another org's finding", `INSERT INTO finding_sync_queue (org_id, connection_id, finding_id) VALUES ($1, $2, $3)`, []any{a.org, a.conn, b.finding}},
		{"an alert on another org's connection", `INSERT INTO alerts (org_id, connection_id, kind, message) VALUES ($1, $2, 'stale', 'm')`, []any{a.org, b.conn}},
		{"a webhook delivery for another org's connection", `INSERT INTO webhook_deliveries (org_id, connection_id, delivery_id) VALUES ($1, $2, 'd-x')`, []any{a.org, b.conn}},
		{"an OAuth state for another org's connection", `INSERT INTO oauth_states (state_hash, org_id, connection_id, expires_at) VALUES ('\x01', $1, $2, now())`, []any{a.org, b.conn}},
		{"a run moved to another org", `UPDATE connector_runs SET org_id = $2 WHERE id = $1`, []any{a.run, b.org}},
		{"an alert moved to another org", `UPDATE alerts SET org_id = $2 WHERE connection_id = $1`, []any{a.conn, b.org}},
	}
	for _, tc := range cases {
		_, err := owner.Exec(ctx, tc.sql, tc.args...)
		var pgErr *pgconn.PgError
		if assert.True(t, errors.As(err, &pgErr), "%s: accepted (err %v)", tc.name, err) {
			assert.Equal(t, "23503", pgErr.Code, "%s: want foreign_key_violation, got %s %s", tc.name, pgErr.Code, pgErr.Message)
		}
	}
	// The same references within one organization are fine.
	_, err = owner.Exec(ctx, `INSERT INTO finding_issue_links (org_id, finding_id, connection_id, state) VALUES ($1, $2, $3, 'creating')`, a.org, a.finding, a.conn)
	require.NoError(t, err)
	_, err = owner.Exec(ctx, `INSERT INTO assessment_evidence (org_id, assessment_id, evidence_id) VALUES ($1, $2, $3)`, a.org, a.assessment, a.evidence)
	require.NoError(t, err)
}

// The migration runs on a database that already holds tenants' rows, and back down and up again.
func TestTenantScopedReferencesMigrateBothWays(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newMigrationDB(t, "refsmig")
	m.upTo(t, 7)
	conn := m.conn
	seedTenant(t, ctx, conn)

	constraints := func() int {
		var n int
		require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND array_length(conkey, 1) = 2
			AND conrelid::regclass::text IN ('connector_runs','evidence','evidence_observations','assessment_evidence','finding_issue_links',
			'finding_sync_queue','alerts','webhook_deliveries','oauth_states')`).Scan(&n))
		return n
	}
	require.Zero(t, constraints())
	_, err := m.provider.UpTo(ctx, 8)
	require.NoError(t, err, "the migration runs over existing rows")
	assert.Equal(t, 13, constraints(), "composite foreign keys after the migration")
	_, err = m.provider.DownTo(ctx, 7)
	require.NoError(t, err)
	assert.Zero(t, constraints())
	m.upTo(t, 8)
	assert.Equal(t, 13, constraints())
}
