-- name: RecordWebhookDelivery :execrows
-- Accept-once: a redelivery of the same X-Atlassian-Webhook-Identifier inserts nothing.
INSERT INTO webhook_deliveries (org_id, connection_id, delivery_id, source_ip)
VALUES ($1, $2, $3, $4)
ON CONFLICT (connection_id, delivery_id) DO NOTHING;

-- name: GetWebhookSigningSecret :one
SELECT webhook_signing_secret FROM connections WHERE id = $1 AND deleted_at IS NULL;

-- name: SetWebhookSecrets :one
UPDATE connections
SET webhook_secret_hash = sqlc.arg(secret_hash), webhook_signing_secret = sqlc.narg(signing_secret), updated_at = now()
WHERE id = sqlc.arg(id) AND deleted_at IS NULL
RETURNING id;
