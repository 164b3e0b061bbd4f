-- Tenant scoping in the schema: every reference between tenant rows carries the organization, so
-- a row can only ever reference a row of its own organization — also through a query that runs
-- as the owner (which row-level security does not confine) or a buggy one that forgot its org.
--
-- Each referenced table gets a unique (org_id, id); each single-column foreign key becomes a
-- composite (org_id, x_id) one with the same ON DELETE behaviour. The unique constraints cost one
-- index each; (org_id, id) is unique anyway because id is.

-- +goose Up
ALTER TABLE connections    ADD CONSTRAINT connections_org_id_id_key    UNIQUE (org_id, id);
ALTER TABLE connector_runs ADD CONSTRAINT connector_runs_org_id_id_key UNIQUE (org_id, id);
ALTER TABLE evidence       ADD CONSTRAINT evidence_org_id_id_key       UNIQUE (org_id, id);
ALTER TABLE assessments    ADD CONSTRAINT assessments_org_id_id_key    UNIQUE (org_id, id);
ALTER TABLE findings       ADD CONSTRAINT findings_org_id_id_key       UNIQUE (org_id, id);

ALTER TABLE connector_runs
    DROP CONSTRAINT connector_runs_connection_id_fkey,
    ADD CONSTRAINT connector_runs_connection_fkey FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id);
ALTER TABLE evidence
    DROP CONSTRAINT evidence_connection_id_fkey,
    ADD CONSTRAINT evidence_connection_fkey FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id);
ALTER TABLE evidence_observations
    DROP CONSTRAINT evidence_observations_evidence_id_fkey,
    DROP CONSTRAINT evidence_observations_run_id_fkey,
    ADD CONSTRAINT evidence_observations_evidence_fkey FOREIGN KEY (org_id, evidence_id) REFERENCES evidence (org_id, id) ON DELETE CASCADE,
    ADD CONSTRAINT evidence_observations_run_fkey FOREIGN KEY (org_id, run_id) REFERENCES connector_runs (org_id, id);
ALTER TABLE assessment_evidence
    DROP CONSTRAINT assessment_evidence_assessment_id_fkey,
    DROP CONSTRAINT assessment_evidence_evidence_id_fkey,
    ADD CONSTRAINT assessment_evidence_assessment_fkey FOREIGN KEY (org_id, assessment_id) REFERENCES assessments (org_id, id),
    ADD CONSTRAINT assessment_evidence_evidence_fkey FOREIGN KEY (org_id, evidence_id) REFERENCES evidence (org_id, id);
ALTER TABLE finding_issue_links
    DROP CONSTRAINT finding_issue_links_finding_id_fkey,
    DROP CONSTRAINT finding_issue_links_connection_id_fkey,
    ADD CONSTRAINT finding_issue_links_finding_fkey FOREIGN KEY (org_id, finding_id) REFERENCES findings (org_id, id),
    ADD CONSTRAINT finding_issue_links_connection_fkey FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id);
ALTER TABLE finding_sync_queue
    DROP CONSTRAINT finding_sync_queue_finding_id_fkey,
    DROP CONSTRAINT finding_sync_queue_connection_id_fkey,
    ADD CONSTRAINT finding_sync_queue_finding_fkey FOREIGN KEY (org_id, finding_id) REFERENCES findings (org_id, id),
    ADD CONSTRAINT finding_sync_queue_connection_fkey FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id);
ALTER TABLE alerts
    DROP CONSTRAINT alerts_connection_id_fkey,
    ADD CONSTRAINT alerts_connection_fkey FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id);
ALTER TABLE webhook_deliveries
    DROP CONSTRAINT webhook_deliveries_connection_id_fkey,
    ADD CONSTRAINT webhook_deliveries_connection_fkey FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id);
ALTER TABLE oauth_states
    DROP CONSTRAINT oauth_states_connection_id_fkey,
    ADD CONSTRAINT oauth_states_connection_fkey FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, id);

-- +goose Down
ALTER TABLE oauth_states
    DROP CONSTRAINT oauth_states_connection_fkey,
    ADD CONSTRAINT oauth_states_connection_id_fkey FOREIGN KEY (connection_id) REFERENCES connections (id);
ALTER TABLE webhook_deliveries
    DROP CONSTRAINT webhook_deliveries_connection_fkey,
    ADD CONSTRAINT webhook_deliveries_connection_id_fkey FOREIGN KEY (connection_id) REFERENCES connections (id);
ALTER TABLE alerts
    DROP CONSTRAINT alerts_connection_fkey,
    ADD CONSTRAINT alerts_connection_id_fkey FOREIGN KEY (connection_id) REFERENCES connections (id);
ALTER TABLE finding_sync_queue
    DROP CONSTRAINT finding_sync_queue_finding_fkey,
    DROP CONSTRAINT finding_sync_queue_connection_fkey,
    ADD CONSTRAINT finding_sync_queue_finding_id_fkey FOREIGN KEY (finding_id) REFERENCES findings (id),
    ADD CONSTRAINT finding_sync_queue_connection_id_fkey FOREIGN KEY (connection_id) REFERENCES connections (id);
ALTER TABLE finding_issue_links
    DROP CONSTRAINT finding_issue_links_finding_fkey,
    DROP CONSTRAINT finding_issue_links_connection_fkey,
    ADD CONSTRAINT finding_issue_links_finding_id_fkey FOREIGN KEY (finding_id) REFERENCES findings (id),
    ADD CONSTRAINT finding_issue_links_connection_id_fkey FOREIGN KEY (connection_id) REFERENCES connections (id);
ALTER TABLE assessment_evidence
    DROP CONSTRAINT assessment_evidence_assessment_fkey,
    DROP CONSTRAINT assessment_evidence_evidence_fkey,
    ADD CONSTRAINT assessment_evidence_assessment_id_fkey FOREIGN KEY (assessment_id) REFERENCES assessments (id),
    ADD CONSTRAINT assessment_evidence_evidence_id_fkey FOREIGN KEY (evidence_id) REFERENCES evidence (id);
ALTER TABLE evidence_observations
    DROP CONSTRAINT evidence_observations_evidence_fkey,
    DROP CONSTRAINT evidence_observations_run_fkey,
    ADD CONSTRAINT evidence_observations_evidence_id_fkey FOREIGN KEY (evidence_id) REFERENCES evidence (id) ON DELETE CASCADE,
    ADD CONSTRAINT evidence_observations_run_id_fkey FOREIGN KEY (run_id) REFERENCES connector_runs (id);
ALTER TABLE evidence
    DROP CONSTRAINT evidence_connection_fkey,
    ADD CONSTRAINT evidence_connection_id_fkey FOREIGN KEY (connection_id) REFERENCES connections (id);
ALTER TABLE connector_runs
    DROP CONSTRAINT connector_runs_connection_fkey,
    ADD CONSTRAINT connector_runs_connection_id_fkey FOREIGN KEY (connection_id) REFERENCES connections (id);

ALTER TABLE findings       DROP CONSTRAINT findings_org_id_id_key;
ALTER TABLE assessments    DROP CONSTRAINT assessments_org_id_id_key;
ALTER TABLE evidence       DROP CONSTRAINT evidence_org_id_id_key;
ALTER TABLE connector_runs DROP CONSTRAINT connector_runs_org_id_id_key;
ALTER TABLE connections    DROP CONSTRAINT connections_org_id_id_key;
