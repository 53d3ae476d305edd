-- Pulse schema: tenants, users, devices, telemetry, alerts.
--
-- Ids that end up in NATS subjects are checked here with the same rule as pulse-proto
-- (^[A-Za-z0-9_-]{1,64}$), so no writer can store an id that would widen a subject.

CREATE DOMAIN pulse_id AS text
    CHECK (VALUE ~ '^[A-Za-z0-9_-]{1,64}$');

CREATE TABLE tenants (
    tenant_id  pulse_id PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    user_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         text NOT NULL CHECK (email = lower(email) AND position('@' IN email) > 1),
    password_hash text NOT NULL,
    tenant_id     pulse_id NOT NULL REFERENCES tenants ON DELETE CASCADE,
    role          text NOT NULL CHECK (role IN ('customer_admin', 'customer_viewer')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (email)
);
CREATE INDEX users_tenant ON users (tenant_id);

CREATE TABLE devices (
    tenant_id    pulse_id NOT NULL REFERENCES tenants ON DELETE CASCADE,
    device_id    pulse_id NOT NULL,
    site_id      pulse_id NOT NULL,
    battery_pct  double precision CHECK (battery_pct BETWEEN 0 AND 100),
    -- Kept equal to the newest telemetry reading by the trigger below; never write it directly.
    last_seen_at timestamptz,
    PRIMARY KEY (tenant_id, device_id)
);

CREATE TABLE telemetry (
    tenant_id text NOT NULL,
    device_id text NOT NULL,
    ts        timestamptz NOT NULL,
    metrics   jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metrics) = 'object'),
    -- The writing transaction, set by a trigger: the poller's watermark (see the poller's
    -- telemetry module) relies on it to never skip a row that commits late.
    xid       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    FOREIGN KEY (tenant_id, device_id) REFERENCES devices ON DELETE CASCADE
);
CREATE INDEX telemetry_latest ON telemetry (tenant_id, device_id, ts DESC);
CREATE INDEX telemetry_xid ON telemetry (xid);

CREATE TABLE alerts (
    alert_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  pulse_id NOT NULL REFERENCES tenants ON DELETE CASCADE,
    device_id  pulse_id NOT NULL,
    site_id    pulse_id NOT NULL,
    alert_type text NOT NULL,
    severity   int NOT NULL CHECK (severity >= 0),
    summary    text NOT NULL,
    status     text NOT NULL DEFAULT 'OPEN'
               CHECK (status IN ('OPEN', 'ACKNOWLEDGED', 'CLOSED')),
    created_at timestamptz NOT NULL DEFAULT now(),
    closed_at  timestamptz,
    FOREIGN KEY (tenant_id, device_id) REFERENCES devices ON DELETE CASCADE
);
CREATE INDEX alerts_open ON alerts (tenant_id, created_at DESC, alert_id DESC)
    WHERE status = 'OPEN';
CREATE INDEX alerts_tenant_status ON alerts (tenant_id, status, created_at DESC);

-- Settings the poller writes at start so triggers can follow its configuration.
CREATE TABLE pulse_settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE FUNCTION pulse_stale_after() RETURNS interval
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT make_interval(secs => value::double precision)
           FROM pulse_settings WHERE key = 'stale_after_seconds'),
        interval '60 seconds')
$$;

------------------------------------------------------------------------------------------------
-- Change notifications. Channel `pulse_changes`, payload `<kind>:<tenant_id>` with kind one of
-- `alerts`, `fleet`, `tenant`. PostgreSQL folds identical notifications of one transaction, so a
-- bulk write is one notification per tenant.
------------------------------------------------------------------------------------------------

