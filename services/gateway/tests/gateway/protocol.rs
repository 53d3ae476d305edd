//! Every request, every bad input, and the limits.

use std::time::Duration;

use futures::SinkExt as _;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

#[tokio::test]
async fn acks_have_the_documented_shape_and_pings_are_answered() {
    let gw = spawn_gateway(config()).await;
    let tenant = unique("acks");
    register_devices(&tenant, ["dev-0001"]).await;
    let mut c = gw.viewer(&tenant).await;
    assert_eq!(
        c.subscribe(json!({"type": "alerts"})).await,
        json!({"type": "subscribed", "channel": "alerts"})
    );
    assert_eq!(
        c.subscribe(json!({"type": "fleet"})).await,
        json!({"type": "subscribed", "channel": "fleet"})
    );
    assert_eq!(
        c.subscribe(json!({"type": "device", "device_id": "dev-0001"}))
            .await,
        json!({"type": "subscribed", "channel": "device", "device_id": "dev-0001"})
    );
    assert_eq!(
        c.subscribe(json!({"type": "events", "topic": "tickets"}))
            .await,
        json!({"type": "subscribed", "channel": "events", "topic": "tickets"})
    );
    c.send(json!({"action": "unsubscribe", "type": "device", "device_id": "dev-0001"}))
        .await;
    assert_eq!(
        c.next(T).await,
        json!({"type": "unsubscribed", "channel": "device", "device_id": "dev-0001"})
    );
    c.send_text("ping").await;
    assert_eq!(c.next(T).await, json!({"type": "pong"}));
    c.assert_alive().await;
}

