package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/jiraconnect/jiraconnect/seal"
	"github.com/jiraconnect/jiraconnect/workflows"
)

// keyVersions reads GET /v1/orgs/me/keys.
func (s *stack) keyVersions(key string) (current int, byVersion map[int]map[string]any) {
	s.t.Helper()
	r := s.call("GET", "/v1/orgs/me/keys", key, nil)
	require.Equal(s.t, 200, r.status, r.raw)
	byVersion = map[int]map[string]any{}
	for _, v := range r.body["versions"].([]any) {
		m := v.(map[string]any)
		byVersion[int(m["version"].(float64))] = m
	}
	return int(r.body["current_version"].(float64)), byVersion
}

// auditActions counts the organization's audit rows by action, through the API.
func (s *stack) auditActions(key string) map[string][]map[string]any {
	s.t.Helper()
	r := s.call("GET", "/v1/audit-log?limit=200", key, nil)
	require.Equal(s.t, 200, r.status, r.raw)
	out := map[string][]map[string]any{}
	for _, e := range r.body["entries"].([]any) {
		entry := e.(map[string]any)
		out[entry["action"].(string)] = append(out[entry["action"].(string)], entry)
	}
	return out
}

// storedVersions returns the key versions of a connection's stored credentials and webhook
// signing secret.
func (s *stack) storedVersions(connID string) (creds, secret int32) {
	s.t.Helper()
	var c, w []byte
	require.NoError(s.t, testDB.Owner(s.t).QueryRow(s.ctx, `SELECT sealed_credentials, webhook_signing_secret FROM connections WHERE id = $1`,
		uuid.MustParse(connID)).Scan(&c, &w))
	cv, err := seal.SealedKeyVersion(c)
	require.NoError(s.t, err)
	wv, err := seal.SealedKeyVersion(w)
	require.NoError(s.t, err)
	return cv, wv
}

// reseal waits for a re-seal workflow's result.
func (s *stack) reseal(id string) workflows.OrgKeyResealResult {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	var res workflows.OrgKeyResealResult
	require.NoError(s.t, s.tc.GetWorkflow(ctx, id, "").Get(ctx, &res), id)
	return res
}

// syncNow asks for a sync and waits until the connection has n successful syncs.
func (s *stack) syncNow(key, connID string, n int) {
	s.t.Helper()
	r := s.call("POST", "/v1/connections/"+connID+"/sync", key, nil)
	require.Equal(s.t, 202, r.status, r.raw)
	s.waitSuccessfulSyncs(key, connID, n)
}

// An admin rotates the organization's data key through the API: the new version is current at
// once, a re-seal workflow (visible in Temporal under an id derived from org and version) moves
// the connection's credentials and webhook signing secret to it and retires the old version, every
// step is audited, syncing goes on throughout, other roles may not rotate, another organization
// is untouched, and no secret reaches a workflow history or a log.
func TestDataKeyRotationThroughTheAPI(t *testing.T) {
	// KEY_CACHE_TTL bounds how long a process may seal under an old version: the re-seal waits
	// twice that (2s) before retiring.
	s := newStackWith(t, map[string]string{"KEY_CACHE_TTL": "1s"})
	key := s.org("rotation")
	other := s.org("bystander")
	conn := s.tokenConnection(key)
	s.waitSuccessfulSyncs(key, conn, 1)
	current, _ := s.keyVersions(key)
	require.Equal(t, 1, current)

	member := s.call("POST", "/v1/api-keys", key, map[string]any{"name": "m", "role": "member"})
	require.Equal(t, 201, member.status, member.raw)
	r := s.call("POST", "/v1/orgs/me/keys/rotate", member.str("key"), nil)
	assert.Equal(t, 403, r.status, "only admins rotate")
	r = s.call("POST", "/v1/orgs/me/keys/rotate", key, map[string]any{"version": 7})
	assert.Equal(t, 400, r.status, "the request takes no parameters: %s", r.raw)
	current, _ = s.keyVersions(key)
	require.Equal(t, 1, current, "refused requests change nothing")

	r = s.call("POST", "/v1/orgs/me/keys/rotate", key, nil)
	require.Equal(t, 202, r.status, r.raw)
	assert.EqualValues(t, 2, r.body["version"])
	assert.EqualValues(t, 1, r.body["previous_version"])
	reseal := r.body["reseal"].(map[string]any)
	assert.Equal(t, true, reseal["started"])
	id := reseal["workflow_id"].(string)
	orgID := s.orgID(key)
	assert.Equal(t, workflows.OrgKeyResealWorkflowID(orgID, 2), id)
	current, _ = s.keyVersions(key)
	assert.Equal(t, 2, current, "current at once")

	res := s.reseal(id)
	assert.Equal(t, []int32{1}, res.Retired)
	assert.Equal(t, 2, res.Reseal.Resealed, "the credentials and the webhook signing secret")
	assert.GreaterOrEqual(t, res.Rounds, 2, "a round after the grace")
	cv, wv := s.storedVersions(conn)
	assert.Equal(t, [2]int32{2, 2}, [2]int32{cv, wv})
	current, versions := s.keyVersions(key)
	assert.Equal(t, 2, current)
	assert.Equal(t, "retired", versions[1]["state"])
	assert.NotNil(t, versions[1]["retired_at"])
	assert.EqualValues(t, 0, versions[1]["sealed_values"])
	assert.EqualValues(t, 2, versions[2]["sealed_values"])
	s.syncNow(key, conn, 2)

	audits := s.auditActions(key)
	require.Len(t, audits["org_key.rotate"], 1)
	assert.Equal(t, "api_key", audits["org_key.rotate"][0]["actor_type"])
	assert.Equal(t, "api", audits["org_key.rotate"][0]["metadata"].(map[string]any)["reason"])
	require.NotEmpty(t, audits["org_key.resealed"])
	require.Len(t, audits["org_key.retire"], 1)

	// Two rotations in a row: each has its own re-seal, and both end with every older version
	// retired.
	var ids []string
	for range 2 {
		r := s.call("POST", "/v1/orgs/me/keys/rotate", key, nil)
		require.Equal(t, 202, r.status, r.raw)
		ids = append(ids, r.body["reseal"].(map[string]any)["workflow_id"].(string))
	}
	for _, id := range ids {
		s.reseal(id)
	}
	s.eventually("versions 1-3 retired", 30*time.Second, func() bool {
		_, versions := s.keyVersions(key)
		return versions[2]["state"] == "retired" && versions[3]["state"] == "retired"
	})
	current, _ = s.keyVersions(key)
	assert.Equal(t, 4, current)
	s.syncNow(key, conn, 3)

	// The other organization: its own single version, no rotation in its audit log.
	otherCurrent, otherVersions := s.keyVersions(other)
	assert.Equal(t, 1, otherCurrent)
	assert.Len(t, otherVersions, 1)
	assert.Empty(t, s.auditActions(other)["org_key.rotate"])
	s.assertNoSecrets(conn)
}

