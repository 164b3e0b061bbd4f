-- +goose Up
-- The daily retention pass deletes webhook deliveries whose accept-once window has passed
-- (PurgeWebhookDeliveriesBatch): applied ones, and those stored before the inbox (no change).
-- This index holds exactly those rows per organization in arrival order, so each batch reads its
-- oldest rows instead of scanning a table that takes one row per delivery. Pending changes are
-- not in it: they are the inbox (webhook_deliveries_pending_idx).
CREATE INDEX webhook_deliveries_spent_idx ON webhook_deliveries (org_id, received_at)
    WHERE applied_at IS NOT NULL OR change IS NULL;

-- +goose Down
DROP INDEX IF EXISTS webhook_deliveries_spent_idx;
