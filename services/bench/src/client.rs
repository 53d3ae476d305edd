//! One bench client: a WebSocket to a gateway, opened from its own source address, with the
//! token in the query as a browser sends it; or, to measure the peer, to a nats-server's
//! WebSocket speaking NATS's own protocol (see [`crate::config::Protocol`]). Nothing here trusts
//! what the other end sends: every unexpected frame is an error value, never a panic.

use std::net::{SocketAddr, ToSocketAddrs as _};

use futures::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use crate::config::Protocol;

mod nats;

/// A client's socket, and what it speaks on it.
pub struct Ws {
    socket: WebSocketStream<TcpStream>,
    /// Speaking NATS's protocol: the bytes read and not parsed yet (a frame of nats-server's
    /// may hold several messages, or part of one).
    nats: Option<Vec<u8>>,
}

/// A gateway to connect to.
#[derive(Debug, Clone)]
pub struct Target {
    /// `ws://host:port/path`
    pub url: String,
    pub addr: SocketAddr,
    /// Where its ops endpoints are (`host:port`), when not on `addr`.
    pub ops: Option<String>,
}

impl Target {
    /// Resolves `url` (`ws://host:port/path`) once, up front.
    pub fn parse(url: &str) -> Result<Target, ClientError> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| ClientError::Url(url.to_owned()))?;
        let authority = rest.split('/').next().unwrap_or(rest);
        let with_port = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|_| ClientError::Url(url.to_owned()))?
            .next()
            .ok_or_else(|| ClientError::Url(url.to_owned()))?;
        Ok(Target {
            url: url.to_owned(),
            addr,
            ops: None,
        })
    }

    /// The same gateway, its ops endpoints at `ops` (`host:port`) when given.
    pub fn with_ops(self, ops: Option<&String>) -> Target {
        Target {
            ops: ops.cloned(),
            ..self
        }
    }

    /// `http://host:port/metrics` of the same gateway.
    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.ops_base())
    }

    /// `http://host:port/readyz` of the same gateway.
    pub fn ready_url(&self) -> String {
        format!("{}/readyz", self.ops_base())
    }

    fn ops_base(&self) -> String {
        match &self.ops {
            Some(ops) => format!("http://{ops}"),
            None => format!("http://{}", self.addr),
        }
    }
}

/// Why a client could not connect, subscribe or keep reading.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("not a ws:// URL with a reachable host: {0:?}")]
    Url(String),
    #[error("TCP connect failed: {0}")]
    Tcp(#[source] std::io::Error),
    #[error("upgrade refused with HTTP {0}")]
    Refused(u16),
    #[error("WebSocket error: {0}")]
    Ws(#[source] Box<tungstenite::Error>),
    #[error("closed by the gateway with {code}: {reason}")]
    Closed { code: u16, reason: String },
    #[error("the gateway answered with an error: {0}")]
    Reply(String),
    #[error("timed out")]
    Timeout,
    #[error("the connection ended without a close frame")]
    Ended,
}

impl ClientError {
    /// The close code, when the gateway ended the connection with a close frame.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            ClientError::Closed { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A short label to count errors by.
    pub fn kind(&self) -> String {
        match self {
            ClientError::Url(_) => "url".into(),
            ClientError::Tcp(e) => format!("tcp_{:?}", e.kind()).to_lowercase(),
            ClientError::Refused(status) => format!("http_{status}"),
            ClientError::Ws(_) => "websocket".into(),
            ClientError::Closed { code, .. } => format!("close_{code}"),
            ClientError::Reply(_) => "error_reply".into(),
            ClientError::Timeout => "timeout".into(),
            ClientError::Ended => "ended".into(),
        }
    }
}

impl From<tungstenite::Error> for ClientError {
    fn from(e: tungstenite::Error) -> Self {
        match e {
            tungstenite::Error::Http(response) => ClientError::Refused(response.status().as_u16()),
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
                ClientError::Ended
            }
            other => ClientError::Ws(Box::new(other)),
        }
    }
}

/// Client-side WebSocket buffers: small, so tens of thousands of clients fit in one process.
pub fn ws_config(read_buffer_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer_bytes)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// Opens a WebSocket to `target` as the holder of `token` (a NATS client has none), from
/// source address `index`.
pub async fn connect(
    target: &Target,
    token: &str,
    index: u64,
    spread: bool,
    read_buffer_bytes: usize,
    protocol: Protocol,
) -> Result<Ws, ClientError> {
    let stream = crate::source::connect(target.addr, index, spread)
        .await
        .map_err(ClientError::Tcp)?;
    let url = match protocol {
        Protocol::Pulse => format!("{}?token={token}", target.url),
        Protocol::Nats => target.url.clone(),
    };
    let (socket, _) = tokio_tungstenite::client_async_with_config(
        url,
        stream,
        Some(ws_config(read_buffer_bytes)),
    )
    .await?;
    Ok(Ws {
        socket,
        nats: (protocol == Protocol::Nats).then(Vec::new),
    })
}

