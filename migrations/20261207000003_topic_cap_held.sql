-- The cap of 10,000 event topics per tenant (20261204000005) counted the tenant's topics
-- holding nothing: writers each adding a new topic at 9,999 all saw room, and the tenant ended
-- past the cap by one per writer at once. A writer adding a topic new to its tenant now takes
-- the tenant's lock for new topics first, held until its transaction ends, so that the next
-- one counts after it has committed (at READ COMMITTED, PostgreSQL's default). Writes to the
-- topics a tenant has, and to `activity`, take no lock.
CREATE FUNCTION pulse_add_topics_one_at_a_time() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.topic <> 'activity'
       AND NOT EXISTS (SELECT 1 FROM event_topics
                        WHERE tenant_id = NEW.tenant_id AND topic = NEW.topic)
    THEN
        PERFORM pg_advisory_xact_lock(hashtext('pulse_event_topics'), hashtext(NEW.tenant_id));
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION pulse_add_topics_one_at_a_time() FROM PUBLIC;
-- Fires before event_topics_start_above_floor (triggers fire in the order of their names),
-- whose count then sees what was committed while this one waited.
CREATE TRIGGER event_topics_added_one_at_a_time BEFORE INSERT ON event_topics
    FOR EACH ROW EXECUTE FUNCTION pulse_add_topics_one_at_a_time();
