-- `TRUNCATE tenants` deletes every tenant without firing a DELETE trigger, so it queued no
-- purge and told the poller nothing: what NATS held of those tenants stayed, to be shown to a
-- tenant created again with the same id. Every tenant is now queued before the truncation, in
-- its transaction, and the poller told at once, as for DELETE.
CREATE FUNCTION pulse_queue_truncated_tenant_purges() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    any_tenant text;
BEGIN
    INSERT INTO tenant_purges (tenant_id)
         SELECT tenant_id FROM tenants
    ON CONFLICT (tenant_id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at;
    -- One notification reads the whole tenant list again, whichever tenant it names.
    SELECT tenant_id INTO any_tenant FROM tenants LIMIT 1;
    IF any_tenant IS NOT NULL THEN
        PERFORM pg_notify('pulse_changes', 'tenant:' || any_tenant);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER tenants_queue_purges_on_truncate
    BEFORE TRUNCATE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION pulse_queue_truncated_tenant_purges();
REVOKE ALL ON FUNCTION pulse_queue_truncated_tenant_purges() FROM PUBLIC;
