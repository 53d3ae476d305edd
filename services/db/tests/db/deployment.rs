//! The schema as deploy/README.md sets it up: a superuser creates the owner, the service roles
//! and one login per service beforehand; the owner, no superuser and without CREATEROLE,
//! applies the migrations; each service logs in as a member of its role only. The other tests
//! migrate as the server's superuser, whom row-level security does not bind.

use pulse_db::roles;
use pulse_proto::TenantId;
use sqlx::PgPool;

use pulse_test_support::Deployed;

/// A database as deployed, with a pool per login: the owner's (no role set, as migrations
/// run), the web service's and the poller's (each working as its role, as the services do).
struct Deployment {
    deployed: Deployed,
    owner: PgPool,
    web: PgPool,
    poller: PgPool,
}

fn pools(deployed: Deployed) -> Deployment {
    Deployment {
        owner: pulse_db::lazy_pool(&deployed.owner_url, 2, None).unwrap(),
        web: pulse_db::lazy_pool(&deployed.web_url, 2, Some(roles::WEB)).unwrap(),
        poller: pulse_db::lazy_pool(&deployed.poller_url, 2, Some(roles::POLLER)).unwrap(),
        deployed,
    }
}

/// `SELECT pulse_emit_event(tenant, topic, 'x')` as the web service writes events: as
/// `pulse_tenant`, with the tenant set.
async fn emit_as_web(d: &Deployment, tenant: &str, topic: &str) -> Result<i64, sqlx::Error> {
    let id = TenantId::parse(tenant).unwrap();
    let mut tx = roles::begin_as_tenant(&d.web, &id).await?;
    let seq = sqlx::query_scalar("SELECT pulse_emit_event($1, $2, 'x')")
        .bind(tenant)
        .bind(topic)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(seq)
}

#[tokio::test]
async fn an_owner_without_superuser_or_createrole_migrates_and_the_services_work() {
    // Migrated as its owner, or this panics.
    let d = pools(Deployed::create("deployed").await);
    let superuser: bool = sqlx::query_scalar("SELECT rolsuper OR rolcreaterole OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
        .fetch_one(&d.owner)
        .await
        .unwrap();
    assert!(!superuser, "the owner must be an ordinary login");
    // Again, as every rollout's initContainers do.
    pulse_db::migrate(&d.owner).await.unwrap();

    let tenant = d.deployed.db.tenant("deployed", 1).await;
    assert_eq!(emit_as_web(&d, &tenant, "orders").await.unwrap(), 1);
    assert_eq!(emit_as_web(&d, &tenant, "orders").await.unwrap(), 2);

    // The topic cap binds here too: the trigger counting a tenant's topics runs as the owner,
    // and row-level security is forced on the owner.
    sqlx::query(
        "INSERT INTO event_topics (tenant_id, topic, last_seq) \
         SELECT $1, 't' || g, 1 FROM generate_series(1, 9999) g",
    )
    .bind(&tenant)
    .execute(&d.deployed.db.pool)
    .await
    .unwrap();
    let e = emit_as_web(&d, &tenant, "one-more").await.unwrap_err();
    let refused = e.as_database_error().and_then(|d| d.constraint());
    assert_eq!(refused, Some("event_topics_per_tenant"), "{e}");
    assert_eq!(emit_as_web(&d, &tenant, "t1").await.unwrap(), 2);

    // The poller reads the tenant's events and marks them relayed.
    let backlog: Vec<i64> = sqlx::query_scalar(
        "SELECT seq FROM events WHERE tenant_id = $1 AND topic = 'orders' \
            AND relayed_at IS NULL ORDER BY seq",
    )
    .bind(&tenant)
    .fetch_all(&d.poller)
    .await
    .unwrap();
    assert_eq!(backlog, vec![1, 2]);
    let marked = sqlx::query(
        "UPDATE events SET relayed_at = now() \
          WHERE tenant_id = $1 AND topic = 'orders' AND relayed_at IS NULL",
    )
    .bind(&tenant)
    .execute(&d.poller)
    .await
    .unwrap();
    assert_eq!(marked.rows_affected(), 2);
}
