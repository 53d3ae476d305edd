-- A change to a user reaches the gateways only when the database made it.
--
-- The poller passed on every `user:<tenant>:<user>:<change>` notification it heard on
-- `pulse_changes` as a `user_changed` message, and the gateways acted on it. But PostgreSQL
-- has no privilege for NOTIFY: any role that may connect (a tenant's outside writer, a
-- read-only login) could have any user of any tenant disconnected (`deleted`: close 4003,
-- which a browser does not retry), fill the gateways' memory of changes with made-up users,
-- or replace a real sign-out with a forged one of a lower count and let a ticket from before
-- it connect again.
--
-- Each change is now queued here, in the changing transaction, by functions that run as the
-- schema's owner; the notification, the same as before, is only a hint to read the queue. The
-- active poller publishes the queued changes in order and removes them once NATS had them. It
-- reads the queue also after a LISTEN gap and every few seconds: a change made while no poller
-- listened reaches the gateways (it was lost before).

CREATE TABLE user_changes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  text NOT NULL,
    user_id    bigint NOT NULL,
    change     text NOT NULL CHECK (change IN ('deleted', 'role', 'signed_out')),
    -- With `signed_out` from a logout everywhere: the user's count of them.
    signouts   bigint CHECK (signouts >= 0),
    -- When the row was changed (after any wait for its lock), not when the statement began.
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
ALTER TABLE user_changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_changes FORCE ROW LEVEL SECURITY;
-- Written by the functions below only, which run as the schema's owner.
CREATE POLICY owner_queues_user_changes ON user_changes TO CURRENT_USER
    USING (true) WITH CHECK (true);
-- Read and removed by the poller.
GRANT SELECT, DELETE ON user_changes TO pulse_poller;
CREATE POLICY poller_reads_user_changes ON user_changes FOR SELECT TO pulse_poller USING (true);
CREATE POLICY poller_removes_user_changes ON user_changes FOR DELETE TO pulse_poller USING (true);

-- Queues one change and tells the poller, with the payload of before (a poller of an earlier
-- release, active during an upgrade, still passes it on).
CREATE FUNCTION pulse_queue_user_change(tenant text, who bigint, what text, counted bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO user_changes (tenant_id, user_id, change, signouts)
         VALUES (tenant, who, what, counted);
    PERFORM pg_notify('pulse_changes',
                      format('user:%s:%s:%s', tenant, who, what) || coalesce(':' || counted, ''));
END
$$;

-- A user deleted, whose role or tenant changed, or given a new password (as 20261207000001):
-- now queued, as the owner.
CREATE OR REPLACE FUNCTION pulse_notify_users() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pulse_queue_user_change(OLD.tenant_id, OLD.user_id, 'deleted', NULL);
        RETURN NULL;
    END IF;
    IF OLD.role IS DISTINCT FROM NEW.role OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id THEN
        PERFORM pulse_queue_user_change(OLD.tenant_id, OLD.user_id, 'role', NULL);
    END IF;
    IF OLD.password_hash IS DISTINCT FROM NEW.password_hash THEN
        PERFORM pulse_queue_user_change(NEW.tenant_id, NEW.user_id, 'signed_out', NULL);
    END IF;
    RETURN NULL;
END
$$;

-- A logout everywhere (as 20261207000005), its count queued.
CREATE OR REPLACE FUNCTION pulse_end_sessions_everywhere(session_token_hash bytea)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET lock_timeout = '5s' AS $$
DECLARE
    counted record;
    ended bigint;
BEGIN
    UPDATE users u SET signouts = u.signouts + 1
      FROM sessions s
     WHERE s.token_hash = session_token_hash AND s.expires_at > now() AND u.user_id = s.user_id
    RETURNING u.user_id, u.tenant_id, u.signouts INTO counted;
    -- No live session (an expired cookie signs nobody out), or its user deleted meanwhile.
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    DELETE FROM sessions WHERE user_id = counted.user_id;
    GET DIAGNOSTICS ended = ROW_COUNT;
    IF ended > 0 THEN
        PERFORM pulse_queue_user_change(counted.tenant_id, counted.user_id, 'signed_out',
                                        counted.signouts);
    END IF;
    RETURN ended;
END
$$;

-- A truncation (as 20261207000002): every user's deletion queued.
CREATE OR REPLACE FUNCTION pulse_notify_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    CASE TG_TABLE_NAME
    WHEN 'alerts' THEN
        PERFORM pg_notify('pulse_changes', 'alerts:' || tenant_id) FROM tenants;
    WHEN 'devices' THEN
        PERFORM pg_notify('pulse_changes', 'fleet:' || tenant_id) FROM tenants;
    WHEN 'users' THEN
        PERFORM pulse_queue_user_change(tenant_id, user_id, 'deleted', NULL) FROM users;
    END CASE;
    RETURN NULL;
END
$$;

-- Searched as every function that runs as the owner is (20261206000004). CREATE OR REPLACE
-- resets a function's settings: each is set again.
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['pulse_queue_user_change(text, bigint, text, bigint)',
                             'pulse_notify_users()',
                             'pulse_end_sessions_everywhere(bytea)',
                             'pulse_notify_truncated()']
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp',
                       f, current_schema());
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pulse_queue_user_change(text, bigint, text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION pulse_notify_users() FROM PUBLIC;
