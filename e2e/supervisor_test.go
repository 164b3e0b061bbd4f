package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/jiraconnect/jiraconnect/activities"
	"github.com/jiraconnect/jiraconnect/failure"
	"github.com/jiraconnect/jiraconnect/jirasim"
	"github.com/jiraconnect/jiraconnect/workflowclient"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// workflows returns the shared starter as the worker and the API build it.
func (s *stack) workflows() *workflowclient.Client {
	return workflowclient.New(s.tc, s.core.Config.TaskQueue, s.core.Config.FindingReconcileInterval)
}

// supervisable counts the organizations and the connections the supervisor examines. The
// package's database also holds earlier tests' connections, whose workflows lived in those tests'
// Temporal servers: to this stack's Temporal they are connections without a workflow, so the
// supervisor starts them too (harmlessly: their credentials were sealed under another test's
// keyring and cannot be opened here, so they make no Jira call).
func (s *stack) supervisable() (orgs, conns int) {
	s.t.Helper()
	owner := testDB.Owner(s.t)
	require.NoError(s.t, owner.QueryRow(s.ctx, `SELECT count(*) FROM organizations`).Scan(&orgs))
	require.NoError(s.t, owner.QueryRow(s.ctx,
		`SELECT count(*) FROM connections WHERE status IN ('active', 'needs_reauth') AND deleted_at IS NULL`).Scan(&conns))
	return orgs, conns
}

// tokenConnection creates a cloud_token connection to the Cloud simulator and returns its id.
func (s *stack) tokenConnection(key string) string {
	s.t.Helper()
	r := s.call("POST", "/v1/connections", key, map[string]any{"kind": "cloud_token", "site_url": s.cloud.URL,
		"email": "admin@example.com", "api_token": s.cloud.APIToken("admin@example.com")})
	require.Equal(s.t, 201, r.status, r.raw)
	return r.str("id")
}

// connection reads a connection through the API.
func (s *stack) connection(key, id string) reply {
	s.t.Helper()
	r := s.call("GET", "/v1/connections/"+id, key, nil)
	require.Equal(s.t, 200, r.status, r.raw)
	return r
}

// settled waits until the connection's workflow has mirrored its schedule after a sync.
func (s *stack) settled(key, id string) reply {
	s.t.Helper()
	var r reply
	s.eventually("sync mirrored", 20*time.Second, func() bool {
		r = s.connection(key, id)
		return r.body["next_sync_at"] != nil && r.body["last_success_at"] != nil
	})
	return r
}

// terminate ends a connection's workflow behind the service's back and waits until visibility
// no longer lists it as running (as it would be by the supervisor's next pass).
func (s *stack) terminate(ids ...string) {
	s.t.Helper()
	uids := make([]uuid.UUID, len(ids))
	for i, id := range ids {
		require.NoError(s.t, s.tc.TerminateWorkflow(s.ctx, "jira-connection/"+id, "", "deleted behind the service's back"))
		uids[i] = uuid.MustParse(id)
	}
	s.eventually("terminated workflows leave visibility's running list", 20*time.Second, func() bool {
		running, err := s.workflows().Running(s.ctx, uids)
		return err == nil && len(running) == 0
	})
}

func (s *stack) describe(id string) activities.WorkflowRun {
	s.t.Helper()
	run, err := s.workflows().Describe(s.ctx, uuid.MustParse(id))
	require.NoError(s.t, err)
	return run
}

// state queries a connection workflow.
func (s *stack) state(id string) workflows.ConnectionState {
	s.t.Helper()
	v, err := s.tc.QueryWorkflow(s.ctx, "jira-connection/"+id, "", workflows.QueryState)
	require.NoError(s.t, err)
	var st workflows.ConnectionState
	require.NoError(s.t, v.Get(&st))
	return st
}

