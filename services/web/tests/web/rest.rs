//! The tenant REST API: scoping, pagination, errors, events, and the OpenAPI document.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn everything_is_scoped_to_the_callers_tenant() {
    let env = spawn().await;
    env.execute(
        "INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary) \
         VALUES ($1, 'dev-0001', 'site-01', 't', 3, 'mine'), \
                ($2, 'dev-0001', 'site-01', 't', 3, 'theirs')",
        &[&env.tenant, &env.other_tenant],
    )
    .await;
    env.execute(
        "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) \
         VALUES ($1, 'dev-0002', now(), '{\"who\":\"theirs\"}')",
        &[&env.other_tenant],
    )
    .await;
    let c = env.login("viewer", &env.tenant).await;

    let alerts: Value = get_json(&c, env.at("/api/v2/alerts")).await;
    assert_eq!(summaries(&alerts), ["mine"]);
    // The same device id exists in the other tenant; only ours is visible.
    let d: Value = get_json(&c, env.at("/api/v2/devices/dev-0002")).await;
    assert_eq!(
        d["latest"],
        Value::Null,
        "another tenant's reading leaked: {d}"
    );
    let t: Value = get_json(&c, env.at("/api/v2/devices/dev-0002/telemetry")).await;
    assert_eq!(t["items"], json!([]));
    let fleet: Value = get_json(&c, env.at("/api/v2/fleet")).await;
    assert_eq!(fleet["type"], "fleet");
    assert_eq!(fleet["tenant_id"], env.tenant.as_str());
    assert_eq!(fleet["counts"]["total"], 3);
    assert_eq!(fleet["counts"]["offline"], 3);
    assert_eq!(fleet["devices"].as_array().map(Vec::len), Some(3));
    // It lists as many devices as the poller's pushes do (PULSE_FLEET_DEVICES_CAP, recorded).
    let capped = pulse_db::settings::Applied {
        fleet_devices_cap: 2,
        ..Default::default()
    };
    pulse_db::settings::write(&env.pool, &capped).await.unwrap();
    let fleet: Value = get_json(&c, env.at("/api/v2/fleet")).await;
    assert_eq!(fleet["devices"].as_array().map(Vec::len), Some(2));
    assert_eq!(fleet["counts"]["total"], 3);
    env.finish().await;
}

