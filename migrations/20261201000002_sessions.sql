-- Web sessions live in the database, so that logging out ends one for good, and a user's
-- role, or the user itself, is read again on every request instead of trusted from a token
-- until it expires. The cookie holds a random token; only its SHA-256 is stored.

CREATE TABLE sessions (
    token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    user_id    bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- A user deleted, or whose role or tenant changed: notification `user:<tenant_id>:<user_id>:
-- <change>` on `pulse_changes` (change `deleted` or `role`). The active poller passes it on to
-- the gateways, which close that user's WebSockets.
CREATE FUNCTION pulse_notify_users() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('pulse_changes',
            'user:' || OLD.tenant_id || ':' || OLD.user_id || ':deleted');
    ELSIF OLD.role IS DISTINCT FROM NEW.role OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id THEN
        PERFORM pg_notify('pulse_changes',
            'user:' || OLD.tenant_id || ':' || OLD.user_id || ':role');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER users_notify
    AFTER UPDATE OF role, tenant_id OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION pulse_notify_users();
