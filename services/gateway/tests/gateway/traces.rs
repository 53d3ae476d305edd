//! Traces: a trace context carried in NATS headers is continued by the gateway's fan-out span
//! and exported over OTLP.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

/// A stand-in OTLP/HTTP collector: every request body posted to `/v1/traces`.
async fn collector() -> (String, tokio::sync::mpsc::Receiver<Vec<u8>>) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.try_send(body.to_vec());
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

#[tokio::test]
async fn a_trace_context_in_nats_headers_is_continued_by_the_fanout_span() {
    let (endpoint, mut exported) = collector().await;
    let port = free_port();
    let _gateway = spawn_gateway_process(
        port,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    )
    .await;

    let tenant = unique("traced");
    let mut client = viewer_on_port(port, &tenant).await;
    client
        .subscribe(json!({"type": "events", "topic": "tickets"}))
        .await;

    let trace_id: [u8; 16] = rand::random();
    let trace_hex: String = trace_id.iter().map(|b| format!("{b:02x}")).collect();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Pulse-Seq", "1");
    headers.insert(
        "traceparent",
        format!("00-{trace_hex}-00f067aa0ba902b7-01").as_str(),
    );
    let nats = nats().await;
    nats.publish_with_headers(
        format!("pulse.v1.{tenant}.events.tickets"),
        headers,
        json!({"type": "event", "topic": "tickets", "event": "ticket:update", "seq": 1})
            .to_string()
            .into(),
    )
    .await
    .unwrap();
    nats.flush().await.unwrap();
    assert_eq!(
        client.next(Duration::from_secs(5)).await["event"],
        "ticket:update"
    );

    // OTLP/protobuf carries the trace id as 16 raw bytes: the exported fan-out span is in the
    // publisher's trace.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let body = tokio::time::timeout_at(deadline, exported.recv())
            .await
            .expect("no exported span carried the publisher's trace id")
            .unwrap();
        if body.windows(16).any(|w| w == trace_id) {
            break;
        }
    }
}
