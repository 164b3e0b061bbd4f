package activities_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/connections"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/jirasim"
)

func (h *harness) load(ref activities.ConnectionRef) activities.ConnectionSnapshot {
	h.t.Helper()
	val, err := h.env().ExecuteActivity(activities.NameLoadConnection, ref)
	if err != nil {
		h.t.Fatal(err)
	}
	var snap activities.ConnectionSnapshot
	if err := val.Get(&snap); err != nil {
		h.t.Fatal(err)
	}
	h.record(snap, nil)
	return snap
}

func TestLoadConnection(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	cfg := connections.DefaultConfig()
	cfg.SyncCadence = connections.Duration(6 * time.Hour)
	cfg.StaleThreshold = connections.Duration(12 * time.Hour)
	seedFixture(t, srv)
	ref := h.connect(connections.KindCloudToken, srv, &cfg)

	snap := h.load(ref)
	if snap.Revoked || snap.Status != "active" || snap.SyncCadence != 6*time.Hour || snap.StaleThreshold != 12*time.Hour ||
		snap.LastSuccessAt != nil || snap.CreatedAt.IsZero() {
		t.Fatalf("snapshot %+v", snap)
	}
	if snap.LastSync != nil || snap.LastSyncAt != nil || snap.Stale || snap.LastErrorKind != "" {
		t.Fatalf("a new connection has no stored state to resume: %+v", snap)
	}
	if _, err := h.sync(ref, 1); err != nil {
		t.Fatal(err)
	}
	if snap = h.load(ref); snap.LastSuccessAt == nil || snap.LastSyncAt == nil {
		t.Fatal("last success not loaded after a sync")
	}
	require.Equal(t, &activities.SyncRunRecord{Seq: 1, Outcome: activities.OutcomeSuccess, Trigger: "schedule"}, snap.LastSync)

	// The highest sequence number counts (numerically, not as text), whatever ran last; an
	// interrupted run shows as running.
	_, err := h.sync(ref, 10)
	require.NoError(t, err)
	_, err = h.sync(ref, 9)
	require.NoError(t, err)
	require.Equal(t, int64(10), h.load(ref).LastSync.Seq)
	require.NoError(t, srv.SetFault("GET /rest/api/3/project/search", jirasim.Fault{ErrorRate: 1, ErrorStatus: 500}))
	_, err = h.sync(ref, 11)
	require.Error(t, err)
	srv.ClearFaults()
	snap = h.load(ref)
	require.Equal(t, &activities.SyncRunRecord{Seq: 11, Outcome: activities.OutcomeRunning, Trigger: "schedule"}, snap.LastSync)
	// Runs of other workflow ids (a benchmark's direct calls) are not the workflow's numbering.
	other := activities.SyncInput{ConnectionRef: ref, Seq: 50, Trigger: "schedule", WorkflowID: "bench-bare/" + ref.ConnectionID.String(), RunID: "r"}
	_, err = h.env().ExecuteActivity(activities.NameSyncEvidence, other)
	require.NoError(t, err)
	require.Equal(t, int64(11), h.load(ref).LastSync.Seq)

	// Missing (or another org's) connections and revoked ones are "revoked", not errors.
	if snap := h.load(activities.ConnectionRef{OrgID: h.org, ConnectionID: uuid.New()}); !snap.Revoked {
		t.Fatalf("missing connection: %+v", snap)
	}
	if err := h.acts.RevokeCleanup(context.Background(), activities.RevokeInput{ConnectionRef: ref}); err != nil {
		t.Fatal(err)
	}
	if snap := h.load(ref); !snap.Revoked || snap.Status != "revoked" {
		t.Fatalf("revoked connection: %+v", snap)
	}
}

func (h *harness) setState(u activities.StateUpdate) error {
	h.t.Helper()
	_, err := h.env().ExecuteActivity(activities.NameSetConnectionState, u)
	h.record(nil, err)
	return err
}