// orgID is the organization of an API key.
func (s *stack) orgID(key string) uuid.UUID {
	s.t.Helper()
	r := s.call("GET", "/v1/orgs/me", key, nil)
	require.Equal(s.t, 200, r.status, r.raw)
	return uuid.MustParse(r.str("id"))
}

// The worker dies while a re-seal waits out the grace between its rounds: the credentials stay
// usable through the normal path meanwhile, and the re-seal resumes on a new worker from its
// history (the durable timer) and finishes the job.
func TestResealResumesAfterAWorkerCrash(t *testing.T) {
	s := newStackWith(t, map[string]string{"E2E_MANUAL_WORKER": "1", "KEY_CACHE_TTL": "4s"})
	w1 := s.startWorker()
	key := s.org("crash")
	conn := s.tokenConnection(key)
	s.waitSuccessfulSyncs(key, conn, 1)
	r := s.call("POST", "/v1/orgs/me/keys/rotate", key, nil)
	require.Equal(t, 202, r.status, r.raw)
	id := r.body["reseal"].(map[string]any)["workflow_id"].(string)

	// Wait until the first round re-sealed and the workflow sleeps on its timer, then crash.
	s.eventually("first round done, timer running", 30*time.Second, func() bool {
		d, err := s.tc.DescribeWorkflowExecution(s.ctx, id, "")
		if err != nil {
			return false
		}
		cv, _ := s.storedVersions(conn)
		return cv == 2 && d.GetPendingActivities() == nil && d.GetWorkflowExecutionInfo().GetHistoryLength() > 10
	})
	w1.Stop()
	_, versions := s.keyVersions(key)
	assert.Equal(t, "previous", versions[1]["state"], "not retired yet")
	s.core.Sealer.Purge()
	client, _, err := s.core.Connections.Client(s.ctx, s.orgID(key), uuid.MustParse(conn), nil)
	require.NoError(t, err, "the credentials open while no worker runs")
	_, err = client.Myself(s.ctx)
	require.NoError(t, err)

	w2 := s.startWorker()
	defer w2.Stop()
	res := s.reseal(id)
	assert.Equal(t, []int32{1}, res.Retired)
	s.syncNow(key, conn, 2)
}

// The daily org-key-rotation schedule (created by the worker) rotates an organization whose key is
// older than DATA_KEY_ROTATION_PERIOD and starts its re-seal, which retires the old version.
func TestScheduledRotation(t *testing.T) {
	s := newStackWith(t, map[string]string{"KEY_CACHE_TTL": "1s", "DATA_KEY_ROTATION_PERIOD": "24h"})
	key := s.org("scheduled")
	orgID := s.orgID(key)
	conn := s.tokenConnection(key)
	s.waitSuccessfulSyncs(key, conn, 1)
	// Age the key by two days: its creation time cannot change (the schema's guard) except in a
	// session that skips triggers, which only a superuser may open.
	tx, err := testDB.Owner(t).Begin(s.ctx)
	require.NoError(t, err)
	_, err = tx.Exec(s.ctx, `SET LOCAL session_replication_role = replica`)
	require.NoError(t, err)
	_, err = tx.Exec(s.ctx, `UPDATE org_data_keys SET created_at = now() - interval '2 days' WHERE org_id = $1`, orgID)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(s.ctx))

	h := s.tc.ScheduleClient().GetHandle(s.ctx, workflows.KeyRotationScheduleID)
	s.eventually("schedule created by the worker", 20*time.Second, func() bool {
		_, err := h.Describe(s.ctx)
		return err == nil
	})
	require.NoError(t, h.Trigger(s.ctx, client.ScheduleTriggerOptions{}))
	resealID := workflows.OrgKeyResealWorkflowID(orgID, 2)
	s.eventually("re-seal started by the pass", 30*time.Second, func() bool {
		_, err := s.tc.DescribeWorkflowExecution(s.ctx, resealID, "")
		return err == nil
	})
	res := s.reseal(resealID)
	assert.Equal(t, []int32{1}, res.Retired)
	audits := s.auditActions(key)
	require.Len(t, audits["org_key.rotate"], 1)
	assert.Equal(t, "workflow", audits["org_key.rotate"][0]["actor_type"])
	assert.Equal(t, "key-rotation", audits["org_key.rotate"][0]["actor_id"])
	assert.Equal(t, "schedule", audits["org_key.rotate"][0]["metadata"].(map[string]any)["reason"])
	s.syncNow(key, conn, 2)
}
