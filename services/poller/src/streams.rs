//! The JetStream streams of the contract (and the device registry's bucket), created or
//! updated idempotently at activation.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use pulse_proto::subject::{
    EVENTS_STREAM, EVENTS_STREAM_SUBJECTS, STATE_STREAM, STATE_STREAM_SUBJECTS,
};

use crate::config::PollerConfig;

/// How long JetStream remembers an event's `Nats-Msg-Id` (at most the events' age).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Last value per snapshot subject, readable by direct get.
pub fn state_stream(config: &PollerConfig) -> stream::Config {
    stream::Config {
        name: STATE_STREAM.to_owned(),
        description: Some("Pulse: newest alerts, fleet and telemetry message per subject".into()),
        subjects: STATE_STREAM_SUBJECTS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        max_messages_per_subject: 1,
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        num_replicas: config.stream_replicas,
        allow_direct: true,
        ..Default::default()
    }
}

/// The events stream's description, which names its numbering (see `retire_old_numbering`).
pub const EVENTS_DESCRIPTION: &str = pulse_proto::subject::EVENTS_STREAM_DESCRIPTION;

/// Bounded history of events, for clients recovering after a disconnect.
pub fn events_stream(config: &PollerConfig) -> stream::Config {
    stream::Config {
        name: EVENTS_STREAM.to_owned(),
        description: Some(EVENTS_DESCRIPTION.into()),
        subjects: EVENTS_STREAM_SUBJECTS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        max_age: config.events_max_age(),
        max_bytes: config.events_max_bytes,
        max_messages_per_subject: config.events_max_per_topic,
        // The relay sends an event again when it cannot tell whether the first send was
        // stored (a lost acknowledgement, a failover); its `Nats-Msg-Id` makes the repeat a
        // no-op within this window.
        duplicate_window: DUPLICATE_WINDOW.min(config.events_max_age()),
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        num_replicas: config.stream_replicas,
        allow_direct: true,
        ..Default::default()
    }
}

/// Creates both streams or brings their configuration up to date. Safe to run from several
/// processes at once: a lost creation race is retried as an update.
pub async fn ensure(js: &jetstream::Context, config: &PollerConfig) -> anyhow::Result<()> {
    retire_old_numbering(js).await?;
    for wanted in [state_stream(config), events_stream(config)] {
        let name = wanted.name.clone();
        let mut last_err = None;
        for _ in 0..3 {
            match js.create_or_update_stream(wanted.clone()).await {
                Ok(_) => {
                    last_err = None;
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        if let Some(e) = last_err {
            return Err(e).with_context(|| format!("cannot create or update stream {name}"));
        }
    }
    crate::registry::ensure(js, config.stream_replicas).await?;
    Ok(())
}

/// Empties an events stream created before `seq` counted per topic (see
/// [`EVENTS_DESCRIPTION`]); the configuration update that follows marks it.
async fn retire_old_numbering(js: &jetstream::Context) -> anyhow::Result<()> {
    let mut stream = match js.get_stream(EVENTS_STREAM).await {
        Ok(stream) => stream,
        // No stream yet: it is created with the mark.
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            return Ok(());
        }
        Err(e) => return Err(e).context("cannot open the events stream"),
    };
    let info = stream
        .info()
        .await
        .context("cannot read the events stream's info")?;
    if info.config.description.as_deref() == Some(EVENTS_DESCRIPTION) {
        return Ok(());
    }
    let messages = info.state.messages;
    stream
        .purge()
        .await
        .context("cannot empty the events stream of the old numbering")?;
    tracing::warn!(
        messages,
        "emptied the events stream of events numbered by the old shared sequence"
    );
    Ok(())
}

/// The highest `seq` already published to the state stream, read from its newest message, so
/// a newly active poller never goes below it. Zero when the stream is empty.
pub async fn newest_seq(js: &jetstream::Context) -> anyhow::Result<u64> {
    let mut stream = js
        .get_stream(STATE_STREAM)
        .await
        .context("cannot open the state stream")?;
    let last = stream
        .info()
        .await
        .context("cannot read the state stream's info")?
        .state
        .last_sequence;
    if last == 0 {
        return Ok(0);
    }
    let message = match stream.direct_get(last).await {
        Ok(m) => m,
        // The newest message may have just been replaced by a newer one on the same subject.
        Err(_) => return Ok(0),
    };
    Ok(message
        .headers
        .get(pulse_proto::headers::SEQ)
        .and_then(|v| v.as_str().parse().ok())
        .unwrap_or(0))
}
