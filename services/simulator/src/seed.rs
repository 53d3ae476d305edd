//! Seeding: the demo tenants, their users (with argon2id password hashes) and devices,
//! created where missing and never changed where present, and the devices read back for the
//! simulation.

use std::collections::HashSet;

use anyhow::{Context as _, anyhow};
use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, SaltString};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;

use crate::args::SimulateArgs;
use crate::device::{DeviceRow, round1};
use crate::naming::{DemoLogin, planned_devices, planned_logins, tenant_name};

/// Rows per statement when seeding devices, to keep each message to the server small.
const SEED_CHUNK: usize = 10_000;

/// An argon2id PHC string of `password` with a fresh random salt.
fn hash_password(password: &str, rng: &mut impl Rng) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rng.fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow!("cannot encode a salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| anyhow!("cannot hash the demo password: {e}"))
}

/// Creates the demo tenants, their users and devices where missing; changes nothing that
/// exists, so running it again is harmless. Returns the demo logins that exist afterwards.
pub async fn seed(pool: &PgPool, args: &SimulateArgs) -> anyhow::Result<Vec<DemoLogin>> {
    args.validate()?;
    let mut rng = StdRng::from_os_rng();
    let logins = planned_logins(&args.tenants);
    let emails: Vec<&str> = logins.iter().map(|l| l.email.as_str()).collect();

    let existing: HashSet<String> =
        sqlx::query_scalar("SELECT email FROM users WHERE email = ANY($1::text[])")
            .bind(&emails)
            .fetch_all(pool)
            .await
            .context("cannot read the existing demo users")?
            .into_iter()
            .collect();
    let missing: Vec<&DemoLogin> = logins
        .iter()
        .filter(|l| !existing.contains(&l.email))
        .collect();
    // Hashing is deliberately slow; keep it off the async workers.
    let hashes = {
        let password = args.password.clone();
        let count = missing.len();
        let mut rng = StdRng::from_rng(&mut rng);
        tokio::task::spawn_blocking(move || {
            (0..count)
                .map(|_| hash_password(&password, &mut rng))
                .collect::<anyhow::Result<Vec<String>>>()
        })
        .await
        .context("the password hashing task failed")??
    };

    let mut tx = pool
        .begin()
        .await
        .context("cannot start the seed transaction")?;

    let names: Vec<String> = args.tenants.iter().map(|t| tenant_name(t)).collect();
    let tenants_created = sqlx::query(
        "INSERT INTO tenants (tenant_id, name) \
         SELECT * FROM UNNEST($1::text[], $2::text[]) \
         ON CONFLICT (tenant_id) DO NOTHING",
    )
    .bind(&args.tenants)
    .bind(&names)
    .execute(&mut *tx)
    .await
    .context("cannot create the demo tenants")?
    .rows_affected();

    let users_created = if missing.is_empty() {
        0
    } else {
        let emails: Vec<&str> = missing.iter().map(|l| l.email.as_str()).collect();
        let tenants: Vec<&str> = missing.iter().map(|l| l.tenant_id.as_str()).collect();
        let roles: Vec<&str> = missing.iter().map(|l| l.role).collect();
        sqlx::query(
            "INSERT INTO users (email, password_hash, tenant_id, role) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) \
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(&emails)
        .bind(&hashes)
        .bind(&tenants)
        .bind(&roles)
        .execute(&mut *tx)
        .await
        .context("cannot create the demo users")?
        .rows_affected()
    };

    let mut devices_created = 0;
    let all = args.tenants.iter().flat_map(|tenant| {
        planned_devices(args.devices, args.sites).map(move |(device, site)| (tenant, device, site))
    });
    let mut chunk = Chunk::default();
    for (tenant, device, site) in all {
        chunk.tenant_ids.push(tenant.as_str());
        chunk.device_ids.push(device);
        chunk.site_ids.push(site);
        chunk.batteries.push(round1(rng.random_range(40.0..=100.0)));
        if chunk.device_ids.len() >= SEED_CHUNK {
            devices_created += chunk.insert(&mut tx).await?;
            chunk = Chunk::default();
        }
    }
    if !chunk.device_ids.is_empty() {
        devices_created += chunk.insert(&mut tx).await?;
    }

    tx.commit().await.context("cannot commit the demo data")?;
    tracing::info!(
        tenants_created,
        users_created,
        devices_created,
        "demo data seeded"
    );

    let stored: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT email, tenant_id::text, role FROM users WHERE email = ANY($1::text[])",
    )
    .bind(&emails)
    .fetch_all(pool)
    .await
    .context("cannot read the demo users back")?;
    let stored: HashSet<(&str, &str, &str)> = stored
        .iter()
        .map(|(e, t, r)| (e.as_str(), t.as_str(), r.as_str()))
        .collect();
    let (usable, foreign): (Vec<DemoLogin>, Vec<DemoLogin>) = logins
        .into_iter()
        .partition(|l| stored.contains(&(l.email.as_str(), l.tenant_id.as_str(), l.role)));
    for l in &foreign {
        tracing::warn!(
            email = %l.email,
            tenant = %l.tenant_id,
            "a user with this e-mail exists with another tenant or role; left as it is"
        );
    }
    Ok(usable)
}

/// One batch of devices to insert.
#[derive(Default)]
struct Chunk<'a> {
    tenant_ids: Vec<&'a str>,
    device_ids: Vec<String>,
    site_ids: Vec<String>,
    batteries: Vec<f64>,
}

impl Chunk<'_> {
    async fn insert(&self, tx: &mut sqlx::PgConnection) -> anyhow::Result<u64> {
        Ok(sqlx::query(
            "INSERT INTO devices (tenant_id, device_id, site_id, battery_pct) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::float8[]) \
             ON CONFLICT (tenant_id, device_id) DO NOTHING",
        )
        .bind(&self.tenant_ids)
        .bind(&self.device_ids)
        .bind(&self.site_ids)
        .bind(&self.batteries)
        .execute(tx)
        .await
        .context("cannot create the demo devices")?
        .rows_affected())
    }
}

/// The simulated devices as stored (their site may differ from a fresh seed's if an earlier
/// run used another site count).
pub(crate) async fn load_devices(
    pool: &PgPool,
    args: &SimulateArgs,
) -> anyhow::Result<Vec<DeviceRow>> {
    let mut tenant_ids = Vec::new();
    let mut device_ids = Vec::new();
    for tenant in &args.tenants {
        for (device, _) in planned_devices(args.devices, args.sites) {
            tenant_ids.push(tenant.as_str());
            device_ids.push(device);
        }
    }
    sqlx::query_as(
        "SELECT d.tenant_id::text AS tenant_id, d.device_id::text AS device_id, \
                d.site_id::text AS site_id, d.battery_pct \
           FROM devices d \
           JOIN UNNEST($1::text[], $2::text[]) AS w(tenant_id, device_id) \
             ON d.tenant_id = w.tenant_id AND d.device_id = w.device_id \
          ORDER BY d.tenant_id, d.device_id",
    )
    .bind(&tenant_ids)
    .bind(&device_ids)
    .fetch_all(pool)
    .await
    .context("cannot read the demo devices")
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::testing::rng;

    #[test]
    fn password_hash_is_argon2id_and_verifies() {
        use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
        let mut rng = rng();
        let hash = hash_password("pulse-demo", &mut rng).unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let parsed = PasswordHash::new(&hash).unwrap();
        Argon2::default()
            .verify_password(b"pulse-demo", &parsed)
            .unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"wrong", &parsed)
                .is_err()
        );
    }
}
