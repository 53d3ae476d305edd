-- Timestamps every service can read back. The services decode timestamptz into a type that holds
-- years 1 to 9999 and publish it as RFC 3339, whose years have four digits. PostgreSQL also
-- accepts 'infinity', '-infinity', BC dates and years past 9999: one telemetry reading like
-- that stopped every poller in turn (the trigger copies it to devices.last_seen_at, which the
-- fleet snapshot reads), and a BC date failed the fleet snapshot of every tenant read with it.
-- Writers now get a check violation naming the column instead.

CREATE FUNCTION pulse_timestamp_in_range(ts timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ts >= timestamptz '0001-01-01 00:00:00+00'
       AND ts < timestamptz '10000-01-01 00:00:00+00'
$$;

-- Rows written before are repaired first so that the constraints hold for every row. Row-level
-- security binds the owner too (FORCE), and no policy lets the owner at every tenant's rows:
-- lift it for this transaction only.
ALTER TABLE telemetry NO FORCE ROW LEVEL SECURITY;
ALTER TABLE devices NO FORCE ROW LEVEL SECURITY;
ALTER TABLE alerts NO FORCE ROW LEVEL SECURITY;

-- Readings out of range are kept aside, for an operator to inspect, rather than deleted. The
-- delete trigger sets each device's last_seen_at back to its newest reading left.
CREATE TABLE telemetry_out_of_range (
    tenant_id text NOT NULL,
    device_id text NOT NULL,
    ts        timestamptz NOT NULL,
    metrics   jsonb NOT NULL,
    moved_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE telemetry_out_of_range ENABLE ROW LEVEL SECURITY;

WITH moved AS (
    DELETE FROM telemetry WHERE NOT pulse_timestamp_in_range(ts)
    RETURNING tenant_id, device_id, ts, metrics
)
INSERT INTO telemetry_out_of_range (tenant_id, device_id, ts, metrics)
SELECT tenant_id, device_id, ts, metrics FROM moved;
-- Forced once the readings are in: forced before, it refused the owner's insert.
ALTER TABLE telemetry_out_of_range FORCE ROW LEVEL SECURITY;

-- Written directly, against the schema's advice: back to the newest reading.
UPDATE devices d
   SET last_seen_at = (SELECT max(t.ts) FROM telemetry t
                        WHERE t.tenant_id = d.tenant_id AND t.device_id = d.device_id)
 WHERE NOT pulse_timestamp_in_range(d.last_seen_at);

-- An alert stays listed: its times are brought to the nearest bound.
UPDATE alerts
   SET created_at = least(greatest(created_at, timestamptz '0001-01-01 00:00:00+00'),
                          timestamptz '9999-12-31 23:59:59.999999+00')
 WHERE NOT pulse_timestamp_in_range(created_at);
UPDATE alerts
   SET closed_at = least(greatest(closed_at, timestamptz '0001-01-01 00:00:00+00'),
                         timestamptz '9999-12-31 23:59:59.999999+00')
 WHERE NOT pulse_timestamp_in_range(closed_at);

ALTER TABLE telemetry FORCE ROW LEVEL SECURITY;
ALTER TABLE devices FORCE ROW LEVEL SECURITY;
ALTER TABLE alerts FORCE ROW LEVEL SECURITY;

ALTER TABLE telemetry
    ADD CONSTRAINT telemetry_ts_in_range CHECK (pulse_timestamp_in_range(ts));
ALTER TABLE devices
    ADD CONSTRAINT devices_last_seen_at_in_range CHECK (pulse_timestamp_in_range(last_seen_at));
ALTER TABLE alerts
    ADD CONSTRAINT alerts_created_at_in_range CHECK (pulse_timestamp_in_range(created_at)),
    ADD CONSTRAINT alerts_closed_at_in_range CHECK (pulse_timestamp_in_range(closed_at));
