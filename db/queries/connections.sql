-- name: CreateConnection :one
INSERT INTO connections (id, org_id, kind, site_url, cloud_id, status, config, scopes,
                         sealed_credentials, webhook_secret_hash, workflow_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
RETURNING *;

-- name: GetConnection :one
SELECT * FROM connections WHERE id = $1;

-- name: ListConnections :many
SELECT * FROM connections ORDER BY created_at DESC, id LIMIT sqlc.arg(page_size)::integer;

-- name: UpdateConnectionConfig :one
UPDATE connections SET config = $2, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING *;

-- name: UpdateFindingSyncConfig :one
-- Saves a configuration whose finding-sync part changed: the push error recorded under the old
-- configuration no longer applies (errored findings are queued again in the same transaction).
UPDATE connections
SET config = $2, finding_sync_error = NULL, finding_sync_error_kind = NULL, finding_sync_error_at = NULL, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING *;

-- name: ActivateConnection :one
-- Stores fresh credentials (connect or re-auth) and makes the connection active.
UPDATE connections
SET sealed_credentials = sqlc.arg(sealed_credentials),
    credentials_version = credentials_version + 1,
    cloud_id = coalesce(sqlc.narg(cloud_id), cloud_id),
    scopes = sqlc.arg(scopes),
    status = 'active',
    last_error = NULL, last_error_kind = NULL,
    updated_at = now()
WHERE id = sqlc.arg(id) AND deleted_at IS NULL
RETURNING *;

-- name: LockCredentialRefresh :exec
-- Serializes the OAuth refreshes of one connection across every process (API processes and
-- workers alike) until the transaction ends: Atlassian revokes a whole grant when a rotated refresh
-- token is presented again outside its reuse leeway, which may be zero. An advisory lock, not a row
-- lock, so the refresh's call to the token endpoint does not hold up writes to the connection.
SELECT pg_advisory_xact_lock(hashtextextended('jiraconnect.oauth-refresh.' || sqlc.arg(connection_id)::uuid::text, 0));

-- name: RotateConnectionCredentials :one
-- Compare-and-set on credentials_version: a rotated OAuth token pair is stored only if nobody
-- else stored newer credentials in between.
UPDATE connections
SET sealed_credentials = sqlc.arg(sealed_credentials),
    credentials_version = credentials_version + 1,
    updated_at = now()
WHERE id = sqlc.arg(id) AND credentials_version = sqlc.arg(expected_version) AND deleted_at IS NULL
RETURNING credentials_version;

-- name: SetConnectionState :one
-- Mirrors the workflow's view of the connection for the API.
UPDATE connections
SET status = sqlc.arg(status),
    stale = sqlc.arg(stale),
    next_sync_at = sqlc.narg(next_sync_at),
    last_sync_at = coalesce(sqlc.narg(last_sync_at), last_sync_at),
    last_success_at = coalesce(sqlc.narg(last_success_at), last_success_at),
    last_error = sqlc.narg(last_error),
    last_error_kind = sqlc.narg(last_error_kind),
    updated_at = now()
WHERE id = sqlc.arg(id) AND deleted_at IS NULL
RETURNING *;

-- name: RevokeConnection :one
-- Revoke keeps the row (and its evidence, runs and audit trail) but destroys the credentials.
UPDATE connections
SET status = 'revoked', deleted_at = coalesce(deleted_at, now()), sealed_credentials = NULL,
    webhook_secret_hash = NULL, webhook_signing_secret = NULL, next_sync_at = NULL, updated_at = now()
WHERE id = $1
RETURNING *;

-- name: CreateOAuthState :exec
INSERT INTO oauth_states (state_hash, org_id, connection_id, expires_at) VALUES ($1, $2, $3, $4);

-- name: ConsumeOAuthState :one
SELECT org_id::uuid AS org_id, connection_id::uuid AS connection_id
FROM app_consume_oauth_state(sqlc.arg(state_hash)::bytea);

-- name: WebhookTarget :one
SELECT org_id::uuid AS org_id, status::text AS status, webhook_secret_hash::bytea AS webhook_secret_hash, deleted::boolean AS deleted
FROM app_webhook_target(sqlc.arg(connection_id)::uuid);

-- name: ListSupervisedConnections :many
-- One page of the organization's connections that must have a running workflow (active or
-- needs_reauth, not deleted), in (created_at, id) order after the cursor, for the connection
-- supervisor. The order follows connections_org_idx, so a page costs an index range scan
-- however many connections the organization has.
SELECT id, status, stale, created_at
FROM connections
WHERE status IN ('active', 'needs_reauth')
  AND deleted_at IS NULL
  AND created_at >= sqlc.arg(after_created_at)::timestamptz
  AND (created_at, id) > (sqlc.arg(after_created_at)::timestamptz, sqlc.arg(after_id)::uuid)
ORDER BY created_at, id
LIMIT sqlc.arg(page_size)::integer;
