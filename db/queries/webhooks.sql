-- name: RecordWebhookDelivery :execrows
-- Accept-once: a redelivery of the same X-Atlassian-Webhook-Identifier inserts nothing. A new
-- delivery is stored with its parsed change, pending until the connection's workflow applies it.
INSERT INTO webhook_deliveries (org_id, connection_id, delivery_id, source_ip, change)
VALUES ($1, $2, $3, $4, sqlc.arg(change)::jsonb)
ON CONFLICT (connection_id, delivery_id) DO NOTHING;

-- name: PendingInboxChanges :many
-- The oldest pending changes of a connection, in apply order (webhook_deliveries_pending_idx).
SELECT seq::bigint AS seq, delivery_id, change::jsonb AS change
FROM webhook_deliveries
WHERE connection_id = sqlc.arg(connection_id) AND change IS NOT NULL AND applied_at IS NULL
ORDER BY seq
LIMIT sqlc.arg(max_rows);

-- name: MarkInboxApplied :execrows
-- Marks one pending change applied. It is run in the transaction of the change's effect: 0 rows
-- means another transaction applied it first, and the caller must then roll its own back.
UPDATE webhook_deliveries SET applied_at = now()
WHERE connection_id = sqlc.arg(connection_id) AND seq = sqlc.arg(seq)::bigint AND change IS NOT NULL AND applied_at IS NULL;

-- name: MarkInboxAppliedThrough :execrows
-- Marks every pending change of a connection up to seq applied (finding sync is off: nothing to do).
UPDATE webhook_deliveries SET applied_at = now()
WHERE connection_id = sqlc.arg(connection_id) AND seq <= sqlc.arg(seq)::bigint AND change IS NOT NULL AND applied_at IS NULL;

-- name: CountPendingInbox :one
-- How many changes of a connection are pending, counted up to max_rows (enough to say "more").
SELECT count(*) FROM (
    SELECT 1 FROM webhook_deliveries
    WHERE connection_id = sqlc.arg(connection_id) AND change IS NOT NULL AND applied_at IS NULL
    LIMIT sqlc.arg(max_rows)
) pending;

-- name: PurgeWebhookDeliveriesBatch :execrows
-- Retention: deletes up to batch_size of the organization's deliveries received before the cutoff
-- that only served as accept-once records by now: applied, or stored before the inbox existed
-- (no change). A pending change is the inbox and is never deleted, however old. Row-level security
-- limits it to the organization; webhook_deliveries_spent_idx serves it.
DELETE FROM webhook_deliveries d
WHERE (d.connection_id, d.delivery_id) IN (
    SELECT w.connection_id, w.delivery_id
    FROM webhook_deliveries w
    WHERE w.received_at < sqlc.arg(cutoff)
      AND (w.applied_at IS NOT NULL OR w.change IS NULL)
    ORDER BY w.received_at
    LIMIT sqlc.arg(batch_size)::integer
);

-- name: DiscardPendingInbox :execrows
-- Revoke: the connection's pending changes will never be applied (its workflow has ended), so they
-- go with it; accept-once records of applied deliveries stay until retention takes them.
DELETE FROM webhook_deliveries
WHERE connection_id = sqlc.arg(connection_id) AND change IS NOT NULL AND applied_at IS NULL;

-- name: DiscardRevokedInboxBatch :many
-- Retention: up to batch_size pending changes of the organization's revoked connections (revoked
-- before revoke discarded them itself), with the connection each belonged to.
DELETE FROM webhook_deliveries d
WHERE (d.connection_id, d.delivery_id) IN (
    SELECT w.connection_id, w.delivery_id
    FROM webhook_deliveries w JOIN connections c ON c.id = w.connection_id
    WHERE c.deleted_at IS NOT NULL AND w.change IS NOT NULL AND w.applied_at IS NULL
    LIMIT sqlc.arg(batch_size)::integer
)
RETURNING d.connection_id;

-- name: GetWebhookSigningSecret :one
SELECT webhook_signing_secret FROM connections WHERE id = $1 AND deleted_at IS NULL;

-- name: SetWebhookSecrets :one
UPDATE connections
SET webhook_secret_hash = sqlc.arg(secret_hash), webhook_signing_secret = sqlc.narg(signing_secret), updated_at = now()
WHERE id = sqlc.arg(id) AND deleted_at IS NULL
RETURNING id;
