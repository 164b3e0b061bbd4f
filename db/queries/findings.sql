-- name: UpsertFinding :one
-- Upsert by the scanner's external id. status_source marks the change as the API's.
INSERT INTO findings (org_id, external_id, title, severity, status, probe_id, scan_id, framework_refs, excerpt)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (org_id, external_id) DO UPDATE
SET title = EXCLUDED.title, severity = EXCLUDED.severity,
    status = EXCLUDED.status, probe_id = EXCLUDED.probe_id, scan_id = EXCLUDED.scan_id,
    framework_refs = EXCLUDED.framework_refs, excerpt = EXCLUDED.excerpt,
    status_source = CASE WHEN findings.status = EXCLUDED.status THEN findings.status_source ELSE 'api' END,
    status_changed_at = CASE WHEN findings.status = EXCLUDED.status THEN findings.status_changed_at ELSE now() END,
    updated_at = now()
RETURNING *, (xmax = 0) AS inserted;

-- name: GetFinding :one
SELECT * FROM findings WHERE id = $1;

-- name: ListFindings :many
SELECT * FROM findings
WHERE (sqlc.narg(status)::text IS NULL OR status = sqlc.narg(status)::text)
  AND (sqlc.narg(severity)::text IS NULL OR severity = sqlc.narg(severity)::text)
  AND (sqlc.narg(before_created)::timestamptz IS NULL
       OR (created_at, id) < (sqlc.narg(before_created)::timestamptz, sqlc.narg(before_id)::uuid))
ORDER BY created_at DESC, id DESC
LIMIT sqlc.arg(page_size)::integer;

-- name: SetFindingStatus :one
UPDATE findings
SET status = sqlc.arg(status), status_source = sqlc.arg(source),
    status_changed_at = now(), updated_at = now()
WHERE id = sqlc.arg(id)
RETURNING *;

-- name: FindingSyncConnections :many
-- Connections of the org that can push findings (finding sync configured, not revoked).
SELECT id, config, status FROM connections
WHERE deleted_at IS NULL AND status IN ('active', 'needs_reauth') AND config ? 'finding_sync';

-- name: LinksOfFinding :many
SELECT * FROM finding_issue_links WHERE finding_id = $1 ORDER BY connection_id;

-- name: EnqueueFinding :exec
-- (Re)queue a finding for a connection; a newer change resets attempts and any backoff.
INSERT INTO finding_sync_queue (org_id, connection_id, finding_id)
VALUES ($1, $2, $3)
ON CONFLICT (connection_id, finding_id) DO UPDATE
SET enqueued_at = now(), attempts = 0, not_before = now(), last_error = NULL;
