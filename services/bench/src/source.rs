//! Client sockets: each bound to its own source address in 127.0.0.0/8 before it connects, so
//! the number of connections to one gateway is not capped by the ~28,000 ephemeral ports of a
//! single source address.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

/// Source addresses used in turn: 127.1.0.1 … 127.254.255.254 (127.0.0.x is left alone).
pub fn source_addr(index: u64) -> Ipv4Addr {
    const PER_B: u64 = 254; // last octet 1..=254
    const PER_A: u64 = 256 * PER_B; // third octet 0..=255
    let i = index % (254 * PER_A);
    let a = 1 + i / PER_A;
    let b = (i % PER_A) / PER_B;
    let c = 1 + i % PER_B;
    Ipv4Addr::new(127, a as u8, b as u8, c as u8)
}

/// Connects to `target`, from source address number `index` when `spread` is set.
pub async fn connect(target: SocketAddr, index: u64, spread: bool) -> std::io::Result<TcpStream> {
    let stream = if spread && target.ip().is_loopback() && target.is_ipv4() {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source_addr(index).into(), 0))?;
        socket.connect(target).await?
    } else {
        TcpStream::connect(target).await?
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_stay_in_loopback_and_skip_zero_octets() {
        for i in [0, 1, 253, 254, 65_023, 65_024, 10_000_000] {
            let a = source_addr(i);
            let o = a.octets();
            assert_eq!(o[0], 127);
            assert!(o[1] >= 1 && o[1] <= 254, "{a}");
            assert!(o[3] >= 1 && o[3] <= 254, "{a}");
        }
        assert_eq!(source_addr(0), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(source_addr(254), Ipv4Addr::new(127, 1, 1, 1));
        assert_ne!(source_addr(5), source_addr(6));
    }
}
