-- `TRUNCATE tenants CASCADE` (or of `event_topics`) empties the topic counters without firing
-- their DELETE trigger (20261204000005), so no floor was kept: a tenant created again with the
-- same id numbered its topics from 1, repeating message ids JetStream had seen and positions
-- clients held. The floors are now kept before any truncation of the counters, as for a DELETE.
CREATE FUNCTION pulse_keep_truncated_topic_floors() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO event_topic_floors AS f (tenant_id, topic, last_seq)
         SELECT tenant_id, topic, last_seq FROM event_topics
    ON CONFLICT (tenant_id, topic) DO UPDATE SET last_seq = greatest(f.last_seq, EXCLUDED.last_seq);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION pulse_keep_truncated_topic_floors() FROM PUBLIC;

CREATE TRIGGER event_topics_keep_floors_on_truncate
    BEFORE TRUNCATE ON event_topics
    FOR EACH STATEMENT EXECUTE FUNCTION pulse_keep_truncated_topic_floors();
