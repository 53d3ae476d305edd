-- The web service writes a publish key's `last_used_at` at most once a minute, so it reads the
-- value first: a write on every request would queue a flooding backend's requests on the
-- key's row.
GRANT SELECT (last_used_at) ON publish_keys TO pulse_web;
