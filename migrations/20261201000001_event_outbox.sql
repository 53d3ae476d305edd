-- Events are stored before they are published: the `events` table is an outbox written in the
-- same transaction as the change that caused the event, and the active poller relays new rows
-- to NATS (`pulse.v1.<tenant>.events.<topic>`). `seq` increases by exactly 1 per
-- (tenant, topic): the counter row in `event_topics` is locked until the writer commits, so
-- writers of one topic commit in `seq` order and a rolled-back event leaves no gap.

CREATE TABLE event_topics (
    tenant_id pulse_id NOT NULL REFERENCES tenants ON DELETE CASCADE,
    topic     pulse_id NOT NULL,
    -- The newest seq drawn for the topic; the next event gets last_seq + 1.
    last_seq  bigint NOT NULL CHECK (last_seq > 0),
    PRIMARY KEY (tenant_id, topic)
);

CREATE TABLE events (
    tenant_id       pulse_id NOT NULL,
    topic           pulse_id NOT NULL,
    seq             bigint NOT NULL CHECK (seq > 0),
    event           text NOT NULL CHECK (octet_length(event) BETWEEN 1 AND 128),
    -- Bounded so that every relayed message stays far below the NATS payload limit.
    payload         jsonb NOT NULL DEFAULT 'null' CHECK (octet_length(payload::text) <= 65536),
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Given by a publisher that may retry: the same key (per tenant) returns the same event.
    idempotency_key text CHECK (octet_length(idempotency_key) BETWEEN 1 AND 128),
    -- Set once NATS acknowledged the relayed message; NULL rows are the relay's backlog.
    relayed_at      timestamptz,
    PRIMARY KEY (tenant_id, topic, seq),
    FOREIGN KEY (tenant_id, topic) REFERENCES event_topics ON DELETE CASCADE
);
CREATE UNIQUE INDEX events_idempotency ON events (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX events_backlog ON events (tenant_id, topic, seq) WHERE relayed_at IS NULL;
CREATE INDEX events_age ON events (created_at);

-- Emits one event and returns its seq. Call it inside the transaction that makes the change,
-- from a trigger or from any writer:
--
--   SELECT pulse_emit_event('acme', 'tickets', 'ticket:update', '{"id": 5}');
--
-- With an idempotency key already used by the tenant, nothing is written and the seq of the
-- event that key created is returned (whatever topic that event has).
CREATE FUNCTION pulse_emit_event(
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
        INSERT INTO event_topics AS t (tenant_id, topic, last_seq)
             VALUES (p_tenant, p_topic, 1)
        ON CONFLICT (tenant_id, topic) DO UPDATE SET last_seq = t.last_seq + 1
        RETURNING t.last_seq INTO v_seq;
        INSERT INTO events (tenant_id, topic, seq, event, payload)
             VALUES (p_tenant, p_topic, v_seq, p_event, coalesce(p_payload, 'null'));
    ELSE
        SELECT seq INTO v_seq FROM events
         WHERE tenant_id = p_tenant AND idempotency_key = p_idempotency_key;
        IF FOUND THEN
            RETURN v_seq;
        END IF;
        -- Only keyed events pay for the sub-transaction this block opens.
        BEGIN
            INSERT INTO event_topics AS t (tenant_id, topic, last_seq)
                 VALUES (p_tenant, p_topic, 1)
            ON CONFLICT (tenant_id, topic) DO UPDATE SET last_seq = t.last_seq + 1
            RETURNING t.last_seq INTO v_seq;
            INSERT INTO events (tenant_id, topic, seq, event, payload, idempotency_key)
                 VALUES (p_tenant, p_topic, v_seq, p_event, coalesce(p_payload, 'null'),
                         p_idempotency_key);
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

-- Every change of an alert's status is an event on the tenant's `activity` topic, written in
-- the same transaction as the change.
CREATE FUNCTION pulse_alert_activity() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status = NEW.status THEN
        RETURN NULL;
    END IF;
    PERFORM pulse_emit_event(
        NEW.tenant_id,
        'activity',
        CASE NEW.status WHEN 'OPEN' THEN 'alert:opened'
                        WHEN 'ACKNOWLEDGED' THEN 'alert:acknowledged'
                        ELSE 'alert:closed' END,
        jsonb_build_object(
            'alert_id', NEW.alert_id,
            'device_id', NEW.device_id,
            'site_id', NEW.site_id,
            'alert_type', left(NEW.alert_type, 256),
            'severity', NEW.severity,
            -- Bounded, so that no alert is ever refused for the size of its event.
            'summary', left(NEW.summary, 4096),
            'status', NEW.status));
    RETURN NULL;
END
$$;

CREATE TRIGGER alerts_activity
    AFTER INSERT OR UPDATE OF status ON alerts
    FOR EACH ROW EXECUTE FUNCTION pulse_alert_activity();

-- Tenant-scoped requests read their own events (REST history and refetch after a reset).
GRANT SELECT ON event_topics, events TO pulse_tenant;
ALTER TABLE event_topics ENABLE ROW LEVEL SECURITY;
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON event_topics TO pulse_tenant
    USING (tenant_id = pulse_current_tenant());
CREATE POLICY tenant_isolation ON events TO pulse_tenant
    USING (tenant_id = pulse_current_tenant());

-- Event seqs come from event_topics now.
DROP SEQUENCE pulse_event_seq;
