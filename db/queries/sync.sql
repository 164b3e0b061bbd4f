-- Write side of the connection workflow's activities: connector runs, evidence and its
-- observations, alerts, connection state and retention. Every statement runs inside an org
-- transaction (db.DB.InOrg), so row-level security scopes it to one organization.

-- name: UpsertConnectorRun :one
-- Starts (or re-enters) the run of an idempotency key. A Temporal retry of the same activity
-- reuses the row: it records the attempt's workflow/run ids and counts the attempt. A run that
-- was marked failed is reopened, because a new attempt under the same key means the workflow
-- chose to try that run again. Finished runs keep their outcome (the caller replays the result).
-- The WHERE clause refuses to adopt a key that belongs to another connection or run kind.
-- started_at is when the work began if the caller records the run afterwards, else now().
INSERT INTO connector_runs (org_id, connection_id, kind, idempotency_key, workflow_id, run_id,
                            triggered_by, attempts, started_at)
VALUES (sqlc.arg(org_id), sqlc.arg(connection_id), sqlc.arg(kind), sqlc.arg(idempotency_key),
        sqlc.arg(workflow_id), sqlc.arg(run_id), sqlc.arg(triggered_by), 1,
        COALESCE(sqlc.narg(started_at)::timestamptz, now()))
ON CONFLICT (org_id, idempotency_key) DO UPDATE
SET workflow_id = EXCLUDED.workflow_id,
    run_id      = EXCLUDED.run_id,
    attempts    = connector_runs.attempts + 1,
    outcome     = CASE WHEN connector_runs.outcome = 'failed' THEN 'running' ELSE connector_runs.outcome END,
    finished_at = CASE WHEN connector_runs.outcome = 'failed' THEN NULL ELSE connector_runs.finished_at END
WHERE connector_runs.connection_id = EXCLUDED.connection_id
  AND connector_runs.kind = EXCLUDED.kind
RETURNING *;

-- name: RecordRunAttemptError :exec
-- A failed attempt leaves its error on the still-running run, so an operator sees why a run is
-- being retried; the Jira calls it spent are added to the run's total.
UPDATE connector_runs
SET error      = sqlc.arg(error),
    error_kind = sqlc.arg(error_kind),
    jira_calls = jira_calls + sqlc.arg(jira_calls)::integer
WHERE id = sqlc.arg(id) AND outcome = 'running';

-- name: FinishConnectorRun :one
UPDATE connector_runs
SET outcome     = sqlc.arg(outcome),
    finished_at = sqlc.arg(finished_at),
    error       = sqlc.narg(error),
    error_kind  = sqlc.narg(error_kind),
    jira_calls  = jira_calls + sqlc.arg(jira_calls)::integer,
    report      = sqlc.narg(report)
WHERE id = sqlc.arg(id) AND outcome = 'running'
RETURNING *;

-- name: FailConnectorRun :one
-- Marks the run of an idempotency key failed for good, creating it if no attempt ever got as far
-- as starting it. Only a running run changes: calling again (or after the run finished) returns
-- no row, which is what makes RecordSyncFailure idempotent. An empty error keeps the last
-- attempt's error.
INSERT INTO connector_runs (org_id, connection_id, kind, idempotency_key, workflow_id, run_id,
                            outcome, finished_at, error, error_kind)
VALUES (sqlc.arg(org_id), sqlc.arg(connection_id), sqlc.arg(kind), sqlc.arg(idempotency_key),
        sqlc.arg(workflow_id), sqlc.arg(run_id), 'failed', sqlc.arg(finished_at),
        nullif(sqlc.arg(error)::text, ''), sqlc.arg(error_kind))
ON CONFLICT (org_id, idempotency_key) DO UPDATE
SET outcome     = 'failed',
    finished_at = EXCLUDED.finished_at,
    error       = coalesce(EXCLUDED.error, connector_runs.error),
    error_kind  = EXCLUDED.error_kind
WHERE connector_runs.outcome = 'running'
  AND connector_runs.connection_id = EXCLUDED.connection_id
RETURNING id, error;

