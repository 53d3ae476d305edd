//! One client connection: reads requests, writes replies and pushes, keeps it alive, and
//! cleans up everything it holds when it ends, whatever ends it.
//!
//! Reading and writing share one task: a slow client's socket only ever delays that client.
//! Pushes wait in its [`ClientQueue`] (conflated or bounded) and are written in batches, one
//! flush per batch.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::future::OptionFuture;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use pulse_proto::{Channel, ClientRequest, ErrorCode, ProtocolError, ServerReply, close};

use crate::auth::{AuthError, Principal, unix_now};
use crate::caps::Slot;
use crate::context::ConnectionContext;
use crate::fanout::Topic;
use crate::frame::Frame;
use crate::ids::{ConnId, TopicId};
use crate::metrics::CodeLabel;
use crate::queue::{ClientQueue, Newest};
use crate::ratelimit::MessageLimit;
use crate::revoke::Registration;
use requests::{Checking, DeviceCheck};

mod requests;

/// Why the connection ends: a close frame to send, or nothing when the peer is gone.
type Ending = Option<(u16, &'static str)>;

struct Session {
    id: ConnId,
    principal: Principal,
    cx: Arc<ConnectionContext>,
    queue: Arc<ClientQueue>,
    channels: HashMap<Channel, Arc<Topic>>,
    /// Newest `seq` written per topic, from the `since` of an events subscription: a frame that
    /// is not newer is dropped, so a client never sees an older state after a newer one, nor
    /// an event twice (a client that resumes here ahead of the events this instance has
    /// delivered would otherwise get those again as they arrive).
    written: HashMap<TopicId, Newest>,
    sink: SplitSink<WebSocket, Message>,
    batch: Vec<Frame>,
    /// When each frame of the batch being written arrived from NATS; kept between batches.
    received: Vec<Instant>,
    limit: MessageLimit,
    limited_streak: u32,
    last_limited_reply: Option<Instant>,
    /// Ends the connection when its user is deleted or its role changes.
    user: Registration,
    /// Its place in the connection caps, freed when the session is dropped.
    slot: Slot,
    /// Device subscribes waiting for the device registry's answer, which comes beside the
    /// loop: a slow JetStream never holds the connection's other requests.
    checks: tokio::task::JoinSet<DeviceCheck>,
    /// The channels of `checks`, with the requests about them sent meanwhile.
    checking: HashMap<Channel, Checking>,
    /// The fresh token of an `auth` request being verified, beside the loop like `checks`: a
    /// key the gateway has to fetch from the JWKS endpoint holds neither pushes nor pings.
    /// At most one at a time; a handle, not a set, as nearly every connection never has one.
    renewal: Option<tokio::task::JoinHandle<Result<Principal, AuthError>>>,
    /// Requests sent while `renewal` is out (and frames that are none, each answered with its
    /// error), answered in order once it is, under the token it brings: a subscribe sent after
    /// a renewal is the renewed principal's. Bounded by the message rate limit and the
    /// verifier's JWKS fetch timeout.
    held: VecDeque<Result<ClientRequest, ProtocolError>>,
}

/// Serves an authenticated, admitted connection until it ends. `announce`: it authenticated by
/// its first message, and is told `authenticated` once it is let in.
///
/// A plain function returning the future, not an `async fn`: the session is built here, so
/// the future every open connection keeps holds the session once, not also the arguments it
/// was built from.
pub fn serve(
    socket: WebSocket,
    principal: Principal,
    slot: Slot,
    cx: Arc<ConnectionContext>,
    id: ConnId,
    announce: bool,
) -> impl std::future::Future<Output = ()> + Send {
    let (sink, stream) = socket.split();
    let settings = cx.settings;
    let user = cx
        .revocations
        .register(&principal.tenant, &principal.sub, principal.issued, id);
    let mut session = Session {
        id,
        principal,
        queue: Arc::new(ClientQueue::new(
            settings.queue_events,
            cx.metrics.replay_bytes_waiting.clone(),
        )),
        channels: HashMap::new(),
        written: HashMap::new(),
        sink,
        batch: Vec::new(),
        received: Vec::new(),
        limit: cx.message_quota.limit(),
        limited_streak: 0,
        last_limited_reply: None,
        user,
        slot,
        checks: tokio::task::JoinSet::new(),
        checking: HashMap::new(),
        renewal: None,
        held: VecDeque::new(),
        cx,
    };
    async move {
        let ending = session.run(stream, announce).await;
        // Boxed, like `handle_text` below: a future that runs once (or once per client
        // request) should not add its size to the task every idle connection keeps.
        Box::pin(session.finish(ending)).await;
    }
}

/// How a connection whose user changed ends.
fn revoked(code: u16) -> (u16, &'static str) {
    if code == close::FORBIDDEN {
        (code, "user deleted")
    } else {
        (code, "role changed; reconnect with a fresh ticket")
    }
}

/// Longest a token is honoured, whatever its `exp` says: an issuer may mint tokens that never
/// expire (an `exp` near 2^64), and an `Instant` that far ahead does not exist.
const LONGEST_TOKEN_LIFE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

fn instant_of(exp: u64) -> tokio::time::Instant {
    let left = Duration::from_secs(exp.saturating_sub(unix_now())).min(LONGEST_TOKEN_LIFE);
    tokio::time::Instant::now() + left
}

impl Session {
    async fn run(&mut self, mut stream: SplitStream<WebSocket>, announce: bool) -> Ending {
        // The context, not a copy of its settings: the future every open connection keeps
        // holds one pointer.
        let cx = self.cx.clone();
        let settings = &cx.settings;
        let mut drain = cx.drain.clone();
        let mut drain_at: Option<tokio::time::Instant> = None;
        // One timer for the connection's life, moved on re-auth: a `sleep_until` inside the
        // loop would register and cancel a timer on every pass, i.e. on every push.
        let expires = tokio::time::sleep_until(instant_of(self.principal.exp));
        tokio::pin!(expires);
        let mut last_heard = Instant::now();
        // Fires when the client may have been silent for the idle timeout; moved on, not
        // reset per message, when it heard something meanwhile.
        let idle = tokio::time::sleep(settings.idle_timeout);
        tokio::pin!(idle);
        let mut ping = tokio::time::interval_at(
            tokio::time::Instant::now() + settings.ping_interval,
            settings.ping_interval,
        );
        if *drain.borrow() {
            return Some((close::SERVICE_RESTART, "service restart"));
        }
        if announce {
            // Said once every check of the admission passed: a client told `authenticated`
            // and closed at once would take the session as open, then be contradicted.
            if self.principal.exp <= unix_now() {
                return Some((close::UNAUTHORIZED, "token expired"));
            }
            if let Some(code) = self.user.revoked.now() {
                return Some(revoked(code));
            }
            let exp = self.principal.exp;
            if let Err(ending) = self.reply(&ServerReply::Authenticated { exp }).await {
                return ending;
            }
        }
        // Set by a write of pending pushes: the next turn gives every other ready arm its turn
        // before writing again. A client on a slow link whose snapshots change faster than it
        // reads them has a newer one waiting after every write (conflated, so never 4008); with
        // writes first each turn, its `auth`, `ping` and `unsubscribe` would never be read, and
        // a renewal sent in time would end in 4001 at the old token's expiry.
        let mut wrote = false;
        loop {
            let after_write = std::mem::take(&mut wrote);
            tokio::select! {
                biased;
                changed = drain.changed(), if drain_at.is_none() => {
                    if changed.is_err() || *drain.borrow() {
                        let spread = settings.drain.as_millis() as u64;
                        let delay = if spread == 0 { 0 } else { rand::random::<u64>() % spread };
                        drain_at = Some(tokio::time::Instant::now() + Duration::from_millis(delay));
                    }
                }
                () = sleep_until_opt(drain_at) => {
                    return Some((close::SERVICE_RESTART, "service restart"));
                }
                // Not while a renewal sent in time is being verified (a bounded wait): it may
                // well carry the token that follows. Refused, the expiry fires next turn.
                () = &mut expires, if self.renewal.is_none() => {
                    return Some((close::UNAUTHORIZED, "token expired"));
                }
                code = self.user.revoked.wait() => return Some(revoked(code)),
                () = self.queue.ready(), if !after_write => {
                    if let Err(ending) = self.write_pending().await {
                        return ending;
                    }
                    wrote = true;
                }
                Some(done) = self.checks.join_next(), if !self.checks.is_empty() => {
                    if let Ok(check) = done
                        && let Err(ending) = Box::pin(self.device_checked(check)).await
                    {
                        return ending;
                    }
                }
                Some(done) = OptionFuture::from(self.renewal.as_mut()), if self.renewal.is_some() => {
                    self.renewal = None;
                    match Box::pin(self.renewed(done)).await {
                        Ok(Some(new_exp)) => expires.as_mut().reset(instant_of(new_exp)),
                        Ok(None) => {}
                        Err(ending) => return ending,
                    }
                }
                incoming = stream.next() => {
                    last_heard = Instant::now();
                    match incoming {
                        None => return None,
                        Some(Err(e)) => return ending_for_read_error(&e),
                        Some(Ok(Message::Text(text))) => {
                            if let Err(ending) = Box::pin(self.handle_text(&text)).await {
                                return ending;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            return Some((close::UNSUPPORTED_DATA, "binary frames are not supported"));
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) => return None,
                    }
                }
                () = &mut idle => {
                    let silent = last_heard.elapsed();
                    if silent >= settings.idle_timeout {
                        return Some((close::GOING_AWAY, "idle timeout"));
                    }
                    let deadline = tokio::time::Instant::now() + (settings.idle_timeout - silent);
                    idle.as_mut().reset(deadline);
                }
                _ = ping.tick() => {
                    if let Err(ending) = self.send(Message::Ping(Default::default())).await {
                        return ending;
                    }
                }
                // Right after a write, last: only when nothing else is ready.
                () = self.queue.ready(), if after_write => {
                    if let Err(ending) = self.write_pending().await {
                        return ending;
                    }
                    wrote = true;
                }
            }
        }
    }

    async fn reply(&mut self, reply: &ServerReply) -> Result<(), Ending> {
        let text = match serde_json::to_string(reply) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a reply");
                return Ok(());
            }
        };
        self.send(Message::Text(text.into())).await
    }

    async fn reply_error(&mut self, e: ProtocolError) -> Result<(), Ending> {
        self.count_error(e.code);
        self.reply(&ServerReply::from(e)).await
    }

    fn count_error(&self, code: ErrorCode) {
        let code = serde_json::to_value(code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.cx
            .metrics
            .client_errors
            .get_or_create(&CodeLabel { code })
            .inc();
    }

    async fn send(&mut self, message: Message) -> Result<(), Ending> {
        match tokio::time::timeout(self.cx.settings.write_timeout, self.sink.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(None),
        }
    }

    /// Writes every pending push in one batch and one flush.
    async fn write_pending(&mut self) -> Result<(), Ending> {
        let overflowed = self.queue.take(&mut self.batch);
        if overflowed {
            self.cx.metrics.slow_consumer_closes.inc();
            return Err(Some((close::SLOW_CONSUMER, "slow consumer")));
        }
        if self.batch.is_empty() {
            self.replay_written();
            return Ok(());
        }
        let mut bytes = 0u64;
        let Session {
            sink,
            batch,
            received,
            written,
            queue,
            cx,
            ..
        } = self;
        received.clear();
        {
            let write = async {
                for frame in batch.drain(..) {
                    let Some(newest) = written.get_mut(&frame.topic) else {
                        continue;
                    };
                    if !newest.advance(frame.seq) {
                        continue;
                    }
                    bytes += frame.text.len() as u64;
                    received.push(frame.received);
                    sink.feed(Message::Text(frame.text)).await?;
                }
                sink.flush().await
            };
            tokio::pin!(write);
            // Nearly every batch fits the socket buffer and completes in one poll; only a write
            // that has to wait arms the write timeout. (A timer armed and cancelled per write
            // showed in the broadcast profile: `Timeout::poll` 3.1%, `Sleep::poll` 2.5%.)
            match futures::poll!(write.as_mut()) {
                std::task::Poll::Ready(Ok(())) => {}
                std::task::Poll::Ready(Err(_)) => return Err(None),
                // A client stuck mid-write that also overflows its event queue is closed at once,
                // not after the write timeout.
                std::task::Poll::Pending => tokio::select! {
                    written = tokio::time::timeout(cx.settings.write_timeout, write) => match written {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) | Err(_) => return Err(None),
                    },
                    () = queue.overflowed() => {
                        cx.metrics.slow_consumer_closes.inc();
                        return Err(Some((close::SLOW_CONSUMER, "slow consumer")));
                    }
                },
            }
        }
        let metrics = &cx.metrics;
        metrics.messages_out.inc_by(received.len() as u64);
        metrics.bytes_out.inc_by(bytes);
        for t in received.drain(..) {
            metrics.fanout_latency.observe(t.elapsed().as_secs_f64());
        }
        self.replay_written();
        Ok(())
    }

    /// The replayed frames of the batch just written no longer wait: the connection's replay
    /// room has them back.
    fn replay_written(&self) {
        self.queue.written();
    }

    /// Releases every subscription, then says goodbye when there is someone to say it to.
    async fn finish(&mut self, ending: Ending) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        for topic in self.channels.values() {
            self.cx.fanout.unsubscribe(self.id, topic);
        }
        self.cx
            .metrics
            .subscriptions
            .dec_by(self.channels.len() as i64);
        self.channels.clear();
        self.queue.close();
        let code = ending.map_or(close::ABNORMAL, |(code, _)| code);
        self.cx.metrics.closed(code);
        if let Some((code, reason)) = ending {
            tracing::debug!(code, reason, "closing connection");
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                self.sink.send(Message::Close(Some(frame))),
            )
            .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.sink.close()).await;
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn ending_for_read_error(e: &axum::Error) -> Ending {
    // axum wraps tungstenite's error; a frame or message over the size limit is a capacity
    // error, answered with 1009. Matched by type, not by the error's text.
    // A frame the client got wrong is answered with the code that says so; anything else
    // (the peer reset, the socket failed) leaves no one to answer.
    let inner = std::error::Error::source(e).and_then(|e| e.downcast_ref::<tungstenite::Error>());
    match inner {
        Some(tungstenite::Error::Capacity(_)) => Some((close::MESSAGE_TOO_BIG, "message too big")),
        Some(tungstenite::Error::Utf8(_)) => {
            Some((close::INVALID_DATA, "a text frame is not valid UTF-8"))
        }
        Some(tungstenite::Error::Protocol(p))
            if *p != tungstenite::error::ProtocolError::ResetWithoutClosingHandshake =>
        {
            Some((close::PROTOCOL_ERROR, "WebSocket protocol error"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use tungstenite::error::{CapacityError, ProtocolError};

    use super::*;

    #[test]
    fn a_frame_the_client_got_wrong_gets_its_code_and_a_lost_peer_none() {
        let too_long = tungstenite::Error::Capacity(CapacityError::MessageTooLong {
            size: 70_000,
            max_size: 65_536,
        });
        assert_eq!(
            ending_for_read_error(&axum::Error::new(too_long)),
            Some((close::MESSAGE_TOO_BIG, "message too big"))
        );
        let reset = tungstenite::Error::Io(std::io::ErrorKind::ConnectionReset.into());
        assert_eq!(ending_for_read_error(&axum::Error::new(reset)), None);
        // Text that merely mentions the limit is not the limit.
        let other = std::io::Error::other("message too big");
        assert_eq!(ending_for_read_error(&axum::Error::new(other)), None);
        let utf8 = tungstenite::Error::Utf8("invalid utf-8 sequence".into());
        let code = ending_for_read_error(&axum::Error::new(utf8)).map(|(c, _)| c);
        assert_eq!(code, Some(close::INVALID_DATA));
        let reserved = tungstenite::Error::Protocol(ProtocolError::NonZeroReservedBits);
        let code = ending_for_read_error(&axum::Error::new(reserved)).map(|(c, _)| c);
        assert_eq!(code, Some(close::PROTOCOL_ERROR));
        let reset = tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake);
        assert_eq!(ending_for_read_error(&axum::Error::new(reset)), None);
    }
}
