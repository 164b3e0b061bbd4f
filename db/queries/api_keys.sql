-- name: CreateAPIKey :one
INSERT INTO api_keys (org_id, name, role, prefix, key_hash)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, org_id, name, role, prefix, created_at;

-- name: AuthenticateAPIKey :one
-- Runs before the org is known, through the SECURITY DEFINER function.
SELECT key_id::uuid AS key_id, org_id::uuid AS org_id, role::text AS role
FROM app_authenticate_api_key(sqlc.arg(key_hash)::bytea);

-- name: ListAPIKeys :many
SELECT id, name, role, prefix, created_at, last_used_at, revoked_at
FROM api_keys ORDER BY created_at DESC, id;