-- name: InsertEvidence :one
-- Evidence is immutable and deduplicated by fingerprint: identical content inserts nothing and
-- returns no row, and the caller looks the existing row up by fingerprint.
INSERT INTO evidence (org_id, connection_id, type, subject, payload, fingerprint, provenance)
VALUES (sqlc.arg(org_id), sqlc.arg(connection_id), sqlc.arg(type), sqlc.arg(subject),
        sqlc.arg(payload), sqlc.arg(fingerprint), sqlc.arg(provenance))
ON CONFLICT (org_id, fingerprint) DO NOTHING
RETURNING id;

-- name: EvidenceIDByFingerprint :one
SELECT id FROM evidence WHERE fingerprint = sqlc.arg(fingerprint);

-- name: ObserveEvidence :exec
-- One run's observation of one evidence row: it extends the row's latest span when the span
-- counts the same way and ended at most within before observed_at, and opens a new span
-- otherwise. A run already recorded on the latest span (a retried attempt) changes nothing. The
-- caller holds the connection's row lock, so a row's spans have one writer at a time.
WITH latest AS (
    SELECT evidence_id, first_observed_at, last_observed_at, last_run_id, counts_as_evidence
    FROM evidence_observation_spans
    WHERE evidence_id = sqlc.arg(evidence_id)
    ORDER BY first_observed_at DESC
    LIMIT 1
), extended AS (
    UPDATE evidence_observation_spans s
    SET last_run_id = sqlc.arg(run_id), last_observed_at = sqlc.arg(observed_at),
        observations = s.observations + 1,
        longest_gap = greatest(s.longest_gap, sqlc.arg(observed_at)::timestamptz - s.last_observed_at)
    FROM latest l
    WHERE s.evidence_id = l.evidence_id AND s.first_observed_at = l.first_observed_at
      AND l.last_run_id <> sqlc.arg(run_id)
      AND l.counts_as_evidence = sqlc.arg(counts_as_evidence)
      AND sqlc.arg(observed_at)::timestamptz >= l.last_observed_at
      AND sqlc.arg(observed_at)::timestamptz - l.last_observed_at <= sqlc.arg(within)::interval
    RETURNING s.evidence_id
)
INSERT INTO evidence_observation_spans (org_id, evidence_id, first_run_id, last_run_id, first_observed_at, last_observed_at,
                                        observations, counts_as_evidence)
SELECT sqlc.arg(org_id), sqlc.arg(evidence_id), sqlc.arg(run_id), sqlc.arg(run_id), sqlc.arg(observed_at), sqlc.arg(observed_at),
       1, sqlc.arg(counts_as_evidence)
WHERE NOT EXISTS (SELECT 1 FROM extended)
  AND NOT EXISTS (SELECT 1 FROM latest WHERE last_run_id = sqlc.arg(run_id))
ON CONFLICT (evidence_id, first_observed_at) DO NOTHING;

-- name: LockConnection :one
-- Serialises the writers of one connection row (sync completion, state mirroring, revoke), so
-- that a revoke that commits first is seen by the others.
SELECT * FROM connections WHERE id = sqlc.arg(id) FOR UPDATE;

-- name: RecordConnectionSync :exec
-- A completed sync: last_sync_at always, last_success_at only when the sync counts as a success
-- for staleness. GREATEST (which ignores NULL) keeps both from moving backwards.
UPDATE connections
SET last_sync_at    = greatest(last_sync_at, sqlc.arg(synced_at)),
    last_success_at = CASE WHEN sqlc.arg(succeeded)::boolean
                           THEN greatest(last_success_at, sqlc.arg(synced_at)) ELSE last_success_at END,
    last_error      = NULL,
    last_error_kind = NULL,
    updated_at      = now()
WHERE id = sqlc.arg(id) AND deleted_at IS NULL;

-- name: RecordConnectionError :exec
UPDATE connections
SET last_error = sqlc.arg(last_error), last_error_kind = sqlc.arg(last_error_kind), updated_at = now()
WHERE id = sqlc.arg(id) AND deleted_at IS NULL;

-- name: ClearDynamicWebhooks :exec
-- After revoke deleted the connection's dynamic webhooks in Jira, nothing is left to refresh.
UPDATE connections
SET dynamic_webhook_ids = '{}', dynamic_webhook_expires_at = NULL, updated_at = now()
WHERE id = sqlc.arg(id);

