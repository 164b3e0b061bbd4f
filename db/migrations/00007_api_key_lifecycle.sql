-- API key lifecycle: keys may expire, are revoked for good, and record who created and who revoked
-- them (an audit actor: the API key that asked, or the CLI).
--
-- Authentication refuses revoked and expired keys in the database function itself, on every
-- request: no process caches an authentication result, so a revocation or an expiry takes effect
-- on every API process with the next request.

-- +goose Up
ALTER TABLE api_keys
    -- NULL: the key does not expire.
    ADD COLUMN expires_at      timestamptz,
    -- The audit actor that created the key. NULL only for keys created before this migration
    -- whose audit row could not be found.
    ADD COLUMN created_by_type text CHECK (created_by_type IN ('api_key', 'system', 'workflow', 'jira', 'cli')),
    ADD COLUMN created_by_id   text,
    -- The audit actor that revoked the key.
    ADD COLUMN revoked_by_type text CHECK (revoked_by_type IN ('api_key', 'system', 'workflow', 'jira', 'cli')),
    ADD COLUMN revoked_by_id   text,
    ADD CONSTRAINT api_keys_expires_after_creation CHECK (expires_at IS NULL OR expires_at > created_at),
    ADD CONSTRAINT api_keys_creator_complete CHECK ((created_by_type IS NULL) = (created_by_id IS NULL)),
    ADD CONSTRAINT api_keys_revoker_complete CHECK ((revoked_by_type IS NULL) = (revoked_by_id IS NULL)),
    ADD CONSTRAINT api_keys_revoker_needs_revocation CHECK (revoked_by_type IS NULL OR revoked_at IS NOT NULL);

-- Existing keys get their creator from the audit log: `api_key.create` names the key, and
-- `org.create` names the prefix of the organization's first admin key.
UPDATE api_keys k
SET created_by_type = a.actor_type, created_by_id = a.actor_id
FROM audit_log a
WHERE a.org_id = k.org_id AND a.action = 'api_key.create' AND a.target_type = 'api_key'
  AND a.target_id = k.id::text;
UPDATE api_keys k
SET created_by_type = a.actor_type, created_by_id = a.actor_id
FROM audit_log a
WHERE k.created_by_type IS NULL AND a.org_id = k.org_id AND a.action = 'org.create'
  AND a.metadata ->> 'admin_key_prefix' = k.prefix;

-- guard_api_key makes revocation final and a key's identity immutable, whoever writes (the
-- application, the owner, a future buggy grant): a revoked key cannot change at all (so it can
-- never be un-revoked), and otherwise only last_used_at (authentication) and the revocation
-- columns may change.
-- +goose StatementBegin
CREATE FUNCTION guard_api_key() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF OLD.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'api key % is revoked and cannot change', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.id, NEW.org_id, NEW.name, NEW.role, NEW.prefix, NEW.key_hash, NEW.created_at, NEW.expires_at,
        NEW.created_by_type, NEW.created_by_id)
        IS DISTINCT FROM
       (OLD.id, OLD.org_id, OLD.name, OLD.role, OLD.prefix, OLD.key_hash, OLD.created_at, OLD.expires_at,
        OLD.created_by_type, OLD.created_by_id) THEN
        RAISE EXCEPTION 'api key %: only its last use and its revocation may change', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER api_keys_guard
    BEFORE UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION guard_api_key();

-- The application only ever revokes keys; last_used_at is written by app_authenticate_api_key,
-- which runs as the owner.
REVOKE UPDATE ON api_keys FROM jiraconnect_app;
GRANT UPDATE (revoked_at, revoked_by_type, revoked_by_id) ON api_keys TO jiraconnect_app;

-- app_authenticate_api_key resolves the hash of an active key (neither revoked nor expired) to its
-- org and role, touching last_used_at at most once a minute so that authentication does not write
-- on every request.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION app_authenticate_api_key(p_hash bytea)
    RETURNS TABLE (key_id uuid, org_id uuid, role text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
BEGIN
    UPDATE api_keys k SET last_used_at = now()
    WHERE k.key_hash = p_hash AND k.revoked_at IS NULL
      AND (k.expires_at IS NULL OR k.expires_at > now())
      AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute');
    RETURN QUERY SELECT k.id, k.org_id, k.role FROM api_keys k
                 WHERE k.key_hash = p_hash AND k.revoked_at IS NULL
                   AND (k.expires_at IS NULL OR k.expires_at > now());
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION app_authenticate_api_key(p_hash bytea)
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
REVOKE UPDATE (revoked_at, revoked_by_type, revoked_by_id) ON api_keys FROM jiraconnect_app;
GRANT UPDATE ON api_keys TO jiraconnect_app;
DROP TRIGGER IF EXISTS api_keys_guard ON api_keys;
DROP FUNCTION IF EXISTS guard_api_key();
ALTER TABLE api_keys
    DROP CONSTRAINT IF EXISTS api_keys_revoker_needs_revocation,
    DROP CONSTRAINT IF EXISTS api_keys_revoker_complete,
    DROP CONSTRAINT IF EXISTS api_keys_creator_complete,
    DROP CONSTRAINT IF EXISTS api_keys_expires_after_creation,
    DROP COLUMN IF EXISTS revoked_by_id,
    DROP COLUMN IF EXISTS revoked_by_type,
    DROP COLUMN IF EXISTS created_by_id,
    DROP COLUMN IF EXISTS created_by_type,
    DROP COLUMN IF EXISTS expires_at;
