-- Event publishing credentials per tenant. A backend presents `Authorization: Bearer <key>`;
-- the key names its tenant, so it can publish for that tenant only. Only the key's SHA-256 is
-- stored: the key itself is shown once, when it is created.

CREATE TABLE publish_keys (
    key_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  pulse_id NOT NULL REFERENCES tenants ON DELETE CASCADE,
    key_hash   bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    name       text NOT NULL CHECK (octet_length(name) BETWEEN 1 AND 128),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);
CREATE INDEX publish_keys_tenant ON publish_keys (tenant_id);

GRANT SELECT ON publish_keys TO pulse_tenant;
ALTER TABLE publish_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON publish_keys TO pulse_tenant
    USING (tenant_id = pulse_current_tenant());
