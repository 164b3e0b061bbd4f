-- name: CreateAPIKey :one
INSERT INTO api_keys (org_id, name, role, prefix, key_hash, expires_at, created_by_type, created_by_id)
VALUES ($1, $2, $3, $4, $5, sqlc.narg(expires_at), sqlc.narg(created_by_type), sqlc.narg(created_by_id))
RETURNING id, org_id, name, role, prefix, created_at, expires_at;

-- name: AuthenticateAPIKey :one
-- Runs before the org is known, through the SECURITY DEFINER function, which refuses revoked and
-- expired keys.
SELECT key_id::uuid AS key_id, org_id::uuid AS org_id, role::text AS role
FROM app_authenticate_api_key(sqlc.arg(key_hash)::bytea);

-- name: ListAPIKeys :many
-- state is derived with the database's clock, the one authentication compares expires_at with.
SELECT id, name, role, prefix, created_at, last_used_at, expires_at, revoked_at,
       created_by_type, created_by_id, revoked_by_type, revoked_by_id,
       (CASE WHEN revoked_at IS NOT NULL THEN 'revoked'
             WHEN expires_at IS NOT NULL AND expires_at <= now() THEN 'expired'
             ELSE 'active' END)::text AS state
FROM api_keys ORDER BY created_at DESC, id;

-- name: GetAPIKeyForUpdate :one
-- Locks the key for the revoking transaction.
SELECT id, name, role, prefix, created_at, last_used_at, expires_at, revoked_at,
       created_by_type, created_by_id, revoked_by_type, revoked_by_id,
       (CASE WHEN revoked_at IS NOT NULL THEN 'revoked'
             WHEN expires_at IS NOT NULL AND expires_at <= now() THEN 'expired'
             ELSE 'active' END)::text AS state
FROM api_keys WHERE id = $1
FOR UPDATE;

-- name: CountOtherActiveAdminKeys :one
-- Active admin keys of the transaction's org other than except_id.
SELECT count(*) FROM api_keys
WHERE role = 'admin' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
  AND id <> sqlc.arg(except_id);

-- name: RevokeAPIKey :one
-- Revocation happens once: a revoked key is never updated again (the guard trigger enforces it).
UPDATE api_keys
SET revoked_at = now(), revoked_by_type = sqlc.arg(revoked_by_type)::text, revoked_by_id = sqlc.arg(revoked_by_id)::text
WHERE id = sqlc.arg(id) AND revoked_at IS NULL
RETURNING revoked_at::timestamptz AS revoked_at;
