-- The webhook inbox: webhook_deliveries, until now only the accept-once record of each delivery,
-- also holds the parsed change and whether the connection's workflow has applied it. The bridge
-- stores a delivery in one short transaction and only then nudges the workflow (a signal without
-- payload, coalesced per connection), which reads the pending changes in apply order and marks
-- each one applied in the transaction of its effect. So the API never waits on Temporal inside a
-- transaction, and one workflow task serves any number of deliveries.

-- +goose Up
-- seq orders the changes of a connection (arrival order). It is filled from its own sequence by
-- a column default set after the column is added, so that existing rows — possibly many, as
-- deliveries are never purged — are not rewritten and keep NULL; they have no change and are never
-- pending.
CREATE SEQUENCE webhook_deliveries_seq_seq AS bigint;
ALTER TABLE webhook_deliveries
    ADD COLUMN seq        bigint,
    -- The parsed change as the workflow contract's JiraIssueChange (delivery id, event, issue id and
    -- key, status id/name/category, whether the status changed and from which name, Jira's time,
    -- when it was received): ids, keys and statuses only, never issue content. NULL for deliveries
    -- stored before the inbox existed.
    ADD COLUMN change     jsonb,
    -- When the change was applied (or found to need nothing); NULL while it is pending.
    ADD COLUMN applied_at timestamptz;
ALTER SEQUENCE webhook_deliveries_seq_seq OWNED BY webhook_deliveries.seq;
ALTER TABLE webhook_deliveries ALTER COLUMN seq SET DEFAULT nextval('webhook_deliveries_seq_seq');

-- The pending changes of a connection in apply order; applied rows leave the index.
CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (connection_id, seq)
    WHERE change IS NOT NULL AND applied_at IS NULL;

-- The application inserts deliveries (which draws seq) and marks them applied; nothing else of a
-- delivery ever changes.
GRANT USAGE ON SEQUENCE webhook_deliveries_seq_seq TO jiraconnect_app;
GRANT UPDATE (applied_at) ON webhook_deliveries TO jiraconnect_app;

-- +goose Down
REVOKE UPDATE (applied_at) ON webhook_deliveries FROM jiraconnect_app;
DROP INDEX IF EXISTS webhook_deliveries_pending_idx;
-- Dropping seq drops the sequence it owns.
ALTER TABLE webhook_deliveries DROP COLUMN IF EXISTS applied_at, DROP COLUMN IF EXISTS change,
    DROP COLUMN IF EXISTS seq;
DROP SEQUENCE IF EXISTS webhook_deliveries_seq_seq;
