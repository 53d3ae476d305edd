-- A user who logged out everywhere (or was given a new password) and logged in again at once
-- had the new session's tickets refused for up to 5 s: told that every session ended, a
-- gateway refused every ticket issued up to 5 s after it saw that (by `iat`), since the web
-- service's clock may run ahead of its own.
--
-- Now the end of every session is counted on the user's row, in the transaction that ends
-- them; a ticket carries the count its session was read with (`signouts`), and the
-- notification the new count. A session read before the end (it was still there) was read
-- with the old count; one read after it is a session that survived the end, or a new one:
-- a gateway refuses exactly the tickets with a lower count than the end's, whatever the
-- clocks say.

ALTER TABLE users ADD COLUMN signouts bigint NOT NULL DEFAULT 0;
GRANT SELECT (signouts) ON users TO pulse_web;

-- A new password ends every session (users_password_changed): counted before the row is
-- written, so the notification below reads the new count.
CREATE FUNCTION pulse_count_signout() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.signouts := OLD.signouts + 1;
    RETURN NEW;
END
$$;

CREATE TRIGGER users_password_counted
    BEFORE UPDATE OF password_hash ON users
    FOR EACH ROW WHEN (OLD.password_hash IS DISTINCT FROM NEW.password_hash)
    EXECUTE FUNCTION pulse_count_signout();

-- `user:<tenant_id>:<user_id>:signed_out:<signouts>`: the count after the end.
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
            'user:' || NEW.tenant_id || ':' || NEW.user_id || ':signed_out:' || NEW.signouts);
    END IF;
    RETURN NULL;
END
$$;

-- "Log out everywhere" counts the end first: the row's lock makes a login of the user starting
-- a session meanwhile (pulse_start_session reads the row FOR SHARE) finish first, so the
-- sessions ended are all those there are then. The web service's role may count, and nothing
-- more: it writes no other column of users.
GRANT UPDATE (signouts) ON users TO pulse_web;
CREATE POLICY web_counts_signouts ON users FOR UPDATE TO pulse_web USING (true);

CREATE OR REPLACE FUNCTION pulse_end_sessions_everywhere(session_token_hash bytea)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    who bigint;
    tenant text;
    counted bigint;
    ended bigint;
BEGIN
    SELECT u.user_id, u.tenant_id INTO who, tenant
      FROM sessions s JOIN users u USING (user_id)
     WHERE s.token_hash = session_token_hash AND s.expires_at > now();
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    UPDATE users SET signouts = signouts + 1 WHERE user_id = who RETURNING signouts INTO counted;
    IF NOT FOUND THEN
        RETURN 0; -- deleted meanwhile: its deletion told the gateways more
    END IF;
    DELETE FROM sessions WHERE user_id = who;
    GET DIAGNOSTICS ended = ROW_COUNT;
    -- None ended: the caller's own session was ended meanwhile (a logout, a new password).
    IF ended > 0 THEN
        PERFORM pg_notify('pulse_changes',
            'user:' || tenant || ':' || who || ':signed_out:' || counted);
    END IF;
    RETURN ended;
END
$$;
