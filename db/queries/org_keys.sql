-- Versioned organization data keys (migration 00011): the key store, rotation, re-sealing,
-- re-wrapping under a new master key, and retirement.

-- name: GetCurrentOrgDataKey :one
SELECT k.version, k.wrapped_key, k.key_id, k.created_at
FROM organizations o JOIN org_data_keys k ON k.org_id = o.id AND k.version = o.data_key_version
WHERE o.id = $1;

-- name: GetOrgDataKeyVersion :one
SELECT version, wrapped_key, key_id, created_at, retired_at
FROM org_data_keys WHERE org_id = $1 AND version = $2;

-- name: LockOrgKeyPointer :one
-- Serializes the creation of key versions of one organization (first key, rotations). NO KEY
-- UPDATE does not block the foreign-key checks of inserts referencing the org.
SELECT data_key_version FROM organizations WHERE id = $1 FOR NO KEY UPDATE;

-- name: InsertOrgDataKey :exec
INSERT INTO org_data_keys (org_id, version, wrapped_key, key_id) VALUES ($1, $2, $3, $4);

-- name: SetCurrentOrgDataKey :exec
UPDATE organizations SET data_key_version = sqlc.arg(version)::integer WHERE id = sqlc.arg(id);

-- name: ListOrgDataKeys :many
-- Every version of the organization's data key, newest first, with how many stored values each
-- one seals (counted, not remembered).
SELECT k.version, k.key_id, k.created_at, k.wrapped_at, k.retired_at,
       (k.version = o.data_key_version)::boolean AS current,
       (SELECT count(*) FROM connections c WHERE c.org_id = k.org_id AND sealed_key_version(c.sealed_credentials) = k.version)::bigint AS sealed_logins,
       (SELECT count(*) FROM connections c WHERE c.org_id = k.org_id AND sealed_key_version(c.webhook_signing_secret) = k.version)::bigint AS sealed_webhook_keys
FROM org_data_keys k JOIN organizations o ON o.id = k.org_id
WHERE k.org_id = $1
ORDER BY k.version DESC;

-- name: ListLiveOrgDataKeys :many
SELECT version, wrapped_key, key_id FROM org_data_keys
WHERE org_id = $1 AND retired_at IS NULL
ORDER BY version;

-- name: RewrapOrgDataKey :execrows
-- Compare-and-set: stores a re-wrapping only over the wrapping it was made from.
UPDATE org_data_keys
SET wrapped_key = sqlc.arg(wrapped_key)::bytea, key_id = sqlc.arg(key_id)::text, wrapped_at = now()
WHERE org_id = sqlc.arg(org_id) AND version = sqlc.arg(version) AND retired_at IS NULL
  AND wrapped_key = sqlc.arg(old_wrapped_key)::bytea AND key_id = sqlc.arg(old_key_id)::text;

-- name: GetOrgKeyRotationState :one
-- The organization's current version and when it was created, and how many older versions are
-- still live (a re-seal not finished yet). No row: the organization has no key.
SELECT k.version, k.created_at, now()::timestamptz AS db_now,
       (SELECT count(*) FROM org_data_keys l
        WHERE l.org_id = o.id AND l.retired_at IS NULL AND l.version <> k.version)::bigint AS older_live
FROM organizations o JOIN org_data_keys k ON k.org_id = o.id AND k.version = o.data_key_version
WHERE o.id = $1;

-- name: ListConnectionsToReseal :many
-- One page, in id order after the cursor, of the organization's connections holding a value
-- sealed under a version older than current.
SELECT id, kind, sealed_credentials, credentials_version, webhook_signing_secret FROM connections
WHERE org_id = sqlc.arg(org_id) AND id > sqlc.arg(after_id)::uuid
  AND (sealed_key_version(sealed_credentials) < sqlc.arg(current_version)::bigint
       OR sealed_key_version(webhook_signing_secret) < sqlc.arg(current_version)::bigint)
ORDER BY id
LIMIT sqlc.arg(page_size)::integer;

-- name: ResealConnectionCredentials :execrows
-- Compare-and-set on the stored bytes and credentials_version: a re-seal replaces exactly the
-- value it re-sealed and never one stored meanwhile (a refresh, a re-authorization). It does not
-- bump credentials_version: the credentials are the same, only their envelope changed.
UPDATE connections SET sealed_credentials = sqlc.arg(sealed_credentials)::bytea
WHERE id = sqlc.arg(id) AND deleted_at IS NULL AND credentials_version = sqlc.arg(expected_version)
  AND sealed_credentials = sqlc.arg(old_sealed_credentials)::bytea;

-- name: ResealWebhookSigningSecret :execrows
-- Compare-and-set on the stored bytes, like ResealConnectionCredentials.
UPDATE connections SET webhook_signing_secret = sqlc.arg(webhook_signing_secret)::bytea
WHERE id = sqlc.arg(id) AND deleted_at IS NULL
  AND webhook_signing_secret = sqlc.arg(old_webhook_signing_secret)::bytea;

-- name: CountSealedUnderVersion :one
-- How many stored values of the organization a version still seals, by scanning them.
SELECT count(*) FILTER (WHERE sealed_key_version(sealed_credentials) = sqlc.arg(version)::bigint)::bigint AS logins,
       count(*) FILTER (WHERE sealed_key_version(webhook_signing_secret) = sqlc.arg(version)::bigint)::bigint AS webhook_keys
FROM connections WHERE org_id = sqlc.arg(org_id);

-- name: RetireOrgDataKey :one
-- Destroys a version's wrapped key. The database refuses (object_in_use) if the version is current
-- or still seals a stored value.
UPDATE org_data_keys SET retired_at = now(), wrapped_key = NULL
WHERE org_id = $1 AND version = $2 AND retired_at IS NULL
RETURNING key_id, retired_at::timestamptz AS retired_at;
