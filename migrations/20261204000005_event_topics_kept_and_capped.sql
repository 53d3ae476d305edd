-- Event topics: their numbering outlives their tenant, and a tenant has at most 10,000.
--
-- Deleting a tenant deletes its topics' counters (cascade), and a tenant created again with
-- the same id numbered its events from 1 again: those repeated the `Nats-Msg-Id`s of the deleted tenant's events, which JetStream takes
-- for duplicates within its window and does not store, and clients still holding a position
-- dropped them as already seen. The newest seq of each deleted counter is kept here, and a
-- counter created again starts above it.

CREATE TABLE event_topic_floors (
    tenant_id text NOT NULL,
    topic     text NOT NULL,
    last_seq  bigint NOT NULL,
    PRIMARY KEY (tenant_id, topic)
);
-- Read and written by the two functions below only, which run as the schema's owner.
ALTER TABLE event_topic_floors ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_topic_floors FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_keeps_floors ON event_topic_floors TO CURRENT_USER
    USING (true) WITH CHECK (true);

CREATE FUNCTION pulse_keep_topic_floor() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO event_topic_floors AS f (tenant_id, topic, last_seq)
         VALUES (OLD.tenant_id, OLD.topic, OLD.last_seq)
    ON CONFLICT (tenant_id, topic) DO UPDATE SET last_seq = greatest(f.last_seq, EXCLUDED.last_seq);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION pulse_keep_topic_floor() FROM PUBLIC;

CREATE TRIGGER event_topics_keep_floor
    AFTER DELETE ON event_topics
    FOR EACH ROW EXECUTE FUNCTION pulse_keep_topic_floor();

-- A counter's first row (pulse_emit_event inserts last_seq 1, or updates an existing one)
-- starts above the floor. And at most 10,000 topics per tenant: each keeps a counter row for
-- good and a subject in JetStream, and a publisher naming a new topic on every request would
-- grow both without bound. A tenant at the cap still writes to every topic it has; the
-- built-in `activity` topic is never refused, so no alert change is.
CREATE FUNCTION pulse_start_topic_above_floor() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    -- Fires for every emit (an INSERT … ON CONFLICT): only a topic new to the tenant is
    -- counted against the cap.
    IF NEW.topic <> 'activity'
       AND NOT EXISTS (SELECT 1 FROM event_topics
                        WHERE tenant_id = NEW.tenant_id AND topic = NEW.topic)
       AND (SELECT count(*) FROM event_topics WHERE tenant_id = NEW.tenant_id) >= 10000
    THEN
        RAISE EXCEPTION 'tenant % already has 10000 event topics', NEW.tenant_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'event_topics_per_tenant';
    END IF;
    NEW.last_seq := NEW.last_seq + coalesce(
        (SELECT last_seq FROM event_topic_floors
          WHERE tenant_id = NEW.tenant_id AND topic = NEW.topic), 0);
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION pulse_start_topic_above_floor() FROM PUBLIC;

CREATE TRIGGER event_topics_start_above_floor
    BEFORE INSERT ON event_topics
    FOR EACH ROW EXECUTE FUNCTION pulse_start_topic_above_floor();

-- The readings set aside by 20261204000003 are for the owner to inspect.
CREATE POLICY owner_inspects ON telemetry_out_of_range TO CURRENT_USER USING (true);
