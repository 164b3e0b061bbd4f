-- Evidence sync bookkeeping on connector runs.
--
-- No new tables: connector_runs, evidence, evidence_observations and alerts already carry RLS
-- policies and least-privilege grants from 00001, and table-level grants cover added columns.

-- +goose Up
ALTER TABLE connector_runs
    -- Why the run happened ("schedule", "sync_now", "reauthorized", "test"): operators reading a
    -- run list need to tell a user's sync-now from the daily timer.
    ADD COLUMN triggered_by text    NOT NULL DEFAULT '',
    -- How many activity attempts worked on the run. A run is keyed by workflow id + sequence, so
    -- Temporal retries land on the same row; this makes them visible instead of invisible.
    ADD COLUMN attempts     integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Structured result of the run: for syncs the per-evidence-type completeness report (which
    -- type produced no data and why) and the evidence counts; for connection tests each check.
    ADD COLUMN report       jsonb;

-- Freshness lookups ("when was this evidence last observed") and the retention job's
-- "observed within the window" test both ask for an evidence row's newest observation.
CREATE INDEX evidence_observations_evidence_observed_idx
    ON evidence_observations (evidence_id, observed_at DESC);

-- SetConnectionState reads the newest audit row about a connection to keep retried activities
-- from writing duplicate rows; without this index that walks the org's whole log backwards.
CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id, id DESC);

-- +goose Down
DROP INDEX IF EXISTS audit_log_target_idx;
DROP INDEX IF EXISTS evidence_observations_evidence_observed_idx;
ALTER TABLE connector_runs DROP COLUMN IF EXISTS report, DROP COLUMN IF EXISTS attempts,
    DROP COLUMN IF EXISTS triggered_by;