#[tokio::test]
async fn every_bad_input_gets_a_precise_error_and_the_connection_stays_usable() {
    let gw = spawn_gateway(config()).await;
    let mut c = gw.viewer(&unique("hostile")).await;
    let long = "x".repeat(65);
    let cases = [
        ("{".to_string(), "invalid_json"),
        ("[]".to_string(), "invalid_json"),
        ("hello".to_string(), "invalid_json"),
        (json!({}).to_string(), "unknown_action"),
        (json!({"action": "delete"}).to_string(), "unknown_action"),
        (json!({"action": "subscribe"}).to_string(), "unknown_type"),
        (
            json!({"action": "subscribe", "type": "everything"}).to_string(),
            "unknown_type",
        ),
        (
            json!({"action": "subscribe", "type": "device"}).to_string(),
            "missing_field",
        ),
        (
            json!({"action": "subscribe", "type": "device", "device_id": ">"}).to_string(),
            "invalid_id",
        ),
        (
            json!({"action": "subscribe", "type": "device", "device_id": "*"}).to_string(),
            "invalid_id",
        ),
        (
            json!({"action": "subscribe", "type": "device", "device_id": "a.b"}).to_string(),
            "invalid_id",
        ),
        (
            json!({"action": "subscribe", "type": "device", "device_id": ""}).to_string(),
            "invalid_id",
        ),
        (
            json!({"action": "subscribe", "type": "device", "device_id": long}).to_string(),
            "invalid_id",
        ),
        (
            json!({"action": "subscribe", "type": "events", "topic": "t.>"}).to_string(),
            "invalid_id",
        ),
        (
            json!({"action": "unsubscribe", "type": "alerts"}).to_string(),
            "not_subscribed",
        ),
    ];
    for (text, code) in cases {
        c.send_text(&text).await;
        let reply = c.next(T).await;
        assert_eq!(reply["type"], "error", "{text}");
        assert_eq!(reply["code"], code, "{text}: {reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    c.assert_alive().await;
}

#[tokio::test]
async fn a_duplicate_subscribe_is_acked_again_and_pushes_arrive_once() {
    let gw = spawn_gateway(config()).await;
    let tenant = unique("dup");
    let mut c = gw.viewer(&tenant).await;
    let tickets = json!({"type": "events", "topic": "tickets"});
    c.subscribe(tickets.clone()).await;
    c.assert_subscribes(tickets).await;
    let nats = nats().await;
    let subject = format!("pulse.v1.{tenant}.events.tickets");
    for n in 1..=2 {
        publish(&nats, &subject, n, json!({"type": "event", "n": n})).await;
    }
    assert_eq!(c.next(T).await["n"], 1);
    assert_eq!(c.next(T).await["n"], 2);
    assert!(
        c.try_next(Duration::from_millis(300)).await.is_none(),
        "a push arrived twice"
    );
}

#[tokio::test]
async fn device_subscribes_repeated_before_the_registry_answers_are_each_answered() {
    let (gw, tenant) = (spawn_gateway(config()).await, unique("devrepeat"));
    register_devices(&tenant, ["dev-1"]).await;
    let mut c = gw.viewer(&tenant).await;
    // Sent back to back, the repeats arrive while the first one's registry check is out.
    for device in ["dev-1", "dev-1", "dev-1", "ghost", "ghost"] {
        c.send(json!({"action": "subscribe", "type": "device", "device_id": device}))
            .await;
    }
    let mut answers = Vec::new();
    for _ in 0..5 {
        let r = c.next(T).await;
        answers.push(format!("{} {} {}", r["type"], r["device_id"], r["code"]));
    }
    answers.sort();
    assert_eq!(
        answers,
        [
            r#""error" "ghost" "unknown_device""#,
            r#""error" "ghost" "unknown_device""#,
            r#""subscribed" "dev-1" null"#,
            r#""subscribed" "dev-1" null"#,
            r#""subscribed" "dev-1" null"#,
        ]
    );
    dev_1_pushed_once(&mut c, &tenant).await;
}

/// An unsubscribe (and a subscribe after it) sent while a device subscribe waits for the
/// registry: each request is answered, in the order sent, as if sent after the check.
#[tokio::test]
async fn requests_about_a_device_being_checked_are_each_answered_in_order() {
    let (gw, tenant) = (spawn_gateway(config()).await, unique("devqueue"));
    register_devices(&tenant, ["dev-1"]).await;
    let mut c = gw.viewer(&tenant).await;
    let requests = [
        ("subscribe", "dev-1"),
        ("unsubscribe", "dev-1"),
        ("subscribe", "dev-1"),
        ("subscribe", "ghost"),
        ("unsubscribe", "ghost"),
    ];
    for (action, device) in requests {
        c.send(json!({"action": action, "type": "device", "device_id": device}))
            .await;
    }
    let mut answers: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for _ in 0..requests.len() {
        let r = c.next(T).await;
        let device = r["device_id"].as_str().unwrap_or_default().to_owned();
        let answer = match r["code"].as_str() {
            Some(code) => code.to_owned(),
            None => r["type"].as_str().unwrap_or_default().to_owned(),
        };
        answers.entry(device).or_default().push(answer);
    }
    assert_eq!(
        answers["dev-1"],
        ["subscribed", "unsubscribed", "subscribed"]
    );
    assert_eq!(answers["ghost"], ["unknown_device", "not_subscribed"]);
    // Subscribed in the end, once.
    dev_1_pushed_once(&mut c, &tenant).await;
}

/// Publishes a reading of `dev-1` of `tenant`, and checks that `c` gets it exactly once.
async fn dev_1_pushed_once(c: &mut Client, tenant: &str) {
    let nats = nats().await;
    let subject = format!("pulse.v1.{tenant}.device.dev-1.telemetry");
    let reading = json!({"type": "telemetry", "device_id": "dev-1"});
    publish(&nats, &subject, 1, reading).await;
    assert_eq!(c.next(T).await["type"], "telemetry");
    assert!(
        c.try_next(Duration::from_millis(300)).await.is_none(),
        "a push arrived twice"
    );
}

#[tokio::test]
async fn a_frame_that_breaks_websocket_rules_gets_1007_or_1002_and_others_stay() {
    use tokio_tungstenite::tungstenite::protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    };
    let gw = spawn_gateway(config()).await;
    let tenant = unique("badframe");
    let mut bystander = gw.viewer(&tenant).await;
    // A text frame whose payload is not UTF-8.
    let mut c = gw.viewer(&tenant).await;
    let frame = Frame::message(vec![0xff, 0xfe], OpCode::Data(Data::Text), true);
    c.ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(c.closed(T).await.code, 1007);
    // A frame with a reserved bit set (no extension was agreed).
    let mut c = gw.viewer(&tenant).await;
    let mut frame = Frame::message(&b"{}"[..], OpCode::Data(Data::Text), true);
    frame.header_mut().rsv1 = true;
    c.ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(c.closed(T).await.code, 1002);
    bystander.assert_alive().await;
}

#[tokio::test]
async fn binary_frames_close_with_1003() {
    let gw = spawn_gateway(config()).await;
    let mut c = gw.viewer(&unique("binary")).await;
    c.ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(c.closed(T).await.code, 1003);
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009() {
    let gw = spawn_gateway_with(|c| c.max_message_bytes = 1024).await;
    let mut c = gw.viewer(&unique("big")).await;
    c.send_text(&format!(
        "{{\"action\":\"ping\",\"pad\":\"{}\"}}",
        "x".repeat(2048)
    ))
    .await;
    assert_eq!(c.closed(T).await.code, 1009);
}

#[tokio::test]
async fn subscriptions_per_connection_are_capped() {
    let gw = spawn_gateway_with(|c| c.max_subscriptions = 3).await;
    let tenant = unique("cap");
    register_devices(&tenant, ["d0", "d1", "d2", "d9"]).await;
    let mut c = gw.viewer(&tenant).await;
    for i in 0..3 {
        c.assert_subscribes(json!({"type": "device", "device_id": format!("d{i}")}))
            .await;
    }
    let refused = c
        .subscribe(json!({"type": "device", "device_id": "d9"}))
        .await;
    assert_eq!(refused["code"], "too_many_subscriptions");
    // Leaving one makes room again.
    c.send(json!({"action": "unsubscribe", "type": "device", "device_id": "d0"}))
        .await;
    assert_eq!(c.next(T).await["type"], "unsubscribed");
    c.assert_subscribes(json!({"type": "device", "device_id": "d9"}))
        .await;
}

#[tokio::test]
async fn a_flooding_client_is_told_then_closed_with_4029_and_others_are_untouched() {
    let gw = spawn_gateway_with(|c| {
        c.client_msgs_per_second = 5;
        c.client_msgs_burst = 10;
    })
    .await;
    let tenant = unique("flood");
    let mut calm = gw.viewer(&tenant).await;
    let mut flood = gw.viewer(&tenant).await;
    for _ in 0..40 {
        flood
            .ws
            .feed(Message::Text(r#"{"action":"ping"}"#.into()))
            .await
            .unwrap();
    }
    flood.ws.flush().await.unwrap();
    let mut pongs = 0;
    let mut limited = false;
    let closed = loop {
        match tokio::time::timeout(T, futures::StreamExt::next(&mut flood.ws))
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                match v["type"].as_str() {
                    Some("pong") => pongs += 1,
                    Some("error") => {
                        assert_eq!(v["code"], "rate_limited");
                        limited = true;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            Some(Ok(Message::Close(Some(frame)))) => {
                assert!(frame.reason.ends_with("retry_after=1"), "{}", frame.reason);
                break u16::from(frame.code);
            }
            Some(Ok(_)) => {}
            other => panic!("unexpected end {other:?}"),
        }
    };
    assert_eq!(pongs, 10, "the burst is served");
    assert!(limited, "a rate_limited error comes before the close");
    assert_eq!(closed, 4029);
    calm.assert_alive().await;
}
