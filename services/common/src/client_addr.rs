//! Who the client is, by address: the connection's peer, or, behind proxies the operator
//! trusts (`PULSE_TRUSTED_PROXIES`), the nearest untrusted address of `X-Forwarded-For`.
//! A header from anyone else is the client's own word and changes nothing.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// `PULSE_TRUSTED_PROXIES`: the proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    fn trusts(&self, address: &IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(address))
    }

    /// The client's address for a request from `peer` with `headers`. An IPv4 address written
    /// as IPv6 (`::ffff:10.1.2.3`, how a dual-stack listener sees IPv4 peers) is that IPv4
    /// address, for the trusted networks and for the caller.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(&peer) {
            return peer;
        }
        // Split as bytes: a value with a byte past ASCII in the client's own part is still read
        // for the hops the proxies appended (skipping the whole value would count the client
        // as the proxy).
        let hops: Vec<&[u8]> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .collect();
        // From the right: each trusted proxy appended who it heard from, so the first address
        // that is not a trusted proxy's is the client. Whatever is left of it is the client's
        // own word, garbage included, and is never read: a client that sends a header nobody
        // can parse must not be counted as the proxy (and with it everyone behind it).
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            let Some(address) = std::str::from_utf8(hop).ok().and_then(hop_address) else {
                break;
            };
            client = address.to_canonical();
            if !self.trusts(&client) {
                break;
            }
        }
        client
    }
}

/// The address of one `X-Forwarded-For` hop. Some proxies (Azure's Application Gateway,
/// IIS's ARR) append the port they heard from: `203.0.113.5:51234`, `[2001:db8::1]:443`. Read
/// as garbage, it would count every client behind the proxy as the proxy.
fn hop_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            let bracketed = hop.strip_prefix('[')?.strip_suffix(']')?;
            bracketed.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        })
}

/// What a limit counts as one client: an IPv4 address, or the /64 an IPv6 address is in.
/// One subscriber holds a whole /64 and may send from any address of it (and privacy
/// extensions change the address daily): counted per address, it would escape every limit
/// (the web service's login limits, the gateway's connections per address).
pub fn subscriber(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// Parses `PULSE_TRUSTED_PROXIES`: addresses or networks, comma-separated. For clap.
pub fn parse_trusted(raw: &str) -> Result<TrustedProxies, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{s:?} is neither an address nor a network (10.0.0.0/8)"))
        })
        .collect::<Result<_, _>>()
        .map(TrustedProxies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let t = parse_trusted("10.0.0.0/8, 192.168.1.1").unwrap();
        let spoof = forwarded("1.2.3.4");
        assert_eq!(t.client(ip("203.0.113.9"), &spoof), ip("203.0.113.9"));
        assert_eq!(t.client(ip("10.1.2.3"), &spoof), ip("1.2.3.4"));
        // A client that sends its own header gets it extended, not believed.
        let chain = forwarded("6.6.6.6, 198.51.100.7, 10.9.9.9");
        assert_eq!(t.client(ip("192.168.1.1"), &chain), ip("198.51.100.7"));
        assert_eq!(
            t.client(ip("10.1.2.3"), &forwarded("garbage")),
            ip("10.1.2.3")
        );
        // Garbage of the client's own, left of what the trusted proxy appended, is not read:
        // the client is who the proxy heard from, not the proxy.
        let forged = forwarded("not-an-address, 198.51.100.7");
        assert_eq!(t.client(ip("10.1.2.3"), &forged), ip("198.51.100.7"));
        let behind_two = forwarded("garbage, 198.51.100.8, 10.9.9.9");
        assert_eq!(t.client(ip("10.1.2.3"), &behind_two), ip("198.51.100.8"));
        assert_eq!(t.client(ip("10.1.2.3"), &HeaderMap::new()), ip("10.1.2.3"));
        // Bytes past ASCII of the client's own are garbage like any other.
        let mut raw = HeaderMap::new();
        let value = axum::http::HeaderValue::from_bytes(b"\xff\xfe, 198.51.100.9").unwrap();
        raw.insert("x-forwarded-for", value);
        assert_eq!(t.client(ip("10.1.2.3"), &raw), ip("198.51.100.9"));
        // A dual-stack listener sees an IPv4 proxy as `::ffff:10.1.2.3`: still trusted.
        assert_eq!(t.client(ip("::ffff:10.1.2.3"), &spoof), ip("1.2.3.4"));
        assert_eq!(
            t.client(ip("::ffff:203.0.113.9"), &spoof),
            ip("203.0.113.9")
        );
        // Hops with the port the proxy heard from are the client's address.
        let ported = forwarded("6.6.6.6, 198.51.100.10:51234");
        assert_eq!(t.client(ip("10.1.2.3"), &ported), ip("198.51.100.10"));
        let ported6 = forwarded("[2001:db8::7]:443");
        assert_eq!(t.client(ip("10.1.2.3"), &ported6), ip("2001:db8::7"));
        let bracketed = forwarded("[2001:db8::8], 10.9.9.9:80");
        assert_eq!(t.client(ip("10.1.2.3"), &bracketed), ip("2001:db8::8"));
        assert!(parse_trusted("not-an-ip").is_err());
        assert_eq!(parse_trusted("").unwrap(), TrustedProxies::default());
    }
}
