-- Events published through the web service carry a `seq` from this sequence, so it increases
-- per subject however many web instances publish.
CREATE SEQUENCE pulse_event_seq;

-- Tenant-scoped requests read the status thresholds the poller recorded.
GRANT SELECT ON pulse_settings TO pulse_tenant;
