//! Whether the JetStream streams the gateway reads answer: `PULSE_STATE` (a new subscriber's
//! current snapshot) and `PULSE_EVENTS` (events resumed with `since`, gaps read back).
//!
//! A gateway whose streams do not answer still serves every live message, so it stays ready:
//! taking every gateway out of the load balancer because JetStream is away would cut clients
//! off what still works. What it cannot do is said where operators look instead: `/readyz`
//! shows each stream as `readable` or `unreadable: <why>`, and the gauge
//! `pulse_gateway_stream_readable{stream}` is 1 or 0 (an alert fires on 0).
//!
//! Each stream is asked for the last message of a subject no service publishes, with the
//! direct get the gateway reads with anyway (so the same NATS permissions), every
//! [`CHECK_INTERVAL`]: "no message" is an answer, so the stream is readable; no answer within
//! [`CHECK_TIMEOUT`], no responder (the stream does not exist) or an error is not.

use std::time::Duration;

use async_nats::jetstream::{self, stream::DirectGetErrorKind};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use pulse_common::ops::Readiness;
use pulse_proto::subject::{EVENTS_STREAM, STATE_STREAM};
use tokio_util::sync::CancellationToken;

use crate::metrics::StreamLabel;

/// How often each stream is asked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How long one answer may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// The subject asked for: within no stream's subjects, so no message is ever found.
const PROBE_SUBJECT: &str = "pulse.v1.stream-check";
/// The streams checked, by the readiness key that shows each.
const STREAMS: [(&str, &str); 2] = [
    (STATE_STREAM, "stream_pulse_state"),
    (EVENTS_STREAM, "stream_pulse_events"),
];

/// Asks both streams every [`CHECK_INTERVAL`] until `stop`, and shows the outcome in
/// `readiness` and `readable`.
pub fn watch(
    js: jetstream::Context,
    readiness: Readiness,
    readable: Family<StreamLabel, Gauge>,
    stop: CancellationToken,
) {
    for (_, key) in STREAMS {
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
            }
            for ((stream, key), last) in STREAMS.into_iter().zip(&mut last) {
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
                            tracing::warn!(
                                stream,
                                %why,
                                "stream unreadable: resumes and new subscribers' current \
                                 snapshots wait for it"
                            );
                        }
                        readiness.set_info(key, format!("unreadable: {why}"));
                    }
                }
                *last = Some(outcome.is_ok());
            }
        }
    });
}

/// One question to `stream`: `Ok` when it answered, else why not.
async fn check(js: &jetstream::Context, stream: &str) -> Result<(), String> {
    let stream = js
        .get_stream_no_info(stream)
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(
        CHECK_TIMEOUT,
        stream.direct_get_last_for_subject(PROBE_SUBJECT),
    )
    .await
    {
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => match e.kind() {
            DirectGetErrorKind::NotFound => Ok(()),
            _ => Err(e.to_string()),
        },
    }
}
