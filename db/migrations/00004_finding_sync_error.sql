-- +goose Up
-- A finding push that fails for a configuration reason (forbidden project, unknown custom field,
-- unmapped status) waits for an admin to change the configuration. Its error is kept apart from
-- last_error, which mirrors the evidence sync and is rewritten by every sync, so the push problem
-- stays visible on the connection until the finding-sync configuration is saved again.
ALTER TABLE connections
    ADD COLUMN finding_sync_error      text,
    ADD COLUMN finding_sync_error_kind text,
    ADD COLUMN finding_sync_error_at   timestamptz;

-- +goose Down
ALTER TABLE connections DROP COLUMN IF EXISTS finding_sync_error_at, DROP COLUMN IF EXISTS finding_sync_error_kind,
    DROP COLUMN IF EXISTS finding_sync_error;
