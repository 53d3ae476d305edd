//! The schemars transform the message types share, [`null_is_sent`]. It is a leaf module, so
//! the types and [`crate::schema`], which collects their schemas, do not depend on each other.

use schemars::Schema;

/// Marks the object's nullable properties as required: serde sends a `None` as `null`, so the
/// field is always there, which schemars cannot know (it would call it optional, and consumers
/// generating types from the schema would have to handle a missing field that never is).
pub(crate) fn null_is_sent(schema: &mut Schema) {
    let nullable: Vec<String> = schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|props| {
            props
                .iter()
                .filter(|(_, p)| allows_null(p))
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default();
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let required = object
        .entry("required")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if let Some(required) = required.as_array_mut() {
        for name in nullable {
            if !required.iter().any(|r| r == name.as_str()) {
                required.push(name.into());
            }
        }
    }
}

fn allows_null(property: &serde_json::Value) -> bool {
    let null = serde_json::Value::from("null");
    match property.get("type") {
        Some(serde_json::Value::Array(types)) => types.contains(&null),
        _ => property
            .get("anyOf")
            .and_then(|a| a.as_array())
            .is_some_and(|a| a.iter().any(|s| s.get("type") == Some(&null))),
    }
}
