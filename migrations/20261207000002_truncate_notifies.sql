-- TRUNCATE fires no row trigger, so truncating `alerts`, `devices` or `users` (by name, or by
-- `TRUNCATE tenants CASCADE`) told the poller nothing: the snapshots stayed as they were until
-- the next safety-net poll (`PULSE_POLL_SECONDS`), and the users of a truncated `users` stayed
-- connected on the WebSocket tickets they held. Before each truncation, in its transaction (a
-- truncation rolled back tells nothing), the poller is now told what deleting every row would
-- have told it: `alerts:` or `fleet:` of every tenant, and `user:<tenant>:<user>:deleted` of
-- every user. It runs as the schema's owner, so a role allowed to truncate need not read the
-- tenants or the users.
--
-- Row-level security binds the owner too (FORCE, 20261201000004), and no policy let it read
-- `tenants` or `users`: as deployed (an owner that is no superuser), a function running as the
-- owner found no row there. So did 20261206000001's, which queued no purge on `TRUNCATE
-- tenants`. The owner may now read both.
CREATE POLICY owner_reads_every_tenant ON tenants FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY owner_reads_every_user ON users FOR SELECT TO CURRENT_USER USING (true);

CREATE FUNCTION pulse_notify_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    CASE TG_TABLE_NAME
    WHEN 'alerts' THEN
        PERFORM pg_notify('pulse_changes', 'alerts:' || tenant_id) FROM tenants;
    WHEN 'devices' THEN
        PERFORM pg_notify('pulse_changes', 'fleet:' || tenant_id) FROM tenants;
    WHEN 'users' THEN
        PERFORM pg_notify('pulse_changes', 'user:' || tenant_id || ':' || user_id || ':deleted')
           FROM users;
    END CASE;
    RETURN NULL;
END
$$;
-- Searched as every function that runs as the owner is (20261206000004).
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION pulse_notify_truncated() SET search_path = pg_catalog, %I, pg_temp',
                   current_schema());
END
$$;
REVOKE ALL ON FUNCTION pulse_notify_truncated() FROM PUBLIC;

CREATE TRIGGER alerts_notify_truncate BEFORE TRUNCATE ON alerts
    FOR EACH STATEMENT EXECUTE FUNCTION pulse_notify_truncated();
CREATE TRIGGER devices_notify_truncate BEFORE TRUNCATE ON devices
    FOR EACH STATEMENT EXECUTE FUNCTION pulse_notify_truncated();
CREATE TRIGGER users_notify_truncate BEFORE TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION pulse_notify_truncated();
