-- An event's created_at (its `ts`) is the database clock when its writing transaction began, as
-- the contract says, whoever writes the row.
--
-- Before, that was only the column's default, and a writer of events (pulse_tenant, a script)
-- could name its own: 'infinity' or a year past 9999, which no reader's clock type holds,
-- stopped the relay of every tenant's events; a date before Christ failed every relay pass; a
-- backdated one was pruned, with its idempotency key, within a minute. Now a trigger refuses a
-- row naming another time, and a check holds every row in range.

-- Rows written so before: when they were written is unknown, so they take this migration's
-- time, and go out (or are kept for the retention) from now. Row-level security binds the
-- owner too (FORCE), and no policy lets it at every tenant's rows: lifted for this
-- transaction only.
ALTER TABLE events NO FORCE ROW LEVEL SECURITY;
UPDATE events SET created_at = now() WHERE NOT pulse_timestamp_in_range(created_at);
ALTER TABLE events FORCE ROW LEVEL SECURITY;

ALTER TABLE events
    ADD CONSTRAINT events_created_at_in_range CHECK (pulse_timestamp_in_range(created_at));

-- Checked before the seq is drawn (triggers fire in name order), so a refused row takes none;
-- the column's default is exactly the transaction's start.
CREATE FUNCTION pulse_refuse_event_created_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events.created_at is the database clock when the transaction began: leave it out'
        USING ERRCODE = 'check_violation', CONSTRAINT = 'events_created_at_by_the_database';
END
$$;
REVOKE ALL ON FUNCTION pulse_refuse_event_created_at() FROM PUBLIC;

CREATE TRIGGER events_check_created_at
    BEFORE INSERT ON events
    FOR EACH ROW
    WHEN (NEW.created_at IS DISTINCT FROM transaction_timestamp())
    EXECUTE FUNCTION pulse_refuse_event_created_at();
