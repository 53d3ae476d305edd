//! Logins under pressure: bounded hashing, attempts counted per address behind trusted
//! proxies only, and no way to lock a user out from elsewhere.

use serde_json::json;

use crate::helpers::*;

async fn login_from(env: &Env, forwarded: Option<&str>, email: &str, password: &str) -> u16 {
    login_at(&env.at(""), forwarded, email, password).await
}

/// [`login_from`] on the instance at `base`.
async fn login_at(base: &str, forwarded: Option<&str>, email: &str, password: &str) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/api/v2/login"))
        .json(&json!({"email": email, "password": password}));
    if let Some(address) = forwarded {
        request = request.header("x-forwarded-for", address);
    }
    request.send().await.unwrap().status().as_u16()
}

/// The service behind a trusted proxy (the tests' loopback), so that each forwarded address
/// has its own count, allowing `failures_per_minute` failed logins a minute.
async fn spawn_behind_proxy(failures_per_minute: u32) -> Env {
    spawn_with(|c| {
        c.login_failures_per_minute = failures_per_minute;
        c.trusted_proxies = loopback_proxy();
    })
    .await
}

/// Attackers failing to log in as `email` on the instance at `base`, 15 times from as many
/// addresses: how many of them were refused with 429.
async fn attack(base: &str, email: &str) -> usize {
    let mut refused = 0;
    for n in 0..15 {
        if login_at(base, Some(&format!("203.0.113.{n}")), email, "wrong").await == 429 {
            refused += 1;
        }
    }
    refused
}

#[tokio::test]
async fn a_burst_of_logins_is_answered_with_503_beyond_the_hashing_in_flight() {
    let env = spawn_with(|c| {
        c.login_concurrency = 1;
        c.login_failures_per_minute = 10_000;
    })
    .await;
    let email = format!("viewer@{}.example", env.tenant);
    let attempts = (0..80).map(|_| {
        let client = reqwest::Client::new();
        let url = env.at("/api/v2/login");
        let email = email.clone();
        async move {
            let r = post_json(&client, url, &json!({"email": email, "password": "wrong"})).await;
            (r.status().as_u16(), r.headers().get("retry-after").cloned())
        }
    });
    let answers = futures::future::join_all(attempts).await;
    let busy: Vec<_> = answers.iter().filter(|(s, _)| *s == 503).collect();
    assert!(
        answers.iter().all(|(s, _)| *s == 401 || *s == 503),
        "{answers:?}"
    );
    assert!(
        !busy.is_empty(),
        "one hash at a time cannot answer 80 in time"
    );
    assert!(busy.iter().all(|(_, retry)| retry.is_some()));
    // The service is still there for a right password.
    assert_eq!(login_from(&env, None, &email, PASSWORD).await, 200);
    env.finish().await;
}

