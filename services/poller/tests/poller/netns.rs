//! A private PostgreSQL behind a router, each in a network namespace of its own, where a test
//! makes one TCP connection's packets vanish in both directions while every other connection
//! keeps working. Nothing is closed and neither end is told: what notices is each side's own
//! timers (the poller's lock check; the server's TCP keepalives and user timeout).
//!
//! ```text
//!   this host: the test, the pollers         router                   PostgreSQL
//!   10.A.B.1  ───────── veth ─────────  10.A.B.2 | 10.A.B.5  ── veth ──  10.A.B.6:5432
//! ```
//!
//! The router drops the chosen connection with two policy rules (`ip rule … blackhole`), so
//! the packets leave their sender normally and are lost in between, as in a real partition.
//! Needs root (network namespaces), iproute2, `setpriv`/`runuser` and PostgreSQL's server
//! binaries (`initdb`, `postgres`); without them the test fails and says which is missing.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use crate::helpers::*;

/// Runs `program args`, returning its stderr when it fails.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) {
    if let Err(e) = run("ip", args) {
        panic!("setting up the network namespaces: {e}");
    }
}

/// The newest PostgreSQL server binaries installed (Debian keeps them out of PATH).
fn postgres_bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return bin;
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if bin.join("initdb").exists() && bin.join("postgres").exists() {
            return bin;
        }
    }
    panic!(
        "this test runs a PostgreSQL server of its own and found no `initdb`: install \
         PostgreSQL's server binaries (apt-get install postgresql)"
    );
}

/// A free /30 pair in 10.200.0.0/13: `10.A.B.0/30` (host – router) and `10.A.B.4/30`
/// (router – server), not in use on this host.
fn free_subnet() -> [u8; 3] {
    let taken = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    loop {
        let r: u32 = rand::random();
        let (a, b, c) = (
            200 + (r % 8) as u8,
            (r >> 8) as u8,
            ((r >> 16) as u8) & 0xf8,
        );
        if !taken.contains(&format!(" 10.{a}.{b}.")) {
            return [a, b, c];
        }
    }
}

/// The namespaces, links and private PostgreSQL of one test; all removed on drop.
pub struct Lab {
    router: String,
    server_ns: String,
    host_link: String,
    pub client_addr: Ipv4Addr,
    pub server_addr: Ipv4Addr,
    dir: PathBuf,
    postgres: Option<Child>,
}

impl Lab {
    /// Sets everything up; returns with a migrated database on the private server, reached
    /// through the router.
    pub async fn start() -> (Lab, ScratchDb) {
        let id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let router = format!("pulse-t-netns-{id}-r");
        let server_ns = format!("pulse-t-netns-{id}-s");
        if let Err(e) = run("ip", &["netns", "add", &router]) {
            panic!(
                "this test makes packets vanish between network namespaces, which needs root \
                 and iproute2 (run it as root, as `make test` and CI do): {e}"
            );
        }
        let [a, b, c] = free_subnet();
        let addr = |last: u8| Ipv4Addr::new(10, a, b, c + last);
        let (host, router_in, router_out, server) = (addr(1), addr(2), addr(5), addr(6));
        let host_link = format!("pt{id}h");
        let mut lab = Lab {
            router: router.clone(),
            server_ns: server_ns.clone(),
            host_link: host_link.clone(),
            client_addr: host,
            server_addr: server,
            dir: std::env::temp_dir().join(format!("pulse-t-netns-{id}")),
            postgres: None,
        };
        let (rh, rs, sv) = (format!("pt{id}r"), format!("pt{id}x"), format!("pt{id}s"));
        ip(&["netns", "add", &server_ns]);
        ip(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", &rh, "netns", &router,
        ]);
        ip(&[
            "link", "add", &rs, "netns", &router, "type", "veth", "peer", "name", &sv, "netns",
            &server_ns,
        ]);
        ip(&["addr", "add", &format!("{host}/30"), "dev", &host_link]);
        ip(&["link", "set", &host_link, "up"]);
        for (ns, link, a) in [
            (&router, &rh, router_in),
            (&router, &rs, router_out),
            (&server_ns, &sv, server),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{a}/30"), "dev", link]);
            ip(&["-n", ns, "link", "set", link, "up"]);
        }
        ip(&["-n", &server_ns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &server_ns,
            "route",
            "add",
            "default",
            "via",
            &router_out.to_string(),
        ]);
        ip(&[
            "netns",
            "exec",
            &router,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward",
        ]);
        // Only this host's route to the server's /30, through its own link (gone with it).
        ip(&[
            "route",
            "add",
            &format!("{}/30", addr(4)),
            "via",
            &router_in.to_string(),
            "dev",
            &host_link,
        ]);

