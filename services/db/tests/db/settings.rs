//! `pulse_settings` as the services use it: the poller's role writes what it applies, the web
//! service reads it inside a tenant's transaction.

use std::time::Duration;

use pulse_db::roles;
use pulse_db::settings::Applied;
use pulse_proto::TenantId;
use pulse_proto::fleet::Thresholds;

use pulse_test_support::ScratchDb;

#[tokio::test]
async fn thresholds_written_as_the_poller_are_read_as_a_tenant() {
    let db = ScratchDb::migrated("db").await;
    let tenant = db.tenant("settings", 0).await;
    let tenant_id = TenantId::parse(tenant.as_str()).unwrap();
    let poller = pulse_db::lazy_pool(&db.url, 1, Some(roles::POLLER)).unwrap();
    let web = pulse_db::lazy_pool(&db.url, 1, Some(roles::WEB)).unwrap();

    // Nothing recorded yet: the defaults.
    let mut tx = roles::begin_as_tenant(&web, &tenant_id).await.unwrap();
    let a = pulse_db::settings::read(&mut tx).await.unwrap();
    assert_eq!(a, Applied::default());
    drop(tx);

    let applied = |stale: u64, offline: u64, cap: usize| Applied {
        thresholds: Thresholds {
            stale_after: Duration::from_secs(stale),
            offline_after: Duration::from_secs(offline),
        },
        fleet_devices_cap: cap,
    };
    pulse_db::settings::write(&poller, &applied(30, 300, 10))
        .await
        .unwrap();
    // A second write replaces the first.
    pulse_db::settings::write(&poller, &applied(45, 900, 250))
        .await
        .unwrap();
    let mut tx = roles::begin_as_tenant(&web, &tenant_id).await.unwrap();
    let a = pulse_db::settings::read(&mut tx).await.unwrap();
    assert_eq!(a, applied(45, 900, 250));
    drop(tx);

    // The web service reads them but cannot change them.
    let e = pulse_db::settings::write(&web, &applied(1, 2, 3))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("permission denied"), "{e}");
    web.close().await;
    poller.close().await;
}