CREATE FUNCTION pulse_notify_alerts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('pulse_changes', 'alerts:' || NEW.tenant_id);
    END IF;
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.tenant_id <> NEW.tenant_id) THEN
        PERFORM pg_notify('pulse_changes', 'alerts:' || OLD.tenant_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER alerts_notify
    AFTER INSERT OR UPDATE OR DELETE ON alerts
    FOR EACH ROW EXECUTE FUNCTION pulse_notify_alerts();

-- A device change matters to the fleet snapshot when the device appears, disappears, moves,
-- changes battery, or reports again after a gap long enough to have made it STALE.
CREATE FUNCTION pulse_notify_devices() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.tenant_id = NEW.tenant_id
       AND OLD.device_id = NEW.device_id
       AND OLD.site_id = NEW.site_id
       AND OLD.battery_pct IS NOT DISTINCT FROM NEW.battery_pct
       AND (OLD.last_seen_at IS NOT DISTINCT FROM NEW.last_seen_at
            OR (OLD.last_seen_at IS NOT NULL AND NEW.last_seen_at IS NOT NULL
                AND NEW.last_seen_at > OLD.last_seen_at
                AND OLD.last_seen_at >= now() - pulse_stale_after()))
    THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('pulse_changes', 'fleet:' || NEW.tenant_id);
    END IF;
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.tenant_id <> NEW.tenant_id) THEN
        PERFORM pg_notify('pulse_changes', 'fleet:' || OLD.tenant_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER devices_notify
    AFTER INSERT OR UPDATE OR DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION pulse_notify_devices();

CREATE FUNCTION pulse_notify_tenants() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pulse_changes', 'tenant:' || coalesce(NEW.tenant_id, OLD.tenant_id));
    RETURN NULL;
END
$$;

CREATE TRIGGER tenants_notify
    AFTER INSERT OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION pulse_notify_tenants();

------------------------------------------------------------------------------------------------
-- Telemetry bookkeeping.
------------------------------------------------------------------------------------------------

-- Stamp every written row with its transaction, whatever the writer supplied.
CREATE FUNCTION pulse_telemetry_stamp() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.xid := pg_current_xact_id();
    RETURN NEW;
END
$$;

CREATE TRIGGER telemetry_stamp
    BEFORE INSERT OR UPDATE ON telemetry
    FOR EACH ROW EXECUTE FUNCTION pulse_telemetry_stamp();

-- Keep devices.last_seen_at equal to the newest reading, whoever writes telemetry. Rows are
-- locked in key order first so concurrent writers cannot deadlock on devices.
CREATE FUNCTION pulse_telemetry_last_seen() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM 1 FROM devices d
          WHERE (d.tenant_id, d.device_id) IN (SELECT tenant_id, device_id FROM new_rows)
          ORDER BY d.tenant_id, d.device_id FOR UPDATE;
        UPDATE devices d SET last_seen_at = n.ts
          FROM (SELECT tenant_id, device_id, max(ts) AS ts FROM new_rows GROUP BY 1, 2) n
         WHERE d.tenant_id = n.tenant_id AND d.device_id = n.device_id
           AND (d.last_seen_at IS NULL OR d.last_seen_at < n.ts);
    ELSE
        CREATE TEMP TABLE IF NOT EXISTS pulse_touched (tenant_id text, device_id text)
            ON COMMIT DROP;
        IF TG_OP = 'UPDATE' THEN
            INSERT INTO pulse_touched SELECT tenant_id, device_id FROM new_rows
                UNION SELECT tenant_id, device_id FROM old_rows;
        ELSE
            INSERT INTO pulse_touched SELECT tenant_id, device_id FROM old_rows;
        END IF;
        PERFORM 1 FROM devices d
          WHERE (d.tenant_id, d.device_id) IN (SELECT tenant_id, device_id FROM pulse_touched)
          ORDER BY d.tenant_id, d.device_id FOR UPDATE;
        UPDATE devices d
           SET last_seen_at = (SELECT max(t.ts) FROM telemetry t
                                WHERE t.tenant_id = d.tenant_id AND t.device_id = d.device_id)
         WHERE (d.tenant_id, d.device_id) IN (SELECT tenant_id, device_id FROM pulse_touched);
        DELETE FROM pulse_touched;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER telemetry_last_seen_insert
    AFTER INSERT ON telemetry REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pulse_telemetry_last_seen();
CREATE TRIGGER telemetry_last_seen_update
    AFTER UPDATE ON telemetry REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pulse_telemetry_last_seen();
CREATE TRIGGER telemetry_last_seen_delete
    AFTER DELETE ON telemetry REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pulse_telemetry_last_seen();

------------------------------------------------------------------------------------------------
-- Row-level security. A request on behalf of a tenant runs as role `pulse_tenant` with
-- `SET LOCAL ROLE pulse_tenant; SET LOCAL app.tenant_id = '<tenant>'` inside its transaction
-- and sees only that tenant's rows. The table owner (poller, migrations) is not restricted.
------------------------------------------------------------------------------------------------

-- Created here unless it exists: a deployment's superuser may have created it beforehand, so
-- that the owner needs no CREATEROLE (without which CREATE ROLE fails even for a role that exists).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pulse_tenant') THEN
        CREATE ROLE pulse_tenant NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'pulse_tenant', 'MEMBER') THEN
        EXECUTE format('GRANT pulse_tenant TO %I', current_user);
    END IF;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'could not grant pulse_tenant to %: %', current_user, SQLERRM;
END
$$;

GRANT SELECT ON tenants, users, devices, telemetry, alerts TO pulse_tenant;

CREATE FUNCTION pulse_current_tenant() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('app.tenant_id', true), '')
$$;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE devices ENABLE ROW LEVEL SECURITY;
ALTER TABLE telemetry ENABLE ROW LEVEL SECURITY;
ALTER TABLE alerts ENABLE ROW LEVEL SECURITY;

CREATE POLICY tenant_isolation ON tenants TO pulse_tenant
    USING (tenant_id = pulse_current_tenant());
CREATE POLICY tenant_isolation ON users TO pulse_tenant
    USING (tenant_id = pulse_current_tenant());
CREATE POLICY tenant_isolation ON devices TO pulse_tenant
    USING (tenant_id = pulse_current_tenant())
    WITH CHECK (tenant_id = pulse_current_tenant());
CREATE POLICY tenant_isolation ON telemetry TO pulse_tenant
    USING (tenant_id = pulse_current_tenant())
    WITH CHECK (tenant_id = pulse_current_tenant());
CREATE POLICY tenant_isolation ON alerts TO pulse_tenant
    USING (tenant_id = pulse_current_tenant())
    WITH CHECK (tenant_id = pulse_current_tenant());
