-- An event's seq is drawn by the database, whoever writes the row.
--
-- Before, pulse_emit_event drew it as its caller (an upsert on event_topics), so every writer of
-- events held INSERT and UPDATE on event_topics and INSERT on events with any seq. The web
-- service, as pulse_tenant, could set one of its tenant's counters back (the seqs repeated
-- are message ids JetStream drops as duplicates and positions clients hold: those events
-- would never arrive), write an event under any seq, or write one marked relayed (never
-- relayed). Now a trigger on events draws the next seq of the row's topic, as the schema's
-- owner, and refuses a row that names its own seq or relay time; no service role writes
-- event_topics.
--
-- The owner also reads every counter: the topic cap (20261204000005) counts a tenant's topics
-- as the owner, and with row-level security forced, an owner that is no superuser (as
-- deploy/README.md sets it up) counted none, so the cap was never reached.

CREATE POLICY owner_counts ON event_topics TO CURRENT_USER USING (true) WITH CHECK (true);

CREATE FUNCTION pulse_draw_event_seq() RETURNS trigger
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
REVOKE ALL ON FUNCTION pulse_draw_event_seq() FROM PUBLIC;

CREATE TRIGGER events_draw_seq
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION pulse_draw_event_seq();

REVOKE INSERT, UPDATE ON event_topics FROM pulse_tenant;

-- Same arguments, same result; the seq now comes from the trigger above.
CREATE OR REPLACE FUNCTION pulse_emit_event(
    p_tenant          text,
    p_topic           text,
    p_event           text,
    p_payload         jsonb DEFAULT 'null',
    p_idempotency_key text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
BEGIN
    IF p_idempotency_key IS NULL THEN
        INSERT INTO events (tenant_id, topic, event, payload)
             VALUES (p_tenant, p_topic, p_event, coalesce(p_payload, 'null'))
        RETURNING seq INTO v_seq;
    ELSE
        SELECT seq INTO v_seq FROM events
         WHERE tenant_id = p_tenant AND idempotency_key = p_idempotency_key;
        IF FOUND THEN
            RETURN v_seq;
        END IF;
        -- Only keyed events pay for the sub-transaction this block opens.
        BEGIN
            INSERT INTO events (tenant_id, topic, event, payload, idempotency_key)
                 VALUES (p_tenant, p_topic, p_event, coalesce(p_payload, 'null'), p_idempotency_key)
            RETURNING seq INTO v_seq;
        EXCEPTION WHEN unique_violation THEN
            -- A concurrent writer committed the same key first. The block's savepoint undid
            -- this seq, so the topic keeps no gap.
            SELECT seq INTO v_seq FROM events
             WHERE tenant_id = p_tenant AND idempotency_key = p_idempotency_key;
            IF NOT FOUND THEN
                RAISE;
            END IF;
            RETURN v_seq;
        END;
    END IF;
    PERFORM pg_notify('pulse_changes', 'events:' || p_tenant);
    RETURN v_seq;
END
$$;
