-- Evidence observations as spans of continuous freshness. A daily sync of 30 items wrote 30 rows a
-- day, forever; what an auditor needs is the record of continuous monitoring: which evidence was
-- observed fresh over which intervals. A span is one run of observations of one evidence row, each
-- within the connection's stale threshold of the one before and all with the same
-- counts_as_evidence; a sync that observes the evidence again extends the span, anything else
-- starts a new one. So the table grows with changes, not with days, and coverage at any instant t
-- is exact: the evidence was fresh at t if and only if a counting span has
-- first_observed_at <= t <= last_observed_at + the threshold (no gap inside a span exceeds it;
-- longest_gap records the largest).
--
-- Every sync stays on record in connector_runs (outcome, timings, how many items it observed); a
-- span names the runs that opened and last extended it.

-- +goose Up
CREATE TABLE evidence_observation_spans (
    org_id             uuid        NOT NULL REFERENCES organizations (id),
    evidence_id        uuid        NOT NULL,
    first_run_id       uuid        NOT NULL,
    last_run_id        uuid        NOT NULL,
    first_observed_at  timestamptz NOT NULL,
    last_observed_at   timestamptz NOT NULL,
    observations       integer     NOT NULL CHECK (observations >= 1),
    longest_gap        interval    NOT NULL DEFAULT interval '0' CHECK (longest_gap >= interval '0'),
    counts_as_evidence boolean     NOT NULL,
    PRIMARY KEY (evidence_id, first_observed_at),
    CHECK (last_observed_at >= first_observed_at),
    FOREIGN KEY (org_id, evidence_id) REFERENCES evidence (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, first_run_id) REFERENCES connector_runs (org_id, id),
    FOREIGN KEY (org_id, last_run_id) REFERENCES connector_runs (org_id, id)
);
CREATE INDEX evidence_observation_spans_last_run_idx ON evidence_observation_spans (last_run_id);
CREATE INDEX evidence_observation_spans_first_run_idx ON evidence_observation_spans (first_run_id);
ALTER TABLE evidence_observation_spans ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON evidence_observation_spans USING (org_id = app_current_org())
    WITH CHECK (org_id = app_current_org());
GRANT SELECT, INSERT, DELETE ON evidence_observation_spans TO jiraconnect_app;
GRANT UPDATE (last_run_id, last_observed_at, observations, longest_gap) ON evidence_observation_spans TO jiraconnect_app;

-- The existing observations, folded by the same rule. The threshold is each connection's effective
-- one (connections.Config.EffectiveStaleThreshold): its stale_threshold, raised to
-- cadence + min(cadence/20, 10m) + 25m and to at least 1h. Go durations ("48h0m0s") read as intervals.
INSERT INTO evidence_observation_spans (org_id, evidence_id, first_run_id, last_run_id, first_observed_at, last_observed_at,
                                        observations, longest_gap, counts_as_evidence)
WITH cfg AS (
    SELECT c.id AS connection_id,
           coalesce((c.config->>'stale_threshold')::interval, interval '48 hours') AS threshold,
           coalesce((c.config->>'sync_cadence')::interval, interval '24 hours') AS cadence
    FROM connections c
), obs AS (
    SELECT o.org_id, o.evidence_id, o.run_id, o.observed_at, o.counts_as_evidence,
           greatest(cfg.threshold, interval '1 hour',
                    cfg.cadence + least(cfg.cadence / 20, interval '10 minutes') + interval '25 minutes') AS within,
           lag(o.observed_at) OVER w AS prev_at,
           lag(o.counts_as_evidence) OVER w AS prev_counts
    FROM evidence_observations o
    JOIN evidence e ON e.id = o.evidence_id
    JOIN cfg ON cfg.connection_id = e.connection_id
    WINDOW w AS (PARTITION BY o.evidence_id ORDER BY o.observed_at, o.run_id)
), marked AS (
    SELECT obs.*,
           (prev_at IS NULL OR prev_counts <> counts_as_evidence OR observed_at - prev_at > within)::int AS starts
    FROM obs
), numbered AS (
    SELECT marked.*, sum(starts) OVER (PARTITION BY evidence_id ORDER BY observed_at, run_id) AS span_no
    FROM marked
)
SELECT org_id, evidence_id,
       (array_agg(run_id ORDER BY observed_at, run_id))[1],
       (array_agg(run_id ORDER BY observed_at DESC, run_id DESC))[1],
       min(observed_at), max(observed_at), count(*),
       coalesce(max(observed_at - prev_at) FILTER (WHERE starts = 0), interval '0'),
       bool_and(counts_as_evidence)
FROM numbered
GROUP BY org_id, evidence_id, span_no;

DROP TABLE evidence_observations;

-- +goose Down
-- Lossy by nature: a span keeps its first and last observation, not the ones in between.
CREATE TABLE evidence_observations (
    org_id             uuid        NOT NULL REFERENCES organizations (id),
    evidence_id        uuid        NOT NULL,
    run_id             uuid        NOT NULL,
    observed_at        timestamptz NOT NULL,
    counts_as_evidence boolean     NOT NULL,
    PRIMARY KEY (evidence_id, run_id),
    CONSTRAINT evidence_observations_evidence_fkey FOREIGN KEY (org_id, evidence_id) REFERENCES evidence (org_id, id) ON DELETE CASCADE,
    CONSTRAINT evidence_observations_run_fkey FOREIGN KEY (org_id, run_id) REFERENCES connector_runs (org_id, id)
);
CREATE INDEX evidence_observations_run_idx ON evidence_observations (run_id);
CREATE INDEX evidence_observations_evidence_observed_idx ON evidence_observations (evidence_id, observed_at DESC);
ALTER TABLE evidence_observations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON evidence_observations USING (org_id = app_current_org())
    WITH CHECK (org_id = app_current_org());
GRANT SELECT, INSERT, DELETE ON evidence_observations TO jiraconnect_app;
INSERT INTO evidence_observations (org_id, evidence_id, run_id, observed_at, counts_as_evidence)
SELECT org_id, evidence_id, first_run_id, first_observed_at, counts_as_evidence FROM evidence_observation_spans
UNION
SELECT org_id, evidence_id, last_run_id, last_observed_at, counts_as_evidence FROM evidence_observation_spans
ON CONFLICT DO NOTHING;
DROP TABLE evidence_observation_spans;
