-- Foundation schema: tenants, API keys, connections and their runs, evidence, controls, assessments,
-- findings and their Jira links, alerts, the audit log, webhook dedupe and OAuth states.
--
-- Tenancy model: every tenant table carries org_id and is protected by row-level security keyed on
-- the transaction-local setting app.org_id. The application never runs as the owner of these
-- tables: it runs as jiraconnect_app (no BYPASSRLS), so a query without an org set sees nothing.
-- Migrations run as the owner role.

-- +goose Up

-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'jiraconnect_app') THEN
        CREATE ROLE jiraconnect_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;
-- +goose StatementEnd

-- app_current_org is the single definition of "the org of this transaction". An unset or empty
-- setting yields NULL, and NULL = anything is never true, so policies fail closed.
-- +goose StatementBegin
CREATE FUNCTION app_current_org() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(current_setting('app.org_id', true), '')::uuid $$;
-- +goose StatementEnd

-- reject_mutation backs the append-only and immutability guarantees. It is a trigger, not only a
-- missing privilege, so that even the owner or a future buggy grant cannot rewrite history.
-- +goose StatementBegin
CREATE FUNCTION reject_mutation() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION '% on % is not allowed: rows are immutable', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd

CREATE TABLE organizations (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name             text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- The org's data key, wrapped by KMS (or the local keyring) with encryption context {org_id}.
    wrapped_data_key bytea,
    data_key_id      text,
    data_key_version integer     NOT NULL DEFAULT 0,
    CHECK ((wrapped_data_key IS NULL) = (data_key_id IS NULL))
);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id       uuid        NOT NULL REFERENCES organizations (id),
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role         text        NOT NULL CHECK (role IN ('admin', 'member', 'auditor')),
    -- prefix is the public, non-secret start of the key, shown in listings to tell keys apart.
    prefix       text        NOT NULL,
    -- key_hash is SHA-256 of the whole key; keys are 256-bit random so a fast hash is sufficient.
    key_hash     bytea       NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_org_idx ON api_keys (org_id);

CREATE TABLE connections (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id              uuid        NOT NULL REFERENCES organizations (id),
    kind                text        NOT NULL CHECK (kind IN ('cloud_oauth', 'cloud_token', 'datacenter_pat')),
    site_url            text        NOT NULL,
    cloud_id            text,
    status              text        NOT NULL DEFAULT 'pending_auth'
        CHECK (status IN ('pending_auth', 'active', 'needs_reauth', 'revoked')),
    config              jsonb       NOT NULL DEFAULT '{}'::jsonb,
    scopes              text[]      NOT NULL DEFAULT '{}',
    -- Credentials sealed under the org data key; cleared (NULL) on revoke.
    sealed_credentials  bytea,
    credentials_version integer     NOT NULL DEFAULT 0,
    webhook_secret_hash bytea,
    workflow_id         text        NOT NULL,
    last_sync_at        timestamptz,
    last_success_at     timestamptz,
    next_sync_at        timestamptz,
    stale               boolean     NOT NULL DEFAULT false,
    last_error          text,
    last_error_kind     text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CHECK (deleted_at IS NULL OR sealed_credentials IS NULL)
);
CREATE INDEX connections_org_idx ON connections (org_id, created_at DESC);

CREATE TABLE connector_runs (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id          uuid        NOT NULL REFERENCES organizations (id),
    connection_id   uuid        NOT NULL REFERENCES connections (id),
    kind            text        NOT NULL,
    -- idempotency_key is derived from workflow id + a stable per-run sequence, never the run id, so
    -- an activity retried after a worker crash updates the same row instead of adding another.
    idempotency_key text        NOT NULL,
    outcome         text        NOT NULL DEFAULT 'running'
        CHECK (outcome IN ('running', 'success', 'partial', 'no_data', 'failed')),
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    error           text,
    error_kind      text,
    jira_calls      integer     NOT NULL DEFAULT 0,
    workflow_id     text        NOT NULL,
    run_id          text        NOT NULL,
    UNIQUE (org_id, idempotency_key)
);
CREATE INDEX connector_runs_connection_idx ON connector_runs (connection_id, started_at DESC);

