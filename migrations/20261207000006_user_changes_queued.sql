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
-- Each change is now queued here, in the changing transaction, by triggers that run as the
-- schema's owner; the notifications are only hints to read the queue. Those of before are
-- unchanged (a poller of an earlier release, active during an upgrade, still passes them on);
-- the two added here, `user:<tenant>:<user>:session_ended` and `user:truncated`, it ignores. The
-- active poller publishes the queued changes in order and removes them once NATS had them. It
-- reads the queue also after a LISTEN gap and every few seconds: a change made while no poller
-- listened reaches the gateways (it was lost before).

CREATE TABLE user_changes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  text NOT NULL,
    user_id    bigint NOT NULL,
    change     text NOT NULL CHECK (change IN ('deleted', 'role', 'signed_out', 'session_ended')),
    -- With `signed_out` from a logout everywhere: the user's count of them.
    signouts   bigint CHECK (signouts >= 0),
    -- With `session_ended` (and only then): the session, as its tickets name it (claim `sid`).
    session    text CHECK (session ~ '^[0-9a-f]{16}$'),
    CHECK ((change = 'session_ended') = (session IS NOT NULL)),
    -- When the row was changed (after any wait for its lock), not when the statement began,
    -- nor when the change committed: one committed long after it was made is as old as that.
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
ALTER TABLE user_changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_changes FORCE ROW LEVEL SECURITY;
-- Written by the functions below only, which run as the schema's owner.
CREATE POLICY owner_queues_user_changes ON user_changes TO CURRENT_USER
    USING (true) WITH CHECK (true);
-- Read and removed by the poller: its grants say what it may do, the policy on which rows.
CREATE POLICY poller_takes_user_changes ON user_changes TO pulse_poller USING (true);
GRANT SELECT, DELETE ON user_changes TO pulse_poller;

-- What the gateways are told of, queued as the owner beside the notifications of
-- pulse_notify_users (20261207000001) and pulse_end_sessions_everywhere (20261207000005),
-- which are hints now: a user deleted, whose role or tenant changed, given a new password
-- (uncounted), or who logged out everywhere (the count raised).
CREATE FUNCTION pulse_queue_users() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO user_changes (tenant_id, user_id, change)
             VALUES (OLD.tenant_id, OLD.user_id, 'deleted');
        RETURN NULL;
    END IF;
    -- In the order the gateways were told before: the role, then the end of the sessions.
    INSERT INTO user_changes (tenant_id, user_id, change, signouts)
         SELECT c.tenant_id, NEW.user_id, c.change, c.signouts
           FROM (VALUES
                   (1, OLD.tenant_id, 'role', NULL::bigint,
                    OLD.role IS DISTINCT FROM NEW.role OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id),
                   (2, NEW.tenant_id, 'signed_out', NULL,
                    OLD.password_hash IS DISTINCT FROM NEW.password_hash),
                   (3, NEW.tenant_id, 'signed_out', NEW.signouts,
                    OLD.signouts IS DISTINCT FROM NEW.signouts))
                AS c(n, tenant_id, change, signouts, happened)
          WHERE c.happened
          ORDER BY c.n;
    RETURN NULL;
END
$$;
-- Named to fire before users_password_changed (triggers fire by name), which ends the
-- sessions: the end of every session is queued first, and each session's own end is not.
CREATE TRIGGER users_changes_queue
    AFTER UPDATE OF role, tenant_id, password_hash, signouts OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION pulse_queue_users();

-- A truncation of `users` queues every user's deletion, beside the notifications of
-- pulse_notify_truncated (20261207000002).
CREATE FUNCTION pulse_queue_truncated_users() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO user_changes (tenant_id, user_id, change)
         SELECT tenant_id, user_id, 'deleted' FROM users;
    RETURN NULL;
END
$$;
CREATE TRIGGER users_queue_truncate BEFORE TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION pulse_queue_truncated_users();

-- A session ended before its time (a logout, a login replacing the cookie's session): its
-- tickets, which name it (the first 8 bytes of its token's hash, in hex), must not keep a
-- connection open or open one. One that expired ends nothing, nor one ended with its user (the
-- deletion is told), nor one of the sessions a logout everywhere or a new password ends (the
-- end of every session, queued first in the same transaction, is told).
CREATE FUNCTION pulse_queue_session_ends() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    tenant text;
BEGIN
    SELECT u.tenant_id INTO tenant FROM users u WHERE u.user_id = OLD.user_id;
    IF FOUND AND NOT EXISTS (
        SELECT 1 FROM user_changes c
         WHERE c.user_id = OLD.user_id AND c.change = 'signed_out'
           AND c.xmin = pg_current_xact_id()::xid
    ) THEN
        INSERT INTO user_changes (tenant_id, user_id, change, session)
             VALUES (tenant, OLD.user_id, 'session_ended',
                     encode(substring(OLD.token_hash FROM 1 FOR 8), 'hex'));
        PERFORM pg_notify('pulse_changes', format('user:%s:%s:session_ended', tenant, OLD.user_id));
    END IF;
    RETURN NULL;
END
$$;
-- Nor one created in the same transaction (pulse_start_session undoing a session it could not
-- keep): no ticket ever named it. Inside a savepoint the end of every session is queued with
-- the savepoint's id, not the transaction's: each session's end is then queued too (told
-- twice, nothing missed).
CREATE TRIGGER sessions_queue_ends
    AFTER DELETE ON sessions
    FOR EACH ROW WHEN (OLD.expires_at > now() AND OLD.created_at < now())
    EXECUTE FUNCTION pulse_queue_session_ends();

-- TRUNCATE fires no row trigger: every user with a live session is told the end of every
-- session (uncounted: its tickets from before are refused by their `iat`).
CREATE FUNCTION pulse_queue_truncated_sessions() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    INSERT INTO user_changes (tenant_id, user_id, change)
         SELECT u.tenant_id, u.user_id, 'signed_out'
           FROM users u
          WHERE EXISTS (SELECT 1 FROM sessions s
                         WHERE s.user_id = u.user_id AND s.expires_at > now());
    PERFORM pg_notify('pulse_changes', 'user:truncated');
    RETURN NULL;
END
$$;
CREATE TRIGGER sessions_queue_truncate BEFORE TRUNCATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION pulse_queue_truncated_sessions();

-- Searched as every function that runs as the owner is (20261206000004).
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['pulse_queue_users()', 'pulse_queue_truncated_users()',
                             'pulse_queue_session_ends()', 'pulse_queue_truncated_sessions()'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp',
                       f, current_schema());
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pulse_queue_users() FROM PUBLIC;
REVOKE ALL ON FUNCTION pulse_queue_truncated_users() FROM PUBLIC;
REVOKE ALL ON FUNCTION pulse_queue_session_ends() FROM PUBLIC;
REVOKE ALL ON FUNCTION pulse_queue_truncated_sessions() FROM PUBLIC;
