-- Finding sync: the work queue and the finding ⇄ issue links.

-- name: DueQueueItems :many
SELECT finding_id, enqueued_at, attempts FROM finding_sync_queue
WHERE connection_id = $1 AND not_before <= now()
ORDER BY enqueued_at, finding_id
LIMIT sqlc.arg(batch)::integer;

-- name: QueueBacklog :one
SELECT count(*) FILTER (WHERE not_before <= now())::integer AS due,
       min(not_before) FILTER (WHERE not_before > now())::timestamptz AS next_due
FROM finding_sync_queue WHERE connection_id = $1;

-- name: DeleteQueueItem :exec
-- Only the version that was processed: a change enqueued meanwhile stays queued.
DELETE FROM finding_sync_queue WHERE connection_id = $1 AND finding_id = $2 AND enqueued_at = $3;

-- name: DelayQueueItem :exec
UPDATE finding_sync_queue
SET attempts = attempts + 1, not_before = sqlc.arg(not_before), last_error = sqlc.narg(last_error)
WHERE connection_id = sqlc.arg(connection_id) AND finding_id = sqlc.arg(finding_id);

-- name: ClearQueue :execrows
DELETE FROM finding_sync_queue WHERE connection_id = $1;

-- name: EnqueueErroredLinks :execrows
-- After a configuration change, give findings whose push failed for configuration reasons
-- another chance.
INSERT INTO finding_sync_queue (org_id, connection_id, finding_id)
SELECT l.org_id, l.connection_id, l.finding_id FROM finding_issue_links l
WHERE l.connection_id = $1 AND l.last_error_kind IS NOT NULL
ON CONFLICT (connection_id, finding_id) DO UPDATE SET not_before = now(), attempts = 0;

-- name: GetLink :one
SELECT * FROM finding_issue_links WHERE finding_id = $1 AND connection_id = $2;

-- name: CreateLinkIntent :one
-- Records the intent to create an issue before Jira is called; returns the row either way.
INSERT INTO finding_issue_links (org_id, finding_id, connection_id, state)
VALUES ($1, $2, $3, 'creating')
ON CONFLICT (finding_id, connection_id) DO UPDATE SET updated_at = finding_issue_links.updated_at
RETURNING *;

-- name: SetLinkCreated :one
UPDATE finding_issue_links
SET state = 'linked', issue_id = sqlc.arg(issue_id), issue_key = sqlc.arg(issue_key),
    last_jira_status = sqlc.narg(last_jira_status), last_pushed_status = sqlc.narg(last_pushed_status),
    last_push_at = now(), last_error = NULL, last_error_kind = NULL, updated_at = now()
WHERE finding_id = sqlc.arg(finding_id) AND connection_id = sqlc.arg(connection_id)
RETURNING *;

-- name: SetLinkPushed :exec
UPDATE finding_issue_links
SET last_pushed_status = sqlc.arg(pushed_status), last_jira_status = sqlc.arg(pushed_status),
    last_push_at = now(), last_error = NULL, last_error_kind = NULL, updated_at = now()
WHERE finding_id = sqlc.arg(finding_id) AND connection_id = sqlc.arg(connection_id);

-- name: SetLinkError :exec
UPDATE finding_issue_links
SET last_error = sqlc.arg(last_error), last_error_kind = sqlc.arg(last_error_kind), updated_at = now()
WHERE finding_id = sqlc.arg(finding_id) AND connection_id = sqlc.arg(connection_id);

-- name: ClearLinkError :exec
UPDATE finding_issue_links SET last_error = NULL, last_error_kind = NULL, updated_at = now()
WHERE finding_id = $1 AND connection_id = $2;

-- name: LinkByIssue :one
SELECT * FROM finding_issue_links WHERE connection_id = $1 AND issue_id = $2;

-- name: SetLinkInbound :exec
UPDATE finding_issue_links
SET last_jira_status = sqlc.arg(jira_status), last_inbound_at = sqlc.arg(inbound_at), updated_at = now()
WHERE finding_id = sqlc.arg(finding_id) AND connection_id = sqlc.arg(connection_id);

-- name: SetReconciledAt :exec
UPDATE connections SET reconciled_at = $2 WHERE id = $1;

-- name: SetDynamicWebhooks :exec
UPDATE connections
SET dynamic_webhook_ids = sqlc.arg(ids), dynamic_webhook_expires_at = sqlc.narg(expires_at),
    webhook_secret_hash = coalesce(sqlc.narg(secret_hash), webhook_secret_hash), updated_at = now()
WHERE id = sqlc.arg(id) AND deleted_at IS NULL;

-- name: SetConnectionError :exec
UPDATE connections SET last_error = sqlc.narg(last_error), last_error_kind = sqlc.narg(last_error_kind), updated_at = now()
WHERE id = $1 AND deleted_at IS NULL;
