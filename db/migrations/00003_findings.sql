-- Finding ⇄ Jira issue sync: webhook secrets, dynamic webhook bookkeeping, the per-connection
-- finding work queue, and finding provenance.

-- +goose Up
ALTER TABLE connections
    -- Sealed HMAC key for X-Hub-Signature on admin-registered webhooks (NULL: unsigned).
    ADD COLUMN webhook_signing_secret bytea,
    -- Dynamic webhooks registered through the REST API (OAuth connections), and when they expire.
    ADD COLUMN dynamic_webhook_ids bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN dynamic_webhook_expires_at timestamptz,
    -- When the last reconciliation pull of linked issues ran (it asks for changes since then).
    ADD COLUMN reconciled_at timestamptz;

ALTER TABLE findings
    -- Who made the last status change: 'api' (the scanner or a user) or 'jira' (a webhook or
    -- reconciliation). A change caused by Jira is never pushed back to Jira.
    ADD COLUMN status_source text NOT NULL DEFAULT 'api' CHECK (status_source IN ('api', 'jira')),
    ADD COLUMN status_changed_at timestamptz NOT NULL DEFAULT now();

-- The outbox between the API and a connection's workflow: a finding that needs pushing (create
-- or transition) is queued here in the same transaction as the change, then the workflow is
-- nudged. The workflow drains the queue in batches, so its own state never grows with the number
-- of findings.
CREATE TABLE finding_sync_queue (
    org_id        uuid        NOT NULL REFERENCES organizations (id),
    connection_id uuid        NOT NULL REFERENCES connections (id),
    finding_id    uuid        NOT NULL REFERENCES findings (id),
    enqueued_at   timestamptz NOT NULL DEFAULT now(),
    attempts      integer     NOT NULL DEFAULT 0,
    -- not_before delays an item (rate limits, waiting for search consistency after a lost create).
    not_before    timestamptz NOT NULL DEFAULT now(),
    last_error    text,
    PRIMARY KEY (connection_id, finding_id)
);
CREATE INDEX finding_sync_queue_due_idx ON finding_sync_queue (connection_id, not_before);

ALTER TABLE finding_sync_queue ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON finding_sync_queue
    USING (org_id = app_current_org()) WITH CHECK (org_id = app_current_org());
GRANT SELECT, INSERT, UPDATE, DELETE ON finding_sync_queue TO jiraconnect_app;
GRANT DELETE ON finding_issue_links TO jiraconnect_app;

-- +goose Down
REVOKE DELETE ON finding_issue_links FROM jiraconnect_app;
DROP TABLE IF EXISTS finding_sync_queue;
ALTER TABLE findings DROP COLUMN IF EXISTS status_changed_at, DROP COLUMN IF EXISTS status_source;
ALTER TABLE connections DROP COLUMN IF EXISTS reconciled_at, DROP COLUMN IF EXISTS dynamic_webhook_expires_at,
    DROP COLUMN IF EXISTS dynamic_webhook_ids, DROP COLUMN IF EXISTS webhook_signing_secret;