/// A reading PostgreSQL holds but a decoded JSON value cannot (a number past a double, more
/// digits than one keeps) is listed as stored, every digit, in the history and as the latest.
#[tokio::test]
async fn a_reading_only_postgresql_can_hold_is_listed_as_stored() {
    let env = spawn().await;
    let metrics = r#"{"x": 1e400, "id": 123456789012345678901234}"#;
    let insert = format!(
        "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) \
         VALUES ($1, 'dev-0001', now(), '{metrics}'::jsonb)"
    );
    env.execute(&insert, &[&env.tenant]).await;
    let c = env.login("viewer", &env.tenant).await;
    for path in [
        "/api/v2/devices/dev-0001",
        "/api/v2/devices/dev-0001/telemetry",
    ] {
        let r = get(&c, env.at(path)).await;
        assert_eq!(r.status(), 200, "{path}");
        let text = r.text().await.unwrap();
        let huge = format!("1{}", "0".repeat(400));
        assert!(
            text.contains(&format!(r#"{{"x":{huge},"id":123456789012345678901234}}"#)),
            "{path}: {text}"
        );
    }
    env.finish().await;
}

/// Of readings with one timestamp, the one written last is the newest (the contract's rule, and
/// the poller's): it is the device's latest, and the last of them in the history (oldest
/// first), so a client merging the page keeps it, as it kept the push.
#[tokio::test]
async fn of_readings_with_one_timestamp_the_one_written_last_is_the_newest() {
    let env = spawn().await;
    let at = "2026-11-30T10:00:00Z";
    let c = env.login("viewer", &env.tenant).await;
    let shown = async || {
        let detail: Value = get_json(&c, env.at("/api/v2/devices/dev-0001")).await;
        let history: Value = get_json(&c, env.at("/api/v2/devices/dev-0001/telemetry")).await;
        let items = history["items"].as_array().unwrap().clone();
        (
            detail["latest"]["metrics"]["v"].clone(),
            items.last().unwrap()["metrics"]["v"].clone(),
        )
    };
    // Each write a transaction of its own: the later one has the higher transaction id.
    for v in ["1", "2"] {
        let insert = format!(
            "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) \
             VALUES ($1, 'dev-0001', '{at}', '{{\"v\": {v}}}'::jsonb)"
        );
        env.execute(&insert, &[&env.tenant]).await;
    }
    assert_eq!(shown().await, (json!(2), json!(2)));
    // A correction of the first row is now the one written last.
    env.execute(
        "UPDATE telemetry SET metrics = '{\"v\": 3}' WHERE tenant_id = $1 AND metrics = '{\"v\": 1}'",
        &[&env.tenant],
    )
    .await;
    assert_eq!(shown().await, (json!(3), json!(3)));
    env.finish().await;
}

#[tokio::test]
async fn devices_page_and_telemetry_history() {
    let env = spawn().await;
    env.execute(
        "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) \
         SELECT $1, 'dev-0001', now() - make_interval(secs => g), jsonb_build_object('n', g) \
           FROM generate_series(1, 5) g",
        &[&env.tenant],
    )
    .await;
    let c = env.login("viewer", &env.tenant).await;
    let page: Value = get_json(&c, env.at("/api/v2/devices?limit=2")).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["next"], "dev-0002");
    let rest: Value = get_json(&c, env.at("/api/v2/devices?limit=2&after=dev-0002")).await;
    assert_eq!(rest["items"][0]["device_id"], "dev-0003");
    assert_eq!(rest["next"], Value::Null);
    assert_eq!(page["items"][0]["status"], "ONLINE");

    let detail: Value = get_json(&c, env.at("/api/v2/devices/dev-0001")).await;
    assert_eq!(detail["latest"]["metrics"]["n"], 1);
    let history: Value = get_json(&c, env.at("/api/v2/devices/dev-0001/telemetry?limit=3")).await;
    let ns: Vec<i64> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metrics"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [3, 2, 1], "the newest three, oldest first");
    env.finish().await;
}

/// Without the poller's recorded settings (unreadable here), devices and the fleet are still
/// served, with the default thresholds, not a 500.
#[tokio::test]
async fn unreadable_settings_give_the_defaults_not_an_error() {
    let env = spawn().await;
    env.execute("REVOKE SELECT ON pulse_settings FROM pulse_tenant", &[])
        .await;
    let c = env.login("viewer", &env.tenant).await;
    for path in [
        "/api/v2/devices",
        "/api/v2/devices/dev-0001",
        "/api/v2/fleet",
    ] {
        let r = c.get(env.at(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap());
    }
    env.finish().await;
}

/// A small tenant among many: its alert pages read its own index entries, not the whole table
/// filtered by row-level security, whichever plan PostgreSQL takes.
#[tokio::test]
async fn an_alert_page_reads_only_the_tenants_own_alerts() {
    let env = spawn().await;
    let mine = "INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary, status) \
                VALUES ($1, 'dev-0001', 'site-01', 't', 1, $2, $3)";
    // One alert of ours older than all of theirs, one newer. Theirs: 200,000 of 300 tenants,
    // more tenants than the column's statistics single out, so the planner takes ours for an
    // average one.
    env.execute(mine, &[&env.tenant, "old", "CLOSED"]).await;
    env.execute(
        "INSERT INTO tenants (tenant_id, name) SELECT $1 || i, 'other' FROM generate_series(1, 300) i",
        &[&env.other_tenant],
    )
    .await;
    env.execute(
        "INSERT INTO devices (tenant_id, device_id, site_id) SELECT tenant_id, 'd', 's' FROM tenants WHERE name = 'other'",
        &[],
    )
    .await;
    // Without a notification per row: the bulk load stages the table, not a change feed.
    env.execute("ALTER TABLE alerts DISABLE TRIGGER USER", &[])
        .await;
    env.execute(
        "INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary, status) \
         SELECT $1 || (1 + g % 300), 'd', 's', 't', 1, 'theirs', \
                CASE WHEN g % 3 = 0 THEN 'OPEN' ELSE 'CLOSED' END \
           FROM generate_series(1, 200000) g",
        &[&env.other_tenant],
    )
    .await;
    env.execute("ALTER TABLE alerts ENABLE TRIGGER USER", &[])
        .await;
    env.execute(mine, &[&env.tenant, "new", "OPEN"]).await;
    env.execute("ANALYZE alerts", &[]).await;

    use pulse_web::api::alerts::{PAGE, PAGE_IN_STATUS};
    let max = i64::MAX;
    for (sql, args, rows) in [
        (PAGE, format!("{max}, 101"), 2),
        (PAGE_IN_STATUS, format!("'CLOSED', {max}, 101"), 1),
        (PAGE_IN_STATUS, format!("'ACKNOWLEDGED', {max}, 101"), 0),
    ] {
        assert_every_plan_reads_only_what_it_returns(&env, sql, &args, rows).await;
    }

    let c = env.login("viewer", &env.tenant).await;
    let page: Value = get_json(&c, env.at("/api/v2/alerts?limit=1")).await;
    assert_eq!(page["items"][0]["summary"], "new");
    let next = page["next"].as_i64().unwrap();
    let rest: Value = get_json(&c, env.at(&format!("/api/v2/alerts?before={next}"))).await;
    assert_eq!(summaries(&rest), ["old"]);
    env.finish().await;
}

/// Open alerts at or above a severity, paged: the critical alerts a capped `alerts` snapshot
/// leaves out can be listed, and a page reads the open alerts at or above the severity, not
/// the tenant's other open alerts.
#[tokio::test]
async fn open_alerts_at_or_above_a_severity_are_paged_without_reading_the_others() {
    let env = spawn().await;
    // Oldest first: five critical open alerts (severities 4 and 5) among 2,000 lesser ones,
    // and critical ones that are no longer open.
    load_alerts(
        &env,
        &env.tenant,
        &[
            (5, "critical-a", "OPEN", 2),
            (1, "minor-a", "OPEN", 1000),
            (4, "critical-b", "OPEN", 3),
            (5, "closed", "CLOSED", 2),
            (2, "minor-b", "OPEN", 1000),
        ],
    )
    .await;

    let c = env.login("viewer", &env.tenant).await;
    let mut listed = Vec::new();
    for a in every_item(
        &env,
        &c,
        "/api/v2/alerts?status=OPEN&min_severity=4&limit=2",
        "before",
    )
    .await
    {
        assert_eq!(a["status"], "OPEN", "{a}");
        assert!(a["severity"].as_i64().unwrap() >= 4, "{a}");
        listed.push(a["summary"].as_str().unwrap().to_string());
    }
    assert_eq!(
        listed,
        [
            "critical-b3",
            "critical-b2",
            "critical-b1",
            "critical-a2",
            "critical-a1"
        ],
        "every critical open alert once, newest first"
    );
    // Any status: the closed ones too; a severity above every alert: none.
    let all: Value = get_json(&c, env.at("/api/v2/alerts?min_severity=5")).await;
    assert_eq!(
        summaries(&all),
        ["closed2", "closed1", "critical-a2", "critical-a1"]
    );
    // 0 filters nothing (every severity is 0 or more).
    let newest: Value = get_json(
        &c,
        env.at("/api/v2/alerts?status=OPEN&min_severity=0&limit=1"),
    )
    .await;
    assert_eq!(newest["items"][0]["summary"], "minor-b1000");
    let none: Value = get_json(&c, env.at("/api/v2/alerts?status=open&min_severity=6")).await;
    assert_eq!(none["items"], json!([]));
    assert_eq!(none["next"], Value::Null);

    // Every plan reads the page twice (merged, then read by id) and two rows per critical
    // severity open (4 and 5), never the 2,000 others.
    use pulse_web::api::alerts::PAGE_MIN_SEVERITY;
    let max = i64::MAX;
    let args = format!("'{{OPEN}}', 4, {max}, 3");
    assert_every_plan_reads_at_most(&env, PAGE_MIN_SEVERITY, &args, 3, 2 * 3 + 2 * 2).await;
    env.finish().await;
}

/// However many alerts reach the severity and whichever status is asked for, a page at or
/// above a severity reads about itself and two rows per severity present: not every such
/// alert, nor the lesser alerts newer than them.
#[tokio::test]
async fn a_page_at_or_above_a_severity_reads_about_itself_in_any_status() {
    let env = spawn().await;
    load_alerts(
        &env,
        &env.tenant,
        &[
            (5, "open-critical", "OPEN", 500),
            (4, "closed-major", "CLOSED", 3),
            (1, "open-minor", "OPEN", 1000),
            (2, "closed-minor", "CLOSED", 1000),
            (4, "acked", "ACKNOWLEDGED", 2),
        ],
    )
    .await;
    // Another tenant's, newer and at the same severities in every status: neither listed nor
    // read.
    load_alerts(
        &env,
        &env.other_tenant,
        &[
            (5, "theirs-open", "OPEN", 300),
            (4, "theirs-acked", "ACKNOWLEDGED", 300),
            (4, "theirs-closed", "CLOSED", 300),
        ],
    )
    .await;

    let c = env.login("viewer", &env.tenant).await;
    let closed: Value = get_json(
        &c,
        env.at("/api/v2/alerts?status=CLOSED&min_severity=4&limit=2"),
    )
    .await;
    assert_eq!(summaries(&closed), ["closed-major3", "closed-major2"]);
    let next = closed["next"].as_i64().unwrap();
    let rest: Value = get_json(
        &c,
        env.at(&format!(
            "/api/v2/alerts?status=CLOSED&min_severity=4&limit=2&before={next}"
        )),
    )
    .await;
    assert_eq!(summaries(&rest), ["closed-major1"]);
    assert_eq!(rest["next"], Value::Null);
    // Any status: newest first across them.
    let any: Value = get_json(&c, env.at("/api/v2/alerts?min_severity=4&limit=4")).await;
    assert_eq!(
        summaries(&any),
        ["acked2", "acked1", "closed-major3", "closed-major2"]
    );
    let next = any["next"].as_i64().unwrap();
    let rest: Value = get_json(
        &c,
        env.at(&format!(
            "/api/v2/alerts?min_severity=4&limit=4&before={next}"
        )),
    )
    .await;
    assert_eq!(
        summaries(&rest),
        [
            "closed-major1",
            "open-critical500",
            "open-critical499",
            "open-critical498"
        ]
    );

    // Pages of 3: one severity at or above 4 is open, one acknowledged, one closed. A page is
    // read twice (merged, then by id), and each level costs two rows.
    use pulse_web::api::alerts::PAGE_MIN_SEVERITY;
    let max = i64::MAX;
    for (statuses, levels) in [
        ("{OPEN}", 1),
        ("{CLOSED}", 1),
        ("{OPEN,ACKNOWLEDGED,CLOSED}", 3),
    ] {
        let args = format!("'{statuses}', 4, {max}, 3");
        assert_every_plan_reads_at_most(&env, PAGE_MIN_SEVERITY, &args, 3, 2 * 3 + 2 * levels)
            .await;
    }

    // Severities interleaved in one status merge into one list, newest first.
    env.execute(
        "INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary, status) \
         SELECT $1, 'dev-0001', 'site-01', 't', 4 + g % 2, 'mixed' || g, 'ACKNOWLEDGED' FROM generate_series(1, 6) g",
        &[&env.tenant],
    )
    .await;
    let path = "/api/v2/alerts?status=ACKNOWLEDGED&min_severity=4&limit=4";
    let listed = every_item(&env, &c, path, "before").await;
    assert_eq!(
        listed
            .iter()
            .map(|a| a["summary"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [
            "mixed6", "mixed5", "mixed4", "mixed3", "mixed2", "mixed1", "acked2", "acked1"
        ]
    );
    env.finish().await;
}

/// A device's readings after an instant, and a page of devices after one, read only what they
/// return: whichever plan PostgreSQL takes (a connection that ran a statement a few times takes
/// a generic one), the index range starts at `since` or `after`, not at the device's oldest
/// reading or the tenant's first device.
#[tokio::test]
async fn readings_since_an_instant_and_devices_after_one_read_only_what_they_return() {
    let env = spawn().await;
    // Without a notification per row: the bulk load stages the tables, not a change feed.
    env.execute("ALTER TABLE telemetry DISABLE TRIGGER USER", &[])
        .await;
    env.execute(
        "INSERT INTO telemetry (tenant_id, device_id, ts, metrics) \
         SELECT $1, 'dev-0001', date_trunc('second', now()) - make_interval(secs => g), \
                jsonb_build_object('n', g) \
           FROM generate_series(1, 3000) g",
        &[&env.tenant],
    )
    .await;
    env.execute("ALTER TABLE telemetry ENABLE TRIGGER USER", &[])
        .await;
    env.execute(
        "INSERT INTO devices (tenant_id, device_id, site_id) \
         SELECT $1, 'dev-x-' || lpad(g::text, 4, '0'), 'site-01' FROM generate_series(1, 2000) g",
        &[&env.tenant],
    )
    .await;
    env.execute("ANALYZE telemetry", &[]).await;
    env.execute("ANALYZE devices", &[]).await;

    use pulse_web::api::devices::{DEVICES, DEVICES_AFTER, READINGS, READINGS_SINCE};
    // Ten readings after it.
    let since: String = sqlx::query_scalar(
        "SELECT (max(ts) - interval '10 seconds')::text FROM telemetry \
          WHERE tenant_id = $1 AND device_id = 'dev-0001'",
    )
    .bind(&env.tenant)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    for (sql, args, rows) in [
        (READINGS, "'dev-0001', 5".to_string(), 5),
        (READINGS_SINCE, format!("'dev-0001', '{since}', 100"), 10),
        (DEVICES, "5".to_string(), 5),
        (DEVICES_AFTER, "'dev-x-1990', 100".to_string(), 10),
    ] {
        assert_every_plan_reads_only_what_it_returns(&env, sql, &args, rows).await;
    }

    // Through the API: the newest readings after `since`, oldest first.
    let c = env.login("viewer", &env.tenant).await;
    let newest: Value = get_json(&c, env.at("/api/v2/devices/dev-0001/telemetry?limit=1")).await;
    let at = newest["items"][0]["timestamp"].as_str().unwrap();
    let since = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .unwrap()
        - time::Duration::seconds(10);
    let since = since
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    // Each reading's `n` is how many seconds before the newest it was taken, plus one.
    let after_since = |limit: u32| {
        let url = env.at(&format!(
            "/api/v2/devices/dev-0001/telemetry?since={}&limit={limit}",
            since.replace('+', "%2B")
        ));
        let c = &c;
        async move {
            let page: Value = get_json(c, url).await;
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["metrics"]["n"].as_i64().unwrap())
                .collect::<Vec<i64>>()
        }
    };
    assert_eq!(after_since(3).await, [3, 2, 1]);
    assert_eq!(after_since(100).await, (1..=10).rev().collect::<Vec<_>>());
    env.finish().await;
}

/// A site's devices, paged: a small site among a tenant's many devices is read from its own
/// index range, whichever plan PostgreSQL takes, not found by walking every device of the
/// tenant and dropping the other sites'.
#[tokio::test]
async fn a_sites_devices_are_read_without_the_other_sites() {
    let env = spawn().await;
    // 3,000 devices of a large site, and 3 of a small one sorted after all of them.
    env.execute(
        "INSERT INTO devices (tenant_id, device_id, site_id) \
         SELECT $1, 'big-' || lpad(g::text, 4, '0'), 'site-big' FROM generate_series(1, 3000) g \
         UNION ALL \
         SELECT $1, 'small-' || g, 'site-small' FROM generate_series(1, 3) g",
        &[&env.tenant],
    )
    .await;
    env.execute("ANALYZE devices", &[]).await;

    let c = env.login("viewer", &env.tenant).await;
    let mut listed = Vec::new();
    for d in every_item(
        &env,
        &c,
        "/api/v2/devices?site_id=site-small&limit=2",
        "after",
    )
    .await
    {
        assert_eq!(d["site_id"], "site-small", "{d}");
        listed.push(d["device_id"].as_str().unwrap().to_string());
    }
    assert_eq!(listed, ["small-1", "small-2", "small-3"]);
    let big: Value = get_json(
        &c,
        env.at("/api/v2/devices?site_id=site-big&limit=2&after=big-2999"),
    )
    .await;
    assert_eq!(big["items"].as_array().unwrap().len(), 1, "{big}");
    assert_eq!(big["next"], Value::Null);

    use pulse_web::api::devices::{SITE_DEVICES, SITE_DEVICES_AFTER};
    for (sql, args, rows) in [
        (SITE_DEVICES, "'site-small', 100", 3),
        (SITE_DEVICES_AFTER, "'small-1', 'site-small', 100", 2),
    ] {
        assert_every_plan_reads_only_what_it_returns(&env, sql, args, rows).await;
    }
    // Of a large site a plan may walk the tenant's devices from `after` instead, dropping the
    // few of other sites on the way (the 3 small ones and the 3 the set-up seeds), but never
    // from the tenant's first device.
    let (sql, args) = (SITE_DEVICES_AFTER, "'big-2990', 'site-big', 100");
    assert_every_plan_reads_at_most(&env, sql, args, 10, 10 + 6).await;
    env.finish().await;
}

/// Loads batches of `(severity, summary, status, count)` alerts for `tenant`, oldest batch
/// first (each alert's summary is the batch's and its number in it), without a notification
/// per row, then refreshes the planner's statistics.
async fn load_alerts(env: &Env, tenant: &str, batches: &[(i32, &str, &str, i32)]) {
    env.execute("ALTER TABLE alerts DISABLE TRIGGER USER", &[])
        .await;
    for &(severity, summary, status, n) in batches {
        let (severity, n) = (severity.to_string(), n.to_string());
        env.execute(
            "INSERT INTO alerts (tenant_id, device_id, site_id, alert_type, severity, summary, status) \
             SELECT $1, 'dev-0001', 'site-01', 't', $2::text::int, $3 || g, $4 FROM generate_series(1, $5::text::int) g",
            &[tenant, &severity, summary, status, &n],
        )
        .await;
    }
    env.execute("ALTER TABLE alerts ENABLE TRIGGER USER", &[])
        .await;
    env.execute("ANALYZE alerts", &[]).await;
}

/// The items of every page from `path` on, in order: each next page is asked for by passing
/// the previous page's `next` as `cursor`, until a page has none.
async fn every_item(env: &Env, c: &reqwest::Client, path: &str, cursor: &str) -> Vec<Value> {
    let (mut items, mut url) = (Vec::new(), env.at(path));
    loop {
        let mut page: Value = get_json(c, url).await;
        items.append(page["items"].as_array_mut().unwrap());
        let next = match page["next"].take() {
            Value::Null => return items,
            Value::String(next) => next,
            next => next.to_string(),
        };
        url = env.at(&format!("{path}&{cursor}={next}"));
    }
}

/// The `summary` of every alert of a page, in its order.
fn summaries(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["summary"].as_str().unwrap())
        .collect()
}

/// Runs `sql` with `args` (SQL literals) as the env's tenant, once under a custom plan and once
/// under the generic plan PostgreSQL takes for a statement a connection has run a few times,
/// and checks that each returns `rows` rows and reads none it then drops.
async fn assert_every_plan_reads_only_what_it_returns(env: &Env, sql: &str, args: &str, rows: u64) {
    for (mode, plan) in every_plan(env, sql, args).await {
        let top = &plan[0]["Plan"];
        assert_eq!(top["Actual Rows"], rows, "{mode}, {sql}: {plan}");
        assert_eq!(
            removed_by_filter(top),
            0,
            "{mode}, {sql}: read rows it did not return: {plan}"
        );
    }
}

/// As [`assert_every_plan_reads_only_what_it_returns`], for a statement that sorts what it
/// reads: each plan returns `rows` rows and reads at most `read` in all.
async fn assert_every_plan_reads_at_most(env: &Env, sql: &str, args: &str, rows: u64, read: u64) {
    for (mode, plan) in every_plan(env, sql, args).await {
        let top = &plan[0]["Plan"];
        assert_eq!(top["Actual Rows"], rows, "{mode}, {sql}: {plan}");
        assert!(
            rows_read(top) <= read,
            "{mode}, {sql}: read more than {read} rows: {plan}"
        );
    }
}

/// The analysed plans of `sql` with `args` as the env's tenant: under a custom plan, and under
/// the generic plan PostgreSQL takes for a statement a connection has run a few times.
async fn every_plan(env: &Env, sql: &str, args: &str) -> Vec<(&'static str, Value)> {
    let tenant = pulse_proto::TenantId::parse(env.tenant.clone()).unwrap();
    let mut plans = Vec::new();
    for mode in ["force_custom_plan", "force_generic_plan"] {
        let mut tx = pulse_db::roles::begin_as_tenant(&env.pool, &tenant)
            .await
            .unwrap();
        for setup in [
            format!("SET LOCAL plan_cache_mode = {mode}"),
            format!("PREPARE page AS {sql}"),
        ] {
            sqlx::raw_sql(&setup).execute(&mut *tx).await.unwrap();
        }
        let plan: Value = sqlx::query_scalar(&format!(
            "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE page({args})"
        ))
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        sqlx::raw_sql("DEALLOCATE page")
            .execute(&mut *tx)
            .await
            .unwrap();
        plans.push((mode, plan));
    }
    plans
}

/// Rows the plan's scans of tables read, kept or dropped (a scan of a CTE's rows reads no table).
fn rows_read(node: &Value) -> u64 {
    let own = if node["Relation Name"].is_string() {
        let loops = node["Actual Loops"].as_u64().unwrap_or(1);
        (node["Actual Rows"].as_u64().unwrap_or(0) + removed_here(node)) * loops
    } else {
        0
    };
    let below = node["Plans"]
        .as_array()
        .map_or(0, |plans| plans.iter().map(rows_read).sum());
    own + below
}

/// Rows a plan node and those below it read and then dropped.
fn removed_by_filter(node: &Value) -> u64 {
    let own = removed_here(node);
    let below = node["Plans"]
        .as_array()
        .map_or(0, |plans| plans.iter().map(removed_by_filter).sum());
    own + below
}

/// Rows the plan node itself read and then dropped.
fn removed_here(node: &Value) -> u64 {
    ["Rows Removed by Filter", "Rows Removed by Index Recheck"]
        .iter()
        .filter_map(|key| node[key].as_u64())
        .sum()
}

#[tokio::test]
async fn bad_parameters_get_400_and_missing_things_404() {
    let env = spawn().await;
    let c = env.login("viewer", &env.tenant).await;
    let bad = [
        "/api/v2/devices?limit=0",
        "/api/v2/devices?limit=5000",
        "/api/v2/devices?limit=abc",
        "/api/v2/devices?after=a.b",
        "/api/v2/devices/a.b",
        "/api/v2/devices/%3E",
        "/api/v2/devices/dev-0001/telemetry?since=yesterday",
        // Year 9999 behind UTC: RFC 3339, but past every instant a timestamp holds.
        "/api/v2/devices/dev-0001/telemetry?since=9999-12-31T23:00:00-01:00",
        "/api/v2/alerts?status=BOGUS",
        "/api/v2/alerts?min_severity=-1",
        "/api/v2/alerts?min_severity=high",
        "/api/v2/alerts?min_severity=99999999999",
        // A parameter the route does not take: a misspelt filter, or another route's cursor.
        "/api/v2/alerts?min_severit=4",
        "/api/v2/alerts?after=123",
        "/api/v2/devices?before=dev-0001",
        "/api/v2/devices/dev-0001/telemetry?sinse=x",
        "/api/v2/events?topic=t&before=3",
        // Routes that take none.
        "/api/v2/fleet?before=1",
        "/api/v2/devices/dev-0001?limit=5",
        "/api/v2/me?x=1",
        "/api/v2/ws-ticket?x=1",
    ];
    let missing = [
        "/api/v2/devices/nope",
        "/api/v2/devices/nope/telemetry",
        "/api/v2/no-such-route",
    ];
    let expected = (bad.iter().map(|path| (path, 400, "bad_request")))
        .chain(missing.iter().map(|path| (path, 404, "not_found")));
    for (path, status, code) in expected {
        let r = get(&c, env.at(path)).await;
        let got = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
    }
    let admin = env.login("admin", &env.tenant).await;
    let r = get(&admin, env.at("/api/v2/publish-keys?x=1")).await;
    assert_eq!(error_code(r, 400).await, "bad_request");
    // A known path asked with a method it does not take: 405, the JSON error and `Allow`.
    for (method, path, allow) in [
        (reqwest::Method::DELETE, "/api/v2/events", "GET,HEAD,POST"),
        (reqwest::Method::PUT, "/api/v2/devices/dev-0001", "GET,HEAD"),
        (reqwest::Method::POST, "/api/v2/fleet", "GET,HEAD"),
        (reqwest::Method::GET, "/api/v2/publish-keys/1", "DELETE"),
    ] {
        let r = c
            .request(method.clone(), env.at(path))
            .send()
            .await
            .unwrap();
        let allowed = r
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().replace(' ', ""));
        let mut allowed: Vec<String> = allowed
            .unwrap_or_default()
            .split(',')
            .map(str::to_owned)
            .collect();
        allowed.sort();
        assert_eq!(allowed.join(","), allow, "{method} {path}");
        assert_eq!(
            error_code(r, 405).await,
            "method_not_allowed",
            "{method} {path}"
        );
    }
    let anonymous = reqwest::Client::new();
    for path in [
        "/api/v2/devices",
        "/api/v2/alerts",
        "/api/v2/fleet",
        "/api/v2/devices/dev-0001",
    ] {
        assert_eq!(
            error_code(get(&anonymous, env.at(path)).await, 401).await,
            "unauthorized",
            "{path}"
        );
    }
    env.finish().await;
}

#[tokio::test]
async fn admins_and_services_publish_events_viewers_cannot() {
    let env = spawn().await;
    let admin = env.login("admin", &env.tenant).await;
    let r = env
        .post_event(
            &admin,
            &json!({"topic": "tickets", "event": "ticket:update", "payload": {"id": 7}}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["seq"], 1, "{first}");
    assert_eq!(
        first["subject"],
        format!("pulse.v1.{}.events.tickets", env.tenant)
    );

    let r = env
        .publish_as(
            PUBLISH_TOKEN,
            &json!({"tenant_id": env.tenant, "topic": "tickets", "event": "ticket:close"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let second: Value = r.json().await.unwrap();
    assert_eq!(second["seq"], 2, "{second}");

    let viewer = env.login("viewer", &env.tenant).await;
    let r = env
        .post_event(&viewer, &json!({"topic": "tickets", "event": "x"}))
        .await;
    assert_eq!(error_code(r, 403).await, "forbidden");
    // Hostile ids in the body are refused with a message that names the field.
    let huge = "t".repeat(10_000);
    for bad in ["t.>", ">", "*", "a.b", "", huge.as_str()] {
        let r = env
            .post_event(&admin, &json!({"topic": bad, "event": "x"}))
            .await;
        assert_refused_naming(r, "topic").await;
        let r = env
            .publish_as(
                PUBLISH_TOKEN,
                &json!({"tenant_id": bad, "topic": "tickets", "event": "x"}),
            )
            .await;
        assert_refused_naming(r, "tenant_id").await;
    }
    let r = env
        .post_event(
            &admin,
            &json!({"topic": "tickets", "event": "x", "tenant_id": env.other_tenant}),
        )
        .await;
    assert_eq!(error_code(r, 403).await, "forbidden");
    let r = env
        .publish_as(
            "wrong-token",
            &json!({"tenant_id": env.tenant, "topic": "tickets", "event": "x"}),
        )
        .await;
    assert_eq!(error_code(r, 401).await, "unauthorized");
    // Credentials are checked before the body is read: without them, whatever the body, 401.
    for body in ["not json", r#"{"topic": "a.b"}"#] {
        let r = post_raw_json(&reqwest::Client::new(), env.at("/api/v2/events"), body).await;
        assert_eq!(error_code(r, 401).await, "unauthorized", "{body}");
    }

    // Exactly the two accepted events are in the outbox, seqs 1 and 2; the refused ones left
    // nothing behind, in either tenant.
    let rows: Vec<(String, String, i64, String, Value)> = sqlx::query_as(
        "SELECT tenant_id::text, topic::text, seq, event, payload FROM events \
          WHERE topic <> 'activity' ORDER BY tenant_id, topic, seq",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let t = env.tenant.clone();
    assert_eq!(
        rows,
        [
            (
                t.clone(),
                "tickets".into(),
                1,
                "ticket:update".into(),
                json!({"id": 7})
            ),
            (t, "tickets".into(), 2, "ticket:close".into(), Value::Null),
        ]
    );
    // The same events, as clients read them back.
    let page: Value = get_json(&viewer, env.at("/api/v2/events?topic=tickets")).await;
    assert_eq!(page["topic"], "tickets");
    assert_eq!(page["last_seq"], 2);
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{page}");
    assert_eq!(events[0]["type"], "event");
    assert_eq!(events[0]["tenant_id"], env.tenant.as_str());
    assert_eq!(events[0]["topic"], "tickets");
    assert_eq!(events[0]["event"], "ticket:update");
    assert_eq!(events[0]["payload"], json!({"id": 7}));
    assert_eq!(events[0]["seq"], 1);
    assert_eq!(events[1]["event"], "ticket:close");
    assert_eq!(events[1]["seq"], 2);
    env.finish().await;
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let env = spawn().await;
    let doc: Value = reqwest::get(env.at("/api/v2/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 10, "{}", paths.len());
    // Every schema an operation refers to is in the document.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let refs = references(&doc);
    assert!(refs.len() >= 10, "{refs:?}");
    for name in refs {
        assert!(
            schemas.contains_key(&name),
            "{name} is referred to but not in the document"
        );
    }
    let c = env.login("admin", &env.tenant).await;
    // A key that exists, for the documented DELETE.
    let key = env.create_publish_key(&c, "openapi").await;
    let key_id = key["key_id"].to_string();
    // A query parameter the route does not know, and a path id of the wrong form: 400, and
    // documented so (before anything else, while the session is live: one operation logs out).
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let mut urls = vec![env.at(&format!(
                "{}?bogus=1",
                path.replace("{device_id}", "dev-0001")
                    .replace("{key_id}", &key_id)
            ))];
            if path.contains('{') {
                urls.push(
                    env.at(&path
                        .replace("{device_id}", "a.b")
                        .replace("{key_id}", "abc")),
                );
            }
            for url in urls {
                let r = match method.as_str() {
                    "get" => c.get(&url).send().await.unwrap(),
                    "post" => c.post(&url).json(&json!({})).send().await.unwrap(),
                    _ => c.delete(&url).send().await.unwrap(),
                };
                assert_eq!(r.status(), 400, "{method} {url}");
                assert!(
                    ops[method]["responses"].get("400").is_some(),
                    "{method} {path} answers 400 but does not say so"
                );
            }
        }
    }
    for (path, ops) in paths {
        let url = env.at(&path
            .replace("{device_id}", "dev-0001")
            .replace("{key_id}", &key_id));
        for method in ops.as_object().unwrap().keys() {
            let r = match method.as_str() {
                "get" => c.get(&url).send().await.unwrap(),
                "post" => c.post(&url).json(&json!({})).send().await.unwrap(),
                "delete" => c.delete(&url).send().await.unwrap(),
                other => panic!("unexpected method {other}"),
            };
            let status = r.status().as_u16();
            assert!(
                status != 404 && status != 405,
                "{method} {path} is documented but answers {status}"
            );
            // The credentials it names are the ones it asks for: an operation that does not
            // list "none" (`{}`) refuses a request without any with 401, and one that does
            // lets it through.
            let security = ops[method]
                .get("security")
                .unwrap_or(&doc["security"])
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} names no credentials"));
            for requirement in security {
                for scheme in requirement.as_object().unwrap().keys() {
                    assert!(
                        doc["components"]["securitySchemes"][scheme].is_object(),
                        "{method} {path} names the undocumented scheme {scheme}"
                    );
                }
            }
            let anonymous = security.iter().any(|r| r == &json!({}));
            let anon = reqwest::Client::new();
            let r = match method.as_str() {
                "get" => anon.get(&url).send().await.unwrap(),
                "post" => anon.post(&url).json(&json!({})).send().await.unwrap(),
                _ => anon.delete(&url).send().await.unwrap(),
            };
            assert_eq!(
                r.status() == 401,
                !anonymous,
                "{method} {path} without credentials answers {}; documented {security:?}",
                r.status()
            );
        }
    }
    let session = &doc["components"]["securitySchemes"]["session"];
    assert_eq!(
        (&session["type"], &session["in"], &session["name"]),
        (&json!("apiKey"), &json!("cookie"), &json!("pulse_session"))
    );
    // An event's payload is any JSON value, and may be left out.
    let publish = &schemas["PublishRequest"];
    assert!(
        publish["properties"]["payload"].get("type").is_none(),
        "{publish}"
    );
    assert!(
        !publish["required"].to_string().contains("payload"),
        "{publish}"
    );
    env.finish().await;
}

/// The names of the component schemas `doc` refers to (`#/components/schemas/<name>`).
fn references(doc: &Value) -> Vec<String> {
    match doc {
        Value::Object(map) => map
            .iter()
            .flat_map(|(key, value)| match (key.as_str(), value.as_str()) {
                ("$ref", Some(target)) => target
                    .strip_prefix("#/components/schemas/")
                    .map(str::to_owned)
                    .into_iter()
                    .collect(),
                _ => references(value),
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(references).collect(),
        _ => Vec::new(),
    }
}

/// `r` is a 400 whose message names `field`, so the caller knows what to fix.
async fn assert_refused_naming(r: reqwest::Response, field: &str) {
    assert_eq!(r.status(), 400, "{field}");
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(field), "{body}");
}

/// The fleet a polling client reads is the message the poller would push for the same rows:
/// the same counts, the same devices listed (the least healthy first, then by id byte by byte,
/// as many as the cap), with the same statuses, though the database now hands over only the
/// listed devices.
#[tokio::test]
async fn the_polled_fleet_is_the_pushed_one_for_the_same_devices() {
    let env = spawn().await;
    let applied = pulse_db::settings::Applied {
        fleet_devices_cap: 3,
        ..Default::default()
    };
    pulse_db::settings::write(&env.pool, &applied)
        .await
        .unwrap();
    // As in a database created with a natural-language collation, where `ORDER BY device_id`
    // alone would put `b` before `B` and `_x` before `-q`.
    env.execute(
        "ALTER TABLE devices ALTER COLUMN device_id TYPE pulse_id COLLATE \"en-x-icu\"",
        &[],
    )
    .await;
    // Ids whose byte order differs from a natural-language collation's, seen at every age:
    // ONLINE (also ahead of the clock), STALE, OFFLINE and never.
    env.execute(
        "INSERT INTO devices (tenant_id, device_id, site_id, battery_pct, last_seen_at) \
         SELECT $1, id, 'site-9', 50, now() - make_interval(secs => ago) \
           FROM (VALUES ('Z-1', 10), ('a_1', 100), ('a-1', 100), ('B', 1000), ('b', 1000), \
                        ('0dev', -30), ('_x', 100), ('zz', 5), ('A', NULL), ('-q', NULL)) \
                AS d(id, ago)",
        &[&env.tenant],
    )
    .await;
    let c = env.login("viewer", &env.tenant).await;
    let fleet: Value = get_json(&c, env.at("/api/v2/fleet")).await;

    // The message the pushes would carry, from every device of the tenant as of the same now.
    let now = time::OffsetDateTime::parse(
        fleet["ts"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let rows: Vec<(String, String, Option<f64>, Option<time::OffsetDateTime>)> = sqlx::query_as(
        "SELECT device_id::text, site_id::text, battery_pct, last_seen_at FROM devices \
          WHERE tenant_id = $1",
    )
    .bind(&env.tenant)
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let rows: Vec<pulse_proto::fleet::DeviceRow> = rows
        .into_iter()
        .map(
            |(device_id, site_id, battery_pct, last_seen_at)| pulse_proto::fleet::DeviceRow {
                device_id,
                site_id,
                battery_pct,
                last_seen_at,
            },
        )
        .collect();
    assert_eq!(rows.len(), 13, "the 3 seeded devices and 10 more");
    let (counts, devices) =
        pulse_proto::fleet::summarize(now, &rows, applied.thresholds, applied.fleet_devices_cap);
    assert_eq!(fleet["counts"], serde_json::to_value(counts).unwrap());
    assert_eq!(fleet["devices"], serde_json::to_value(&devices).unwrap());
    let ids: Vec<&str> = devices.iter().map(|d| d.device_id.as_str()).collect();
    // OFFLINE first, cut by the cap between `B` and `b`.
    assert_eq!(ids, ["-q", "A", "B"], "least healthy first");
    env.finish().await;
}
