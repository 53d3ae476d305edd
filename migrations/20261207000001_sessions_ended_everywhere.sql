-- A user whose sessions all end, by its own "log out everywhere" or by a new password, must not
-- stay connected on the WebSocket tickets it was handed before: notification
-- `user:<tenant_id>:<user_id>:signed_out` on `pulse_changes`, which the active poller passes on
-- to the gateways, as it does a deletion or a role change; they close that user's WebSockets
-- (4001) and refuse its tickets from before.

-- A new password: besides ending the sessions (users_password_changed), tell the gateways. Runs
-- with the writer's rights: it only notifies.
CREATE FUNCTION pulse_notify_signed_out() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pulse_changes',
        'user:' || NEW.tenant_id || ':' || NEW.user_id || ':signed_out');
    RETURN NULL;
END
$$;

CREATE TRIGGER users_password_changed_signs_out
    AFTER UPDATE OF password_hash ON users
    FOR EACH ROW WHEN (OLD.password_hash IS DISTINCT FROM NEW.password_hash)
    EXECUTE FUNCTION pulse_notify_signed_out();

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
