//! Whether the JetStream streams the gateway reads answer: `PULSE_STATE` (a new subscriber's
//! current snapshot), `PULSE_EVENTS` (events resumed with `since`, gaps read back) and
//! `KV_PULSE_DEVICES` (the device registry, read before a tenant's first subscriber of a
//! device: while it does not answer, device subscribes get `unavailable`).
//!
//! A gateway whose streams do not answer still serves every live message, so it stays ready:
//! taking every gateway out of the load balancer because JetStream is away would cut clients
//! off what still works. What it cannot do is said where operators look instead: `/readyz`
//! shows each stream as `readable` or `unreadable: <why>`, and the gauge
//! `pulse_gateway_stream_readable{stream}` is 1 or 0 (an alert fires on 0).
//!
//! Every [`CHECK_INTERVAL`] each stream is read as the gateway reads it (so with the same NATS
//! permissions, and the same need of a stream leader): its info, then a read from its leader
//! and direct gets of a subject no service publishes. "No message" is an answer, so the stream
//! is readable; no answer within [`CHECK_TIMEOUT`], a stream that does not exist or an error is
//! not.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    stream::{DirectGetError, DirectGetErrorKind, LastRawMessageError, LastRawMessageErrorKind},
};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use pulse_common::nats::LinkState;
use pulse_common::ops::Readiness;
use pulse_proto::subject::{DEVICES_STREAM, EVENTS_STREAM, STATE_STREAM};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::StreamLabel;

/// How often each stream is asked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How long one answer may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// The subject asked for: within no stream's subjects, so no message is ever found.
const PROBE_SUBJECT: &str = "pulse.v1.stream-check";
/// The streams checked, by the readiness key that shows each, with what waits for one that
/// does not answer.
const STREAMS: [(&str, &str, &str); 3] = [
    (
        STATE_STREAM,
        "stream_pulse_state",
        "new subscribers' current snapshots wait for it",
    ),
    (
        EVENTS_STREAM,
        "stream_pulse_events",
        "resumes and events read back wait for it",
    ),
    (
        DEVICES_STREAM,
        "stream_kv_pulse_devices",
        "a tenant's first subscribe to a device gets `unavailable`",
    ),
];

/// Asks each stream every [`CHECK_INTERVAL`] until `stop`, and shows the outcome in
/// `readiness` and `readable`. While `link` is down nothing is asked: NATS itself is the
/// trouble, and `/readyz` says so already.
pub fn watch(
    js: jetstream::Context,
    mut link: watch::Receiver<LinkState>,
    readiness: Readiness,
    readable: Family<StreamLabel, Gauge>,
    stop: CancellationToken,
) {
    for (_, key, _) in STREAMS {
        readiness.set_info(key, "unknown: not asked yet");
    }
    tokio::spawn(async move {
        // What each stream answered last time, so that only a change is logged.
        let mut last: [Option<bool>; STREAMS.len()] = [None; STREAMS.len()];
        let mut tick = tokio::time::interval(CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
                changed = link.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Shown at once: unknown while NATS is away, asked as soon as it is back.
                    tick.reset_immediately();
                    continue;
                }
            }
            if !link.borrow_and_update().connected {
                for (_, key, _) in STREAMS {
                    readiness.set_info(key, "unknown: NATS is not connected");
                }
                continue;
            }
            for ((stream, key, waits), last) in STREAMS.into_iter().zip(&mut last) {
                let outcome = check(&js, stream).await;
                let gauge = readable.get_or_create(&StreamLabel {
                    stream: stream.to_owned(),
                });
                match &outcome {
                    Ok(()) => {
                        gauge.set(1);
                        readiness.set_info(key, "readable");
                        if *last == Some(false) {
                            tracing::info!(stream, "stream readable again");
                        }
                    }
                    Err(why) => {
                        gauge.set(0);
                        if *last != Some(false) {
                            tracing::warn!(stream, %why, waits, "stream unreadable");
                        }
                        readiness.set_info(key, format!("unreadable: {why}"));
                    }
                }
                *last = Some(outcome.is_ok());
            }
        }
    });
}

/// The reads the gateway makes of `name`, each within [`CHECK_TIMEOUT`]: the stream's info
/// (what a reader opens it with), the last message of a subject from the leader (a snapshot's
/// current value, an event topic's newest event: [`crate::stream_reads`]) and from a replica
/// (what is read when the leader does not answer) and, of the events stream, the first message
/// of a subject after a sequence (history, asked on the request subject without a suffix).
/// `Ok` when each was answered, else the first that was not and why.
async fn check(js: &jetstream::Context, name: &str) -> Result<(), String> {
    let stream = match tokio::time::timeout(CHECK_TIMEOUT, js.get_stream(name)).await {
        Err(_) => return Err(format!("stream info: no answer within {CHECK_TIMEOUT:?}")),
        Ok(Err(e)) => return Err(format!("stream info: {e}")),
        Ok(Ok(stream)) => stream,
    };
    let no_message = |e: &LastRawMessageError| e.kind() == LastRawMessageErrorKind::NoMessageFound;
    let not_found = |e: &DirectGetError| e.kind() == DirectGetErrorKind::NotFound;
    let leader = stream.get_last_raw_message_by_subject(PROBE_SUBJECT);
    answered("last message from the leader", leader, no_message).await?;
    let last = stream.direct_get_last_for_subject(PROBE_SUBJECT);
    answered("last message", last, not_found).await?;
    if name == EVENTS_STREAM {
        let next = stream.direct_get_next_for_subject(PROBE_SUBJECT, Some(1));
        answered("history", next, not_found).await?;
    }
    Ok(())
}

/// A read answered within [`CHECK_TIMEOUT`]: with a message, or with "no message" (`none`:
/// the probe's subject holds none).
async fn answered<T, E: std::fmt::Display>(
    what: &str,
    read: impl Future<Output = Result<T, E>>,
    none: impl Fn(&E) -> bool,
) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, read).await {
        Err(_) => Err(format!("{what}: no answer within {CHECK_TIMEOUT:?}")),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if none(&e) => Ok(()),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
    }
}
