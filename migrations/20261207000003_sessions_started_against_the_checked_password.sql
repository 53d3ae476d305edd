-- A login reads the user's password hash, checks the password against it (argon2: tens of
-- milliseconds, more under load), then starts a session. A new password committed in between
-- ended the sessions that existed then (users_password_changed, 20261204000004), not the one
-- started next: a login with a stolen password that raced its change kept a session for
-- PULSE_SESSION_TTL_SECONDS. The longer the change's transaction, the wider the race.
--
-- Now a session starts only with the hash its password was checked against still in place,
-- and a new password and the start of a session of the same user take turns on the user's
-- row: the start reads it FOR SHARE, which waits for a change of the row in progress (and
-- then finds the hash changed, and starts nothing), and which a change waits for (and then
-- ends that session too). Row locks only: no lock of PostgreSQL's lock table per user, so a
-- statement changing the passwords of any number of users needs no more of it than before.

-- The owner reads every user already (owner_reads_every_user, 20261207000002); reading a row
-- FOR SHARE also asks row-level security, which binds the owner too (FORCE), for an UPDATE
-- policy.
CREATE POLICY owner_locks_every_user ON users FOR UPDATE TO CURRENT_USER USING (true);

-- Starts a session of `of_user` valid `ttl_seconds`, unless its password hash is no longer
-- `checked_hash` (or the user is gone); returns whether it did. Runs as the owner, who may
-- lock the user's row, which the web service's role may not.
-- The session row goes in first: its reference to the user waits for a change of the user's
-- key columns in progress (`SET email = …, password_hash = …`) before the row is read. (A
-- transaction that changes the password, then deletes the user or changes its email in a
-- later statement while a start of that user waits, still meets the start's reference to the
-- row: PostgreSQL ends one of the two.) A change left open in a transaction holds a start of
-- its user at most 5 s (lock_timeout), not one of the caller's connections for as long.
CREATE FUNCTION pulse_start_session(token bytea, of_user bigint, checked_hash text,
                                    ttl_seconds double precision) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET lock_timeout = '5s' AS $$
BEGIN
    INSERT INTO sessions (token_hash, user_id, expires_at)
         VALUES (token, of_user, now() + make_interval(secs => ttl_seconds));
    PERFORM 1 FROM users u
      WHERE u.user_id = of_user AND u.password_hash = checked_hash FOR SHARE;
    IF NOT FOUND THEN
        DELETE FROM sessions WHERE token_hash = token;
        RETURN false;
    END IF;
    RETURN true;
END
$$;
-- Searched as every function that runs as the owner is (20261206000004).
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION pulse_start_session(bytea, bigint, text, double precision) '
                   'SET search_path = pg_catalog, %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION pulse_start_session(bytea, bigint, text, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pulse_start_session(bytea, bigint, text, double precision) TO pulse_web;
