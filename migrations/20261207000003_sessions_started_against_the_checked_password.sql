-- A login reads the user's password hash, checks the password against it (argon2: tens of
-- milliseconds, more under load), then starts a session. A new password committed in between
-- ended the sessions that existed then (users_password_changed, 20261204000004), not the one
-- started next: a login with a stolen password that raced its change kept a session for
-- PULSE_SESSION_TTL_SECONDS. The longer the change's transaction, the wider the race.
--
-- Now a session starts only with the hash its password was checked against still in place,
-- and a new password and the start of a session of the same user take turns (an advisory
-- lock per user, or rather per one of 64 groups of users: a statement changing the passwords
-- of thousands of users takes at most 64 locks, not one each, which would run PostgreSQL's
-- lock table out): a start waits for a change in progress, then finds the hash changed and
-- starts nothing; a change waits for a start in progress, then ends its session too.

-- Taken before the row is changed, so before users_password_changed ends the sessions.
CREATE FUNCTION pulse_lock_sessions_of_user() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pulse_user_sessions'), (OLD.user_id % 64)::int);
    RETURN NEW;
END
$$;

CREATE TRIGGER users_password_changing
    BEFORE UPDATE OF password_hash ON users
    FOR EACH ROW WHEN (OLD.password_hash IS DISTINCT FROM NEW.password_hash)
    EXECUTE FUNCTION pulse_lock_sessions_of_user();

-- Starts a session of `of_user` valid `ttl_seconds`, unless its password hash is no longer
-- `checked_hash` (or the user is gone); returns whether it did. Runs with the caller's rights.
-- The session row goes in first: its reference to the user waits for a change of the user's
-- key columns in progress (`SET email = …, password_hash = …` holds the row so) before the
-- lock is asked for, so such a change, which holds the row and then asks for the lock, does
-- not wait for a start that waits for it. (A transaction that changes the password, then
-- deletes the user or changes its email in a later statement while a start of that user
-- waits, still meets the start's reference to the row: PostgreSQL ends one of the two.) A
-- change left open in a transaction holds a start of its user at most 5 s (lock_timeout),
-- not one of the caller's connections for as long.
CREATE FUNCTION pulse_start_session(token bytea, of_user bigint, checked_hash text,
                                    ttl_seconds double precision) RETURNS boolean
LANGUAGE plpgsql SET lock_timeout = '5s' AS $$
BEGIN
    INSERT INTO sessions (token_hash, user_id, expires_at)
         VALUES (token, of_user, now() + make_interval(secs => ttl_seconds));
    PERFORM pg_advisory_xact_lock_shared(hashtext('pulse_user_sessions'), (of_user % 64)::int);
    IF NOT EXISTS (SELECT 1 FROM users u
                    WHERE u.user_id = of_user AND u.password_hash = checked_hash) THEN
        DELETE FROM sessions WHERE token_hash = token;
        RETURN false;
    END IF;
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION pulse_start_session(bytea, bigint, text, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pulse_start_session(bytea, bigint, text, double precision) TO pulse_web;