// restartAudits returns the connection.workflow_restarted rows of the org, by connection id.
func (s *stack) restartAudits(key string) map[string][]map[string]any {
	s.t.Helper()
	r := s.call("GET", "/v1/audit-log?limit=200", key, nil)
	require.Equal(s.t, 200, r.status, r.raw)
	out := map[string][]map[string]any{}
	for _, e := range r.body["entries"].([]any) {
		entry := e.(map[string]any)
		if entry["action"] == activities.ActionWorkflowRestarted {
			out[entry["target_id"].(string)] = append(out[entry["target_id"].(string)], entry)
		}
	}
	return out
}

func timeOf(t *testing.T, v any) time.Time {
	t.Helper()
	s, ok := v.(string)
	require.True(t, ok, "not a timestamp: %v", v)
	ts, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return ts
}

// TestSupervisorRestartsLostWorkflowsWithTheirState deletes (terminates) connection workflows
// behind the service's back and has the connection-supervisor schedule — created by the worker
// at start, as in production — bring them back: each comes back with its connection's state
// (schedule, last success, sync numbering; needs_reauth keeps waiting for re-authorization) and a
// connection.workflow_restarted audit row, while pending_auth and revoked connections are left
// alone.
func TestSupervisorRestartsLostWorkflowsWithTheirState(t *testing.T) {
	s := newStack(t)
	key := s.org("supervised")

	// active: synced once, idle until its next scheduled sync.
	active := s.tokenConnection(key)
	s.waitSuccessfulSyncs(key, active, 1)
	before := s.settled(key, active)
	beforeState := s.state(active)
	require.Equal(t, int64(1), beforeState.Seq)

	// needs_reauth: its first sync was refused by Jira.
	require.NoError(t, s.cloud.SetFault("GET /rest/api/3/project/search", jirasim.Fault{ErrorRate: 1, ErrorStatus: 401}))
	reauth := s.tokenConnection(key)
	s.eventually("needs_reauth", 30*time.Second, func() bool { return s.connection(key, reauth).str("status") == "needs_reauth" })
	s.cloud.ClearFaults()
	reauthRuns := len(s.runs(key, reauth))

	// revoked while its workflow was gone: the API revokes without a workflow.
	revoked := s.tokenConnection(key)
	s.waitSuccessfulSyncs(key, revoked, 1)
	s.terminate(revoked)
	r := s.call("DELETE", "/v1/connections/"+revoked, key, nil)
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, "revoked", r.str("status"))
	revokedRun := s.describe(revoked)

	// pending_auth: an OAuth connection whose user never consented has no workflow.
	r = s.call("POST", "/v1/connections", key, map[string]any{"kind": "cloud_oauth", "site_url": s.cloud.URL})
	require.Equal(t, 201, r.status, r.raw)
	require.Equal(t, "pending_auth", r.str("status"))
	pending := r.str("id")

	activeRun, reauthRun := s.describe(active), s.describe(reauth)
	s.terminate(active, reauth)

	// Run the schedule now, as its interval would.
	h := s.tc.ScheduleClient().GetHandle(s.ctx, workflows.SupervisorScheduleID)
	desc, err := h.Describe(s.ctx)
	require.NoError(t, err, "the worker creates the connection-supervisor schedule")
	require.Equal(t, s.core.Config.SupervisorInterval, desc.Schedule.Spec.Intervals[0].Every)
	require.NoError(t, h.Trigger(s.ctx, client.ScheduleTriggerOptions{}))
	var pass client.ScheduleActionResult
	s.eventually("a supervisor pass", 20*time.Second, func() bool {
		d, err := h.Describe(s.ctx)
		if err != nil || len(d.Info.RecentActions) == 0 {
			return false
		}
		pass = d.Info.RecentActions[0]
		return true
	})
	var res activities.SuperviseResult
	require.NoError(t, s.tc.GetWorkflow(s.ctx, pass.StartWorkflowResult.WorkflowID, pass.StartWorkflowResult.FirstExecutionRunID).Get(s.ctx, &res))
	orgs, supervised := s.supervisable()
	assert.Equal(t, activities.SuperviseResult{Orgs: orgs, Checked: supervised, Restarted: supervised}, res,
		"every active and needs_reauth connection is examined and, having no workflow in this Temporal, started; pending_auth and revoked ones are not looked at")

	// Both workflows are back, as new runs.
	for id, old := range map[string]activities.WorkflowRun{active: activeRun, reauth: reauthRun} {
		run := s.describe(id)
		assert.Equal(t, activities.WorkflowRunning, run.Status)
		assert.NotEqual(t, old.RunID, run.RunID)
	}

	// The active connection carries on from its state: same last success, same schedule (the
	// next sync a cadence after the last one, not at once), same sync numbering.
	var st workflows.ConnectionState
	s.eventually("restarted workflow loaded", 20*time.Second, func() bool {
		st = s.state(active)
		return st.LastSuccessAt != nil
	})
	assert.Equal(t, "active", st.Status)
	assert.False(t, st.SyncInProgress, "the restart must not sync at once: the last sync is minutes old")
	assert.Equal(t, beforeState.Seq, st.Seq)
	// Postgres keeps microseconds (rounded), the workflow nanoseconds: the restored deadline may
	// differ from the old one by that rounding.
	assert.Equal(t, timeOf(t, before.body["last_success_at"]), st.LastSuccessAt.UTC())
	require.NotNil(t, st.NextSyncAt)
	assert.WithinDuration(t, timeOf(t, before.body["next_sync_at"]), *st.NextSyncAt, time.Microsecond)
	after := s.connection(key, active)
	assert.Equal(t, before.body["last_success_at"], after.body["last_success_at"])
	assert.WithinDuration(t, timeOf(t, before.body["next_sync_at"]), timeOf(t, after.body["next_sync_at"]), time.Microsecond)

	// Its next sync is a real one under the next number, not a replay of sync 1.
	r = s.call("POST", "/v1/connections/"+active+"/sync", key, nil)
	require.Equal(t, 202, r.status, r.raw)
	assert.Equal(t, float64(beforeState.Seq+1), r.body["sync_seq"])
	runs := s.waitSuccessfulSyncs(key, active, 2)
	assert.Equal(t, float64(defaultSyncCalls), runs[0]["jira_calls"], "the sync after the restart called Jira")
	assert.True(t, timeOf(t, s.connection(key, active).body["last_success_at"]).After(timeOf(t, before.body["last_success_at"])))

	// The needs_reauth connection keeps waiting: no sync until it is re-authorized.
	s.eventually("restarted workflow loaded", 20*time.Second, func() bool { return s.state(reauth).Status == "needs_reauth" })
	st = s.state(reauth)
	assert.False(t, st.SyncInProgress)
	assert.Nil(t, st.NextSyncAt)
	assert.Equal(t, failure.TypeReauthRequired, st.LastErrorType)
	assert.Len(t, s.runs(key, reauth), reauthRuns)
	r = s.call("POST", "/v1/connections/"+reauth+"/reauth", key, map[string]any{"email": "admin@example.com", "api_token": s.cloud.APIToken("admin@example.com")})
	require.Equal(t, 200, r.status, r.raw)
	s.waitSuccessfulSyncs(key, reauth, 1)
	assert.Equal(t, "active", s.connection(key, reauth).str("status"))

	// Audited once each, as the supervisor, with the previous run's status.
	audits := s.restartAudits(key)
	assert.Len(t, audits, 2)
	for id, status := range map[string]string{active: "active", reauth: "needs_reauth"} {
		require.Len(t, audits[id], 1, "connection %s", id)
		a := audits[id][0]
		assert.Equal(t, "system", a["actor_type"])
		assert.Equal(t, "supervisor", a["actor_id"])
		meta, _ := json.Marshal(a["metadata"])
		var m map[string]any
		require.NoError(t, json.Unmarshal(meta, &m))
		assert.Equal(t, "terminated", m["previous_status"])
		assert.Equal(t, status, m["status"])
	}

	// Revoked and pending_auth connections were never started.
	assert.Equal(t, revokedRun, s.describe(revoked))
	assert.Equal(t, activities.WorkflowNotFound, s.describe(pending).Status)
	assert.Equal(t, "revoked", s.connection(key, revoked).str("status"))
	assert.Equal(t, "pending_auth", s.connection(key, pending).str("status"))

	// A start that races a revoke (the supervisor read the row just before the revoke) ends at
	// once: the workflow reads the revoked row and completes without syncing.
	revokedRuns := len(s.runs(key, revoked))
	started, err := s.workflows().StartConnection(s.ctx, workflowclient.Start{OrgID: uuid.MustParse(s.call("GET", "/v1/orgs/me", key, nil).str("id")),
		ConnectionID: uuid.MustParse(revoked)})
	require.NoError(t, err)
	require.True(t, started, "a terminated run may be followed by a new one")
	ctx, cancel := context.WithTimeout(s.ctx, 20*time.Second)
	defer cancel()
	require.NoError(t, s.tc.GetWorkflow(ctx, "jira-connection/"+revoked, "").Get(ctx, nil))
	assert.Equal(t, activities.WorkflowCompleted, s.describe(revoked).Status)
	assert.Len(t, s.runs(key, revoked), revokedRuns)
	assert.Equal(t, "revoked", s.connection(key, revoked).str("status"))
	s.assertNoSecrets(active, reauth, revoked)
}

