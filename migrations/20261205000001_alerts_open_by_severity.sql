-- Every alerts snapshot counts a tenant's open alerts by severity (`open_by_severity`), listed
-- or not. Read from this index alone, that count costs what counting them did before (a tenant
-- with 10,000 open alerts: 4 ms either way; 9 ms reading their rows instead). It holds open
-- alerts only, so it stays as small as the alerts_open index.
--
-- Built in the migration's transaction, so alert writes wait while the whole table is read
-- once. On a large table, build it first without blocking writes, and the migration then
-- finds it:
--   CREATE INDEX CONCURRENTLY alerts_open_by_severity ON alerts (tenant_id, severity)
--       WHERE status = 'OPEN';
CREATE INDEX IF NOT EXISTS alerts_open_by_severity ON alerts (tenant_id, severity)
    WHERE status = 'OPEN';
