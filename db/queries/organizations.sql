-- name: CreateOrganization :one
-- The caller sets app.org_id to the new id first: RLS's WITH CHECK admits only that row.
INSERT INTO organizations (id, name) VALUES ($1, $2)
RETURNING id, name, created_at;

-- name: GetOrganization :one
SELECT id, name, created_at, data_key_version
FROM organizations WHERE id = $1;

-- name: ListOrganizationIDs :many
SELECT app_org_ids()::uuid AS id;

-- name: LockOrganization :one
-- Serializes changes that must see the org's keys as a whole (revoking its last admin key). NO KEY
-- UPDATE does not block the foreign-key checks of inserts referencing the org.
SELECT id FROM organizations WHERE id = $1 FOR NO KEY UPDATE;
