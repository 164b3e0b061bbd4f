-- name: CreateOrganization :one
-- The caller sets app.org_id to the new id first: RLS's WITH CHECK admits only that row.
INSERT INTO organizations (id, name) VALUES ($1, $2)
RETURNING id, name, created_at;

-- name: GetOrganization :one
SELECT id, name, created_at, data_key_id, data_key_version
FROM organizations WHERE id = $1;

-- name: GetOrgDataKey :one
SELECT wrapped_data_key, data_key_id, data_key_version FROM organizations WHERE id = $1;

-- name: SetOrgDataKeyIfAbsent :one
-- Insert-if-absent: two racing creators converge on whichever key was stored first.
UPDATE organizations
SET wrapped_data_key = CASE WHEN wrapped_data_key IS NULL THEN sqlc.arg(wrapped)::bytea ELSE wrapped_data_key END,
    data_key_id      = CASE WHEN wrapped_data_key IS NULL THEN sqlc.arg(key_id)::text ELSE data_key_id END,
    data_key_version = CASE WHEN wrapped_data_key IS NULL THEN sqlc.arg(version)::integer ELSE data_key_version END
WHERE id = sqlc.arg(id)
RETURNING wrapped_data_key, data_key_id, data_key_version;

-- name: ListOrganizationIDs :many
SELECT app_org_ids()::uuid AS id;

-- name: LockOrganization :one
-- Serializes changes that must see the org's keys as a whole (revoking its last admin key). NO KEY
-- UPDATE does not block the foreign-key checks of inserts referencing the org.
SELECT id FROM organizations WHERE id = $1 FOR NO KEY UPDATE;
