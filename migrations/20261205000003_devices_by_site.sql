-- `GET /api/v2/devices?site_id=…` pages one site's devices in device order. Without this index
-- a page walked the tenant's devices from the first (or from `after`) and dropped every other
-- site's, which for a small site among many devices was all of them.
--
-- Built in the migration's transaction, so device writes wait while the table is read once.
-- On a large table, build it first without blocking writes, and the migration then finds it:
--   CREATE INDEX CONCURRENTLY devices_by_site ON devices (tenant_id, site_id, device_id);
CREATE INDEX IF NOT EXISTS devices_by_site ON devices (tenant_id, site_id, device_id);
