-- Events written directly (`INSERT INTO events`, `COPY`), as the contract allows, are numbered
-- by the trigger of 20261204000006. Two ways they fell short of one written by
-- pulse_emit_event:
--
-- * A keyed retry dropped by `ON CONFLICT … DO NOTHING` drew a seq all the same (a BEFORE
--   trigger runs before the conflict is found), and nothing gave it back: the topic went
--   k-1, k+1, and every client took the hole for a lost event (`events_reset`, `gap`). Now a
--   row whose key its tenant already wrote takes that event's seq instead of drawing one, and
--   is dropped (or refused, without `ON CONFLICT`) as before. A keyed row takes its topic's
--   counter row first, so a key another writer of the topic is committing is seen once it
--   has; it waits there holding nothing new, as every writer waits for the counter it draws
--   from. Row locks only: a transaction of any number of rows, topics and keys needs no more
--   of PostgreSQL's lock table than before (a lock per key or topic would have run it out
--   for a `COPY` of some thousands of rows). Two writers of one key at once on a topic new
--   to the tenant (no counter row to wait at yet), or on two topics (a retry naming another
--   topic, which the API answers 409), may still leave a hole.
-- * Only pulse_emit_event told the relay: a row inserted directly waited for the relay's next
--   look (a second at most). The trigger now tells it too, as `events:<tenant>`; a transaction
--   says so once however many rows it writes.

-- The owner reads the keys already written; row-level security binds it too (FORCE).
CREATE POLICY owner_reads_keys ON events FOR SELECT TO CURRENT_USER USING (true);

-- As before (20261204000006) but for the key, looked up first, and the notification.
CREATE OR REPLACE FUNCTION pulse_draw_event_seq() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF NEW.seq IS NOT NULL THEN
        RAISE EXCEPTION 'events.seq is drawn by the database: leave it out (or call pulse_emit_event)'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'events_seq_drawn';
    ELSIF NEW.relayed_at IS NOT NULL THEN
        RAISE EXCEPTION 'events.relayed_at is set by the relay: leave it out'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'events_relayed_by_the_relay';
    END IF;
    IF NEW.idempotency_key IS NOT NULL THEN
        PERFORM 1 FROM event_topics
          WHERE tenant_id = NEW.tenant_id AND topic = NEW.topic FOR UPDATE;
        -- Found, the row conflicts with the event of that key: dropped or refused, never
        -- stored, and the counter untouched.
        SELECT seq INTO NEW.seq FROM events
         WHERE tenant_id = NEW.tenant_id AND idempotency_key = NEW.idempotency_key;
        IF FOUND THEN
            RETURN NEW;
        END IF;
    END IF;
    -- The counter row stays locked to the end of the writer's transaction: see 20261204000006.
    INSERT INTO event_topics AS t (tenant_id, topic, last_seq) VALUES (NEW.tenant_id, NEW.topic, 1)
    ON CONFLICT (tenant_id, topic) DO UPDATE SET last_seq = t.last_seq + 1
    RETURNING t.last_seq INTO NEW.seq;
    PERFORM pg_notify('pulse_changes', 'events:' || NEW.tenant_id);
    RETURN NEW;
END
$$;
-- Searched as every function that runs as the owner is (20261206000004).
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION pulse_draw_event_seq() SET search_path = pg_catalog, %I, pg_temp',
                   current_schema());
END
$$;
REVOKE ALL ON FUNCTION pulse_draw_event_seq() FROM PUBLIC;
