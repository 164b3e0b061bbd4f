-- name: InsertAuditEntry :one
INSERT INTO audit_log (org_id, actor_type, actor_id, action, target_type, target_id, source_ip, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id, at;

-- name: ListAuditEntries :many
-- Keyset pagination, newest first: pass the last id seen as before_id (0 for the first page).
SELECT id, at, actor_type, actor_id, action, target_type, target_id, source_ip, metadata
FROM audit_log
WHERE (sqlc.arg(before_id)::bigint = 0 OR id < sqlc.arg(before_id)::bigint)
ORDER BY id DESC
LIMIT sqlc.arg(page_size)::integer;
