-- A tenant's alert list (`GET /api/v2/alerts`, newest first, optionally by status) read in
-- alert_id order from an index of its own. Before, the planner walked the primary key backwards
-- and filtered out every other tenant's alerts: a tenant with few alerts in a large table read
-- the whole table for an empty page (0.7 s with 2M alerts of other tenants, 0.1 ms now).
--
-- The status index also serves what alerts_tenant_status did (a tenant's alerts in a status),
-- so that one goes rather than slowing every alert write.
--
-- Built in the migration's transaction, so alert writes wait while the indexes are built (a
-- few seconds per million alerts). On a large table, build them first without blocking writes,
-- and the migration then finds them:
--   CREATE INDEX CONCURRENTLY alerts_by_tenant ON alerts (tenant_id, alert_id DESC);
--   CREATE INDEX CONCURRENTLY alerts_by_tenant_status ON alerts (tenant_id, status, alert_id DESC);
CREATE INDEX IF NOT EXISTS alerts_by_tenant ON alerts (tenant_id, alert_id DESC);
CREATE INDEX IF NOT EXISTS alerts_by_tenant_status ON alerts (tenant_id, status, alert_id DESC);
DROP INDEX IF EXISTS alerts_tenant_status;
