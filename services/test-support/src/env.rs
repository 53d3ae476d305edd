//! Where the shared servers are: `DATABASE_URL` and `NATS_URL`, as `make test` sets them,
//! with the usual local addresses when unset.

/// The shared PostgreSQL server's URL (its database is where scratch databases are created).
pub fn base_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The shared NATS server (with JetStream).
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// `url` with its database name replaced by `db`, query parameters kept.
pub fn with_database(url: &str, db: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let scheme_end = head.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// `url` with its `host:port` replaced by `127.0.0.1:<port>` (to reach the server through a
/// [`crate::proxy::Proxy`] on that port), and the replaced `host:port`.
pub fn through(url: &str, port: u16) -> (String, String) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let at = url[start..].find('@').map_or(start, |i| start + i + 1);
    let end = url[at..].find(['/', '?']).map_or(url.len(), |i| at + i);
    let upstream = url[at..end].to_owned();
    (
        format!("{}127.0.0.1:{port}{}", &url[..at], &url[end..]),
        upstream,
    )
}

/// `url` with the query parameters `params` (`sslmode=require`) added to those it has.
pub fn with_params(url: &str, params: &str) -> String {
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}{params}")
}

/// `url` logged in as `user` with `password` instead of its own login; the rest is kept.
pub fn with_login(url: &str, user: &str, password: &str) -> String {
    let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
    let (scheme, rest) = url.split_at(scheme_end);
    let host_start = rest
        .find(['/', '?'])
        .map_or(rest, |end| &rest[..end])
        .rfind('@')
        .map_or(0, |at| at + 1);
    format!("{scheme}{user}:{password}@{}", &rest[host_start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_added_to_those_a_url_has() {
        assert_eq!(with_params("postgres://h/db", "a=1"), "postgres://h/db?a=1");
        assert_eq!(
            with_params("postgres://h/db?sslmode=disable", "a=1"),
            "postgres://h/db?sslmode=disable&a=1"
        );
    }

    #[test]
    fn replaces_only_the_database() {
        assert_eq!(
            with_database("postgres://u@h:5432/test?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }

    #[test]
    fn replaces_only_the_login() {
        assert_eq!(
            with_login("postgres://u:p@h:5432/test?sslmode=disable", "v", "q"),
            "postgres://v:q@h:5432/test?sslmode=disable"
        );
        assert_eq!(
            with_login("postgres://h/test", "v", "q"),
            "postgres://v:q@h/test"
        );
        assert_eq!(
            with_login("postgres://u@h/test?options=a@b", "v", "q"),
            "postgres://v:q@h/test?options=a@b"
        );
    }
}
