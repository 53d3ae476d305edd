-- Login attempts counted by every web instance together: behind a load balancer, a client
-- spreading its guesses over N instances gets the limit once, not N times.
--
-- One row per limited key (a client address, an (email, address) pair, an email), holding the
-- key's theoretical arrival time (GCRA, as the per-instance limiters count): an attempt is
-- admitted when, one interval (a minute / attempts per minute) after the later of `tat` and
-- now, `tat` would be at most a minute ahead. A row whose `tat` has passed counts nothing and
-- is deleted now and then. Unlogged: counts need no WAL, and a crash (or a failover to a
-- replica) that empties them only gives every key its allowance back.
CREATE UNLOGGED TABLE login_attempts (
    key text PRIMARY KEY CHECK (octet_length(key) BETWEEN 1 AND 512),
    tat timestamptz NOT NULL
);
CREATE INDEX login_attempts_by_tat ON login_attempts (tat);

ALTER TABLE login_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE login_attempts FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON login_attempts TO pulse_web;
CREATE POLICY web_counts_logins ON login_attempts TO pulse_web USING (true) WITH CHECK (true);

-- Takes one attempt of `attempts_per_minute` for `attempt_key`. Returns 0 when it is admitted
-- (and counted), else the seconds until one would be (and counts nothing). Run as its caller.
CREATE FUNCTION pulse_take_login_attempt(attempt_key text, attempts_per_minute integer)
RETURNS double precision
LANGUAGE plpgsql
AS $$
DECLARE
    at timestamptz := clock_timestamp();
    step interval := make_interval(secs => 60.0 / GREATEST(attempts_per_minute, 1));
    next timestamptz;
BEGIN
    INSERT INTO login_attempts (key, tat) VALUES (attempt_key, at) ON CONFLICT (key) DO NOTHING;
    SELECT GREATEST(tat, at) + step INTO next FROM login_attempts WHERE key = attempt_key
       FOR UPDATE;
    IF next > at + interval '1 minute' THEN
        RETURN extract(epoch FROM next - at - interval '1 minute');
    END IF;
    UPDATE login_attempts SET tat = next WHERE key = attempt_key;
    -- About once in a hundred attempts: forget the keys that count nothing any more.
    IF random() < 0.01 THEN
        DELETE FROM login_attempts WHERE tat < at;
    END IF;
    RETURN 0;
END
$$;

REVOKE ALL ON FUNCTION pulse_take_login_attempt(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pulse_take_login_attempt(text, integer) TO pulse_web;