        lab.start_postgres();
        let admin_url = format!("postgres://postgres@{server}:5432/postgres");
        let admin = connect_within(&admin_url, Duration::from_secs(20), &lab).await;
        // Named like every test database, so nothing mistakes it for another.
        let name = unique("pulse_t").replace('-', "_");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let url = format!("postgres://postgres@{server}:5432/{name}");
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap();
        pulse_db::migrate(&pool).await.unwrap();
        let db = ScratchDb {
            name,
            url,
            pool,
            logins: Vec::new(),
        };
        (lab, db)
    }

    fn start_postgres(&mut self) {
        let bin = postgres_bin_dir();
        let data = self.dir.join("data");
        std::fs::create_dir_all(&self.dir).unwrap();
        let dir = self.dir.to_str().unwrap().to_owned();
        run("chown", &["postgres:", &dir]).unwrap_or_else(|e| {
            panic!("this test runs PostgreSQL as the `postgres` user, which must exist: {e}")
        });
        // initdb refuses to run as root.
        run(
            "runuser",
            &[
                "-u",
                "postgres",
                "--",
                bin.join("initdb").to_str().unwrap(),
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-locale",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )
        .unwrap_or_else(|e| panic!("initdb of the private PostgreSQL: {e}"));
        let hba = data.join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).unwrap();
        rules.push_str(&format!("host all all {}/32 trust\n", self.client_addr));
        std::fs::write(&hba, rules).unwrap();
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.server_ns])
            .args([
                "setpriv",
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                // Not left behind if the test process dies.
                "--pdeathsig=KILL",
                "--",
            ])
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", "5432", "-c"])
            .arg(format!("listen_addresses={}", self.server_addr))
            .arg("-c")
            .arg(format!("unix_socket_directories={dir}"))
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the private PostgreSQL: {e}"));
        self.postgres = Some(child);
    }

    /// The private server's log so far.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// From now on, every packet of the TCP connection from this host's `client_port` to the
    /// server, either way, is dropped by the router.
    pub fn black_hole(&self, client_port: u16) {
        let (client, server, port) = (
            self.client_addr.to_string(),
            self.server_addr.to_string(),
            client_port.to_string(),
        );
        for (pref, from, to, sport, dport) in [
            ("100", &client, &server, port.as_str(), "5432"),
            ("101", &server, &client, "5432", port.as_str()),
        ] {
            ip(&[
                "-n",
                &self.router,
                "rule",
                "add",
                "pref",
                pref,
                "from",
                from,
                "to",
                to,
                "ipproto",
                "tcp",
                "sport",
                sport,
                "dport",
                dport,
                "blackhole",
            ]);
        }
    }
}

async fn connect_within(url: &str, within: Duration, lab: &Lab) -> sqlx::PgPool {
    let start = std::time::Instant::now();
    loop {
        match PgPoolOptions::new().max_connections(1).connect(url).await {
            Ok(pool) => return pool,
            Err(e) if start.elapsed() > within => panic!(
                "the private PostgreSQL did not accept connections within {within:?}: {e}\n{}",
                lab.server_log()
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn remove(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.postgres.take() {
            // Immediate shutdown: the postmaster stops its backends and exits.
            let _ = run("kill", &["-QUIT", &child.id().to_string()]);
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = run("ip", &["link", "del", &self.host_link]);
        let _ = run("ip", &["netns", "del", &self.router]);
        let _ = run("ip", &["netns", "del", &self.server_ns]);
        remove(&self.dir);
    }
}
