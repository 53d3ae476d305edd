-- Events written directly (`INSERT INTO events`, `COPY`), as the contract allows, are numbered
-- by the trigger of 20261204000006. Two ways they fell short of one written by
-- pulse_emit_event:
--
-- * A keyed retry dropped by `ON CONFLICT … DO NOTHING` drew a seq all the same (a BEFORE
--   trigger runs before the conflict is found), and nothing gave it back: the topic went
--   k-1, k+1, and every client took the hole for a lost event (`events_reset`, `gap`). Now a
--   row whose key its tenant already wrote takes that event's seq instead of drawing one, and
--   is dropped (or refused, without `ON CONFLICT`) as before. Writers of one key take turns
--   (an advisory lock per tenant and key, held to the end of the transaction), so a key
--   another writer is committing, on a topic new or not, is seen once it is. Writers of one
--   topic take turns first (a lock per tenant and topic, which a topic new to the tenant has
--   too), as they did on its counter: a writer waits for a topic holding nothing, never for
--   a topic while holding a key another writer of the topic is about to ask for.
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
    PERFORM pg_advisory_xact_lock(hashtext('pulse_event_topic:' || NEW.tenant_id),
                                  hashtext(NEW.topic));
    IF NEW.idempotency_key IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext('pulse_event_key:' || NEW.tenant_id),
                                      hashtext(NEW.idempotency_key));
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
