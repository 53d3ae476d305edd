//! A user deleted, whose role changed, or whose sessions all ended reaches the gateways on
//! `pulse.v1.<tenant>.users`.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn deleting_a_user_changing_its_role_or_its_password_is_passed_on_to_the_gateways() {
    let (db, tenant) = db_with_tenant("users", 0).await;
    let mut ids = Vec::new();
    for who in ["admin", "viewer", "bystander"] {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (email, password_hash, tenant_id, role) \
             VALUES ($1, 'x', $2, 'customer_admin') RETURNING user_id",
        )
        .bind(format!("{who}@{tenant}.example"))
        .bind(&tenant)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        ids.push(id);
    }
    let mut changes = subscribe(&format!("pulse.v1.{tenant}.users")).await;
    let poller = spawn_poller(config(&db)).await;
    // Listening: a device write comes back as a notification.
    sqlx::query("INSERT INTO devices (tenant_id, device_id, site_id) VALUES ($1, 'dev-1', 's')")
        .bind(&tenant)
        .execute(&db.pool)
        .await
        .unwrap();
    eventually("poller listening", Duration::from_secs(10), || async {
        let seen = poller.metric("pulse_poller_notifications_total", &[]).await;
        if seen == 0.0 {
            sqlx::query("UPDATE devices SET battery_pct = random() * 100 WHERE tenant_id = $1")
                .bind(&tenant)
                .execute(&db.pool)
                .await
                .unwrap();
        }
        seen > 0.0
    })
    .await;

    // A change that touches neither the role nor the password passes nothing on, nor does a
    // password set to what it was.
    sqlx::query("UPDATE users SET password_hash = password_hash WHERE user_id = $1")
        .bind(ids[2])
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE users SET email = 'renamed-' || email WHERE user_id = $1")
        .bind(ids[2])
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE users SET password_hash = 'y' WHERE user_id = $1")
        .bind(ids[2])
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE users SET role = 'customer_viewer' WHERE user_id = $1")
        .bind(ids[1])
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM users WHERE user_id = $1")
        .bind(ids[0])
        .execute(&db.pool)
        .await
        .unwrap();
    let signed_out = changes.next_within(Duration::from_secs(5)).await.unwrap().1;
    let first = changes.next_within(Duration::from_secs(5)).await.unwrap().1;
    let second = changes.next_within(Duration::from_secs(5)).await.unwrap().1;
    assert_eq!(
        signed_out,
        json!({"type": "user_changed", "tenant_id": tenant, "user_id": ids[2].to_string(), "change": "signed_out"})
    );
    assert_eq!(
        first,
        json!({"type": "user_changed", "tenant_id": tenant, "user_id": ids[1].to_string(), "change": "role"})
    );
    assert_eq!(
        second,
        json!({"type": "user_changed", "tenant_id": tenant, "user_id": ids[0].to_string(), "change": "deleted"})
    );
    changes.assert_silent_for(Duration::from_millis(300)).await;
    poller.stop().await;
}