/// A login turned away because every hashing slot is busy (503, "retry in a second") costs
/// the user none of their attempts: a client that follows that advice is not locked out.
#[tokio::test]
async fn logins_turned_away_as_busy_are_not_counted_against_the_user() {
    let env = spawn_with(|c| {
        c.login_concurrency = 1;
        c.login_failures_per_minute = 2;
        c.trusted_proxies = loopback_proxy();
    })
    .await;
    let email = format!("viewer@{}.example", env.tenant);
    // Others keep the one slot busy, each from an address of its own: arriving every 4 ms,
    // faster than one slot hashes, they queue for longer than a login waits (1 s). They go on
    // until the user has its answers, so the queue is never drained before it asks, however
    // fast this machine hashes.
    let (busy_tx, mut busy_rx) = tokio::sync::watch::channel(false);
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let flood = async {
        let mut logins = tokio::task::JoinSet::new();
        for i in 0u64.. {
            if *done_rx.borrow() || i >= 60_000 {
                break;
            }
            let (base, busy_tx) = (env.at(""), busy_tx.clone());
            logins.spawn(async move {
                let who = format!("198.{}.{}.{}", 51 + i / 62_500, (i / 250) % 250, i % 250);
                let stranger = format!("nobody-{i}@x.example");
                let status = login_at(&base, Some(&who), &stranger, "wrong").await;
                if status == 503 {
                    busy_tx.send_replace(true);
                }
                status
            });
            tokio::time::sleep(std::time::Duration::from_millis(4)).await;
        }
        logins.join_all().await
    };
    // Once the flood is turned away as busy (the queue is full for the next second), the user
    // tries three times at once from its own address (more than its two attempts a minute).
    // At most one may find the slot free; the others are turned away as busy.
    let user = async {
        let busy = busy_rx.wait_for(|busy| *busy);
        tokio::time::timeout(std::time::Duration::from_secs(30), busy)
            .await
            .expect("the flood never kept the slot busy")
            .unwrap();
        let tries = (0..3).map(|_| login_from(&env, Some("203.0.113.5"), &email, PASSWORD));
        let answers = futures::future::join_all(tries).await;
        done_tx.send_replace(true);
        answers
    };
    let (flooded, answers) = tokio::join!(flood, user);
    assert!(flooded.contains(&503), "the flood never kept the slot busy");
    let admitted = answers.iter().filter(|s| **s == 200).count();
    assert!(
        admitted <= 1 && answers.iter().all(|s| *s == 200 || *s == 503),
        "{answers:?}"
    );
    // Once the flood is over, the user logs in: the 503s spent none of its two attempts (had
    // they counted, this would be at least its third and refused with 429).
    assert_eq!(
        login_from(&env, Some("203.0.113.5"), &email, PASSWORD).await,
        200
    );
    env.finish().await;
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let email_of = |env: &Env| format!("viewer@{}.example", env.tenant);
    // Behind a trusted proxy (the tests' loopback): each forwarded address has its own count.
    let env = spawn_behind_proxy(2).await;
    let email = email_of(&env);
    for _ in 0..2 {
        assert_eq!(
            login_from(&env, Some("198.51.100.1"), &email, "wrong").await,
            401
        );
    }
    assert_eq!(
        login_from(&env, Some("198.51.100.1"), &email, "wrong").await,
        429
    );
    assert_eq!(
        login_from(&env, Some("198.51.100.2"), &email, PASSWORD).await,
        200
    );
    env.finish().await;

    // Not trusted: the header is the client's own word and changes nothing.
    let env = spawn_with(|c| c.login_failures_per_minute = 2).await;
    let email = email_of(&env);
    for address in ["198.51.100.1", "198.51.100.2"] {
        assert_eq!(login_from(&env, Some(address), &email, "wrong").await, 401);
    }
    assert_eq!(
        login_from(&env, Some("198.51.100.3"), &email, PASSWORD).await,
        429
    );
    env.finish().await;
}

#[tokio::test]
async fn failed_logins_from_elsewhere_cannot_lock_a_user_out() {
    let env = spawn_behind_proxy(1).await;
    let email = format!("viewer@{}.example", env.tenant);
    let home = "198.51.100.50";
    assert_eq!(login_from(&env, Some(home), &email, PASSWORD).await, 200);
    // Attackers from many addresses use up the email's allowance (10 a minute here).
    let refused = attack(&env.at(""), &email).await;
    assert!(
        refused >= 5,
        "the email's own limit must stop them: {refused} refused"
    );
    // The user, from where it logged in before, still gets in.
    assert_eq!(login_from(&env, Some(home), &email, PASSWORD).await, 200);
    env.finish().await;
}

#[tokio::test]
async fn a_user_is_not_locked_out_on_another_instance_or_after_a_restart() {
    // Two web instances behind a load balancer that sends each request anywhere: where a user
    // logged in before is known to both, and to an instance started later.
    let env = spawn_behind_proxy(1).await;
    let other = env.another_instance().await;
    let email = format!("viewer@{}.example", env.tenant);
    let home = "2001:db8:5:6::50";
    assert_eq!(login_from(&env, Some(home), &email, PASSWORD).await, 200);
    // Attackers use up the email's allowance on both instances.
    for base in [env.at(""), other.clone()] {
        let refused = attack(&base, &email).await;
        assert!(refused >= 5, "{base}: only {refused} refused");
    }
    // The user, from its network (another address of the same /64), gets in on either.
    let home_again = "2001:db8:5:6::77";
    assert_eq!(
        login_at(&other, Some(home_again), &email, PASSWORD).await,
        200
    );
    assert_eq!(
        login_from(&env, Some(home_again), &email, PASSWORD).await,
        200
    );
    let restarted = env.another_instance().await;
    attack(&restarted, &email).await;
    assert_eq!(
        login_at(&restarted, Some(home), &email, PASSWORD).await,
        200
    );
    env.finish().await;
}

