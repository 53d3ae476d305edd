//! A connection's requests: subscribe (a device's after the registry's answer), unsubscribe,
//! a fresh token (verified beside the loop), a ping; each answered with a reply or an error
//! that names what it is about.

use std::time::{Duration, Instant};

use pulse_proto::{Channel, ClientRequest, ErrorCode, ProtocolError, ServerReply, close};
use tracing::Instrument as _;

use super::{Ending, Session};
use crate::auth::{AuthError, Principal};
use crate::fanout::FanOutError;
use crate::queue::Newest;

/// A device subscribe waiting for the registry.
#[derive(Default)]
pub(super) struct Checking {
    /// Requests about the same channel sent meanwhile: each is answered once the check is, in
    /// the order sent, as if sent after it. Bounded by the message rate limit and the
    /// registry's read timeout.
    queued: Vec<Queued>,
}

/// A request about a channel whose device check is out.
enum Queued {
    Subscribe { since: Option<u64> },
    Unsubscribe,
}

/// A device registry answer for one subscribe.
pub(super) struct DeviceCheck {
    channel: Channel,
    since: Option<u64>,
    result: Result<bool, crate::devices::DevicesError>,
}

impl Session {
    /// Handles one request as it arrives: the rate limit, then parsing, then [`Self::handle`].
    pub(super) async fn handle_text(&mut self, text: &str) -> Result<(), Ending> {
        if !self.limit.try_take() {
            self.limited_streak += 1;
            if self.limited_streak > self.cx.settings.msgs_burst {
                return Err(Some((
                    close::RATE_LIMITED,
                    "rate limit exceeded; retry_after=1",
                )));
            }
            let reply_due = self
                .last_limited_reply
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            if reply_due {
                self.last_limited_reply = Some(Instant::now());
                // In order with the rest: held behind a renewal that is out, like any answer.
                self.handle(Err(ProtocolError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "more than {} messages per second; slow down or be disconnected",
                        self.cx.settings.msgs_per_second
                    ),
                )))
                .await?;
            }
            return Ok(());
        }
        self.limited_streak = 0;
        self.handle(ClientRequest::parse(text)).await
    }

    /// Answers a request (or a frame that is none with its error), or holds it while a renewal
    /// is out.
    async fn handle(&mut self, parsed: Result<ClientRequest, ProtocolError>) -> Result<(), Ending> {
        if self.renewal.is_some() {
            self.held.push_back(parsed);
            return Ok(());
        }
        let request = match parsed {
            Ok(request) => request,
            Err(e) => return self.reply_error(e).await,
        };
        match request {
            ClientRequest::Ping => self.reply(&ServerReply::Pong).await,
            ClientRequest::Subscribe { channel, since } => self.subscribe(channel, since).await,
            ClientRequest::Unsubscribe(channel) => self.unsubscribe(channel).await,
            ClientRequest::Auth { token } => {
                self.start_renewal(token);
                Ok(())
            }
        }
    }

    async fn subscribe(&mut self, channel: Channel, since: Option<u64>) -> Result<(), Ending> {
        if self.channels.contains_key(&channel) {
            return self.reply(&ServerReply::subscribed(channel)).await;
        }
        if let Some(checking) = self.checking.get_mut(&channel) {
            checking.queued.push(Queued::Subscribe { since });
            return Ok(());
        }
        if self.channels.len() + self.checking.len() >= self.cx.settings.max_subscriptions {
            let max = self.cx.settings.max_subscriptions;
            let message = format!("at most {max} subscriptions per connection");
            return self
                .reply_channel_error(ErrorCode::TooManySubscriptions, message, channel)
                .await;
        }
        let subject = channel.subject(&self.principal.tenant);
        if let Channel::Device { device_id: device } = &channel
            && !self.cx.fanout.has_subject(&subject)
        {
            // Asked beside the loop; `device_checked` goes on with the answer.
            let devices = self.cx.devices.clone();
            let tenant = self.principal.tenant.clone();
            let device = device.clone();
            let checked = channel.clone();
            self.checks.spawn(async move {
                let result = devices.has(&tenant, &device).await;
                DeviceCheck {
                    channel: checked,
                    since,
                    result,
                }
            });
            self.checking.insert(channel, Checking::default());
            return Ok(());
        }
        self.subscribe_checked(channel, since).await
    }

    /// The device registry answered a device subscribe.
    pub(super) async fn device_checked(&mut self, check: DeviceCheck) -> Result<(), Ending> {
        let DeviceCheck {
            channel,
            since,
            result,
        } = check;
        let Some(checking) = self.checking.remove(&channel) else {
            return Ok(());
        };
        let Channel::Device { device_id: device } = &channel else {
            return Ok(());
        };
        if let Err(e) = &result {
            tracing::warn!(%device, error = %e, "cannot check the device");
        }
        // The subscribe, then every request about the channel sent while the check was out,
        // each answered as if sent after it.
        let first = Queued::Subscribe { since };
        for request in std::iter::once(first).chain(checking.queued) {
            let channel = channel.clone();
            let since = match request {
                Queued::Subscribe { since } => since,
                Queued::Unsubscribe => {
                    self.unsubscribe(channel).await?;
                    continue;
                }
            };
            match result {
                Ok(true) if self.channels.contains_key(&channel) => {
                    self.reply(&ServerReply::subscribed(channel)).await?;
                }
                Ok(true) => self.subscribe_checked(channel, since).await?,
                Ok(false) => {
                    let message = format!("no device {device} in this tenant");
                    self.reply_channel_error(ErrorCode::UnknownDevice, message, channel)
                        .await?;
                }
                Err(_) => self.reply_unavailable("check the device", channel).await?,
            }
        }
        Ok(())
    }

    /// Subscribes a channel that passed its checks.
    async fn subscribe_checked(
        &mut self,
        channel: Channel,
        since: Option<u64>,
    ) -> Result<(), Ending> {
        let subject = channel.subject(&self.principal.tenant);
        match self
            .cx
            .fanout
            .subscribe(self.id, &self.principal.sub, &self.queue, &subject, since)
            .await
        {
            Ok(subscribed) => {
                let has = since.filter(|_| !subject.is_snapshot()).unwrap_or(0);
                self.written.insert(subscribed.topic.id, Newest::of(has));
                self.channels.insert(channel.clone(), subscribed.topic);
                self.cx.metrics.subscriptions.inc();
                self.reply(&ServerReply::Subscribed {
                    channel,
                    seq: subscribed.seq,
                })
                .await
            }
            Err(e @ (FanOutError::TenantSubjects(_) | FanOutError::UserSubjects(_))) => {
                self.reply_channel_error(ErrorCode::TooManySubjects, e.to_string(), channel)
                    .await
            }
            Err(e) => {
                tracing::warn!(%subject, error = %e, "subscribe failed");
                self.reply_unavailable("subscribe", channel).await
            }
        }
    }

    /// Tells the client that `action` on `channel` failed on our side for now, and that
    /// asking again shortly is the remedy.
    async fn reply_unavailable(&mut self, action: &str, channel: Channel) -> Result<(), Ending> {
        let message = format!("cannot {action} right now; retry shortly");
        self.reply_channel_error(ErrorCode::Unavailable, message, channel)
            .await
    }

    /// An error reply about `channel`, naming it.
    async fn reply_channel_error(
        &mut self,
        code: ErrorCode,
        message: impl Into<String>,
        channel: Channel,
    ) -> Result<(), Ending> {
        self.count_error(code);
        self.reply(&ServerReply::Error {
            code,
            message: message.into(),
            channel: Some(channel),
        })
        .await
    }

    async fn unsubscribe(&mut self, channel: Channel) -> Result<(), Ending> {
        if let Some(checking) = self.checking.get_mut(&channel) {
            // Answered after the subscribe whose device check is out.
            checking.queued.push(Queued::Unsubscribe);
            return Ok(());
        }
        match self.channels.remove(&channel) {
            Some(topic) => {
                self.cx.fanout.unsubscribe(self.id, &topic);
                self.queue.forget(topic.id);
                self.written.remove(&topic.id);
                self.cx.metrics.subscriptions.dec();
                self.reply(&ServerReply::Unsubscribed(channel)).await
            }
            None => {
                let message = "not subscribed to that channel";
                self.reply_channel_error(ErrorCode::NotSubscribed, message, channel)
                    .await
            }
        }
    }

    /// Verifies a fresh token beside the loop; [`Self::renewed`] goes on with the answer.
    fn start_renewal(&mut self, token: String) {
        let auth = self.cx.auth.clone();
        self.renewal = Some(tokio::spawn(
            async move { auth.verify(Some(&token)).await }.instrument(tracing::Span::current()),
        ));
    }

    /// A renewal's token was verified: applies it or says why not, then answers the requests
    /// held meanwhile, in order, until one of them is another renewal. `Ok(Some(exp))`: the
    /// fresh token moved the expiry.
    pub(super) async fn renewed(
        &mut self,
        done: Result<Result<Principal, AuthError>, tokio::task::JoinError>,
    ) -> Result<Option<u64>, Ending> {
        let exp = match done {
            Ok(verified) => self.reauthenticate(verified).await?,
            Err(e) => {
                tracing::error!(error = %e, "token verification did not finish");
                let message = "cannot verify the token right now; retry shortly";
                self.reply_error(ProtocolError::new(ErrorCode::Unavailable, message))
                    .await?;
                None
            }
        };
        // Refused, the renewal leaves the token in force, which may have expired while it was
        // verified: then nothing held behind it is served under it.
        if exp.is_none() && self.principal.exp <= crate::auth::unix_now() {
            return Err(Some((close::UNAUTHORIZED, "token expired")));
        }
        while self.renewal.is_none()
            && let Some(request) = self.held.pop_front()
        {
            self.handle(request).await?;
        }
        Ok(exp)
    }

    async fn reauthenticate(
        &mut self,
        verified: Result<Principal, AuthError>,
    ) -> Result<Option<u64>, Ending> {
        match verified {
            // Verified just before its `exp`, past it now: accepted, it would end the connection
            // at once (4001) instead of keeping the token in force.
            Ok(p) if p.exp <= crate::auth::unix_now() => {
                let message = AuthError::Expired.to_string();
                self.reply_error(ProtocolError::new(ErrorCode::InvalidToken, message))
                    .await?;
                Ok(None)
            }
            Ok(p) if p.tenant == self.principal.tenant => {
                let exp = p.exp;
                // A ticket minted before a deletion (or role change) of its user the gateway
                // remembers speaks for no one, or with the old role (the id may have come back
                // since, with the connection's current token): refused, and the current token
                // stays. Accepted, another user's would be told `authenticated` and closed at
                // once.
                if self
                    .cx
                    .revocations
                    .changed_since(&p.tenant, &p.sub, p.issued)
                {
                    let message = "the token was issued before its user was deleted or changed, \
                                   or for a session that ended";
                    self.reply_error(ProtocolError::new(ErrorCode::InvalidToken, message))
                        .await?;
                    return Ok(None);
                }
                if p.sub != self.principal.sub {
                    if let Err(e) = self.slot.change_user(&p.sub) {
                        let message = format!("{e} for the token's user");
                        self.reply_error(ProtocolError::new(ErrorCode::InvalidToken, message))
                            .await?;
                        return Ok(None);
                    }
                    self.user = self
                        .cx
                        .revocations
                        .register(&p.tenant, &p.sub, p.issued, self.id);
                } else {
                    self.user.reissued(p.issued);
                }
                // The fresh token's role and user are the connection's from now on.
                self.principal = p;
                self.reply(&ServerReply::Authenticated { exp }).await?;
                Ok(Some(exp))
            }
            Ok(_) => {
                self.reply_error(ProtocolError::new(
                    ErrorCode::InvalidToken,
                    "the token is for another tenant",
                ))
                .await?;
                Ok(None)
            }
            Err(e) => {
                let code = match e {
                    AuthError::Unverifiable => ErrorCode::Unavailable,
                    _ => ErrorCode::InvalidToken,
                };
                self.reply_error(ProtocolError::new(code, e.to_string()))
                    .await?;
                Ok(None)
            }
        }
    }
}
