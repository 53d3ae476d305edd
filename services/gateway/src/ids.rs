//! The identifiers every part of the gateway passes around: plain numbers, in a module that
//! depends on nothing else, so that naming a connection or a topic never pulls in the module
//! that owns it (and no two modules end up needing each other for a type alias).

/// Identifies a connection on this instance.
pub type ConnId = u64;

/// Identifies a NATS subject in use on this instance, cheaper to compare than the subject.
pub type TopicId = u64;