CREATE TABLE evidence (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id        uuid        NOT NULL REFERENCES organizations (id),
    connection_id uuid        NOT NULL REFERENCES connections (id),
    type          text        NOT NULL,
    subject       text        NOT NULL,
    payload       jsonb       NOT NULL,
    fingerprint   text        NOT NULL,
    -- Provenance of the first observation: JQL, window, connector version, response hash.
    provenance    jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, fingerprint)
);
CREATE INDEX evidence_org_type_idx ON evidence (org_id, type, created_at DESC);
CREATE INDEX evidence_connection_idx ON evidence (connection_id);

-- Which run saw which evidence: freshness survives de-duplication of identical content.
CREATE TABLE evidence_observations (
    org_id      uuid        NOT NULL REFERENCES organizations (id),
    evidence_id uuid        NOT NULL REFERENCES evidence (id) ON DELETE CASCADE,
    run_id      uuid        NOT NULL REFERENCES connector_runs (id),
    observed_at timestamptz NOT NULL,
    -- counts_as_evidence is false for "no data" observations (e.g. an empty sample).
    counts_as_evidence boolean NOT NULL,
    PRIMARY KEY (evidence_id, run_id)
);
CREATE INDEX evidence_observations_run_idx ON evidence_observations (run_id);

-- The control catalogue is global reference data, synchronised from evidence.Catalogue() by
-- `jiraconnect migrate`; tenants read it but never write it.
CREATE TABLE controls (
    id        text PRIMARY KEY,
    framework text NOT NULL,
    reference text NOT NULL,
    title     text NOT NULL,
    rationale text NOT NULL
);
CREATE TABLE control_evidence_types (
    control_id    text NOT NULL REFERENCES controls (id) ON DELETE CASCADE,
    evidence_type text NOT NULL,
    PRIMARY KEY (control_id, evidence_type)
);

CREATE TABLE assessments (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id      uuid        NOT NULL REFERENCES organizations (id),
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status      text        NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'approved')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    approved_at timestamptz,
    approved_by text,
    CHECK ((status = 'approved') = (approved_at IS NOT NULL))
);

CREATE TABLE assessment_evidence (
    org_id        uuid        NOT NULL REFERENCES organizations (id),
    assessment_id uuid        NOT NULL REFERENCES assessments (id),
    evidence_id   uuid        NOT NULL REFERENCES evidence (id),
    attached_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (assessment_id, evidence_id)
);
CREATE INDEX assessment_evidence_evidence_idx ON assessment_evidence (evidence_id);

CREATE TABLE findings (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id         uuid        NOT NULL REFERENCES organizations (id),
    external_id    text        NOT NULL CHECK (length(external_id) BETWEEN 1 AND 200),
    title          text        NOT NULL,
    severity       text        NOT NULL CHECK (severity IN ('info', 'low', 'medium', 'high', 'critical')),
    status         text        NOT NULL CHECK (status IN ('open', 'triaged', 'resolved', 'accepted', 'false_positive')),
    probe_id       text        NOT NULL DEFAULT '',
    scan_id        text        NOT NULL DEFAULT '',
    framework_refs text[]      NOT NULL DEFAULT '{}',
    excerpt        text        NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, external_id)
);

CREATE TABLE finding_issue_links (
    org_id             uuid        NOT NULL REFERENCES organizations (id),
    finding_id         uuid        NOT NULL REFERENCES findings (id),
    connection_id      uuid        NOT NULL REFERENCES connections (id),
    -- state: 'creating' is written before the Jira call (the recorded intent); 'linked' after.
    state              text        NOT NULL CHECK (state IN ('creating', 'linked')),
    issue_id           text,
    issue_key          text,
    last_pushed_status text,
    last_jira_status   text,
    last_push_at       timestamptz,
    last_inbound_at    timestamptz,
    last_error         text,
    last_error_kind    text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (finding_id, connection_id),
    UNIQUE (connection_id, issue_id)
);

