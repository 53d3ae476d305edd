-- An event's created_at (its `ts`) is the database clock when its writing transaction began, as
-- the contract says, whoever writes the row.
--
-- Before, that was only the column's default, and a writer of events (pulse_tenant, a script)
-- could name its own: 'infinity' or a year past 9999, which no reader's clock type holds,
-- stopped the relay of every tenant's events; a date before Christ failed every relay pass; a
-- backdated one was pruned, with its idempotency key, within a minute. Now the trigger that
-- draws the seq refuses a row naming another time, and a check holds every row in range.

-- Rows written so before: when they were written is unknown, so they take this migration's
-- time, and go out (or are kept for the retention) from now. Row-level security binds the
-- owner too (FORCE), and no policy lets it at every tenant's rows: lifted for this
-- transaction only.
ALTER TABLE events NO FORCE ROW LEVEL SECURITY;
UPDATE events SET created_at = now() WHERE NOT pulse_timestamp_in_range(created_at);
ALTER TABLE events FORCE ROW LEVEL SECURITY;

ALTER TABLE events
    ADD CONSTRAINT events_created_at_in_range CHECK (pulse_timestamp_in_range(created_at));

CREATE OR REPLACE FUNCTION pulse_draw_event_seq() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    v_seq bigint;
BEGIN
    IF NEW.seq IS NOT NULL THEN
        RAISE EXCEPTION 'events.seq is drawn by the database: leave it out (or call pulse_emit_event)'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'events_seq_drawn';
    END IF;
    IF NEW.relayed_at IS NOT NULL THEN
        RAISE EXCEPTION 'events.relayed_at is set by the relay: leave it out'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'events_relayed_by_the_relay';
    END IF;
    -- The column's default is exactly this instant.
    IF NEW.created_at IS DISTINCT FROM transaction_timestamp() THEN
        RAISE EXCEPTION 'events.created_at is the database clock when the transaction began: leave it out'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'events_created_at_by_the_database';
    END IF;
    -- The counter row stays locked until the writer's transaction ends, so writers of one
    -- topic commit in seq order, and a rolled-back event (the row refused by row-level
    -- security included) takes its seq back with it.
    INSERT INTO event_topics AS t (tenant_id, topic, last_seq)
         VALUES (NEW.tenant_id, NEW.topic, 1)
    ON CONFLICT (tenant_id, topic) DO UPDATE SET last_seq = t.last_seq + 1
    RETURNING t.last_seq INTO v_seq;
    NEW.seq := v_seq;
    RETURN NEW;
END
$$;
