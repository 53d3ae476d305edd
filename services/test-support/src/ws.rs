//! A WebSocket client of the gateway's protocol for tests: every read has a deadline, and
//! what the server ends the connection with is something a test can assert on.

use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderName;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long [`Client::subscribe`] and [`Client::assert_alive`] wait for their reply.
const REPLY: Duration = Duration::from_secs(5);

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server ended the connection with.
#[derive(Debug, PartialEq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

/// Connects to `url`; panics if the handshake fails.
pub async fn connect(url: &str) -> Client {
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Client { ws },
        Err(e) => panic!("cannot connect to {url}: {e}"),
    }
}

/// Connects to `url` with extra request headers; returns the client and the response's
/// selected subprotocol.
pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> (Client, Option<String>) {
    let mut request = match url.into_client_request() {
        Ok(request) => request,
        Err(e) => panic!("not a WebSocket URL {url}: {e}"),
    };
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), value.parse()) else {
            panic!("not a header: {name}: {value}");
        };
        request.headers_mut().insert(name, value);
    }
    let (ws, response) = match tokio_tungstenite::connect_async(request).await {
        Ok(connected) => connected,
        Err(e) => panic!("cannot connect to {url}: {e}"),
    };
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    (Client { ws }, protocol)
}

impl Client {
    pub async fn send_text(&mut self, text: &str) {
        if let Err(e) = self.ws.send(Message::Text(text.into())).await {
            panic!("cannot send {text}: {e}");
        }
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    /// The next text message as JSON; panics on close or timeout.
    pub async fn next(&mut self, within: Duration) -> Value {
        self.try_next(within)
            .await
            .unwrap_or_else(|| panic!("no message within {within:?}"))
    }

    /// The next text message as JSON, `None` if none came within `within` or the stream
    /// ended; panics on a close frame or an error.
    pub async fn try_next(&mut self, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await.ok()?? {
                Ok(Message::Text(t)) => return Some(json_of(&t)),
                Ok(Message::Close(c)) => panic!("closed unexpectedly: {c:?}"),
                Ok(_) => continue,
                Err(e) => panic!("websocket error: {e}"),
            }
        }
    }

    /// Skips messages until one satisfies `want`.
    pub async fn until(&mut self, within: Duration, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .try_next(left)
                .await
                .unwrap_or_else(|| panic!("no matching message within {within:?}"));
            if want(&v) {
                return v;
            }
        }
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn closed(&mut self, within: Duration) -> Closed {
        self.close_frame(within, false).await
    }

    /// The close that comes next, with no text message before it; returns its code and reason.
    pub async fn closed_at_once(&mut self, within: Duration) -> Closed {
        self.close_frame(within, true).await
    }

    /// Reads until the close frame, failing on a text message before it when `at_once`.
    async fn close_frame(&mut self, within: Duration, at_once: bool) -> Closed {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => panic!("not closed within {within:?}"),
                Ok(None) => panic!("stream ended without a close frame"),
                Ok(Some(Ok(Message::Close(Some(CloseFrame { code, reason }))))) => {
                    return Closed {
                        code: code.into(),
                        reason: reason.to_string(),
                    };
                }
                Ok(Some(Ok(Message::Close(None)))) => panic!("close without a code"),
                Ok(Some(Ok(Message::Text(t)))) if at_once => panic!("told {t} before any close"),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => panic!("websocket error before close: {e}"),
            }
        }
    }

    /// Reads every event that was delivered before the connection ended, as a client
    /// processing its socket would: their seqs, and the close code (`None`: dropped).
    pub async fn events_until_closed(&mut self, within: Duration) -> (Vec<u64>, Option<u16>) {
        let mut seqs = Vec::new();
        let code = self
            .read_until_ended(within, |text| {
                let v = json_of(text);
                if v["type"] == "event" {
                    seqs.push(v["seq"].as_u64().expect("an event has a seq"));
                }
            })
            .await;
        (seqs, code)
    }

    /// Reads until the connection ends: `Some(code)` for a close frame, `None` when it was
    /// dropped without one. Panics if it stays open past `within`.
    pub async fn closed_or_dropped(&mut self, within: Duration) -> Option<u16> {
        self.read_until_ended(within, |_| {}).await
    }

    /// Hands each text message to `seen` until the connection ends; returns the close code
    /// (`None`: dropped without a close frame). Panics if it stays open past `within`.
    async fn read_until_ended(
        &mut self,
        within: Duration,
        mut seen: impl FnMut(&str),
    ) -> Option<u16> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => panic!("still open after {within:?}"),
                Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code.into()),
                Ok(Some(Ok(Message::Text(text)))) => seen(&text),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Sends `v` as a subscribe request; returns the `subscribed` or `error` reply.
    pub async fn subscribe(&mut self, v: Value) -> Value {
        let mut request = v;
        request["action"] = json!("subscribe");
        self.send(request).await;
        self.until(REPLY, |m| m["type"] == "subscribed" || m["type"] == "error")
            .await
    }

    /// Sends `v` as a subscribe request and asserts the reply is `subscribed`; returns it.
    pub async fn assert_subscribes(&mut self, v: Value) -> Value {
        let r = self.subscribe(v).await;
        assert_eq!(r["type"], "subscribed", "{r}");
        r
    }

    /// Subscribes and asserts the `subscribed` ack came within `limit`.
    pub async fn subscribe_within(&mut self, v: Value, limit: Duration) {
        let asked = Instant::now();
        self.assert_subscribes(v).await;
        assert!(
            asked.elapsed() < limit,
            "the subscribe ack took {:?}",
            asked.elapsed()
        );
    }

    /// A round trip proving the connection is still usable.
    pub async fn assert_alive(&mut self) {
        self.send(json!({"action": "ping"})).await;
        let pong = self.until(REPLY, |m| m["type"] == "pong").await;
        assert_eq!(pong, json!({"type": "pong"}));
    }
}

fn json_of(text: &str) -> Value {
    match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => panic!("not JSON ({e}): {text}"),
    }
}
