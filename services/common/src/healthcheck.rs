//! `<service> healthcheck [live]`: asks the running service on this host whether it is ready
//! (`/readyz`) or alive (`/healthz`) and exits 0 or 1, for container health checks in images
//! that have no shell and no curl. It reads only the address variables of the service's ops
//! endpoints, so it works wherever the service's own environment is set.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);

/// When the command line is `healthcheck [live]`, runs the check against the address in the
/// first of `addr_vars` that is set (or `default_addr`, the last one's default) and returns
/// the exit code; otherwise `None`.
pub fn from_args(addr_vars: &[&str], default_addr: &str) -> Option<i32> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("healthcheck") {
        return None;
    }
    let path = match args.next().as_deref() {
        None | Some("ready") => "/readyz",
        Some("live") => "/healthz",
        Some(other) => {
            eprintln!(
                "healthcheck: unknown check {other:?}; use `healthcheck` or `healthcheck live`"
            );
            return Some(2);
        }
    };
    // None set: the default, which is the last variable's.
    let (addr_var, raw) = addr_vars
        .iter()
        .find_map(|var| std::env::var(var).ok().map(|raw| (*var, raw)))
        .unwrap_or_else(|| {
            let last = addr_vars.last().copied().unwrap_or_default();
            (last, default_addr.to_owned())
        });
    let Ok(addr) = raw.parse::<SocketAddr>() else {
        eprintln!("healthcheck: {addr_var}={raw:?} is not an address like 0.0.0.0:8080");
        return Some(2);
    };
    match check(local(addr), path) {
        Ok(200) => Some(0),
        Ok(status) => {
            eprintln!("healthcheck: {path} at {addr} answered {status}");
            Some(1)
        }
        Err(e) => {
            eprintln!("healthcheck: {path} at {addr}: {e}");
            Some(1)
        }
    }
}

/// Like [`from_args`], for the first line of `main`: when the command line is
/// `healthcheck [live]`, runs the check and exits with its code.
pub fn exit_if_asked(addr_vars: &[&str], default_addr: &str) {
    if let Some(code) = from_args(addr_vars, default_addr) {
        std::process::exit(code);
    }
}

/// A service listening on every interface is asked on the loopback one.
fn local(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// The HTTP status of `GET path` at `addr`.
fn check(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..])? {
            0 => break,
            n => read += n,
        }
    }
    status_of(&head[..read])
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response"))
}

fn status_of(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_of(b"HTTP/1.1 503 Service Unavailable"), Some(503));
        assert_eq!(status_of(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(
            local("0.0.0.0:9080".parse().unwrap()),
            "127.0.0.1:9080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            local("[::]:9080".parse().unwrap()),
            "[::1]:9080".parse::<SocketAddr>().unwrap()
        );
    }

    #[tokio::test]
    async fn a_served_endpoint_is_checked_over_http() {
        use crate::ops::{Ops, Readiness};
        let readiness = Readiness::new(&["thing"]);
        let ops = Ops {
            registry: Default::default(),
            readiness: readiness.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(crate::ops::serve(listener, ops, std::future::pending()));
        let status =
            |path: &'static str| tokio::task::spawn_blocking(move || check(addr, path).unwrap());
        assert_eq!(status("/healthz").await.unwrap(), 200);
        assert_eq!(status("/readyz").await.unwrap(), 503);
        readiness.set("thing", true);
        assert_eq!(status("/readyz").await.unwrap(), 200);
    }
}
