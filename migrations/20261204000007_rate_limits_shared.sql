-- Rate limits counted by every web instance together: behind a load balancer, a client that
-- spreads its requests over N instances gets each limit once, not once per instance. Login
-- attempts (per client address, per (email, address) pair, per email) and published events
-- (per tenant) are counted here once an instance's own limiters admitted them.
--
-- One row per limited key, holding the key's theoretical arrival time (GCRA, as the
-- per-instance limiters count): a request is admitted when, one interval after the later of
-- `tat` and now, `tat` would be at most `burst` intervals ahead. A row whose `tat` has passed
-- counts nothing and is deleted now and then. Unlogged: counts need no WAL, and a crash (or a
-- failover to a replica) that empties them only gives every key its allowance back.
CREATE UNLOGGED TABLE rate_limits (
    key text PRIMARY KEY CHECK (octet_length(key) BETWEEN 1 AND 512),
    tat timestamptz NOT NULL
);
CREATE INDEX rate_limits_by_tat ON rate_limits (tat);

ALTER TABLE rate_limits ENABLE ROW LEVEL SECURITY;
ALTER TABLE rate_limits FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limits TO pulse_web;
CREATE POLICY web_counts_requests ON rate_limits TO pulse_web USING (true) WITH CHECK (true);

-- Takes one request for `rate_key`, which is allowed one every `every_seconds` and `burst` at
-- once. Returns 0 when it is admitted (and counted), else the seconds until one would be (and
-- counts nothing). Run as its caller.
CREATE FUNCTION pulse_take_rate(rate_key text, every_seconds double precision, burst integer)
RETURNS double precision
LANGUAGE plpgsql
AS $$
DECLARE
    at timestamptz := clock_timestamp();
    step interval := make_interval(secs => every_seconds);
    allowance interval := make_interval(secs => every_seconds * GREATEST(burst, 1));
    next timestamptz;
BEGIN
    INSERT INTO rate_limits (key, tat) VALUES (rate_key, at) ON CONFLICT (key) DO NOTHING;
    SELECT GREATEST(tat, at) + step INTO next FROM rate_limits WHERE key = rate_key FOR UPDATE;
    IF next > at + allowance THEN
        RETURN extract(epoch FROM next - at - allowance);
    END IF;
    UPDATE rate_limits SET tat = next WHERE key = rate_key;
    -- About once in a thousand requests: forget keys that count nothing any more, passing
    -- over those another request holds (never waiting, so two such deletes cannot deadlock).
    IF random() < 0.001 THEN
        DELETE FROM rate_limits WHERE key IN (
            SELECT key FROM rate_limits WHERE tat < at LIMIT 10000 FOR UPDATE SKIP LOCKED);
    END IF;
    RETURN 0;
END
$$;

REVOKE ALL ON FUNCTION pulse_take_rate(text, double precision, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pulse_take_rate(text, double precision, integer) TO pulse_web;
