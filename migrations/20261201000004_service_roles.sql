-- Each service works as a role with only the privileges it needs, and row-level security binds
-- every role, the table owner included (FORCE), so that a query that forgets the tenant reads
-- nothing instead of every tenant's rows.
--
--   pulse_poller  reads every tenant (that is its job), marks and prunes relayed events, and
--                 writes pulse_settings. It cannot change tenants, users, devices or alerts.
--   pulse_web     authenticates: reads users (login by email, sessions), keeps sessions, looks
--                 a publish key up by its hash, reads pulse_settings. Everything about a
--                 tenant's data it does as pulse_tenant (below), in a transaction that sets
--                 app.tenant_id; as pulse_web it cannot read a device, an alert or an event.
--   pulse_tenant  one tenant's rows, chosen by app.tenant_id; with it unset, none.
--
-- The services switch to their role on every connection (PULSE_POLLER_DB_ROLE,
-- PULSE_WEB_DB_ROLE). In production, log in as a role that is a member of only that role
-- (and, for the web service, pulse_tenant) and owns nothing; migrations run as the owner.
-- Superusers and roles with BYPASSRLS are not bound by any of this: never run a service as one
-- without its role setting.

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['pulse_poller', 'pulse_web'] LOOP
        -- Unless it exists (created beforehand by a superuser, so that the owner needs no
        -- CREATEROLE, without which CREATE ROLE fails even for a role that exists).
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
        -- The migrating role may switch to it (the services' default set-up in development).
        BEGIN
            IF NOT pg_has_role(current_user, r, 'MEMBER') THEN
                EXECUTE format('GRANT %I TO %I', r, current_user);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'could not grant % to %: %', r, current_user, SQLERRM;
        END;
    END LOOP;
END
$$;

ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
ALTER TABLE devices FORCE ROW LEVEL SECURITY;
ALTER TABLE telemetry FORCE ROW LEVEL SECURITY;
ALTER TABLE alerts FORCE ROW LEVEL SECURITY;
ALTER TABLE event_topics FORCE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
ALTER TABLE publish_keys FORCE ROW LEVEL SECURITY;

-- The poller.
GRANT SELECT ON tenants, devices, telemetry, alerts, events TO pulse_poller;
GRANT UPDATE (relayed_at), DELETE ON events TO pulse_poller;
GRANT SELECT, INSERT, UPDATE ON pulse_settings TO pulse_poller;
CREATE POLICY poller_reads_every_tenant ON tenants FOR SELECT TO pulse_poller USING (true);
CREATE POLICY poller_reads_every_tenant ON devices FOR SELECT TO pulse_poller USING (true);
CREATE POLICY poller_reads_every_tenant ON telemetry FOR SELECT TO pulse_poller USING (true);
CREATE POLICY poller_reads_every_tenant ON alerts FOR SELECT TO pulse_poller USING (true);
CREATE POLICY poller_reads_every_tenant ON events FOR SELECT TO pulse_poller USING (true);
CREATE POLICY poller_relays ON events FOR UPDATE TO pulse_poller USING (true) WITH CHECK (true);
CREATE POLICY poller_prunes ON events FOR DELETE TO pulse_poller USING (true);

-- The web service, as itself.
GRANT SELECT (user_id, email, password_hash, tenant_id, role) ON users TO pulse_web;
GRANT SELECT, INSERT, DELETE ON sessions TO pulse_web;
GRANT SELECT ON pulse_settings TO pulse_web;
GRANT SELECT (key_id, tenant_id, key_hash), UPDATE (last_used_at) ON publish_keys TO pulse_web;
CREATE POLICY web_authenticates ON users FOR SELECT TO pulse_web USING (true);
CREATE POLICY web_checks_publish_keys ON publish_keys FOR SELECT TO pulse_web USING (true);
CREATE POLICY web_checks_publish_keys_use ON publish_keys FOR UPDATE TO pulse_web
    USING (true) WITH CHECK (true);

-- A tenant's own writes, made by the web service as pulse_tenant: events (through
-- pulse_emit_event) and publish keys. The tenant_isolation policies check the rows written.
GRANT INSERT ON events TO pulse_tenant;
GRANT INSERT, UPDATE ON event_topics TO pulse_tenant;
GRANT INSERT (tenant_id, key_hash, name), DELETE ON publish_keys TO pulse_tenant;
