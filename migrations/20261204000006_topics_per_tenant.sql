-- At most 10,000 topics per tenant. Each topic keeps a counter row for good (its numbering
-- outlives even the tenant), and a subject in JetStream: a publisher naming a new topic on
-- every request would grow both without bound. A tenant at the cap still writes to every
-- topic it has; the built-in `activity` topic is never refused, so no alert change is.

CREATE OR REPLACE FUNCTION pulse_start_topic_above_floor() RETURNS trigger
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