/// Two instances behind a load balancer that sends each request anywhere count every attempt
/// against one limit: a client alternating between them gets the pair's, the address's and
/// the email's allowance once, not once per instance.
#[tokio::test]
async fn instances_behind_a_load_balancer_count_attempts_against_one_limit() {
    /// Attempts a minute for one pair; an address has 4, an email 10.
    const N: u32 = 1;
    let env = spawn_behind_proxy(N).await;
    let bases = [env.at(""), env.another_instance().await];
    let user = |who: &str| format!("{who}@{}.example", env.tenant);
    // How many of `attempts` (address, email) logins, alternating between the instances, were
    // let through to the password check (401), each other one being refused (429). Allowances
    // come back one every minute / allowance; `refills` says how many could have meanwhile.
    let admitted = |attempts: Vec<(String, String)>, allowance: u32| {
        let bases = bases.clone();
        async move {
            let started = std::time::Instant::now();
            let mut admitted = 0;
            for (i, (address, email)) in attempts.iter().enumerate() {
                match login_at(&bases[i % 2], Some(address), email, "wrong").await {
                    401 => admitted += 1,
                    429 => {}
                    other => panic!("{address} as {email}: {other}"),
                }
            }
            let refills = started.elapsed().as_secs_f64() * f64::from(allowance) / 60.0;
            (admitted, refills.floor() as u32)
        }
    };

    // The pair: one a minute.
    let pair = vec![("198.51.100.9".to_owned(), user("viewer")); 4];
    let (got, refills) = admitted(pair, N).await;
    assert_eq!(got, N + refills, "one pair, both instances");
    // The address: four a minute, over emails of its own each.
    let address: Vec<_> = (0..10)
        .map(|i| ("198.51.100.10".to_owned(), user(&format!("nobody{i}"))))
        .collect();
    let (got, refills) = admitted(address, 4 * N).await;
    assert_eq!(got, 4 * N + refills, "one address, both instances");
    // The email: ten a minute, from addresses of their own each.
    let email: Vec<_> = (0..20)
        .map(|i| (format!("203.0.113.{i}"), user("admin")))
        .collect();
    let (got, refills) = admitted(email, 10 * N).await;
    assert_eq!(got, 10 * N + refills, "one email, both instances");
    env.finish().await;
}

/// How long a failed login as `email` took, in seconds.
async fn refusal_time(env: &Env, email: &str) -> f64 {
    let started = std::time::Instant::now();
    assert_eq!(login_from(env, None, email, "wrong").await, 401);
    started.elapsed().as_secs_f64()
}

/// A user whose stored password is no hash (an account locked by writing `!` there, as
/// operators do) is refused after as much work as an email that does not exist: timing does
/// not tell that the email exists. Tries of both alternate, and the shortest of each is
/// compared, which load only lengthens; a refusal without hashing is five times quicker or more.
#[tokio::test]
async fn a_locked_account_is_refused_as_slowly_as_an_unknown_email() {
    let env = spawn().await;
    let locked = format!("locked@{}.example", env.tenant);
    sqlx::query(
        "INSERT INTO users (email, password_hash, tenant_id, role) VALUES ($1, '!', $2, 'customer_admin')",
    )
    .bind(&locked)
    .bind(&env.tenant)
    .execute(&env.pool)
    .await
    .unwrap();
    let unknown = format!("nobody@{}.example", env.tenant);
    let (mut quickest_unknown, mut quickest_locked) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        quickest_unknown = quickest_unknown.min(refusal_time(&env, &unknown).await);
        quickest_locked = quickest_locked.min(refusal_time(&env, &locked).await);
    }
    assert!(
        quickest_locked * 3.0 >= quickest_unknown,
        "a locked account refused in {quickest_locked:.4} s, an unknown email in {quickest_unknown:.4} s"
    );
    env.finish().await;
}
