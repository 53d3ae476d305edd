-- `TRUNCATE tenants CASCADE` (or of `event_topics`) empties the topic counters without firing
-- their DELETE trigger (20261204000005), so no floor was kept: a tenant created again with the
-- same id numbered its topics from 1, repeating message ids JetStream had seen and positions
-- clients held. Before any truncation of the counters, their rows are now deleted one by one,
-- which keeps each floor as a DELETE does; the table holds a row per topic, a few thousand.
-- (A trigger function cannot be called but by its trigger: nothing to revoke.)
CREATE FUNCTION pulse_delete_topics_before_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM event_topics;
    RETURN NULL;
END
$$;
CREATE TRIGGER event_topics_keep_floors_on_truncate
    BEFORE TRUNCATE ON event_topics
    FOR EACH STATEMENT EXECUTE FUNCTION pulse_delete_topics_before_truncate();
