//! Events through the web service: idempotent publishing, size and rate limits, reading a
//! topic back, and gapless seqs with several instances publishing at once.

use std::time::{Duration, Instant};

use pulse_test_support::eventually;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::*;

/// Publishes as the backend service for `tenant`, with an `Idempotency-Key` when given.
async fn publish(
    client: &reqwest::Client,
    base: &str,
    tenant: &str,
    body: Value,
    key: Option<&[u8]>,
) -> reqwest::Response {
    let mut body = body;
    body["tenant_id"] = json!(tenant);
    let mut req = client
        .post(format!("{base}/api/v2/events"))
        .bearer_auth(PUBLISH_TOKEN)
        .json(&body);
    if let Some(key) = key {
        req = req.header(
            "Idempotency-Key",
            reqwest::header::HeaderValue::from_bytes(key).unwrap(),
        );
    }
    req.send().await.unwrap()
}

/// `(seq, event, payload)` of a tenant's events on a topic, by seq.
async fn rows(env: &Env, tenant: &str, topic: &str) -> Vec<(i64, String, Value)> {
    sqlx::query_as(
        "SELECT seq, event, payload FROM events WHERE tenant_id = $1 AND topic = $2 ORDER BY seq",
    )
    .bind(tenant)
    .bind(topic)
    .fetch_all(&env.pool)
    .await
    .unwrap()
}

/// The seqs of the tenant's events on a topic, in order.
async fn seqs(env: &Env, topic: &str) -> Vec<i64> {
    rows(env, &env.tenant, topic)
        .await
        .iter()
        .map(|r| r.0)
        .collect()
}

/// The service allowing each tenant one event a second, in bursts of `burst`: a tenant that
/// has just published `burst` events is over its rate for the next second.
async fn spawn_with_event_burst(burst: u32) -> Env {
    spawn_with(|c| {
        c.events_per_second = 1;
        c.events_burst = burst;
    })
    .await
}