func TestSetConnectionState(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	ref := h.connect(connections.KindCloudToken, srv, nil)
	next := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	success := time.Date(2029, 12, 31, 0, 0, 0, 0, time.UTC)

	stale := activities.StateUpdate{ConnectionRef: ref, Status: "active", Stale: true, NextSyncAt: &next, LastSuccessAt: &success,
		LastError: "jira project.count: 502 server_error", LastErrorKind: failure.TypeTransient, Action: "connection.stale"}
	for range 2 { // a retried activity
		if err := h.setState(stale); err != nil {
			t.Fatal(err)
		}
	}
	if n := h.count(`SELECT count(*) FROM connections WHERE id = $1 AND stale AND status = 'active' AND next_sync_at = $2
		AND last_success_at = $3 AND last_error_kind = 'transient' AND last_error LIKE 'jira project.count%'`, ref.ConnectionID, next, success); n != 1 {
		t.Fatal("state not mirrored")
	}
	auditCount := func(action string) int {
		return h.count(`SELECT count(*) FROM audit_log WHERE target_id = $1 AND action = $2`, ref.ConnectionID.String(), action)
	}
	if n := auditCount("connection.stale"); n != 1 {
		t.Fatalf("%d connection.stale audit rows after a retried update, want 1", n)
	}

	// needs_reauth, then recovery: distinct events are all audited; nil fields clear next sync and
	// the error, but never move last success backwards.
	if err := h.setState(activities.StateUpdate{ConnectionRef: ref, Status: "needs_reauth", Stale: true,
		LastErrorKind: failure.TypeReauthRequired, LastError: "credentials rejected", Action: "connection.needs_reauth"}); err != nil {
		t.Fatal(err)
	}
	if err := h.setState(activities.StateUpdate{ConnectionRef: ref, Status: "active", Stale: false, Action: "connection.recovered"}); err != nil {
		t.Fatal(err)
	}
	if err := h.setState(activities.StateUpdate{ConnectionRef: ref, Status: "active", Stale: true, Action: "connection.stale"}); err != nil {
		t.Fatal(err)
	}
	if auditCount("connection.needs_reauth") != 1 || auditCount("connection.recovered") != 1 || auditCount("connection.stale") != 2 {
		t.Fatal("state change audit rows missing")
	}
	if n := h.count(`SELECT count(*) FROM connections WHERE id = $1 AND next_sync_at IS NULL AND last_error IS NULL
		AND last_success_at = $2 AND stale`, ref.ConnectionID, success); n != 1 {
		t.Fatal("state after recovery not mirrored")
	}

	// An update without an action writes no audit row.
	before := h.count(`SELECT count(*) FROM audit_log WHERE target_id = $1`, ref.ConnectionID.String())
	if err := h.setState(activities.StateUpdate{ConnectionRef: ref, Status: "active", NextSyncAt: &next}); err != nil {
		t.Fatal(err)
	}
	if after := h.count(`SELECT count(*) FROM audit_log WHERE target_id = $1`, ref.ConnectionID.String()); after != before {
		t.Fatal("an update without action was audited")
	}

	// Bad input is refused as non-retryable.
	for _, bad := range []activities.StateUpdate{
		{ConnectionRef: ref, Status: "revoked"},
		{ConnectionRef: ref, Status: "paused"},
		{ConnectionRef: ref, Status: "active", Action: "DROP TABLE"},
		{ConnectionRef: activities.ConnectionRef{OrgID: h.org}, Status: "active"},
	} {
		err := h.setState(bad)
		if ae := appError(t, err); ae.Type() != failure.TypeInvalidInput || !ae.NonRetryable() {
			t.Errorf("%+v: %v", bad, err)
		}
	}

	// A revoked connection is never resurrected.
	if err := h.acts.RevokeCleanup(context.Background(), activities.RevokeInput{ConnectionRef: ref}); err != nil {
		t.Fatal(err)
	}
	for _, status := range []string{"active", "revoked"} {
		if err := h.setState(activities.StateUpdate{ConnectionRef: ref, Status: status, Action: "connection.recovered"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := h.count(`SELECT count(*) FROM connections WHERE id = $1 AND status = 'revoked' AND deleted_at IS NOT NULL`, ref.ConnectionID); n != 1 {
		t.Fatal("SetConnectionState resurrected a revoked connection")
	}
	if auditCount("connection.recovered") != 1 {
		t.Fatal("a state change of a revoked connection was audited")
	}
}

func TestAlertsAreIdempotent(t *testing.T) {
	h := newHarness(t)
	srv := startSim(t, jirasim.Cloud, h.log)
	ref := h.connect(connections.KindCloudToken, srv, nil)
	env := h.env()
	in := activities.AlertInput{ConnectionRef: ref, Kind: activities.AlertKindStale, Message: "no successful sync for 48h"}
	run := func(name string, in activities.AlertInput) {
		t.Helper()
		if _, err := env.ExecuteActivity(name, in); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	alerts := func(state string) int {
		return h.count(`SELECT count(*) FROM alerts WHERE connection_id = $1 AND kind = $2 AND state = $3`, ref.ConnectionID, in.Kind, state)
	}
	audits := func(action string) int {
		return h.count(`SELECT count(*) FROM audit_log WHERE target_id = $1 AND action = $2`, ref.ConnectionID.String(), action)
	}

	run(activities.NameOpenAlert, in)
	run(activities.NameOpenAlert, in)
	if alerts("open") != 1 || alerts("resolved") != 0 || audits("alert.open") != 1 {
		t.Fatalf("after opening twice: %d open, %d alert.open audit rows", alerts("open"), audits("alert.open"))
	}
	if v := counterValue(t, h.reg, "jiraconnect_alerts_opened_total", "kind", in.Kind); v != 1 {
		t.Fatalf("opened counter %v, want 1", v)
	}
	if !containsLog(h.logs.String(), "alert opened", in.Kind) {
		t.Fatal("no structured log line for the opened alert")
	}

	run(activities.NameResolveAlert, in)
	run(activities.NameResolveAlert, in)
	if alerts("open") != 0 || alerts("resolved") != 1 || audits("alert.resolve") != 1 {
		t.Fatalf("after resolving twice: %d open, %d resolved, %d audit rows", alerts("open"), alerts("resolved"), audits("alert.resolve"))
	}
	if v := counterValue(t, h.reg, "jiraconnect_alerts_resolved_total", "kind", in.Kind); v != 1 {
		t.Fatalf("resolved counter %v, want 1", v)
	}

	// Stale again later: a second alert row opens (history is kept), still only one open.
	run(activities.NameOpenAlert, in)
	run(activities.NameOpenAlert, in)
	if alerts("open") != 1 || alerts("resolved") != 1 {
		t.Fatalf("re-open: %d open, %d resolved", alerts("open"), alerts("resolved"))
	}

	// Bad kinds are refused; a revoked connection gets no new alert and loses its open one.
	_, err := env.ExecuteActivity(activities.NameOpenAlert, activities.AlertInput{ConnectionRef: ref, Kind: "Stale Alert!"})
	if ae := appError(t, err); ae.Type() != failure.TypeInvalidInput {
		t.Fatalf("%v", err)
	}
	if err := h.acts.RevokeCleanup(context.Background(), activities.RevokeInput{ConnectionRef: ref}); err != nil {
		t.Fatal(err)
	}
	run(activities.NameOpenAlert, in)
	if alerts("open") != 0 || alerts("resolved") != 2 {
		t.Fatalf("after revoke: %d open, %d resolved", alerts("open"), alerts("resolved"))
	}
}