// TestSupervisorBoundedPassesAndConcurrentStarts: a pass examines and starts a bounded number of
// connections across organizations and the next pass continues; a start that loses the race
// against the API's own start (sync now on a connection without a workflow) is a success that
// neither fails nor audits a restart.
func TestSupervisorBoundedPassesAndConcurrentStarts(t *testing.T) {
	s := newStack(t)
	keyA, keyB := s.org("supervised-a"), s.org("supervised-b")
	ids := []string{s.tokenConnection(keyA), s.tokenConnection(keyA), s.tokenConnection(keyB)}
	keys := map[string]string{ids[0]: keyA, ids[1]: keyA, ids[2]: keyB}
	for _, id := range ids {
		s.waitSuccessfulSyncs(keys[id], id, 1)
		s.settled(keys[id], id)
	}
	s.terminate(ids...)

	orgs, supervised := s.supervisable()
	pass := func(in activities.SupervisorInput) activities.SuperviseResult {
		t.Helper()
		run, err := s.tc.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: "supervisor-" + uuid.NewString(), TaskQueue: s.core.Config.TaskQueue},
			workflows.SupervisorWorkflow, in)
		require.NoError(t, err)
		var res activities.SuperviseResult
		require.NoError(t, run.Get(s.ctx, &res))
		return res
	}
	running := func() int {
		t.Helper()
		n := 0
		for _, id := range ids {
			if s.describe(id).Status == activities.WorkflowRunning {
				n++
			}
		}
		return n
	}
	// One connection per activity, at most two starts per pass: the pass stops once it has
	// started its maximum, and the next one carries on (restarting the rest, and finding the
	// first two running).
	first := pass(activities.SupervisorInput{Limit: 1, MaxStarts: 2})
	assert.Equal(t, 2, first.Checked)
	assert.Equal(t, 2, first.Restarted)
	assert.Zero(t, first.Failed)
	second := pass(activities.SupervisorInput{Limit: 1})
	assert.Equal(t, supervised, second.Checked)
	assert.Equal(t, supervised-2, second.Restarted)
	assert.Equal(t, orgs, second.Orgs)
	assert.Zero(t, second.Failed)
	assert.Equal(t, len(ids), running())

	// The API starts the workflow (sync now) between the supervisor's check and its start.
	lost := ids[2]
	s.terminate(lost)
	auditsBefore := len(s.restartAudits(keyB)[lost])
	race := &apiWinsRace{Client: s.workflows(), conn: uuid.MustParse(lost), start: func() {
		r := s.call("POST", "/v1/connections/"+lost+"/sync", keyB, nil)
		require.Equal(t, 202, r.status, "sync now on a connection whose workflow is gone starts it: %s", r.raw)
		assert.Equal(t, float64(2), r.body["sync_seq"], "numbered after the stored sync 1")
	}}
	res, err := s.core.Activities.WithWorkflows(race).SuperviseConnections(s.ctx, activities.SuperviseInput{})
	require.NoError(t, err)
	assert.Equal(t, []bool{false}, race.results, "the supervisor's start came second")
	assert.Zero(t, res.Restarted)
	assert.GreaterOrEqual(t, res.AlreadyRunning, 1)
	assert.Zero(t, res.Failed)
	assert.Equal(t, activities.WorkflowRunning, s.describe(lost).Status)
	assert.Len(t, s.restartAudits(keyB)[lost], auditsBefore, "the supervisor did not restart it: no audit row")
	s.waitSuccessfulSyncs(keyB, lost, 2)
}

