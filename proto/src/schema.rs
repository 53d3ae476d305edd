//! JSON Schemas for every wire message, generated from the Rust types.
//!
//! The files in `proto/schemas/` are these schemas; a test fails when they are stale
//! (`PULSE_UPDATE_SCHEMAS=1 cargo test -p pulse-proto` rewrites them).

use schemars::{JsonSchema, Schema, schema_for};

/// `(file name, schema)` for every message of the contract.
pub fn all() -> Vec<(&'static str, Schema)> {
    vec![
        ("alerts.json", schema_for!(crate::AlertsSnapshot)),
        ("fleet.json", schema_for!(crate::FleetSnapshot)),
        ("telemetry.json", schema_for!(crate::Telemetry)),
        ("event.json", schema_for!(crate::Event)),
        ("user-changed.json", schema_for!(crate::UserChanged)),
        ("server-reply.json", schema_for!(crate::ServerReply)),
        ("client-request.json", client_request()),
    ]
}

/// The client request is parsed by hand (for precise error codes), so its schema is written
/// here rather than derived.
fn client_request() -> Schema {
    let id = crate::DeviceId::json_schema(&mut schemars::SchemaGenerator::default());
    schemars::json_schema!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ClientRequest",
        "description": "A message a client sends to a gateway. A bare text frame `ping` is accepted too.",
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "action": { "enum": ["subscribe", "unsubscribe"] },
                    "type": { "enum": ["alerts", "fleet"] }
                },
                "required": ["action", "type"]
            },
            {
                "type": "object",
                "properties": {
                    "action": { "enum": ["subscribe", "unsubscribe"] },
                    "type": { "const": "device" },
                    "device_id": id
                },
                "required": ["action", "type", "device_id"]
            },
            {
                "type": "object",
                "properties": {
                    "action": { "enum": ["subscribe", "unsubscribe"] },
                    "type": { "const": "events" },
                    "topic": id,
                    "since": {
                        "description": "subscribe only: replay the retained events with a higher seq first",
                        "type": ["integer", "null"],
                        "minimum": 0,
                        "maximum": crate::client::MAX_SAFE_INTEGER
                    }
                },
                "required": ["action", "type", "topic"]
            },
            {
                "type": "object",
                "properties": { "action": { "const": "ping" } },
                "required": ["action"]
            },
            {
                "type": "object",
                "properties": {
                    "action": { "const": "auth" },
                    "token": { "type": "string", "minLength": 1 }
                },
                "required": ["action", "token"]
            }
        ]
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::{Value, json};

    use super::*;

    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
    }

    fn render(schema: &Schema) -> String {
        let mut text = serde_json::to_string_pretty(schema).unwrap();
        text.push('\n');
        text
    }

    #[test]
    fn shipped_schemas_are_current() {
        let update = std::env::var_os("PULSE_UPDATE_SCHEMAS").is_some();
        for (name, schema) in all() {
            let path = dir().join(name);
            let want = render(&schema);
            if update {
                std::fs::create_dir_all(dir()).unwrap();
                std::fs::write(&path, &want).unwrap();
                continue;
            }
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                have == want,
                "{} is stale: run `PULSE_UPDATE_SCHEMAS=1 cargo test -p pulse-proto`",
                path.display()
            );
        }
    }

    fn validator(name: &str) -> jsonschema::Validator {
        let (_, schema) = all().into_iter().find(|(n, _)| *n == name).unwrap();
        jsonschema::validator_for(&serde_json::to_value(schema).unwrap()).unwrap()
    }

    fn sample_alerts() -> Value {
        json!({"type": "alerts", "tenant_id": "acme", "seq": 1, "ts": "2026-11-22T10:00:00Z",
               "alerts": [{"alert_id": 1, "device_id": "d", "site_id": "s", "alert_type": "t",
                           "severity": 3, "summary": "x", "status": "OPEN",
                           "created_at": "2026-11-22T10:00:00Z"}],
               "total_open": 1})
    }

    #[test]
    fn schemas_accept_real_messages_and_refuse_wrong_ones() {
        let alerts = validator("alerts.json");
        assert!(alerts.is_valid(&sample_alerts()));
        let mut bad = sample_alerts();
        bad["tenant_id"] = json!("acme.>");
        assert!(!alerts.is_valid(&bad));
        let mut bad = sample_alerts();
        bad["alerts"][0]["status"] = json!("open");
        assert!(!alerts.is_valid(&bad));
        let mut bad = sample_alerts();
        bad["alerts"][0]["severity"] = json!(-1);
        assert!(!alerts.is_valid(&bad), "severities start at 0");

        let event = validator("event.json");
        let sample = json!({"type": "event", "tenant_id": "acme", "topic": "tickets",
                            "event": "ticket:update", "seq": 1, "ts": "2026-12-01T10:00:00Z",
                            "payload": null});
        assert!(event.is_valid(&sample));
        for (field, wrong) in [
            ("seq", json!(0)),
            ("event", json!("")),
            ("event", json!("e".repeat(129))),
        ] {
            let mut bad = sample.clone();
            bad[field] = wrong;
            assert!(!event.is_valid(&bad), "{bad}");
        }

        let replies = validator("server-reply.json");
        assert!(
            replies
                .is_valid(&json!({"type": "subscribed", "channel": "device", "device_id": "d1"}))
        );
        assert!(replies.is_valid(&json!({"type": "error", "code": "invalid_id", "message": "m"})));
        assert!(
            !replies.is_valid(&json!({"type": "error", "code": "no_such_code", "message": "m"}))
        );

        let requests = validator("client-request.json");
        for ok in [
            json!({"action": "subscribe", "type": "alerts"}),
            json!({"action": "subscribe", "type": "device", "device_id": "dev-1"}),
            json!({"action": "unsubscribe", "type": "events", "topic": "tickets"}),
            json!({"action": "ping"}),
            json!({"action": "auth", "token": "t"}),
        ] {
            assert!(requests.is_valid(&ok), "{ok}");
            let text = ok.to_string();
            assert!(crate::ClientRequest::parse(&text).is_ok(), "{text}");
        }
        for bad in [
            json!({"action": "subscribe", "type": "device", "device_id": "a.b"}),
            json!({"action": "subscribe", "type": "device"}),
            json!({"action": "delete"}),
        ] {
            assert!(!requests.is_valid(&bad), "{bad}");
            assert!(
                crate::ClientRequest::parse(&bad.to_string()).is_err(),
                "{bad}"
            );
        }
    }
}
