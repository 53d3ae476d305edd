-- A deleted tenant's data leaves NATS too.
--
-- Deleting a tenant deletes its rows (cascade), but what the poller published for it stayed:
-- its last alerts, fleet and readings in PULSE_STATE for good (one message per subject, no
-- age limit), its events in PULSE_EVENTS for their retention, its devices in the device
-- registry. A tenant created again with the same id would have been shown them. Each deletion
-- is now queued here, in the deleting transaction, so none is missed whichever poller is
-- active or however long it was away; the active poller purges the tenant's subjects and
-- registry keys, then removes the row.

CREATE TABLE tenant_purges (
    tenant_id  text PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT statement_timestamp()
);
ALTER TABLE tenant_purges ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_purges FORCE ROW LEVEL SECURITY;
-- Written by the trigger function below only, which runs as the schema's owner.
CREATE POLICY owner_queues_purges ON tenant_purges TO CURRENT_USER
    USING (true) WITH CHECK (true);
-- Read and done by the poller.
GRANT SELECT, DELETE ON tenant_purges TO pulse_poller;
CREATE POLICY poller_purges ON tenant_purges FOR SELECT TO pulse_poller USING (true);
CREATE POLICY poller_marks_purged ON tenant_purges FOR DELETE TO pulse_poller USING (true);

-- One statement's deletions queued at once, from its transition table.
CREATE FUNCTION pulse_queue_tenant_purges() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    -- Deleted again before the last purge was done: purged once, from the newest deletion.
    INSERT INTO tenant_purges (tenant_id)
         SELECT tenant_id FROM deleted_tenants
    ON CONFLICT (tenant_id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at;
    RETURN NULL;
END
$$;
CREATE TRIGGER tenants_queue_purges
    AFTER DELETE ON tenants
    REFERENCING OLD TABLE AS deleted_tenants
    FOR EACH STATEMENT EXECUTE FUNCTION pulse_queue_tenant_purges();
REVOKE ALL ON FUNCTION pulse_queue_tenant_purges() FROM PUBLIC;
