-- `GET /api/v2/alerts?min_severity=…` (the critical alerts a capped alerts snapshot leaves out,
-- or any status's) finds each severity present at or above the one asked for and merges their
-- alerts from `before` down, newest first, one index entry at a time: a page reads about
-- itself, whatever the status and however many lesser alerts are newer. Without this index a
-- page walked the tenant's alerts (or the status's) from `before` down, dropping every lesser
-- one, or read every alert at or above the severity and sorted them. Ascending throughout:
-- the merge compares (severity, alert_id) as a row, and walks it backwards.
--
-- Built in the migration's transaction, so alert writes wait while the whole table is read
-- once. On a large table, build it first without blocking writes, and the migration then
-- finds it:
--   CREATE INDEX CONCURRENTLY alerts_by_tenant_status_severity
--       ON alerts (tenant_id, status, severity, alert_id);
CREATE INDEX IF NOT EXISTS alerts_by_tenant_status_severity
    ON alerts (tenant_id, status, severity, alert_id);