CREATE TABLE alerts (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id        uuid        NOT NULL REFERENCES organizations (id),
    connection_id uuid        NOT NULL REFERENCES connections (id),
    kind          text        NOT NULL,
    state         text        NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved')),
    message       text        NOT NULL,
    opened_at     timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    CHECK ((state = 'resolved') = (resolved_at IS NOT NULL))
);
-- At most one open alert of a kind per connection: raising twice is idempotent.
CREATE UNIQUE INDEX alerts_one_open_idx ON alerts (connection_id, kind) WHERE state = 'open';
CREATE INDEX alerts_org_idx ON alerts (org_id, opened_at DESC);

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      uuid        NOT NULL REFERENCES organizations (id),
    at          timestamptz NOT NULL DEFAULT now(),
    actor_type  text        NOT NULL CHECK (actor_type IN ('api_key', 'system', 'workflow', 'jira', 'cli')),
    actor_id    text        NOT NULL DEFAULT '',
    action      text        NOT NULL,
    target_type text        NOT NULL DEFAULT '',
    target_id   text        NOT NULL DEFAULT '',
    source_ip   inet,
    metadata    jsonb
);
CREATE INDEX audit_log_org_idx ON audit_log (org_id, id DESC);

CREATE TABLE webhook_deliveries (
    org_id        uuid        NOT NULL REFERENCES organizations (id),
    connection_id uuid        NOT NULL REFERENCES connections (id),
    delivery_id   text        NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    source_ip     inet,
    PRIMARY KEY (connection_id, delivery_id)
);

CREATE TABLE oauth_states (
    -- Only the SHA-256 of the state is stored: the state itself is a bearer capability.
    state_hash    bytea PRIMARY KEY,
    org_id        uuid        NOT NULL REFERENCES organizations (id),
    connection_id uuid        NOT NULL REFERENCES connections (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    consumed_at   timestamptz
);

-- Immutability guarantees enforced by triggers.
CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION reject_mutation();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION reject_mutation();
CREATE TRIGGER evidence_immutable
    BEFORE UPDATE ON evidence
    FOR EACH ROW EXECUTE FUNCTION reject_mutation();
CREATE TRIGGER evidence_no_truncate
    BEFORE TRUNCATE ON evidence
    FOR EACH STATEMENT EXECUTE FUNCTION reject_mutation();

-- Evidence attached to an approved assessment can never be deleted.
-- +goose StatementBegin
CREATE FUNCTION protect_approved_evidence() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF EXISTS (SELECT 1
               FROM assessment_evidence ae
                        JOIN assessments a ON a.id = ae.assessment_id
               WHERE ae.evidence_id = OLD.id
                 AND a.status = 'approved') THEN
        RAISE EXCEPTION 'evidence % is attached to an approved assessment and cannot be deleted', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN OLD;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER evidence_protect_approved
    BEFORE DELETE ON evidence
    FOR EACH ROW EXECUTE FUNCTION protect_approved_evidence();

-- An approved assessment is frozen: its attachments cannot change and it cannot be un-approved.
-- +goose StatementBegin
CREATE FUNCTION freeze_approved_assessment() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    target uuid;
BEGIN
    IF TG_TABLE_NAME = 'assessments' THEN
        IF OLD.status = 'approved' THEN
            RAISE EXCEPTION 'assessment % is approved and cannot be changed', OLD.id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' THEN target := OLD.assessment_id; ELSE target := NEW.assessment_id; END IF;
    IF EXISTS (SELECT 1 FROM assessments WHERE id = target AND status = 'approved') THEN
        RAISE EXCEPTION 'assessment % is approved: its evidence cannot change', target
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER assessments_frozen
    BEFORE UPDATE OR DELETE ON assessments
    FOR EACH ROW EXECUTE FUNCTION freeze_approved_assessment();
CREATE TRIGGER assessment_evidence_frozen
    BEFORE INSERT OR UPDATE OR DELETE ON assessment_evidence
    FOR EACH ROW EXECUTE FUNCTION freeze_approved_assessment();

-- Row-level security on every tenant table.
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON organizations
    USING (id = app_current_org()) WITH CHECK (id = app_current_org());

-- +goose StatementBegin
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['api_keys', 'connections', 'connector_runs', 'evidence',
        'evidence_observations', 'assessments', 'assessment_evidence', 'findings',
        'finding_issue_links', 'alerts', 'audit_log', 'webhook_deliveries', 'oauth_states']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (org_id = app_current_org()) '
                       'WITH CHECK (org_id = app_current_org())', t);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- Pre-tenant entry points. These run as the owner (SECURITY DEFINER) and answer exactly one