/// Emits an event through the database function, as writers other than the web service do;
/// returns its seq.
async fn emit(pool: &PgPool, tenant: &str, topic: &str, event: &str, payload: Value) -> i64 {
    sqlx::query_scalar("SELECT pulse_emit_event($1, $2, $3, $4)")
        .bind(tenant)
        .bind(topic)
        .bind(event)
        .bind(payload)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn accepted_seq(r: reqwest::Response) -> u64 {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 202, "{body}");
    body["seq"].as_u64().unwrap()
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retry_return_the_same_event() {
    let env = spawn().await;
    let c = reqwest::Client::new();
    let base = env.at("");
    let order = json!({"topic": "orders", "event": "order:placed", "payload": {"id": 1}});

    let first =
        accepted_seq(publish(&c, &base, &env.tenant, order.clone(), Some(b"order-1")).await).await;
    assert_eq!(first, 1);
    // The retry (same key, same request) gets the same seq and writes nothing.
    let retry =
        accepted_seq(publish(&c, &base, &env.tenant, order.clone(), Some(b"order-1")).await).await;
    assert_eq!(retry, first);
    assert_eq!(
        rows(&env, &env.tenant, "orders").await,
        [(1, "order:placed".into(), json!({"id": 1}))]
    );
    // The replay used no seq: the next event is 2.
    let next = accepted_seq(
        publish(
            &c,
            &base,
            &env.tenant,
            json!({"topic": "orders", "event": "order:paid"}),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(next, 2);

    // The same payload written otherwise (spacing, key order, `1.0`) is the same request.
    let respelt = json!({"topic": "orders", "event": "order:placed", "payload": {"id": 1.0}});
    let again = publish(&c, &base, &env.tenant, respelt, Some(b"order-1")).await;
    assert_eq!(accepted_seq(again).await, first);
    // The key names one event: reusing it for another topic, event or payload is a conflict
    // (another payload under it would be lost unseen).
    for other in [
        json!({"topic": "invoices", "event": "order:placed"}),
        json!({"topic": "orders", "event": "order:cancelled"}),
        json!({"topic": "orders", "event": "order:placed", "payload": {"id": 999}}),
        json!({"topic": "orders", "event": "order:placed"}),
    ] {
        let r = publish(&c, &base, &env.tenant, other.clone(), Some(b"order-1")).await;
        assert_eq!(error_code(r, 409).await, "conflict", "{other}");
    }
    // Keys belong to a tenant: another tenant may use the same one for its own event.
    let theirs = accepted_seq(
        publish(
            &c,
            &base,
            &env.other_tenant,
            order.clone(),
            Some(b"order-1"),
        )
        .await,
    )
    .await;
    assert_eq!(theirs, 1);

    // A key must be 1 to 128 visible ASCII characters.
    let long = "k".repeat(200);
    let max = "k".repeat(128);
    for bad in [
        b"".as_slice(),
        long.as_bytes(),
        "café".as_bytes(),
        b"a b".as_slice(),
    ] {
        let r = publish(&c, &base, &env.tenant, order.clone(), Some(bad)).await;
        assert_eq!(
            error_code(r, 400).await,
            "bad_request",
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let at_max =
        accepted_seq(publish(&c, &base, &env.tenant, order.clone(), Some(max.as_bytes())).await)
            .await;
    assert_eq!(at_max, 3);

    // Refused requests left nothing behind.
    assert_eq!(seqs(&env, "orders").await, [1, 2, 3]);
    assert!(rows(&env, &env.tenant, "invoices").await.is_empty());
    let keys: Vec<(String, i64, Option<String>)> = sqlx::query_as(
        "SELECT tenant_id::text, seq, idempotency_key FROM events \
          WHERE topic = 'orders' ORDER BY tenant_id = $1 DESC, seq",
    )
    .bind(&env.tenant)
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(
        keys,
        [
            (env.tenant.clone(), 1, Some("order-1".into())),
            (env.tenant.clone(), 2, None),
            (env.tenant.clone(), 3, Some(max)),
            (env.other_tenant.clone(), 1, Some("order-1".into())),
        ]
    );
    env.finish().await;
}

#[tokio::test]
async fn an_oversized_event_or_body_gets_413() {
    let env = spawn().await;
    let admin = env.login("admin", &env.tenant).await;

    // An event on topic `big` whose payload is a string of `kib` KiB.
    let blob = |kib: usize| json!({"topic": "big", "event": "blob", "payload": {"s": "x".repeat(kib * 1024)}});

    // Well under the limit passes, so the limit is about size and not about strings.
    let r = env.post_event(&admin, &blob(60)).await;
    assert_eq!(accepted_seq(r).await, 1);

    // A body under the 128 KiB body limit whose event message would exceed 64 KiB.
    let r = env.post_event(&admin, &blob(70)).await;
    assert_eq!(error_code(r, 413).await, "payload_too_large");

    // A body of several MiB is refused before it is parsed.
    let huge = blob(4 * 1024).to_string();
    let r = post_raw_json(&admin, env.at("/api/v2/events"), huge).await;
    assert_eq!(error_code(r, 413).await, "payload_too_large");

    assert_eq!(
        seqs(&env, "big").await,
        [1],
        "only the event under the limit is stored"
    );
    env.finish().await;
}

/// A payload published over HTTP is stored as sent, not decoded on the way: every digit of a
/// number reaches the database, and `GET /api/v2/events` (as the relay) gives it back. The
/// 64 KiB is of the event as pushed, with its payload as PostgreSQL stores it: a payload whose
/// numbers are short as sent and long as stored is measured as stored.
#[tokio::test]
async fn a_published_payload_is_kept_and_measured_as_stored() {
    let env = spawn().await;
    let admin = env.login("admin", &env.tenant).await;
    let exact = r#"{"id":123456789012345678901234,"share":0.12345678901234567890}"#;
    for payload in [exact, "1e400"] {
        let body = format!(r#"{{"topic":"exact","event":"e","payload":{payload}}}"#);
        let r = post_raw_json(&admin, env.at("/api/v2/events"), body).await;
        assert_eq!(r.status(), 202, "{payload}: {}", r.text().await.unwrap());
    }
    let r = get(&admin, env.at("/api/v2/events?topic=exact")).await;
    let text = r.text().await.unwrap();
    assert!(text.contains(exact), "every digit as sent: {text}");
    assert!(
        text.contains(&format!(r#""payload":1{}"#, "0".repeat(400))),
        "{text}"
    );

    // `["a…", 1e300]`: 65,536 bytes as PostgreSQL writes it out (the payload's own limit),
    // so the event pushed with it is over 64 KiB; sent, the number is five characters.
    let post = |n: usize| {
        let body = format!(
            r#"{{"topic":"long","event":"e","payload":["{}",1e300]}}"#,
            "a".repeat(n)
        );
        post_raw_json(&admin, env.at("/api/v2/events"), body)
    };
    let r = post(65_229).await;
    assert_eq!(error_code(r, 413).await, "payload_too_large");
    assert_eq!(
        seqs(&env, "long").await,
        Vec::<i64>::new(),
        "nothing stored"
    );
    // Numbers short as sent and huge as stored (8,000 of 131,001 digits each, a gigabyte
    // written out) are refused before the database is asked to write them out: by the bound
    // on what they could grow to, which its answer names.
    let huge = vec!["1e131000"; 8_000].join(",");
    let body = format!(r#"{{"topic":"long","event":"e","payload":[{huge}]}}"#);
    let r = post_raw_json(&admin, env.at("/api/v2/events"), body).await;
    assert_eq!(r.status(), 413);
    let answer: Value = r.json().await.unwrap();
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("could be"), "{answer}");
    // One that fits as pushed is stored, and pushed within the limit.
    let r = post(65_000).await;
    assert_eq!(accepted_seq(r).await, 1);
    let r = get(&admin, env.at("/api/v2/events?topic=long")).await;
    let page = r.text().await.unwrap();
    // The page's one event, exactly as pushed.
    let pushed = page
        .split_once(r#""events":["#)
        .and_then(|(_, rest)| rest.rsplit_once(r#"],"last_seq""#))
        .map(|(event, _)| event)
        .unwrap_or_else(|| panic!("no event in {page}"));
    assert!(pushed.contains(&"0".repeat(300)), "as stored: {pushed}");
    assert!(pushed.len() <= 64 * 1024, "{} bytes", pushed.len());
    env.finish().await;
}

#[tokio::test]
async fn what_postgresql_cannot_store_gets_a_precise_4xx_and_stores_nothing() {
    let env = spawn().await;
    let admin = env.login("admin", &env.tenant).await;
    let c = reqwest::Client::new();
    let base = env.at("");

    // 250 numbers of 5 characters: 1.5 KB as sent, 75 KB as PostgreSQL writes them out.
    let long_numbers: Vec<Value> = (0..250).map(|_| json!(1e300)).collect();
    let r = env
        .post_event(
            &admin,
            &json!({"topic": "odd", "event": "e", "payload": long_numbers}),
        )
        .await;
    assert_eq!(error_code(r, 413).await, "payload_too_large");

    // U+0000 in any string, the event name, a payload value or key, or a login.
    for body in [
        r#"{"topic":"odd","event":"a\u0000"}"#,
        r#"{"topic":"odd","event":"e","payload":"\u0000"}"#,
        r#"{"topic":"odd","event":"e","payload":{"k\u0000":1}}"#,
    ] {
        let r = post_raw_json(&admin, env.at("/api/v2/events"), body).await;
        assert_eq!(r.status(), 400, "{body}");
        let error = &r.json::<Value>().await.unwrap()["error"];
        assert_eq!(error["code"], "bad_request", "{body}");
        // In the API's words, not PostgreSQL's (`invalid byte sequence for encoding "UTF8"`).
        assert_eq!(
            error["message"], "a value cannot be stored: a text holds the character U+0000",
            "{body}"
        );
    }
    let r = post_raw_json(
        &admin,
        env.at("/api/v2/publish-keys"),
        r#"{"name":"k\u0000"}"#,
    )
    .await;
    assert_eq!(error_code(r, 400).await, "bad_request");
    let r = post_raw_json(
        &c,
        env.at("/api/v2/login"),
        r#"{"email":"a\u0000@x.example","password":"p"}"#,
    )
    .await;
    assert_eq!(error_code(r, 400).await, "bad_request");
    // The text `\u0000` (an escaped backslash) is stored as it is.
    let r = post_raw_json(
        &admin,
        env.at("/api/v2/events"),
        r#"{"topic":"odd","event":"e","payload":"\\u0000"}"#,
    )
    .await;
    assert_eq!(accepted_seq(r).await, 1);

    // A payload nested past 100 levels: PostgreSQL refuses one 20,000 deep (its stack), and
    // one of 129 it stores where serde_json (and so `pulse_proto::Event`) cannot read it back.
    let nested = |levels: usize| {
        let payload = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        let body = format!(r#"{{"topic":"deep","event":"e","payload":{payload}}}"#);
        post_raw_json(&admin, env.at("/api/v2/events"), body)
    };
    for levels in [20_000, 129, 101] {
        let r = nested(levels).await;
        assert_eq!(error_code(r, 400).await, "bad_request", "{levels} levels");
    }
    assert_eq!(
        seqs(&env, "deep").await,
        Vec::<i64>::new(),
        "nothing stored"
    );
    assert_eq!(accepted_seq(nested(100).await).await, 1);
    let page: Value = get(&admin, env.at("/api/v2/events?topic=deep"))
        .await
        .json()
        .await
        .expect("the page reads back");
    let event: pulse_proto::Event =
        serde_json::from_value(page["events"][0].clone()).unwrap_or_else(|e| panic!("{e}: {page}"));
    assert_eq!(event.seq, 1);

    // A field not in the request (a misspelt `payload`) is refused, not dropped.
    let r = env
        .post_event(
            &admin,
            &json!({"topic": "odd", "event": "e", "data": {"lost": true}}),
        )
        .await;
    assert_eq!(error_code(r, 400).await, "bad_request");
    // A new topic past the tenant's 10,000 is refused; its topics still take events.
    env.execute(
        "INSERT INTO event_topics (tenant_id, topic, last_seq) \
         SELECT $1, 'full-' || g, 1 FROM generate_series(1, 10000 - \
                (SELECT count(*) FROM event_topics WHERE tenant_id = $1)::int) g",
        &[&env.tenant],
    )
    .await;
    let r = env
        .post_event(&admin, &json!({"topic": "one-more", "event": "e"}))
        .await;
    assert_eq!(error_code(r, 409).await, "conflict");
    let r = env
        .post_event(&admin, &json!({"topic": "full-1", "event": "e"}))
        .await;
    assert_eq!(r.status(), 202);
    // The alert history topic is the database's alone.
    let activity = rows(&env, &env.tenant, "activity").await;
    let r = env
        .post_event(
            &admin,
            &json!({"topic": "activity", "event": "alert:closed"}),
        )
        .await;
    assert_eq!(error_code(r, 403).await, "forbidden");
    assert_eq!(rows(&env, &env.tenant, "activity").await, activity);

    // The shared publish token naming a tenant that does not exist.
    let r = publish(
        &c,
        &base,
        "no-such-tenant",
        json!({"topic": "odd", "event": "e"}),
        None,
    )
    .await;
    assert_eq!(error_code(r, 400).await, "bad_request");

    let stored = rows(&env, &env.tenant, "odd").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].2, json!("\\u0000"));
    env.finish().await;
}

#[tokio::test]
async fn a_tenant_over_its_rate_gets_429_and_other_tenants_do_not() {
    let env = spawn_with_event_burst(2).await;
    let c = reqwest::Client::new();
    let base = env.at("");
    let ev = json!({"topic": "busy", "event": "tick"});

    for want in 1..=2 {
        assert_eq!(
            accepted_seq(publish(&c, &base, &env.tenant, ev.clone(), None).await).await,
            want
        );
    }
    let r = publish(&c, &base, &env.tenant, ev.clone(), None).await;
    let retry_after: u64 = r
        .headers()
        .get("retry-after")
        .expect("429 without Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(error_code(r, 429).await, "rate_limited");
    assert!(retry_after >= 1, "Retry-After: {retry_after}");

    // The other tenant has a bucket of its own, full.
    for want in 1..=2 {
        assert_eq!(
            accepted_seq(publish(&c, &base, &env.other_tenant, ev.clone(), None).await).await,
            want
        );
    }

    // A limit, not a ban: within Retry-After (plus slack) the tenant may publish again.
    let limited_at = Instant::now();
    let deadline = limited_at + Duration::from_secs(retry_after) + Duration::from_secs(2);
    let seq = loop {
        let r = publish(&c, &base, &env.tenant, ev.clone(), None).await;
        if r.status() == 202 {
            break accepted_seq(r).await;
        }
        assert_eq!(error_code(r, 429).await, "rate_limited");
        assert!(Instant::now() < deadline, "still limited after Retry-After");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The refused publishes took no seq.
    assert_eq!(seq, 3);
    assert_eq!(seqs(&env, "busy").await, [1, 2, 3]);
    env.finish().await;
}

/// A payload PostgreSQL holds but a decoded JSON value cannot (written by any caller of
/// `pulse_emit_event`) is listed as stored, and the events beside it with it.
#[tokio::test]
async fn events_are_listed_whatever_payload_postgresql_holds() {
    let env = spawn().await;
    emit(&env.pool, &env.tenant, "odd", "e", json!({"n": 1})).await;
    env.execute(
        "SELECT pulse_emit_event($1, 'odd', 'e', '{\"x\": 1e400}'::jsonb)",
        &[&env.tenant],
    )
    .await;
    let exact = r#"{"id":123456789012345678901234,"share":0.12345678901234567890}"#;
    let sql = format!("SELECT pulse_emit_event($1, 'odd', 'e', '{exact}'::jsonb)");
    env.execute(&sql, &[&env.tenant]).await;
    emit(&env.pool, &env.tenant, "odd", "e", json!({"n": 3})).await;
    let viewer = env.login("viewer", &env.tenant).await;
    let r = get(&viewer, env.at("/api/v2/events?topic=odd")).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains(&format!("1{}", "0".repeat(400))), "{text}");
    assert!(text.contains(exact), "every digit as stored: {text}");
    assert!(text.contains(r#""n":3"#), "{text}");
    env.finish().await;
}

/// A page holds at most 1 MiB of events (past its first), however large `limit`: the caller
/// reads on with `after`, and without it gets the newest that fit.
#[tokio::test]
async fn a_page_of_large_events_is_cut_at_a_mebibyte_and_read_on_with_after() {
    let env = spawn().await;
    let blob = "x".repeat(60 * 1024);
    for _ in 0..40 {
        emit(&env.pool, &env.tenant, "big", "e", json!(blob)).await;
    }
    let viewer = env.login("viewer", &env.tenant).await;
    // `(seqs, body bytes)` of one page.
    let page = |q: String| {
        let (viewer, url) = (
            viewer.clone(),
            env.at(&format!("/api/v2/events?topic=big&{q}")),
        );
        async move {
            let text = get(&viewer, url).await.text().await.unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["last_seq"], 40, "{}", &text[..200.min(text.len())]);
            (page_seqs(&v), text.len())
        }
    };
    let mut read = Vec::new();
    while read.last() != Some(&40) {
        let after = read.last().copied().unwrap_or(0);
        let (seqs, bytes) = page(format!("after={after}&limit=1000")).await;
        assert!(!seqs.is_empty() && seqs.len() < 40, "{seqs:?}");
        assert!(bytes <= 1024 * 1024 + 128 * 1024, "{bytes} bytes");
        read.extend(seqs);
    }
    assert_eq!(read, (1..=40).collect::<Vec<_>>(), "every event, in order");
    let (newest, _) = page("limit=1000".into()).await;
    assert!(newest.len() < 40, "{newest:?}");
    let from = 41 - newest.len() as u64;
    assert_eq!(
        newest,
        (from..=40).collect::<Vec<_>>(),
        "the newest that fit"
    );
    env.finish().await;
}

#[tokio::test]
async fn a_topics_events_are_read_back_by_seq() {
    let env = spawn().await;
    let (pool, theirs) = (&env.pool, &env.other_tenant);
    for i in 1..=5 {
        let payload = json!({"n": i});
        emit(pool, &env.tenant, "tickets", "ticket:update", payload).await;
    }
    // The other tenant has more events on a topic of the same name, and a topic of its own.
    for i in 1..=7 {
        let payload = json!({"secret": i});
        emit(pool, theirs, "tickets", "secret:thing", payload).await;
    }
    emit(pool, theirs, "private", "secret:thing", Value::Null).await;

    let c = env.login("viewer", &env.tenant).await;
    let page = |q: &str| {
        let url = env.at(&format!("/api/v2/events?{q}"));
        let c = c.clone();
        async move {
            let r = c.get(url).send().await.unwrap();
            let status = r.status();
            let v: Value = r.json().await.unwrap();
            assert_eq!(status, 200, "{v}");
            v
        }
    };
    let ns = |v: &Value| -> Vec<(u64, i64)> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["seq"].as_u64().unwrap(),
                    e["payload"]["n"].as_i64().unwrap(),
                )
            })
            .collect()
    };

    let all = page("topic=tickets").await;
    assert_eq!(ns(&all), [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]);
    assert_eq!(all["last_seq"], 5, "the other tenant's seqs must not show");
    assert_eq!(all["topic"], "tickets");
    for e in all["events"].as_array().unwrap() {
        assert_eq!(e["type"], "event");
        assert_eq!(e["tenant_id"], env.tenant.as_str());
        assert_eq!(e["topic"], "tickets");
        assert_eq!(e["event"], "ticket:update");
        assert!(e["ts"].as_str().unwrap().ends_with('Z'), "{e}");
    }
    let after = page("topic=tickets&after=2&limit=2").await;
    assert_eq!(ns(&after), [(3, 3), (4, 4)]);
    assert_eq!(after["last_seq"], 5);
    assert_eq!(ns(&page("topic=tickets&after=4").await), [(5, 5)]);
    let caught_up = page("topic=tickets&after=5").await;
    assert_eq!(caught_up["events"], json!([]));
    assert_eq!(caught_up["last_seq"], 5);
    // Without `after`: the newest `limit`, still oldest first.
    assert_eq!(ns(&page("topic=tickets&limit=2").await), [(4, 4), (5, 5)]);
    // Another tenant's topic does not exist for us.
    let private = page("topic=private").await;
    assert_eq!(private["events"], json!([]));
    assert_eq!(private["last_seq"], 0);

    for q in [
        "topic=t.%3E",
        "topic=",
        "",
        "topic=tickets&limit=0",
        "topic=tickets&limit=5000",
        "topic=tickets&after=-1",
        "topic=tickets&after=x",
    ] {
        let r = get(&c, env.at(&format!("/api/v2/events?{q}"))).await;
        assert_eq!(error_code(r, 400).await, "bad_request", "{q}");
    }
    let r = reqwest::get(env.at("/api/v2/events?topic=tickets"))
        .await
        .unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");
    // The publish token is for publishing only.
    let r = reqwest::Client::new()
        .get(env.at("/api/v2/events?topic=tickets"))
        .bearer_auth(PUBLISH_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");
    env.finish().await;
}

#[tokio::test]
async fn two_instances_publishing_at_once_give_gapless_seqs() {
    let env = spawn().await;
    let other = env.another_instance().await;
    let bases = [env.at(""), other];
    let c = reqwest::Client::new();
    const PER_INSTANCE: usize = 100;
    const BY_SQL: usize = 20;

    let tenant = env.tenant.clone();
    let http = bases.iter().flat_map(|base| {
        let c = c.clone();
        let tenant = tenant.clone();
        (0..PER_INSTANCE).map(move |i| {
            let c = c.clone();
            let base = base.clone();
            let tenant = tenant.clone();
            async move {
                let id = format!("{base}#{i}");
                let r = publish(
                    &c,
                    &base,
                    &tenant,
                    json!({"topic": "race", "event": "e", "payload": {"id": id}}),
                    None,
                )
                .await;
                (id, accepted_seq(r).await)
            }
        })
    });
    // Writers that are not the web service draw from the same counter.
    let sql = (0..BY_SQL).map(|i| {
        let pool = env.pool.clone();
        let tenant = env.tenant.clone();
        async move {
            let id = format!("sql#{i}");
            let seq = emit(&pool, &tenant, "race", "e", json!({"id": id})).await;
            (id, seq as u64)
        }
    });
    let (from_http, from_sql) = tokio::join!(
        futures::future::join_all(http.map(tokio::spawn)),
        futures::future::join_all(sql.map(tokio::spawn)),
    );
    let mut got: Vec<(String, u64)> = from_http
        .into_iter()
        .chain(from_sql)
        .map(|r| r.unwrap())
        .collect();
    let total = 2 * PER_INSTANCE + BY_SQL;
    assert_eq!(got.len(), total);

    // Every answer names a distinct seq, together exactly 1..=total.
    let mut seqs: Vec<u64> = got.iter().map(|g| g.1).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>());

    // The outbox agrees: one row per request, with the seq its publisher was told.
    let stored: Vec<(i64, Value)> = sqlx::query_as(
        "SELECT seq, payload FROM events WHERE tenant_id = $1 AND topic = 'race' ORDER BY seq",
    )
    .bind(&env.tenant)
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let mut stored: Vec<(String, u64)> = stored
        .into_iter()
        .map(|(seq, p)| (p["id"].as_str().unwrap().to_owned(), seq as u64))
        .collect();
    stored.sort();
    got.sort();
    assert_eq!(stored, got);
    let last: i64 = sqlx::query_scalar(
        "SELECT last_seq FROM event_topics WHERE tenant_id = $1 AND topic = 'race'",
    )
    .bind(&env.tenant)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(last, total as i64);
    env.finish().await;
}

#[tokio::test]
async fn concurrent_publishes_with_one_key_agree_on_one_event() {
    let env = spawn().await;
    let c = reqwest::Client::new();
    let base = env.at("");
    // Several rounds, each key sent at once by retries of one publish (`alpha`) and by
    // mistaken reuses of the key for another topic (`beta`), another event name or another
    // payload.
    for round in 0..5 {
        let key = format!("race-{round}");
        let requests = (0..24).map(|i| {
            let body = match i % 4 {
                0 => json!({"topic": "alpha", "event": "e", "payload": {"n": 1}}),
                1 => json!({"topic": "beta", "event": "e", "payload": {"n": 1}}),
                2 => json!({"topic": "alpha", "event": "other", "payload": {"n": 1}}),
                _ => json!({"topic": "alpha", "event": "e", "payload": {"n": i}}),
            };
            let (c, base, tenant, key) = (c.clone(), base.clone(), env.tenant.clone(), key.clone());
            tokio::spawn(async move {
                let r = publish(&c, &base, &tenant, body.clone(), Some(key.as_bytes())).await;
                let status = r.status().as_u16();
                (body, status, r.json::<Value>().await.unwrap())
            })
        });
        let answers: Vec<(Value, u16, Value)> = futures::future::join_all(requests)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();

        // One event holds the key; every answer is about that event.
        let (topic, event, seq, payload): (String, String, i64, Value) = sqlx::query_as(
            "SELECT topic::text, event, seq, payload FROM events \
              WHERE tenant_id = $1 AND idempotency_key = $2",
        )
        .bind(&env.tenant)
        .bind(&key)
        .fetch_one(&env.pool)
        .await
        .unwrap();
        for (body, status, answer) in &answers {
            if body["topic"] == topic.as_str()
                && body["event"] == event.as_str()
                && body["payload"] == payload
            {
                assert_eq!(*status, 202, "{body} → {answer}");
                assert_eq!(answer["seq"], seq, "{body} → {answer}");
                assert_eq!(
                    answer["subject"],
                    format!("pulse.v1.{}.events.{topic}", env.tenant)
                );
            } else {
                assert_eq!(
                    *status, 409,
                    "round {round}: the key holds {event:?} on {topic:?} seq {seq}, yet {body} → {answer}"
                );
                assert_eq!(answer["error"]["code"], "conflict");
            }
        }
    }
    // Five keys, five events, no seq lost on either topic.
    let per_topic: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT t.topic::text, t.last_seq, (SELECT count(*) FROM events e \
            WHERE e.tenant_id = t.tenant_id AND e.topic = t.topic) \
           FROM event_topics t WHERE t.tenant_id = $1 ORDER BY t.topic",
    )
    .bind(&env.tenant)
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let events: i64 = per_topic.iter().map(|t| t.2).sum();
    assert_eq!(events, 5, "{per_topic:?}");
    for (topic, last, count) in &per_topic {
        assert_eq!(last, count, "gap on {topic}: {per_topic:?}");
    }
    env.finish().await;
}

#[tokio::test]
async fn a_publish_key_flooding_past_its_rate_writes_nothing_per_refused_request() {
    // Refused requests must cost the database nothing that queues: a write per request on the
    // key's row (or a transaction per idempotency key) would hold pool connections behind one
    // row lock, and logins and other tenants would wait for them.
    let env = spawn_with_event_burst(1).await;
    let admin = env.login("admin", &env.tenant).await;
    let created = env.create_publish_key(&admin, "flooding-backend").await;
    let key = created["key"].as_str().unwrap().to_owned();
    let ev = json!({"topic": "flood", "event": "tick"});
    let mut accepted_sent = Instant::now();
    assert_eq!(env.publish_as(&key, &ev).await.status(), 202);
    // The row version of the key after its first use.
    let version = || async {
        sqlx::query_scalar::<_, String>("SELECT xmin::text FROM publish_keys WHERE key_id = $1")
            .bind(created["key_id"].as_i64().unwrap())
            .fetch_one(&env.pool)
            .await
            .unwrap()
    };
    let before = version().await;
    // With or without an idempotency key. The rate gives one event back a second, so a slow
    // run may see a publish accepted; never two within a second.
    let mut refused = 0;
    for i in 0.. {
        let sent = Instant::now();
        let mut request = reqwest::Client::new()
            .post(env.at("/api/v2/events"))
            .bearer_auth(&key)
            .json(&ev);
        if i % 2 == 1 {
            request = request.header("idempotency-key", format!("flood-{i}"));
        }
        let r = request.send().await.unwrap();
        if r.status() == 202 {
            assert!(
                accepted_sent.elapsed() >= Duration::from_secs(1),
                "request {i} accepted within a second of the last accepted one"
            );
            accepted_sent = sent;
            continue;
        }
        assert_eq!(error_code(r, 429).await, "rate_limited");
        refused += 1;
        if refused == 40 {
            break;
        }
    }
    assert_eq!(
        version().await,
        before,
        "refused requests rewrote the key's row"
    );
    env.finish().await;
}

/// Two instances behind a load balancer that sends each request anywhere count a tenant's
/// publishes against one rate: a publisher alternating between them gets the burst once, not
/// once per instance.
#[tokio::test]
async fn instances_behind_a_load_balancer_share_a_tenants_rate() {
    const BURST: u64 = 3;
    let env = spawn_with_event_burst(BURST as u32).await;
    let bases = [env.at(""), env.another_instance().await];
    let c = reqwest::Client::new();
    let ev = json!({"topic": "spread", "event": "tick"});
    let started = std::time::Instant::now();
    let mut accepted = 0;
    for i in 0..2 * BURST as usize {
        let r = publish(&c, &bases[i % 2], &env.tenant, ev.clone(), None).await;
        match r.status().as_u16() {
            202 => accepted += 1,
            429 => {}
            other => panic!("publish {i}: {other}"),
        }
    }
    // One event a second comes back to the bucket while the test runs.
    let refills = started.elapsed().as_secs();
    assert_eq!(accepted, BURST + refills, "accepted over both instances");
    assert_eq!(seqs(&env, "spread").await.len() as u64, accepted);
    env.finish().await;
}

#[tokio::test]
async fn a_tenants_publish_key_publishes_for_that_tenant_only_until_revoked() {
    let env = spawn().await;
    let admin = env.login("admin", &env.tenant).await;
    let r = post_json(
        &admin,
        env.at("/api/v2/publish-keys"),
        &json!({"name": "ticketing-backend"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("pulse_pk_") && key.len() > 60, "{key}");
    // Listed without the key itself.
    let listed: Value = get_json(&admin, env.at("/api/v2/publish-keys")).await;
    assert_eq!(listed["items"][0]["name"], "ticketing-backend");
    assert!(
        !listed.to_string().contains(&key[9..]),
        "the key is shown once only"
    );
    // Only admins manage keys: anyone else is told so whatever the request holds. An admin's
    // body that is not a key request, or is over the body limit, creates nothing.
    let viewer = env.login("viewer", &env.tenant).await;
    let r = get(&viewer, env.at("/api/v2/publish-keys")).await;
    assert_eq!(error_code(r, 403).await, "forbidden");
    let r = viewer
        .delete(env.at("/api/v2/publish-keys/not-a-number"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r, 403).await, "forbidden");
    let url = env.at("/api/v2/publish-keys");
    for (body, status, code) in [
        (json!({"title": "no name"}), 400, "bad_request"),
        (
            json!({"name": "x".repeat(200 * 1024)}),
            413,
            "payload_too_large",
        ),
    ] {
        let r = post_json(&viewer, url.clone(), &body).await;
        assert_eq!(error_code(r, 403).await, "forbidden");
        let r = post_json(&admin, url.clone(), &body).await;
        assert_eq!(error_code(r, status).await, code);
    }
    let listed: Value = get_json(&admin, env.at("/api/v2/publish-keys")).await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));

    // No tenant_id needed: the key names its tenant.
    let r = env
        .publish_as(&key, &json!({"topic": "tickets", "event": "ticket:open"}))
        .await;
    assert_eq!(r.status(), 202);
    let published: Value = r.json().await.unwrap();
    assert_eq!(
        published["subject"],
        format!("pulse.v1.{}.events.tickets", env.tenant)
    );
    let r = env
        .publish_as(
            &key,
            &json!({"topic": "tickets", "event": "x", "tenant_id": env.other_tenant}),
        )
        .await;
    assert_eq!(
        error_code(r, 403).await,
        "forbidden",
        "another tenant's events"
    );
    let r = env
        .publish_as(
            &format!("{key}0"),
            &json!({"topic": "tickets", "event": "x"}),
        )
        .await;
    assert_eq!(
        error_code(r, 401).await,
        "unauthorized",
        "a key that does not exist"
    );
    let used: Value = get_json(&admin, env.at("/api/v2/publish-keys")).await;
    assert!(used["items"][0]["last_used_at"].is_string(), "{used}");

    // Another tenant's admin cannot revoke it; its own admin can, and then it is dead.
    let other_admin = env.login("admin", &env.other_tenant).await;
    let path = format!("/api/v2/publish-keys/{}", created["key_id"]);
    let r = other_admin.delete(env.at(&path)).send().await.unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");
    let r = admin.delete(env.at(&path)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = env
        .publish_as(&key, &json!({"topic": "tickets", "event": "x"}))
        .await;
    assert_eq!(error_code(r, 401).await, "unauthorized", "a revoked key");
    env.finish().await;
}

/// A tenant holds at most 100 publish keys: the next is refused with 409, even when many are
/// asked for at once, until one is revoked.
#[tokio::test]
async fn a_tenant_holds_at_most_100_publish_keys() {
    let env = spawn().await;
    let admin = env.login("admin", &env.tenant).await;
    // 95 made beforehand; then ten asked for at once, of which five fit.
    sqlx::query(
        "INSERT INTO publish_keys (tenant_id, key_hash, name) \
         SELECT $1, sha256(g::text::bytea), 'k' || g FROM generate_series(1, 95) g",
    )
    .bind(&env.tenant)
    .execute(&env.pool)
    .await
    .unwrap();
    let url = env.at("/api/v2/publish-keys");
    let bodies: Vec<Value> = (0..10).map(|i| json!({"name": format!("n{i}")})).collect();
    let asks = bodies.iter().map(|b| post_json(&admin, url.clone(), b));
    let statuses: Vec<u16> = futures::future::join_all(asks)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        5,
        "{statuses:?}"
    );
    let r = post_json(&admin, url.clone(), &json!({"name": "one more"})).await;
    assert_eq!(error_code(r, 409).await, "conflict");
    // Another tenant is not held back by this one's keys.
    let other = env.login("admin", &env.other_tenant).await;
    let r = post_json(&other, url.clone(), &json!({"name": "theirs"})).await;
    assert_eq!(r.status(), 201);
    // A revoked key makes room for one.
    let listed: Value = get_json(&admin, url.clone()).await;
    let first = listed["items"][0]["key_id"].clone();
    let r = admin
        .delete(env.at(&format!("/api/v2/publish-keys/{first}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = post_json(&admin, url, &json!({"name": "replacement"})).await;
    assert_eq!(r.status(), 201);
}

/// An event committed while a page of history is read is both listed and counted in its
/// `last_seq`, or neither: never listed above it (the caller would take an event it holds for a
/// gap), never counted without being listed (the caller, taking `last_seq` as its position,
/// would drop it when it comes live). Staged by holding `events`, then `event_topics`, locked
/// while the read waits on it, and writing event 2 in that same transaction: each catches one of
/// the two statements read apart.
#[tokio::test]
async fn a_history_page_and_its_last_seq_agree_whatever_commits_meanwhile() {
    let env = spawn().await;
    let admin = env.login("admin", &env.tenant).await;
    for table in ["events", "event_topics"] {
        let topic = format!("race-{}", table.replace('_', "-"));
        let first = env
            .post_event(&admin, &json!({"topic": topic, "event": "e"}))
            .await;
        assert_eq!(accepted_seq(first).await, 1);
        let mut locked = env.lock(table).await;
        let url = env.at(&format!("/api/v2/events?topic={topic}"));
        let read = tokio::spawn({
            let admin = admin.clone();
            async move { get_json(&admin, url).await }
        });
        eventually(
            "the read waits on the lock",
            Duration::from_secs(10),
            || env.lock_waited_for(),
        )
        .await;
        sqlx::query("SELECT pulse_emit_event($1, $2, 'e', 'null')")
            .bind(&env.tenant)
            .bind(&topic)
            .execute(&mut *locked)
            .await
            .unwrap();
        locked.commit().await.unwrap();
        let page: Value = read.await.unwrap();
        let last = page["last_seq"].as_u64().unwrap();
        assert!((1..=2).contains(&last), "{table}: {page}");
        assert_eq!(
            page_seqs(&page),
            (1..=last).collect::<Vec<_>>(),
            "{table}: {page}"
        );
    }
    env.finish().await;
}

/// The `seq` of each event of a history page, in order.
fn page_seqs(page: &Value) -> Vec<u64> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}