-- name: OpenAlert :one
-- One open alert per connection and kind (partial unique index alerts_one_open_idx): opening an
-- open alert again inserts nothing and returns no row. A revoked connection gets no new alerts.
INSERT INTO alerts (org_id, connection_id, kind, message, opened_at)
SELECT c.org_id, c.id, sqlc.arg(kind), sqlc.arg(message), sqlc.arg(opened_at)
FROM connections c
WHERE c.id = sqlc.arg(connection_id) AND c.deleted_at IS NULL
ON CONFLICT (connection_id, kind) WHERE state = 'open' DO NOTHING
RETURNING id, opened_at;

-- name: ResolveAlert :many
UPDATE alerts
SET state = 'resolved', resolved_at = sqlc.arg(resolved_at)
WHERE connection_id = sqlc.arg(connection_id) AND kind = sqlc.arg(kind) AND state = 'open'
RETURNING id, kind, opened_at;

-- name: ResolveConnectionAlerts :many
UPDATE alerts
SET state = 'resolved', resolved_at = sqlc.arg(resolved_at)
WHERE connection_id = sqlc.arg(connection_id) AND state = 'open'
RETURNING id, kind, opened_at;

-- name: PurgeEvidenceBatch :many
-- Retention: deletes up to batch_size evidence rows created before the cutoff that nothing needs
-- any more. Kept regardless of age:
--   * anything attached to an assessment (approved ones are also protected by a trigger; draft
--     ones are protected here, because an auditor is assembling them);
--   * anything still observed at or after the cutoff: a deduplicated row that every sync sees
--     again is current evidence, however old its first observation.
-- A revoked connection's evidence is no longer observed, so it ages out one window after its last
-- observation, which keeps it queryable for the retention window as promised on revoke.
DELETE FROM evidence d
WHERE d.id IN (
    SELECT e.id
    FROM evidence e
    WHERE e.created_at < sqlc.arg(cutoff)
      AND NOT EXISTS (SELECT 1 FROM assessment_evidence ae WHERE ae.evidence_id = e.id)
      AND NOT EXISTS (SELECT 1 FROM evidence_observation_spans o
                      WHERE o.evidence_id = e.id AND o.last_observed_at >= sqlc.arg(cutoff))
    ORDER BY e.created_at, e.id
    LIMIT sqlc.arg(batch_size)::integer
)
RETURNING d.id, d.type, d.connection_id;

-- name: LatestConnectionAudit :one
-- The newest audit row about a connection: SetConnectionState compares against it so that a
-- retried activity does not write the same audit row twice.
SELECT action, metadata FROM audit_log
WHERE target_type = 'connection' AND target_id = sqlc.arg(connection_id)::text
ORDER BY id DESC
LIMIT 1;

-- name: FailRunsInFlight :execrows
-- A revoke ends the connection's runs still in flight: their activities are cancelled with the
-- connection and would leave them "running" for ever. A cancelled attempt that still tries to
-- finish its run afterwards finds it finished (FinishConnectorRun only changes running runs).
UPDATE connector_runs
SET outcome     = 'failed',
    finished_at = sqlc.arg(finished_at),
    error       = 'the connection was revoked while this run was in flight',
    error_kind  = sqlc.arg(error_kind)
WHERE connection_id = sqlc.arg(connection_id) AND outcome = 'running';

-- name: LatestSyncRun :one
-- The connection's evidence sync run with the highest sequence number under its workflow's run
-- keys (key_prefix = "<workflow id>/sync/", see activities.SyncKey), for a workflow that starts
-- over after its previous run was lost: it numbers its syncs after this one and re-runs it if it
-- was interrupted. Reads the connection's sync runs once per workflow run start.
SELECT substring(idempotency_key FROM length(sqlc.arg(key_prefix)::text) + 1)::bigint AS seq,
       outcome, triggered_by
FROM connector_runs
WHERE connection_id = sqlc.arg(connection_id)
  AND kind = 'sync'
  AND starts_with(idempotency_key, sqlc.arg(key_prefix)::text)
  AND substring(idempotency_key FROM length(sqlc.arg(key_prefix)::text) + 1) ~ '^[0-9]{1,18}$'
ORDER BY 1 DESC
LIMIT 1;
