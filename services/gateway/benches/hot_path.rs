//! The gateway's per-message and per-connection hot paths, measured alone:
//!
//! - `fanout/*`: a NATS payload becomes one shared frame (UTF-8 check, `Pulse-Seq` header
//!   read) and is pushed to N client queues, then each client's writer takes it — everything
//!   a delivery costs before the socket write.
//! - `jwt/verify_hs256`: verifying a connection's token.
//! - `protocol/*`: parsing a subscribe request and encoding its ack.

#![allow(clippy::unwrap_used)] // bench code: a failed unwrap is a failed bench

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use clap::Parser as _;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pulse_gateway::GatewayConfig;
use pulse_gateway::auth::Authenticator;
use pulse_gateway::frame::{Frame, seq_of};
use pulse_gateway::queue::ClientQueue;
use pulse_proto::{ClientRequest, ServerReply};

const SECRET: &str = "bench-secret-bench-secret-bench-secret";

const PAYLOAD: &str = r#"{"type":"alerts","tenant_id":"acme","seq":1017,"ts":"2026-11-22T10:00:02.25Z","alerts":[{"alert_id":5,"device_id":"dev-0001","site_id":"site-1","alert_type":"temperature_high","severity":3,"summary":"Temperature above 40 C for 5 minutes","status":"OPEN","created_at":"2026-11-22T09:55:00Z"}],"total_open":1}"#;

/// Each client's writer taking its frames, as it does before writing them to its socket.
fn take_all(queues: &[Arc<ClientQueue>], taken: &mut Vec<Frame>) {
    for q in queues {
        q.take(taken);
        taken.clear();
    }
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    for n in [1usize, 100, 5000] {
        let queues: Vec<Arc<ClientQueue>> = (0..n)
            .map(|_| Arc::new(ClientQueue::new(1024, Default::default())))
            .collect();
        let mut headers = async_nats::HeaderMap::new();
        let mut seq = 0u64;
        let mut taken = Vec::with_capacity(4);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("snapshot_to_queues", n), &n, |b, _| {
            b.iter(|| {
                seq += 1;
                headers.insert(pulse_proto::headers::SEQ, seq.to_string().as_str());
                let payload = Bytes::from_static(PAYLOAD.as_bytes());
                let frame = Frame {
                    topic: 1,
                    seq: seq_of(Some(&headers)),
                    snapshot: true,
                    text: Utf8Bytes::try_from(payload).unwrap(),
                    received: Instant::now(),
                };
                for q in &queues {
                    q.push_snapshot(frame.clone());
                }
                take_all(&queues, &mut taken);
            });
        });
        group.bench_with_input(BenchmarkId::new("event_to_queues", n), &n, |b, _| {
            b.iter(|| {
                let frame = Frame {
                    topic: 2,
                    seq: 0,
                    snapshot: false,
                    text: Utf8Bytes::try_from(Bytes::from_static(PAYLOAD.as_bytes())).unwrap(),
                    received: Instant::now(),
                };
                for q in &queues {
                    q.push_event(frame.clone());
                }
                take_all(&queues, &mut taken);
            });
        });
    }
    group.finish();
}

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    config: GatewayConfig,
}

fn jwt(c: &mut Criterion) {
    let config = Cli::try_parse_from(["pulse-gateway", "--jwt-secret", SECRET])
        .unwrap()
        .config;
    let auth = Authenticator::new(&config);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({
        "sub": "user-1", "email": "viewer@acme.example", "tenant_id": "acme",
        "role": "customer_viewer", "exp": exp,
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    c.bench_function("jwt/verify_hs256", |b| {
        b.iter(|| {
            let principal = futures::executor::block_on(auth.verify(Some(black_box(&token))));
            black_box(principal.unwrap());
        });
    });
}

fn protocol(c: &mut Criterion) {
    let alerts = r#"{"action":"subscribe","type":"alerts"}"#;
    let device = r#"{"action":"subscribe","type":"device","device_id":"dev-0001"}"#;
    c.bench_function("protocol/parse_subscribe_alerts", |b| {
        b.iter(|| black_box(ClientRequest::parse(black_box(alerts)).unwrap()));
    });
    c.bench_function("protocol/parse_subscribe_device", |b| {
        b.iter(|| black_box(ClientRequest::parse(black_box(device)).unwrap()));
    });
    let ClientRequest::Subscribe { channel, .. } = ClientRequest::parse(device).unwrap() else {
        unreachable!("a subscribe request");
    };
    let reply = ServerReply::subscribed(channel);
    c.bench_function("protocol/encode_subscribed", |b| {
        b.iter(|| black_box(serde_json::to_string(black_box(&reply)).unwrap()));
    });
}

criterion_group!(benches, fanout, jwt, protocol);
criterion_main!(benches);
