//! The HTTP side: the WebSocket endpoint `GET /api/v2/ws` and the ops endpoints.
//!
//! Before the upgrade: draining, a full instance and a missing NATS link answer HTTP 503, a
//! foreign `Origin` 403. Token problems are answered after the upgrade, with a close code a
//! browser can read (4001, 4003), as are the connection caps (4029).
//!
//! The ticket comes in the query (`?token=`), as `Authorization: Bearer`, as the subprotocol
//! `pulse.ticket.<JWT>` (beside `pulse.v1`), or as the first message (`{"action":"auth"}`
//! within 5 s); the last two keep it out of URLs and so out of proxy logs. It is never logged.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::Either;
use pulse_common::ops::Ops;
use pulse_proto::{ClientRequest, close};
use serde::Deserialize;
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::auth::{AuthError, Authenticator, Principal};
use crate::caps::{CapError, Caps, Holder, Unauthenticated};
use crate::config::GatewayConfig;
use crate::connection;
use crate::context::ConnectionContext;
use crate::metrics::{CodeLabel, Metrics};

/// Seconds a client refused by a connection cap should wait before trying again (the
/// `retry_after` of its 4029 close reason).
const CAP_RETRY_AFTER_SECONDS: u64 = 5;

/// An upgrade refused for now: 503 with `Retry-After`, so clients and load balancers know
/// when to try again (elsewhere, or here).
fn unavailable(retry_after_secs: u64, why: &'static str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, retry_after_secs.to_string())],
        why,
    )
        .into_response()
}

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<GatewayConfig>,
    pub auth: Authenticator,
    pub caps: Caps,
    pub metrics: Metrics,
    /// True once the instance drains: no new connections, existing ones closed with 1012.
    pub drain: watch::Receiver<bool>,
    pub next_conn: Arc<AtomicU64>,
    /// The NATS link: without it no subscription can work, so no WebSocket is accepted.
    pub nats: watch::Receiver<pulse_common::nats::LinkState>,
    /// What each admitted connection is given.
    pub connection: Arc<ConnectionContext>,
}

