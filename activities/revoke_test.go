package activities_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/audit"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/db/dbq"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/jira"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

func TestRevokeCleanup(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	fx := seedFixture(t, srv)
	ref := h.connect(connections.KindCloudOAuth, srv, nil)
	ctx := context.Background()

	// A synced connection with an open alert and two dynamic webhooks recorded.
	if _, err := h.sync(ref, 1); err != nil {
		t.Fatal(err)
	}
	if err := h.acts.OpenAlert(ctx, activities.AlertInput{ConnectionRef: ref, Kind: activities.AlertKindStale, Message: "stale"}); err != nil {
		t.Fatal(err)
	}
	client, _, err := h.conns.Client(ctx, ref.OrgID, ref.ConnectionID, nil)
	if err != nil {
		t.Fatal(err)
	}
	regs, err := client.RegisterWebhooks(ctx, "https://app.example.com/webhooks/jira/x", []jira.WebhookSpec{
		{Events: []string{"jira:issue_updated"}, JQLFilter: "project = SEC"},
		{Events: []string{"jira:issue_created"}, JQLFilter: "project = APP"},
	})
	if err != nil || len(regs) != 2 || !regs[0].OK() || !regs[1].OK() {
		t.Fatalf("register webhooks: %+v %v", regs, err)
	}
	if _, err := h.owner().Exec(ctx, `UPDATE connections SET dynamic_webhook_ids = $2 WHERE id = $1`, ref.ConnectionID, []int64{regs[0].ID, regs[1].ID}); err != nil {
		t.Fatal(err)
	}

	// A sync in flight when the revoke lands: its activity is cancelled with the connection and
	// will never finish its run.
	if _, err := h.owner().Exec(ctx, `INSERT INTO connector_runs (org_id, connection_id, kind, idempotency_key, workflow_id, run_id, triggered_by, attempts)
		VALUES ($1, $2, 'sync', 'in-flight', 'wf', 'run', 'schedule', 1)`, ref.OrgID, ref.ConnectionID); err != nil {
		t.Fatal(err)
	}

	in := activities.RevokeInput{ConnectionRef: ref, ActorType: string(audit.ActorAPIKey), ActorID: "key-123"}
	env := h.env()
	for range 2 {
		if _, err := env.ExecuteActivity(activities.NameRevokeCleanup, in); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(srv.Webhooks()); n != 0 {
		t.Fatalf("%d dynamic webhooks left in Jira", n)
	}
	if n := h.count(`SELECT count(*) FROM connections WHERE id = $1 AND status = 'revoked' AND deleted_at IS NOT NULL
		AND sealed_credentials IS NULL AND webhook_secret_hash IS NULL AND cardinality(dynamic_webhook_ids) = 0 AND next_sync_at IS NULL`, ref.ConnectionID); n != 1 {
		t.Fatal("connection not revoked as specified")
	}
	if n := h.count(`SELECT count(*) FROM connector_runs WHERE connection_id = $1 AND outcome = 'running'`, ref.ConnectionID); n != 0 {
		t.Errorf("%d runs still running after the revoke", n)
	}
	if n := h.count(`SELECT count(*) FROM connector_runs WHERE connection_id = $1 AND idempotency_key = 'in-flight'
		AND outcome = 'failed' AND error_kind = 'revoked' AND finished_at IS NOT NULL`, ref.ConnectionID); n != 1 {
		t.Error("the run in flight was not ended as revoked")
	}
	if n := h.count(`SELECT count(*) FROM connector_runs WHERE connection_id = $1 AND kind = 'sync' AND outcome = 'success'`, ref.ConnectionID); n != 1 {
		t.Error("a finished run was changed by the revoke")
	}
	if n := h.count(`SELECT count(*) FROM evidence WHERE connection_id = $1`, ref.ConnectionID); n != fx.items() {
		t.Fatalf("%d evidence rows kept, want %d", n, fx.items())
	}
	if n := h.count(`SELECT count(*) FROM connector_runs WHERE connection_id = $1`, ref.ConnectionID); n != 2 {
		t.Fatal("runs were not kept")
	}
	if n := h.count(`SELECT count(*) FROM alerts WHERE connection_id = $1 AND state = 'open'`, ref.ConnectionID); n != 0 {
		t.Fatal("open alert survived revoke")
	}
	if n := h.count(`SELECT count(*) FROM audit_log WHERE target_id = $1 AND action = 'connection.revoke' AND actor_type = 'api_key'
		AND actor_id = 'key-123' AND metadata->>'webhooks_deleted' = 'true'`, ref.ConnectionID.String()); n != 1 {
		t.Fatalf("%d connection.revoke audit rows, want 1", n)
	}
	if n := h.count(`SELECT count(*) FROM audit_log WHERE target_id = $1 AND action = 'alert.resolve'`, ref.ConnectionID.String()); n != 1 {
		t.Fatalf("%d alert.resolve audit rows, want 1", n)
	}
	// No client can be built any more: the credentials are gone.
	if _, _, err := h.conns.Client(ctx, ref.OrgID, ref.ConnectionID, nil); err == nil {
		t.Fatal("a Jira client was built for a revoked connection")
	}

	// Bad actor types and unknown connections are refused.
	_, err = env.ExecuteActivity(activities.NameRevokeCleanup, activities.RevokeInput{ConnectionRef: ref, ActorType: "root"})
	if ae := appError(t, err); ae.Type() != failure.TypeInvalidInput {
		t.Fatalf("%v", err)
	}
	_, err = env.ExecuteActivity(activities.NameRevokeCleanup, activities.RevokeInput{ConnectionRef: activities.ConnectionRef{OrgID: h.org, ConnectionID: uuid.New()}})
	if ae := appError(t, err); ae.Type() != failure.TypeConfig || !ae.NonRetryable() {
		t.Fatalf("%v", err)
	}
}

func TestRevokeSucceedsWhenJiraIsDown(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	ref := h.connect(connections.KindCloudOAuth, srv, nil)
	if _, err := h.owner().Exec(context.Background(), `UPDATE connections SET dynamic_webhook_ids = '{42}' WHERE id = $1`, ref.ConnectionID); err != nil {
		t.Fatal(err)
	}
	mustFault(t, srv, "* /rest/api/3/webhook", jirasim.Fault{ErrorRate: 1, ErrorStatus: 500})
	if err := h.acts.RevokeCleanup(context.Background(), activities.RevokeInput{ConnectionRef: ref}); err != nil {
		t.Fatal(err)
	}
	// Revoked all the same; the webhook id stays recorded because it could not be deleted.
	if n := h.count(`SELECT count(*) FROM connections WHERE id = $1 AND status = 'revoked' AND sealed_credentials IS NULL
		AND dynamic_webhook_ids = '{42}'`, ref.ConnectionID); n != 1 {
		t.Fatal("revoke depended on Jira")
	}
}

func TestRetentionNeverDeletesAttachedOrCurrentEvidence(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	seedFixture(t, srv)
	ref := h.connect(connections.KindCloudToken, srv, nil)
	ctx := context.Background()
	if _, err := h.sync(ref, 1); err != nil {
		t.Fatal(err)
	}
	items := len(h.evidenceOf(ref.ConnectionID))

	// Age everything: evidence and its observations are 100 days old. The test owner may rewrite
	// history that the application never can (the immutability trigger is bypassed for the test
	// by disabling it in this session only).
	owner := h.owner()
	for _, stmt := range []string{
		`SET session_replication_role = replica`,
		`UPDATE evidence SET created_at = created_at - interval '100 days' WHERE connection_id = '` + ref.ConnectionID.String() + `'`,
		`UPDATE evidence_observation_spans SET first_observed_at = first_observed_at - interval '100 days',
		 last_observed_at = last_observed_at - interval '100 days'
		 WHERE evidence_id IN (SELECT id FROM evidence WHERE connection_id = '` + ref.ConnectionID.String() + `')`,
		`SET session_replication_role = origin`,
	} {
		if _, err := owner.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}

	// Attach two rows to an approved assessment and one to a draft.
	var ids []uuid.UUID
	rows, err := owner.Query(ctx, `SELECT id FROM evidence WHERE connection_id = $1 ORDER BY type, subject LIMIT 3`, ref.ConnectionID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	err = h.db.InOrg(ctx, h.org, func(q *dbq.Queries) error {
		approved, err := q.CreateAssessment(ctx, dbq.CreateAssessmentParams{OrgID: h.org, Name: "SOC 2 2026"})
		if err != nil {
			return err
		}
		draft, err := q.CreateAssessment(ctx, dbq.CreateAssessmentParams{OrgID: h.org, Name: "ISO draft"})
		if err != nil {
			return err
		}
		for i, id := range ids {
			a := approved.ID
			if i == 2 {
				a = draft.ID
			}
			if _, err := q.AttachEvidence(ctx, dbq.AttachEvidenceParams{OrgID: h.org, AssessmentID: a, EvidenceID: id}); err != nil {
				return err
			}
		}
		_, err = q.ApproveAssessment(ctx, dbq.ApproveAssessmentParams{ID: approved.ID, ApprovedBy: ptrTo("auditor")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// A too-short window is refused.
	env := h.env()
	_, err = env.ExecuteActivity(activities.NameRetentionPurge, activities.RetentionInput{OlderThan: time.Hour})
	if ae := appError(t, err); ae.Type() != failure.TypeInvalidInput {
		t.Fatalf("%v", err)
	}

	// A 365-day window keeps everything; a 90-day window purges the unattached aged rows.
	purge := func(window time.Duration) activities.RetentionResult {
		t.Helper()
		val, err := env.ExecuteActivity(activities.NameRetentionPurge, activities.RetentionInput{OlderThan: window})
		if err != nil {
			t.Fatal(err)
		}
		var res activities.RetentionResult
		if err := val.Get(&res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := purge(365 * 24 * time.Hour); res.Purged != 0 {
		t.Fatalf("365-day window purged %d rows", res.Purged)
	}
	res := purge(90 * 24 * time.Hour)
	if res.Purged != int64(items-3) || res.OrgsPurged != 1 || res.Orgs < 1 {
		t.Fatalf("result %+v, want %d purged in one org", res, items-3)
	}
	var left []uuid.UUID
	rows, err = owner.Query(ctx, `SELECT id FROM evidence WHERE connection_id = $1`, ref.ConnectionID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		left = append(left, id)
	}
	rows.Close()
	if len(left) != 3 {
		t.Fatalf("%d rows left, want the 3 attached ones", len(left))
	}
	for _, id := range ids {
		found := false
		for _, l := range left {
			found = found || l == id
		}
		if !found {
			t.Fatalf("attached evidence %s was purged", id)
		}
	}
	if n := h.count(`SELECT count(*) FROM audit_log WHERE org_id = $1 AND action = 'evidence.retention_purge' AND (metadata->>'purged')::int = $2`, h.org, items-3); n != 1 {
		t.Fatalf("%d retention audit rows", n)
	}

	// Current evidence is kept however old its first observation: sync again (observes the
	// surviving rows and re-creates the purged content as new rows), then age only creation.
	if _, err := h.sync(ref, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Exec(ctx, `UPDATE evidence SET created_at = created_at - interval '100 days' WHERE connection_id = $1`, ref.ConnectionID); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Exec(ctx, `SET session_replication_role = origin`); err != nil {
		t.Fatal(err)
	}
	if res := purge(90 * 24 * time.Hour); res.Purged != 0 {
		t.Fatalf("purged %d rows that the last sync observed", res.Purged)
	}
}

// TestRetentionPurgesSpentWebhookDeliveries: deliveries applied (or stored before the inbox)
// longer than WebhookDedupeWindow ago go; pending changes stay however old, recent deliveries stay
// as accept-once records, and another organization's deliveries are untouched.
func TestRetentionPurgesSpentWebhookDeliveries(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	ref := h.connect(connections.KindCloudToken, srv, nil)
	other := newHarness(t)
	otherRef := other.connect(connections.KindCloudToken, srv, nil)
	ctx := context.Background()
	owner := h.owner()
	old := time.Now().Add(-activities.WebhookDedupeWindow - time.Hour)
	recent := time.Now().Add(-activities.WebhookDedupeWindow + time.Hour)
	change := `{"delivery_id":"x"}`
	insert := func(org, conn uuid.UUID, id string, received time.Time, withChange, applied bool) {
		t.Helper()
		var ch, at any
		if withChange {
			ch = change
		}
		if applied {
			at = received.Add(time.Minute)
		}
		if _, err := owner.Exec(ctx, `INSERT INTO webhook_deliveries (org_id, connection_id, delivery_id, received_at, change, applied_at)
			VALUES ($1, $2, $3, $4, $5::jsonb, $6)`, org, conn, id, received, ch, at); err != nil {
			t.Fatal(err)
		}
	}
	insert(h.org, ref.ConnectionID, "old-applied", old, true, true)                // purged
	insert(h.org, ref.ConnectionID, "old-pre-inbox", old, false, false)            // purged: accept-once record only
	insert(h.org, ref.ConnectionID, "old-pending", old, true, false)               // kept: the inbox
	insert(h.org, ref.ConnectionID, "recent-applied", recent, true, true)          // kept: inside the window
	insert(other.org, otherRef.ConnectionID, "other-old-applied", old, true, true) // the other org's pass
	for i := range 3 {
		insert(h.org, ref.ConnectionID, fmt.Sprintf("old-applied-%d", i), old.Add(-time.Duration(i)*time.Hour), true, true) // purged
	}

	val, err := h.env().ExecuteActivity(activities.NameRetentionPurge, activities.RetentionInput{OlderThan: 90 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var res activities.RetentionResult
	if err := val.Get(&res); err != nil {
		t.Fatal(err)
	}
	// The pass covers every organization: the other org's spent delivery goes too.
	if res.DeliveriesPurged != 6 {
		t.Fatalf("result %+v, want 6 deliveries purged", res)
	}
	rows, err := owner.Query(ctx, `SELECT delivery_id FROM webhook_deliveries WHERE connection_id = ANY($1) ORDER BY delivery_id`,
		[]uuid.UUID{ref.ConnectionID, otherRef.ConnectionID})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		left = append(left, id)
	}
	rows.Close()
	if got := strings.Join(left, ","); got != "old-pending,recent-applied" {
		t.Fatalf("deliveries left: %s", got)
	}
	// A second pass finds nothing more.
	val, err = h.env().ExecuteActivity(activities.NameRetentionPurge, activities.RetentionInput{OlderThan: 90 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := val.Get(&res); err != nil || res.DeliveriesPurged != 0 {
		t.Fatalf("second pass %+v, %v", res, err)
	}
}

// Pending webhook changes of a revoked connection can never be applied: revoke deletes them and
// counts them in its audit row, and retention deletes those of connections revoked earlier, in
// audited batches. Applied deliveries (the accept-once records) and other connections' inboxes stay.
func TestRevokedConnectionsLeaveNoPendingInbox(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	revoked := h.connect(connections.KindCloudToken, srv, nil)
	legacy := h.connect(connections.KindCloudToken, srv, nil)
	live := h.connect(connections.KindCloudToken, srv, nil)
	ctx := context.Background()
	owner := h.owner()
	insert := func(conn uuid.UUID, id string, applied bool) {
		t.Helper()
		var at any
		if applied {
			at = time.Now()
		}
		_, err := owner.Exec(ctx, `INSERT INTO webhook_deliveries (org_id, connection_id, delivery_id, change, applied_at)
			VALUES ($1, $2, $3, '{"delivery_id":"x"}'::jsonb, $4)`, h.org, conn, id, at)
		require.NoError(t, err)
	}
	for _, c := range []uuid.UUID{revoked.ConnectionID, legacy.ConnectionID, live.ConnectionID} {
		insert(c, c.String()+"-pending-1", false)
		insert(c, c.String()+"-pending-2", false)
		insert(c, c.String()+"-applied", true)
	}
	pending := func(conn uuid.UUID) (pending, all int) {
		require.NoError(t, owner.QueryRow(ctx, `SELECT count(*) FILTER (WHERE applied_at IS NULL), count(*) FROM webhook_deliveries WHERE connection_id = $1`, conn).Scan(&pending, &all))
		return pending, all
	}

	_, err := h.env().ExecuteActivity(activities.NameRevokeCleanup, activities.RevokeInput{ConnectionRef: revoked, ActorType: string(audit.ActorAPIKey), ActorID: "key-1"})
	require.NoError(t, err)
	p, all := pending(revoked.ConnectionID)
	assert.Equal(t, 0, p, "revoke leaves pending changes behind")
	assert.Equal(t, 1, all, "revoke keeps the applied accept-once record")
	var discarded int
	require.NoError(t, owner.QueryRow(ctx, `SELECT (metadata->>'pending_webhook_changes_discarded')::int FROM audit_log
		WHERE action = 'connection.revoke' AND target_id = $1`, revoked.ConnectionID.String()).Scan(&discarded))
	assert.Equal(t, 2, discarded)

	// A connection revoked before revoke cleaned its inbox: only the revoked state, as it was.
	_, err = owner.Exec(ctx, `UPDATE connections SET status = 'revoked', deleted_at = now(), sealed_credentials = NULL WHERE id = $1`, legacy.ConnectionID)
	require.NoError(t, err)
	val, err := h.env().ExecuteActivity(activities.NameRetentionPurge, activities.RetentionInput{OlderThan: 90 * 24 * time.Hour})
	require.NoError(t, err)
	var res activities.RetentionResult
	require.NoError(t, val.Get(&res))
	assert.EqualValues(t, 2, res.RevokedInboxDiscarded)
	p, all = pending(legacy.ConnectionID)
	assert.Equal(t, 0, p)
	assert.Equal(t, 1, all)
	p, all = pending(live.ConnectionID)
	assert.Equal(t, 2, p, "a live connection's inbox is never touched")
	assert.Equal(t, 3, all)
	var meta map[string]any
	require.NoError(t, owner.QueryRow(ctx, `SELECT metadata FROM audit_log WHERE org_id = $1 AND action = 'webhook_inbox.discard'`, h.org).Scan(&meta))
	assert.EqualValues(t, 2, meta["discarded"])
}
