//! The `pulse-simulator` binary as deployments start it: configured by environment variables
//! alone.

use std::process::Command;

use pulse_test_support::{ScratchDb, unique};

#[tokio::test]
async fn seed_only_reads_its_settings_from_the_environment_and_prints_the_logins() {
    let db = ScratchDb::migrated("simulator").await;
    let tenant = unique("bin");
    let url = db.url.clone();
    let env_tenant = tenant.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_pulse-simulator"))
            .arg("--seed-only")
            .env_clear()
            .env("DATABASE_URL", url)
            .env("PULSE_SIM_TENANTS", env_tenant)
            .env("PULSE_SIM_DEVICES", "7")
            .env("PULSE_SIM_SITES", "3")
            .env("PULSE_SIM_INTERVAL_MS", "200")
            .env("PULSE_DEMO_PASSWORD", "not-the-default")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let domain = tenant.to_ascii_lowercase();
    assert!(
        stdout.contains(&format!("admin@{domain}.example")),
        "{stdout}"
    );
    assert!(
        stdout.contains("password from PULSE_DEMO_PASSWORD"),
        "{stdout}"
    );
    assert!(!stdout.contains("not-the-default"), "{stdout}");
    let (devices, sites): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT site_id) FROM devices WHERE tenant_id = $1",
    )
    .bind(&tenant)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((devices, sites), (7, 3));
}

#[test]
fn an_invalid_setting_fails_at_once_naming_the_variable() {
    // No database is reachable at this address; validation must fail before trying it.
    let out = Command::new(env!("CARGO_BIN_EXE_pulse-simulator"))
        .env_clear()
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("PULSE_SIM_DEVICES", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PULSE_SIM_DEVICES"), "{stderr}");
}
