-- Read side of the API: runs, evidence, coverage inputs, alerts and assessments.

-- name: ListConnectorRuns :many
SELECT id, kind, outcome, started_at, finished_at, error, error_kind, jira_calls, workflow_id, run_id
FROM connector_runs
WHERE connection_id = sqlc.arg(connection_id)
  AND (sqlc.narg(before)::timestamptz IS NULL OR started_at < sqlc.narg(before)::timestamptz)
ORDER BY started_at DESC, id DESC
LIMIT sqlc.arg(page_size)::integer;

-- name: ListEvidence :many
-- Filters are optional; control filters by the catalogue's required evidence types. Each row
-- carries its latest observation so freshness is visible next to immutable content.
SELECT e.id, e.connection_id, e.type, e.subject, e.payload, e.fingerprint, e.provenance, e.created_at,
       coalesce(o.last_observed_at, e.created_at)::timestamptz AS last_observed_at, coalesce(o.counts_as_evidence, false)::boolean AS counts_as_evidence,
       (SELECT coalesce(sum(x.observations), 0) FROM evidence_observation_spans x WHERE x.evidence_id = e.id)::bigint AS observations
FROM evidence e
LEFT JOIN LATERAL (
    SELECT last_observed_at, counts_as_evidence FROM evidence_observation_spans
    WHERE evidence_id = e.id ORDER BY first_observed_at DESC LIMIT 1
) o ON true
WHERE (sqlc.narg(type)::text IS NULL OR e.type = sqlc.narg(type)::text)
  AND (sqlc.narg(connection_id)::uuid IS NULL OR e.connection_id = sqlc.narg(connection_id)::uuid)
  AND (sqlc.narg(control_id)::text IS NULL OR e.type IN (
        SELECT evidence_type FROM control_evidence_types WHERE control_id = sqlc.narg(control_id)::text))
  AND (sqlc.narg(since)::timestamptz IS NULL OR coalesce(o.last_observed_at, e.created_at) >= sqlc.narg(since)::timestamptz)
  AND (sqlc.narg(until)::timestamptz IS NULL OR e.created_at < sqlc.narg(until)::timestamptz)
  AND (sqlc.narg(before_created)::timestamptz IS NULL
       OR (e.created_at, e.id) < (sqlc.narg(before_created)::timestamptz, sqlc.narg(before_id)::uuid))
ORDER BY e.created_at DESC, e.id DESC
LIMIT sqlc.arg(page_size)::integer;

-- name: GetEvidence :one
SELECT id, connection_id, type, subject, payload, fingerprint, provenance, created_at FROM evidence WHERE id = $1;

-- name: CoverageConnections :many
SELECT id, status, config, last_success_at, stale, deleted_at FROM connections;

-- name: CoverageObservations :many
-- The freshest observation per (connection, evidence type) that counts as evidence, and the
-- freshest one overall (which may be an empty "no data" observation).
SELECT DISTINCT ON (e.connection_id, e.type, o.counts_as_evidence)
       e.connection_id, e.type, e.fingerprint, o.last_observed_at AS observed_at, o.counts_as_evidence
FROM evidence_observation_spans o JOIN evidence e ON e.id = o.evidence_id
ORDER BY e.connection_id, e.type, o.counts_as_evidence, o.last_observed_at DESC;

-- name: ListAlerts :many
SELECT id, connection_id, kind, state, message, opened_at, resolved_at FROM alerts
WHERE (sqlc.narg(state)::text IS NULL OR state = sqlc.narg(state)::text)
  AND (sqlc.narg(connection_id)::uuid IS NULL OR connection_id = sqlc.narg(connection_id)::uuid)
ORDER BY opened_at DESC, id DESC
LIMIT sqlc.arg(page_size)::integer;

-- name: CreateAssessment :one
INSERT INTO assessments (org_id, name) VALUES ($1, $2)
RETURNING id, name, status, created_at, approved_at, approved_by;

-- name: GetAssessment :one
SELECT id, name, status, created_at, approved_at, approved_by FROM assessments WHERE id = $1;

-- Approval is a point in time: approving and attaching serialize on the assessment's row. Attaches
-- share the lock (they may run side by side); approval takes it alone, so it waits for every attach
-- in flight to commit, then sees exactly the evidence it freezes, and attaches queued behind it
-- read the approved status when they get the lock.

-- name: LockAssessmentForAttach :one
SELECT status FROM assessments WHERE id = $1 FOR SHARE;

-- name: LockAssessmentForApproval :one
SELECT status FROM assessments WHERE id = $1 FOR UPDATE;

-- name: ListAssessmentEvidence :many
SELECT evidence_id, attached_at FROM assessment_evidence WHERE assessment_id = $1 ORDER BY attached_at, evidence_id;

-- name: AttachEvidence :execrows
INSERT INTO assessment_evidence (org_id, assessment_id, evidence_id) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING;

-- name: ApproveAssessment :one
UPDATE assessments SET status = 'approved', approved_at = now(), approved_by = sqlc.arg(approved_by)
WHERE id = sqlc.arg(id) AND status = 'draft'
RETURNING id, name, status, created_at, approved_at, approved_by;