// apiWinsRace is the real starter, except that just before the supervisor starts conn's workflow
// the API's start lands (start). It records what the supervisor's starts of conn returned.
type apiWinsRace struct {
	*workflowclient.Client
	conn    uuid.UUID
	start   func()
	results []bool
}

func (r *apiWinsRace) StartConnection(ctx context.Context, s activities.WorkflowStart) (bool, error) {
	if s.ConnectionID != r.conn {
		return r.Client.StartConnection(ctx, s)
	}
	r.start()
	started, err := r.Client.StartConnection(ctx, s)
	r.results = append(r.results, started)
	return started, err
}

// TestSupervisorLeavesAloneWhatItMustNotStart: a connection revoked while the pass looks at it is
// not started; a workflow that failed is started again only an hour later; a workflow that
// completed (which a connection workflow does only when revoked) is never started again, even if
// the connection's row says active.
func TestSupervisorLeavesAloneWhatItMustNotStart(t *testing.T) {
	s := newStack(t)
	key := s.org("supervisor-guards")

	// Not the supervisor's doing, but the same repair: re-authorizing a connection whose workflow
	// is gone starts it again, and it syncs at once (its stored schedule alone would wait a
	// cadence after the refused attempt).
	require.NoError(t, s.cloud.SetFault("GET /rest/api/3/project/search", jirasim.Fault{ErrorRate: 1, ErrorStatus: 401}))
	reauthLost := s.tokenConnection(key)
	s.eventually("needs_reauth", 30*time.Second, func() bool { return s.connection(key, reauthLost).str("status") == "needs_reauth" })
	s.cloud.ClearFaults()
	s.terminate(reauthLost)
	r := s.call("POST", "/v1/connections/"+reauthLost+"/reauth", key, map[string]any{"email": "admin@example.com", "api_token": s.cloud.APIToken("admin@example.com")})
	require.Equal(t, 200, r.status, r.raw)
	s.waitSuccessfulSyncs(key, reauthLost, 1)
	assert.Equal(t, activities.WorkflowRunning, s.describe(reauthLost).Status)

	revokedMeanwhile, failed, completed := s.tokenConnection(key), s.tokenConnection(key), s.tokenConnection(key)
	for _, id := range []string{revokedMeanwhile, failed, completed} {
		s.waitSuccessfulSyncs(key, id, 1)
		s.settled(key, id)
	}
	s.terminate(revokedMeanwhile, failed, completed)

	// A run that failed: the workflow refuses input without an organization.
	run, err := s.tc.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: "jira-connection/" + failed, TaskQueue: s.core.Config.TaskQueue},
		workflows.ConnectionWorkflow, workflows.ConnectionInput{ConnectionID: uuid.MustParse(failed)})
	require.NoError(t, err)
	require.Error(t, run.Get(s.ctx, nil))
	failedRun := s.describe(failed)
	require.Equal(t, activities.WorkflowFailed, failedRun.Status)
	// A run that completed: started for an organization that does not hold the connection, it
	// finds nothing to serve (as for a revoked one) and ends.
	run, err = s.tc.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: "jira-connection/" + completed, TaskQueue: s.core.Config.TaskQueue},
		workflows.ConnectionWorkflow, workflows.ConnectionInput{OrgID: uuid.New(), ConnectionID: uuid.MustParse(completed)})
	require.NoError(t, err)
	require.NoError(t, run.Get(s.ctx, nil))
	completedRun := s.describe(completed)
	require.Equal(t, activities.WorkflowCompleted, completedRun.Status)
	terminatedRun := s.describe(revokedMeanwhile)

	// The API revokes a connection between the pass's page and its start.
	hook := &revokeWhileDescribing{Client: s.workflows(), conn: uuid.MustParse(revokedMeanwhile), revoke: func() {
		r := s.call("DELETE", "/v1/connections/"+revokedMeanwhile, key, nil)
		require.Equal(t, 200, r.status, r.raw)
	}}
	res, err := s.core.Activities.WithWorkflows(hook).SuperviseConnections(s.ctx, activities.SuperviseInput{})
	require.NoError(t, err)
	assert.Equal(t, 1, hook.revoked)
	assert.Equal(t, 1, res.Skipped, "revoked meanwhile")
	assert.Equal(t, 1, res.Deferred, "failed a moment ago")
	assert.Equal(t, 1, res.Refused, "completed")
	assert.Zero(t, res.Failed)
	assert.Equal(t, terminatedRun, s.describe(revokedMeanwhile))
	assert.Equal(t, failedRun, s.describe(failed))
	assert.Equal(t, completedRun, s.describe(completed))
	assert.Empty(t, s.restartAudits(key))
	assert.Equal(t, "revoked", s.connection(key, revokedMeanwhile).str("status"))

	// An hour later the failed one is started again; the completed one never is.
	later, err := activities.New(activities.Deps{DB: s.core.DB, Connections: s.core.Connections, Version: "e2e",
		Now: func() time.Time { return time.Now().Add(failedRunRestartDelayPassed) }})
	require.NoError(t, err)
	res, err = later.WithWorkflows(s.workflows()).SuperviseConnections(s.ctx, activities.SuperviseInput{})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Refused)
	assert.Zero(t, res.Failed)
	assert.Equal(t, activities.WorkflowRunning, s.describe(failed).Status)
	assert.Equal(t, completedRun, s.describe(completed))
	audits := s.restartAudits(key)
	require.Len(t, audits, 1)
	require.Len(t, audits[failed], 1)
	meta, _ := json.Marshal(audits[failed][0]["metadata"])
	var m map[string]any
	require.NoError(t, json.Unmarshal(meta, &m))
	assert.Equal(t, "failed", m["previous_status"])
	assert.Equal(t, failedRun.RunID, m["previous_run_id"])
}

// failedRunRestartDelayPassed is a clock offset past activities.FailedRunRestartDelay.
const failedRunRestartDelayPassed = activities.FailedRunRestartDelay + time.Minute

// revokeWhileDescribing is the real client, except that the first time the supervisor describes
// conn's workflow the connection is revoked (revoke) before the answer comes back.
type revokeWhileDescribing struct {
	*workflowclient.Client
	conn    uuid.UUID
	revoke  func()
	revoked int
}

func (r *revokeWhileDescribing) Describe(ctx context.Context, id uuid.UUID) (activities.WorkflowRun, error) {
	if id == r.conn && r.revoked == 0 {
		r.revoked++
		r.revoke()
	}
	return r.Client.Describe(ctx, id)
}
