//! A TCP proxy a test puts between a service and PostgreSQL or NATS, to stage partitions:
//! frozen (nothing passes, nothing is closed), cut (every connection closed, new ones too),
//! slow (every chunk held a while, in order) and open again (what a freeze held goes on).

/// What a [`Proxy`] does with the bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Open,
    /// Nothing passes and nothing is closed: a partition, as seen from either side.
    Frozen,
    /// Every connection is closed.
    Cut,
    /// Everything passes, in order, each chunk read held this long first: a distant server.
    Slow(std::time::Duration),
}

/// A TCP proxy (to PostgreSQL, to NATS) that a test can freeze, cut and open again.
pub struct Proxy {
    /// The loopback port it listens on.
    pub port: u16,
    link: tokio::sync::watch::Sender<Link>,
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut link: tokio::sync::watch::Receiver<Link>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Wait out a freeze; stop on a cut.
        loop {
            let now = *link.borrow_and_update();
            match now {
                Link::Open | Link::Slow(_) => break,
                Link::Cut => return,
                Link::Frozen => {
                    if link.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        tokio::select! {
            read = from.read(&mut buf) => {
                let Ok(n) = read else { return };
                if n == 0 {
                    return;
                }
                let slow = match *link.borrow() {
                    Link::Slow(delay) => Some(delay),
                    _ => None,
                };
                if let Some(delay) = slow {
                    tokio::time::sleep(delay).await;
                }
                // Bytes read just before a freeze are held until it ends.
                while *link.borrow() == Link::Frozen {
                    if link.changed().await.is_err() {
                        return;
                    }
                }
                if *link.borrow() == Link::Cut || to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            changed = link.changed() => if changed.is_err() { return },
        }
    }
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`
    /// (`host:port`).
    pub async fn to(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy's port");
        let port = listener.local_addr().expect("the proxy's address").port();
        let (link, _) = tokio::sync::watch::channel(Link::Open);
        let links = link.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, links.subscribe()));
                tokio::spawn(pipe(server_read, client_write, links.subscribe()));
            }
        });
        Proxy { port, link }
    }

    /// Opens, freezes or cuts every connection, and the ones made from now on.
    pub fn set(&self, link: Link) {
        self.link.send_replace(link);
    }
}