/// The public router: the WebSocket endpoint, with the ops endpoints when they have no
/// address of their own (`ops` given).
pub fn router(state: AppState, ops: Option<Ops>) -> Router {
    let public = Router::new()
        .route("/api/v2/ws", get(upgrade))
        .with_state(state);
    match ops {
        Some(ops) => public.merge(pulse_common::ops::router(ops)),
        None => public,
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// The WebSocket subprotocol a gateway speaks; a client that passes its ticket as a
/// subprotocol offers this one too, and the gateway selects it. (One that offers the ticket
/// alone gets the ticket's protocol selected: a handshake must select one of those offered,
/// and a browser fails one that selects none.)
pub const PROTOCOL: &str = "pulse.v1";
/// Prefix of the subprotocol that carries a ticket: `pulse.ticket.<JWT>`.
pub const TICKET_PROTOCOL_PREFIX: &str = "pulse.ticket.";
/// How long a connection without a ticket may take to send `{"action":"auth"}` first.
const FIRST_AUTH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The subprotocols the client offers, in its order.
fn offered_protocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// The subprotocol offered with a ticket in it, `pulse.ticket.<JWT>`: the ticket stays out of
/// URLs, so out of proxy and access logs.
fn ticket_protocol(headers: &HeaderMap) -> Option<&str> {
    offered_protocols(headers).find(|p| p.starts_with(TICKET_PROTOCOL_PREFIX))
}

/// The subprotocol the handshake selects: `pulse.v1`, or the ticket's when the client
/// offers that alone.
fn selected_protocol(headers: &HeaderMap) -> String {
    match ticket_protocol(headers) {
        Some(ticket) if !offered_protocols(headers).any(|p| p == PROTOCOL) => ticket.to_owned(),
        _ => PROTOCOL.to_owned(),
    }
}

/// How a connection proves who it is.
enum Credentials {
    /// A token came with the upgrade (query, `Authorization` or subprotocol): its verdict.
    Given(Result<Principal, AuthError>),
    /// None did: the first message must be `{"action":"auth","token":…}`. Until it comes,
    /// the connection holds a place in the instance's and its address's caps.
    FirstMessage(Unauthenticated),
    /// None did, and the client's address has no place left for one more.
    Refused(CapError),
}

#[tracing::instrument(name = "upgrade", skip_all, fields(%peer))]
async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    query: Result<Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if *state.drain.borrow() {
        return unavailable(1, "draining: connect to another instance\n");
    }
    if !state.config.allowed_origins.is_empty()
        && let Some(origin) = headers.get(header::ORIGIN)
    {
        let allowed = origin
            .to_str()
            .is_ok_and(|o| state.config.allowed_origins.iter().any(|a| a == o));
        if !allowed {
            state
                .metrics
                .auth_failures
                .get_or_create(&CodeLabel {
                    code: "origin".into(),
                })
                .inc();
            return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
        }
    }
    if !state.nats.borrow().connected {
        return unavailable(2, "NATS unavailable; retry shortly\n");
    }
    if state.caps.instance_full() {
        return unavailable(
            CAP_RETRY_AFTER_SECONDS,
            "gateway connection limit reached\n",
        );
    }
    let token = query
        .ok()
        .and_then(|Query(q)| q.token)
        .or_else(|| bearer(&headers))
        .or_else(|| {
            ticket_protocol(&headers)
                .and_then(|p| p.strip_prefix(TICKET_PROTOCOL_PREFIX))
                .map(str::to_owned)
        });
    let address = state.config.trusted_proxies.client(peer.ip(), &headers);
    let credentials = match token {
        Some(token) => Credentials::Given(state.auth.verify(Some(&token)).await),
        None => match state.caps.hold_unauthenticated(address) {
            Ok(held) => Credentials::FirstMessage(held),
            Err(CapError::Instance) => {
                return unavailable(
                    CAP_RETRY_AFTER_SECONDS,
                    "gateway connection limit reached\n",
                );
            }
            Err(e) => Credentials::Refused(e),
        },
    };
    let config = &state.config;
    ws.protocols([selected_protocol(&headers)])
        .read_buffer_size(config.ws_read_buffer_bytes)
        .write_buffer_size(config.ws_write_buffer_bytes)
        .max_message_size(config.max_message_bytes)
        .max_frame_size(config.max_message_bytes)
        .on_upgrade(move |socket| match credentials {
            Credentials::Given(verdict) => {
                Either::Left(admit(socket, verdict, state, address, false))
            }
            Credentials::FirstMessage(held) => Either::Right(rare(async move {
                let (socket, verdict) = first_message_auth(socket, &state).await;
                // Its place passes to the admitted connection, in the same step.
                drop(held);
                admit(socket, verdict, state, address, true).await;
            })),
            Credentials::Refused(e) => Either::Right(rare(async move {
                state.metrics.closed(close::RATE_LIMITED);
                let reason = format!("{e}; retry_after={CAP_RETRY_AFTER_SECONDS}");
                refuse(socket, close::RATE_LIMITED, reason).await;
            })),
        })
}

/// A rare connection's future, boxed so that the common path's stays small.
fn rare(
    future: impl Future<Output = ()> + Send + 'static,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(future)
}

/// Waits for the first message to be `auth` with a valid token. It is answered `authenticated`
/// once the connection is let in (see [`connection::serve`]).
#[tracing::instrument(name = "first_message_auth", skip_all)]
async fn first_message_auth(
    mut socket: WebSocket,
    state: &AppState,
) -> (WebSocket, Result<Principal, AuthError>) {
    let first = tokio::time::timeout(FIRST_AUTH_WAIT, socket.recv()).await;
    let token = match first {
        Ok(Some(Ok(Message::Text(text)))) => match ClientRequest::parse(&text) {
            Ok(ClientRequest::Auth { token }) => Some(token),
            _ => None,
        },
        _ => None,
    };
    let verdict = state.auth.verify(token.as_deref()).await;
    (socket, verdict)
}

/// What an upgraded socket becomes: refused with a close code, or a served connection. Built
/// synchronously, so the task of every open connection holds only the connection's future,
/// not also the verdict and state it was made from. `announce`: see [`connection::serve`].
fn admit(
    socket: WebSocket,
    verdict: Result<Principal, AuthError>,
    state: AppState,
    address: std::net::IpAddr,
    announce: bool,
) -> Either<impl Future<Output = ()> + Send, impl Future<Output = ()> + Send> {
    let principal = match verdict {
        Ok(p) => p,
        Err(e) => {
            state
                .metrics
                .auth_failures
                .get_or_create(&CodeLabel {
                    code: e.label().into(),
                })
                .inc();
            state.metrics.closed(e.close_code());
            return Either::Left(refuse(socket, e.close_code(), e.reason()));
        }
    };
    let holder = Holder {
        tenant: &principal.tenant,
        user: &principal.sub,
        address,
    };
    let slot = match state.caps.admit(holder) {
        Ok(slot) => slot,
        Err(e) => {
            state.metrics.closed(close::RATE_LIMITED);
            // The hint tells clients how long to stay away (see proto/README.md).
            let reason = format!("{e}; retry_after={CAP_RETRY_AFTER_SECONDS}");
            return Either::Left(refuse(socket, close::RATE_LIMITED, reason));
        }
    };
    let id = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!(
        "connection",
        conn = id,
        tenant = %principal.tenant,
        user = %principal.sub,
    );
    Either::Right(
        connection::serve(socket, principal, slot, state.connection, id, announce).instrument(span),
    )
}

async fn refuse(mut socket: WebSocket, code: u16, reason: String) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        socket.send(Message::Close(Some(frame))),
    )
    .await;
}
