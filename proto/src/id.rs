//! Identifiers that may appear inside a NATS subject.
//!
//! Every tenant id, device id and event topic passes through [`validate_id`] before it can be
//! turned into a subject. This is a security boundary: NATS treats `.` as a token separator and
//! `*` / `>` as wildcards, so an unchecked id could widen a subscription to other tenants' data.
//! The newtypes below can only be built through `parse`, so an unchecked id cannot reach a
//! subject builder.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Longest id accepted, in bytes (all accepted characters are ASCII).
pub const MAX_ID_LEN: usize = 64;

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("id is empty")]
    Empty,
    #[error("id is longer than {MAX_ID_LEN} characters")]
    TooLong,
    #[error("id contains {0:?}; only A-Z, a-z, 0-9, '_' and '-' are allowed")]
    InvalidChar(char),
}

/// The one rule for ids used in subjects: `^[A-Za-z0-9_-]{1,64}$`.
pub fn validate_id(raw: &str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty);
    }
    if let Some(bad) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(IdError::InvalidChar(bad));
    }
    if raw.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    Ok(())
}

macro_rules! subject_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Checks `raw` against [`validate_id`] and wraps it.
            pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
                let raw = raw.into();
                validate_id(&raw)?;
                Ok(Self(raw))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(raw).map_err(serde::de::Error::custom)
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": "^[A-Za-z0-9_-]{1,64}$",
                })
            }
        }
    };
}

subject_id!(
    /// A tenant: the unit of isolation. Always taken from a verified token or the database,
    /// never from a client message.
    TenantId
);
subject_id!(
    /// A device, unique within its tenant (two tenants may share a device id).
    DeviceId
);
subject_id!(
    /// An event topic within a tenant, e.g. `tickets`.
    Topic
);
subject_id!(
    /// A site, the place devices stand: in no subject, but held to the same rule so that every
    /// id a client sends reads the same way.
    SiteId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_id_alphabet() {
        for ok in ["a", "dev-0001", "Tenant_42", "A-Z_a-z_0-9", &"x".repeat(64)] {
            assert_eq!(validate_id(ok), Ok(()), "{ok:?} should be accepted");
            assert_eq!(DeviceId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_hostile_ids() {
        let cases: &[(&str, IdError)] = &[
            ("", IdError::Empty),
            (">", IdError::InvalidChar('>')),
            ("*", IdError::InvalidChar('*')),
            ("a.b", IdError::InvalidChar('.')),
            ("a b", IdError::InvalidChar(' ')),
            ("a\tb", IdError::InvalidChar('\t')),
            ("a\nb", IdError::InvalidChar('\n')),
            ("a\0b", IdError::InvalidChar('\0')),
            ("tenant.>", IdError::InvalidChar('.')),
            ("dev/1", IdError::InvalidChar('/')),
            ("dévice", IdError::InvalidChar('é')),
            ("ｄｅｖ", IdError::InvalidChar('ｄ')),
        ];
        for (raw, want) in cases {
            assert_eq!(validate_id(raw).as_ref(), Err(want), "{raw:?}");
            assert!(TenantId::parse(*raw).is_err());
            assert!(Topic::parse(*raw).is_err());
        }
        assert_eq!(validate_id(&"x".repeat(65)), Err(IdError::TooLong));
        assert_eq!(validate_id(&"x".repeat(100_000)), Err(IdError::TooLong));
    }

    #[test]
    fn deserializing_validates() {
        let ok: DeviceId = serde_json::from_str("\"dev-1\"").unwrap();
        assert_eq!(ok.as_str(), "dev-1");
        let err = serde_json::from_str::<DeviceId>("\"dev.>\"").unwrap_err();
        assert!(err.to_string().contains("'.'"), "{err}");
    }
}
