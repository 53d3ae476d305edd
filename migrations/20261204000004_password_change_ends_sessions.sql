-- A new password ends the user's sessions: changing it is how a stolen password is answered,
-- and a session cookie taken with it must not outlive it (sessions last up to
-- PULSE_SESSION_TTL_SECONDS). Whoever changes the hash, the sessions go: the function runs
-- with its owner's rights, since the writer may have none on sessions.

CREATE FUNCTION pulse_end_sessions_of_user() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM sessions WHERE user_id = NEW.user_id;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION pulse_end_sessions_of_user() FROM PUBLIC;

CREATE TRIGGER users_password_changed
    AFTER UPDATE OF password_hash ON users
    FOR EACH ROW WHEN (OLD.password_hash IS DISTINCT FROM NEW.password_hash)
    EXECUTE FUNCTION pulse_end_sessions_of_user();
