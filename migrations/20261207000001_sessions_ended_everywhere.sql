-- A user whose sessions all end, by its own "log out everywhere" or by a new password, must not
-- stay connected on the WebSocket tickets it was handed before: notification
-- `user:<tenant_id>:<user_id>:signed_out` on `pulse_changes`, which the active poller passes on
-- to the gateways, as it does a deletion or a role change; they close that user's WebSockets
-- (4001) and refuse its tickets from before.

-- A new password: besides ending the sessions (users_password_changed), tell the gateways,
-- through the one function that tells them of users' changes (a role change and a new password
-- at once are told both, the sign-out last).
CREATE OR REPLACE FUNCTION pulse_notify_users() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('pulse_changes',
            'user:' || OLD.tenant_id || ':' || OLD.user_id || ':deleted');
        RETURN NULL;
    END IF;
    IF OLD.role IS DISTINCT FROM NEW.role OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id THEN
        PERFORM pg_notify('pulse_changes',
            'user:' || OLD.tenant_id || ':' || OLD.user_id || ':role');
    END IF;
    IF OLD.password_hash IS DISTINCT FROM NEW.password_hash THEN
        PERFORM pg_notify('pulse_changes',
            'user:' || NEW.tenant_id || ':' || NEW.user_id || ':signed_out');
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER users_notify ON users;
CREATE TRIGGER users_notify
    AFTER UPDATE OF role, tenant_id, password_hash OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION pulse_notify_users();

-- "Log out everywhere": ends every session of the user whose live session the token's hash
-- names (an expired one names none: an old cookie cannot sign its user out), and tells the
-- gateways. Returns how many sessions ended. Runs with the caller's rights (the web service's
-- role may delete sessions and read users).
CREATE FUNCTION pulse_end_sessions_everywhere(session_token_hash bytea) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    who bigint;
    tenant text;
    ended bigint;
BEGIN
    SELECT u.user_id, u.tenant_id INTO who, tenant
      FROM sessions s JOIN users u USING (user_id)
     WHERE s.token_hash = session_token_hash AND s.expires_at > now();
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    DELETE FROM sessions WHERE user_id = who;
    GET DIAGNOSTICS ended = ROW_COUNT;
    -- None ended: the user was deleted meanwhile, and its deletion told the gateways more.
    IF ended > 0 THEN
        PERFORM pg_notify('pulse_changes', 'user:' || tenant || ':' || who || ':signed_out');
    END IF;
    RETURN ended;
END
$$;
REVOKE ALL ON FUNCTION pulse_end_sessions_everywhere(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pulse_end_sessions_everywhere(bytea) TO pulse_web;