-- narrow question each, before the org of a request is known.

-- app_authenticate_api_key resolves a key hash to its org and role, touching last_used_at at most
-- once a minute so that authentication does not write on every request.
-- +goose StatementBegin
CREATE FUNCTION app_authenticate_api_key(p_hash bytea)
    RETURNS TABLE (key_id uuid, org_id uuid, role text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
BEGIN
    UPDATE api_keys k SET last_used_at = now()
    WHERE k.key_hash = p_hash AND k.revoked_at IS NULL
      AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute');
    RETURN QUERY SELECT k.id, k.org_id, k.role FROM api_keys k
                 WHERE k.key_hash = p_hash AND k.revoked_at IS NULL;
END
$$;
-- +goose StatementEnd

-- app_webhook_target tells the webhook bridge which org owns a connection and how to verify it.
-- +goose StatementBegin
CREATE FUNCTION app_webhook_target(p_connection uuid)
    RETURNS TABLE (org_id uuid, status text, webhook_secret_hash bytea, deleted boolean)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
    SELECT c.org_id, c.status, c.webhook_secret_hash, c.deleted_at IS NOT NULL
    FROM connections c WHERE c.id = p_connection
$$;
-- +goose StatementEnd

-- app_consume_oauth_state atomically marks a state used and returns its binding; a reused, expired
-- or unknown state returns no row.
-- +goose StatementBegin
CREATE FUNCTION app_consume_oauth_state(p_state_hash bytea)
    RETURNS TABLE (org_id uuid, connection_id uuid)
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
    UPDATE oauth_states s SET consumed_at = now()
    WHERE s.state_hash = p_state_hash AND s.consumed_at IS NULL AND s.expires_at > now()
    RETURNING s.org_id, s.connection_id
$$;
-- +goose StatementEnd

-- app_org_ids lists organizations for system jobs (retention) that then work inside each org.
-- +goose StatementBegin
CREATE FUNCTION app_org_ids()
    RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$ SELECT id FROM organizations ORDER BY id $$;
-- +goose StatementEnd

REVOKE ALL ON FUNCTION app_authenticate_api_key(bytea), app_webhook_target(uuid),
    app_consume_oauth_state(bytea), app_org_ids() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_authenticate_api_key(bytea), app_webhook_target(uuid),
    app_consume_oauth_state(bytea), app_org_ids(), app_current_org() TO jiraconnect_app;

-- Privileges of the application role: least privilege per table.
GRANT USAGE ON SCHEMA public TO jiraconnect_app;
GRANT SELECT, INSERT, UPDATE ON organizations, api_keys, connections, connector_runs, findings,
    finding_issue_links, alerts TO jiraconnect_app;
GRANT SELECT, INSERT, DELETE ON evidence, evidence_observations, webhook_deliveries TO jiraconnect_app;
GRANT SELECT, INSERT, UPDATE ON assessments TO jiraconnect_app;
GRANT SELECT, INSERT ON assessment_evidence TO jiraconnect_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON oauth_states TO jiraconnect_app;
GRANT SELECT, INSERT ON audit_log TO jiraconnect_app;
GRANT SELECT ON controls, control_evidence_types TO jiraconnect_app;

-- +goose Down
DROP TABLE IF EXISTS oauth_states, webhook_deliveries, audit_log, alerts, finding_issue_links,
    findings, assessment_evidence, assessments, control_evidence_types, controls,
    evidence_observations, evidence, connector_runs, connections, api_keys, organizations CASCADE;
DROP FUNCTION IF EXISTS app_org_ids(), app_consume_oauth_state(bytea), app_webhook_target(uuid),
    app_authenticate_api_key(bytea), freeze_approved_assessment(), protect_approved_evidence(),
    reject_mutation(), app_current_org();
