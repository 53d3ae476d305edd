-- A user who logged out everywhere and logged in again at once had the new session's tickets
-- refused for up to 5 s: told that every session ended, a gateway refused every ticket issued
-- up to 5 s after it saw that (by `iat`), since the web service's clock may run ahead of its
-- own.
--
-- Now each logout everywhere is counted on the user's row, in the transaction that ends the
-- sessions; a ticket carries the count its session was read with (`signouts`), and the
-- notification the new count. A session read before the end (it was still there) was read
-- with a lower count; one read after it survived the end or is new: a gateway refuses exactly
-- the tickets with a lower count than the end's, whatever the clocks say. (A new password
-- still tells the gateways without a count, and they judge by `iat` as before.)

ALTER TABLE users ADD COLUMN signouts bigint NOT NULL DEFAULT 0 CHECK (signouts >= 0);

-- The web service's role reads the count with the session; only the function below raises it.
GRANT SELECT (signouts) ON users TO pulse_web;

-- Runs as the owner, who may lock a user's row, which the web service's role may not. Raising
-- the count first takes the row: a login of the user starting a session meanwhile
-- (pulse_start_session reads the row FOR SHARE) finishes first, and its session is ended with
-- the others. A change of the user left open in a transaction holds it 5 s at most
-- (lock_timeout), not one of the caller's connections for as long.
-- `user:<tenant_id>:<user_id>:signed_out:<signouts>` tells the gateways.
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
        PERFORM pg_notify('pulse_changes', format('user:%s:%s:signed_out:%s',
                          counted.tenant_id, counted.user_id, counted.signouts));
    END IF;
    RETURN ended;
END
$$;
-- Searched as every function that runs as the owner is (20261206000004).
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION pulse_end_sessions_everywhere(bytea) '
                   'SET search_path = pg_catalog, %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION pulse_end_sessions_everywhere(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pulse_end_sessions_everywhere(bytea) TO pulse_web;
