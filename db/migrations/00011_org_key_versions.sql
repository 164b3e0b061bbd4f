-- Data key rotation: an organization's data keys are versioned, so values sealed under an older
-- version stay readable while they are re-sealed under the current one, and an old version is
-- retired (its wrapped key destroyed) only once no stored value references it.
--
-- Every sealed value starts with a header carrying the version of the key that sealed it (see the
-- seal package: format byte 1, then the version as a 32-bit big-endian integer), which
-- sealed_key_version reads. The schema, not only the code, keeps three promises:
--   - a version that is current, or that any stored value still references, cannot be retired or
--     deleted, whoever asks (guard_org_data_key scans the organization's values when it is asked);
--   - no value sealed under a retired version can be stored (check_sealed_key_version);
--   - the current version only moves forward, to a live version of the same organization.
-- The two triggers meet on the version's row: the writer of a value takes it FOR SHARE and the
-- retirement takes it for update before scanning, so whichever commits first, the other sees it.

-- +goose Up
CREATE TABLE org_data_keys (
    org_id      uuid        NOT NULL REFERENCES organizations (id),
    version     integer     NOT NULL CHECK (version >= 1),
    -- The data key wrapped by KMS (encryption context {org_id}) or the local keyring; NULL once
    -- the version is retired, which destroys it.
    wrapped_key bytea,
    -- The master key that wraps it (KMS key ARN, or local:<fingerprint>); kept after retirement.
    key_id      text        NOT NULL CHECK (key_id <> ''),
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- When wrapped_key was last written: its creation, or a re-wrap under another master key.
    wrapped_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz,
    PRIMARY KEY (org_id, version),
    CONSTRAINT org_data_keys_retired_has_no_key CHECK ((retired_at IS NULL) = (wrapped_key IS NOT NULL))
);

-- Existing keys carry over as they are: version 1 (the only version there was), created with
-- their organization.
INSERT INTO org_data_keys (org_id, version, wrapped_key, key_id, created_at, wrapped_at)
SELECT id, greatest(data_key_version, 1), wrapped_data_key, data_key_id, created_at, created_at
FROM organizations
WHERE wrapped_data_key IS NOT NULL;

-- organizations.data_key_version is the current version (NULL until the first key exists); the
-- wrapped key itself now lives only in org_data_keys, so a re-wrap under a new master key leaves
-- no copy under the old one.
ALTER TABLE organizations ALTER COLUMN data_key_version DROP NOT NULL, ALTER COLUMN data_key_version DROP DEFAULT;
UPDATE organizations SET data_key_version = CASE WHEN wrapped_data_key IS NULL THEN NULL ELSE greatest(data_key_version, 1) END;
ALTER TABLE organizations DROP COLUMN wrapped_data_key, DROP COLUMN data_key_id;
ALTER TABLE organizations ADD CONSTRAINT organizations_current_data_key_fkey
    FOREIGN KEY (id, data_key_version) REFERENCES org_data_keys (org_id, version);

-- sealed_key_version is the key version in a sealed value's header, or NULL for NULL or for bytes
-- that are not a sealed value of format 1. It never fails, whatever the bytes.
-- +goose StatementBegin
CREATE FUNCTION sealed_key_version(b bytea) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT CASE WHEN length(b) >= 5 AND substring(b FROM 1 FOR 1) = '\x01'::bytea
                THEN ('x' || encode(substring(b FROM 2 FOR 4), 'hex'))::bit(32)::bigint END
$$;
-- +goose StatementEnd

-- guard_org_data_key: a version's identity never changes, a retired version never changes again,
-- and a version is retired (or deleted) only if it is not current and no stored value of its
-- organization references it. SECURITY DEFINER so that the scan sees every row of the
-- organization whoever runs the statement; it filters on the organization itself.
-- +goose StatementBegin
CREATE FUNCTION guard_org_data_key() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
DECLARE
    refs bigint;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.retired_at IS NOT NULL THEN
            RAISE EXCEPTION 'data key version % of organization % is retired and cannot change', OLD.version, OLD.org_id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF (NEW.org_id, NEW.version, NEW.created_at) IS DISTINCT FROM (OLD.org_id, OLD.version, OLD.created_at) THEN
            RAISE EXCEPTION 'data key version % of organization %: its identity cannot change', OLD.version, OLD.org_id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF NEW.retired_at IS NULL THEN
            RETURN NEW;
        END IF;
    END IF;
    -- Retiring or deleting. The row is locked by now, so a writer that took it FOR SHARE has
    -- committed, and this scan (a new snapshot) sees its value.
    IF EXISTS (SELECT 1 FROM organizations o WHERE o.id = OLD.org_id AND o.data_key_version = OLD.version) THEN
        RAISE EXCEPTION 'data key version % of organization % is current and cannot be retired', OLD.version, OLD.org_id
            USING ERRCODE = 'object_in_use';
    END IF;
    SELECT count(*) INTO refs FROM connections c
    WHERE c.org_id = OLD.org_id
      AND (sealed_key_version(c.sealed_credentials) = OLD.version OR sealed_key_version(c.webhook_signing_secret) = OLD.version);
    IF refs > 0 THEN
        RAISE EXCEPTION 'data key version % of organization % still seals % connection(s) and cannot be retired', OLD.version, OLD.org_id, refs
            USING ERRCODE = 'object_in_use';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER org_data_keys_guard
    BEFORE UPDATE OR DELETE ON org_data_keys
    FOR EACH ROW EXECUTE FUNCTION guard_org_data_key();

-- check_sealed_key_version refuses to store a value sealed under a retired version of the
-- organization's key (it could never be opened again), and holds the version's row FOR SHARE
-- until the writer commits, so a concurrent retirement waits for the value and then sees it.
-- Versions the organization does not have are left to the application (such bytes never open).
-- +goose StatementBegin
CREATE FUNCTION check_sealed_key_version() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
DECLARE
    v bigint;
    retired timestamptz;
BEGIN
    FOREACH v IN ARRAY ARRAY[
        CASE WHEN TG_OP = 'INSERT' OR NEW.sealed_credentials IS DISTINCT FROM OLD.sealed_credentials
             THEN sealed_key_version(NEW.sealed_credentials) END,
        CASE WHEN TG_OP = 'INSERT' OR NEW.webhook_signing_secret IS DISTINCT FROM OLD.webhook_signing_secret
             THEN sealed_key_version(NEW.webhook_signing_secret) END]
    LOOP
        CONTINUE WHEN v IS NULL OR v > 2147483647;
        SELECT k.retired_at INTO retired FROM org_data_keys k
        WHERE k.org_id = NEW.org_id AND k.version = v::integer
        FOR SHARE;
        IF FOUND AND retired IS NOT NULL THEN
            RAISE EXCEPTION 'connection %: value sealed under retired data key version % of organization %', NEW.id, v, NEW.org_id
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END LOOP;
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER connections_sealed_key_live
    BEFORE INSERT OR UPDATE OF sealed_credentials, webhook_signing_secret ON connections
    FOR EACH ROW EXECUTE FUNCTION check_sealed_key_version();

-- guard_org_key_pointer: the current version moves only forward, to a live version.
-- +goose StatementBegin
CREATE FUNCTION guard_org_key_pointer() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
AS $$
BEGIN
    IF NEW.data_key_version IS NOT DISTINCT FROM OLD.data_key_version THEN
        RETURN NEW;
    END IF;
    IF NEW.data_key_version IS NULL OR (OLD.data_key_version IS NOT NULL AND NEW.data_key_version < OLD.data_key_version) THEN
        RAISE EXCEPTION 'organization %: the current data key version cannot go from % to %', OLD.id, OLD.data_key_version, NEW.data_key_version
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF EXISTS (SELECT 1 FROM org_data_keys k WHERE k.org_id = NEW.id AND k.version = NEW.data_key_version AND k.retired_at IS NOT NULL) THEN
        RAISE EXCEPTION 'organization %: data key version % is retired and cannot become current', OLD.id, NEW.data_key_version
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER organizations_key_pointer_guard
    BEFORE UPDATE OF data_key_version ON organizations
    FOR EACH ROW EXECUTE FUNCTION guard_org_key_pointer();

ALTER TABLE org_data_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON org_data_keys
    USING (org_id = app_current_org()) WITH CHECK (org_id = app_current_org());

-- The application adds versions, re-wraps them and retires them; it never deletes one, and never
-- rewrites a version's identity (column grants) or a retired version (the guard).
GRANT SELECT, INSERT ON org_data_keys TO jiraconnect_app;
GRANT UPDATE (wrapped_key, key_id, wrapped_at, retired_at) ON org_data_keys TO jiraconnect_app;
REVOKE ALL ON FUNCTION guard_org_data_key(), check_sealed_key_version(), guard_org_key_pointer() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sealed_key_version(bytea) TO jiraconnect_app;

-- +goose Down
-- Before this migration an organization had one key. Going back is refused while any organization
-- holds a live version other than its current one: values sealed under it would become unreadable.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM org_data_keys k JOIN organizations o ON o.id = k.org_id
               WHERE k.retired_at IS NULL AND k.version IS DISTINCT FROM o.data_key_version) THEN
        RAISE EXCEPTION 'an organization has more than one live data key version: finish its rotation first';
    END IF;
END
$$;
-- +goose StatementEnd
DROP TRIGGER IF EXISTS organizations_key_pointer_guard ON organizations;
DROP TRIGGER IF EXISTS connections_sealed_key_live ON connections;
ALTER TABLE organizations DROP CONSTRAINT IF EXISTS organizations_current_data_key_fkey;
ALTER TABLE organizations ADD COLUMN wrapped_data_key bytea, ADD COLUMN data_key_id text;
UPDATE organizations o
SET wrapped_data_key = k.wrapped_key, data_key_id = k.key_id
FROM org_data_keys k
WHERE k.org_id = o.id AND k.version = o.data_key_version;
UPDATE organizations SET data_key_version = 0 WHERE data_key_version IS NULL;
ALTER TABLE organizations ALTER COLUMN data_key_version SET DEFAULT 0, ALTER COLUMN data_key_version SET NOT NULL,
    ADD CONSTRAINT organizations_check CHECK ((wrapped_data_key IS NULL) = (data_key_id IS NULL));
DROP TABLE IF EXISTS org_data_keys;
DROP FUNCTION IF EXISTS guard_org_key_pointer(), check_sealed_key_version(), guard_org_data_key(), sealed_key_version(bytea);