/// The next frame's bytes, text or binary; pings and pongs are skipped (tungstenite answers
/// pings itself). A close frame or the end of the stream is an error.
async fn next_frame(socket: &mut WebSocketStream<TcpStream>) -> Result<Message, ClientError> {
    loop {
        match socket.next().await {
            None => return Err(ClientError::Ended),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                return Err(ClientError::Closed { code, reason });
            }
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return Ok(m),
            Some(Ok(_)) => {}
        }
    }
}

/// The next data message: a text frame, or (speaking NATS) the next message's payload.
pub async fn next_text(ws: &mut Ws) -> Result<Utf8Bytes, ClientError> {
    if ws.nats.is_none() {
        loop {
            if let Message::Text(text) = next_frame(&mut ws.socket).await? {
                return Ok(text);
            }
        }
    }
    loop {
        if let Some(payload) = next_nats(ws).await? {
            return Utf8Bytes::try_from(payload)
                .map_err(|_| ClientError::Reply("a message that is not UTF-8".into()));
        }
    }
}

/// Speaking NATS: the next message's payload, or `None` for the server's `PONG`. Pings are
/// answered, the rest (`INFO`, `+OK`) passed over.
async fn next_nats(ws: &mut Ws) -> Result<Option<Vec<u8>>, ClientError> {
    let Some(buf) = ws.nats.as_mut() else {
        return Err(ClientError::Reply("not a NATS connection".into()));
    };
    loop {
        match nats::parse(buf)? {
            Some(nats::Op::Msg(payload)) => return Ok(Some(payload)),
            Some(nats::Op::Pong) => return Ok(None),
            Some(nats::Op::Ping) => {
                ws.socket.send(Message::Binary("PONG\r\n".into())).await?;
            }
            Some(nats::Op::Other) => {}
            None => match next_frame(&mut ws.socket).await? {
                Message::Text(t) => buf.extend_from_slice(t.as_bytes()),
                Message::Binary(b) => buf.extend_from_slice(&b),
                _ => {}
            },
        }
    }
}

/// Sends every request in `requests` and waits for as many `subscribed` replies. Data frames
/// that arrive meanwhile (a channel's current value follows its ack, replayed events may come
/// before it) go to `on_data`. Returns the `seq` of the last ack that has one (an events
/// channel subscribed without `since`: the topic's newest event).
pub async fn subscribe(
    ws: &mut Ws,
    requests: &[String],
    mut on_data: impl FnMut(&str),
) -> Result<Option<u64>, ClientError> {
    for request in requests {
        ws.socket
            .feed(Message::Text(request.as_str().into()))
            .await?;
    }
    ws.socket.flush().await?;
    let mut acks = 0;
    let mut seq = None;
    while acks < requests.len() {
        let text = next_text(ws).await?;
        if text.starts_with(r#"{"type":"subscribed""#) {
            acks += 1;
            seq = crate::scan::number_after(&text, r#""seq":"#).or(seq);
        } else if text.starts_with(r#"{"type":"error""#) {
            return Err(ClientError::Reply(text.chars().take(200).collect()));
        } else {
            on_data(&text);
        }
    }
    Ok(seq)
}

/// Speaking NATS: subscribes to every one of `subjects` and waits for the server's answer to
/// a ping sent after them, by which every subscription is in place. Messages that arrive
/// meanwhile go to `on_data`.
pub async fn subscribe_nats(
    ws: &mut Ws,
    subjects: &[String],
    mut on_data: impl FnMut(&str),
) -> Result<(), ClientError> {
    let mut hello = String::from(
        r#"CONNECT {"verbose":false,"pedantic":false,"protocol":1,"headers":true,"no_responders":true}"#,
    );
    hello.push_str("\r\n");
    for (sid, subject) in subjects.iter().enumerate() {
        hello.push_str(&format!("SUB {subject} {}\r\n", sid + 1));
    }
    hello.push_str("PING\r\n");
    ws.socket.send(Message::Binary(hello.into())).await?;
    while let Some(payload) = next_nats(ws).await? {
        on_data(&String::from_utf8_lossy(&payload));
    }
    Ok(())
}

/// Says goodbye properly (close frame, wait for the gateway's) within `within`.
pub async fn close(mut ws: Ws, within: std::time::Duration) {
    let goodbye = async {
        if ws.socket.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.socket.next().await {}
        }
    };
    let _ = tokio::time::timeout(within, goodbye).await;
}

/// A subscribe request for the tenant's alerts.
pub fn subscribe_alerts() -> String {
    r#"{"action":"subscribe","type":"alerts"}"#.to_owned()
}

/// A subscribe request for the events of `topic`: from now on, or every retained event after
/// `since` first.
pub fn subscribe_events(topic: &str, since: Option<u64>) -> String {
    match since {
        Some(since) => {
            format!(r#"{{"action":"subscribe","type":"events","topic":"{topic}","since":{since}}}"#)
        }
        None => format!(r#"{{"action":"subscribe","type":"events","topic":"{topic}"}}"#),
    }
}

/// A subscribe request for device `dev-<n>`.
pub fn subscribe_device(n: u32) -> String {
    format!(r#"{{"action":"subscribe","type":"device","device_id":"dev-{n}"}}"#)
}
