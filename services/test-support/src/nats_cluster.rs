//! A three-node NATS cluster for tests: private nats-servers routed to each other, JetStream
//! on each with a store of its own, for the tests of replicated streams (`--stream-replicas 3`):
//! node kills, leader elections, replicas behind their leader. Each node can be killed and
//! started again on its ports and store; all are killed, and their directory removed, on drop.
//! A pair of servers routed through proxies ([`RoutedPair`]) stages a partition between them.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::Value;

use crate::eventually_some as until;
use crate::free_ports;
use crate::nats::server_binary;
use crate::proxy::{Link, Proxy};

/// One nats-server of the cluster.
pub struct Node {
    pub name: String,
    port: u16,
    cluster_port: u16,
    http_port: u16,
    store: PathBuf,
    log: PathBuf,
    pub child: Option<Child>,
}

impl Node {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the node runs").id()
    }

    pub async fn monitor(&self, path: &str) -> Option<Value> {
        let url = format!("http://127.0.0.1:{}/{path}", self.http_port);
        reqwest::get(url).await.ok()?.json().await.ok()
    }
}

/// Three nats-servers routed to each other, JetStream on each with a store of its own, in a
/// directory of its own; killed, and the directory removed, on drop. A test that fails shows
/// the end of each node's log in its output.
pub struct Cluster {
    pub nodes: Vec<Node>,
    name: String,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            for node in &self.nodes {
                crate::nats::show_log_end(&format!("{} of {}", node.name, self.name), &node.log);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    /// Starts three nodes and waits until all of them know the same JetStream meta leader.
    ///
    /// The ports are picked free, but another process may take one before a node binds it,
    /// and that node then exits at once. The cluster is then started again on other ports, up
    /// to three times.
    pub async fn start() -> Cluster {
        let mut attempt = 1;
        loop {
            let mut cluster = Cluster::on_free_ports();
            for i in 0..3 {
                cluster.launch(i);
            }
            match cluster.started().await {
                Ok(()) => return cluster,
                Err(exited) if attempt < 3 => {
                    eprintln!("nats cluster: {exited}; starting it again on other ports");
                    attempt += 1;
                }
                Err(exited) => panic!("nats cluster: {exited}, {attempt} times"),
            }
        }
    }

    /// Three nodes' places: free ports and a directory of their own; none started.
    fn on_free_ports() -> Cluster {
        let id = format!("{:08x}", rand::random::<u32>());
        let dir = std::env::temp_dir().join(format!("pulse-t-nats-cluster-{id}"));
        let ports = free_ports(9);
        let nodes = (0..3)
            .map(|i| Node {
                name: format!("n{i}"),
                port: ports[i],
                cluster_port: ports[3 + i],
                http_port: ports[6 + i],
                store: dir.join(format!("n{i}")),
                log: dir.join(format!("n{i}.log")),
                child: None,
            })
            .collect();
        Cluster {
            nodes,
            name: format!("pulse-t-{id}"),
            dir,
        }
    }

    /// [`Self::wait_for_meta_leader`], or an error naming a node that exited meanwhile, with
    /// the end of its log.
    async fn started(&mut self) -> Result<(), String> {
        let within = Duration::from_secs(30);
        let deadline = Instant::now() + within;
        loop {
            for node in &mut self.nodes {
                let exited = node
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                if let Some(status) = exited {
                    let log = std::fs::read_to_string(&node.log).unwrap_or_default();
                    let last: Vec<&str> = log.lines().rev().take(3).collect();
                    return Err(format!(
                        "{} exited at start ({status}): {last:?}",
                        node.name
                    ));
                }
            }
            if self.meta_leader_known().await {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "a JetStream meta leader known to every node: not within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILLs node `i`: its store stays, for [`Self::launch`] to start it on again.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes node `i` (SIGSTOP): its connections stay open and it stores and answers
    /// nothing, falling behind its streams' leaders, until [`Self::resume`].
    pub fn pause(&self, i: usize) {
        crate::stop_process(self.nodes[i].pid());
    }

    /// Lets a paused node go on (SIGCONT).
    pub fn resume(&self, i: usize) {
        crate::signal(self.nodes[i].pid(), "CONT");
    }

    /// Starts node `i` (again: on the same ports and store).
    pub fn launch(&mut self, i: usize) {
        let routes = self
            .nodes
            .iter()
            .filter(|n| n.name != self.nodes[i].name)
            .map(|n| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect::<Vec<_>>()
            .join(",");
        let store = self.nodes[i].store.clone();
        let store = store.to_str().expect("a UTF-8 store path");
        self.spawn(i, &["--routes", &routes, "-js", "-sd", store]);
    }

    /// Starts node `i` in this cluster with `args` besides its ports and names.
    fn spawn(&mut self, i: usize, args: &[&str]) {
        std::fs::create_dir_all(&self.nodes[i].store).expect("cannot create the node's store");
        let node = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("cannot open the node's log");
        let child = std::process::Command::new(server_binary())
            .args(["-a", "127.0.0.1", "-p", &node.port.to_string()])
            .args(["-m", &node.http_port.to_string()])
            .args(["--server_name", &node.name, "--cluster_name", &self.name])
            .args([
                "--cluster",
                &format!("nats://127.0.0.1:{}", node.cluster_port),
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server must be installed (run `make test`)");
        self.nodes[i].child = Some(child);
    }

    pub async fn wait_for_meta_leader(&self) {
        until(
            "a JetStream meta leader known to every node",
            Duration::from_secs(30),
            || async { self.meta_leader_known().await.then_some(()) },
        )
        .await;
    }

    /// Whether every running node knows the same JetStream meta leader.
    async fn meta_leader_known(&self) -> bool {
        let mut leaders = Vec::new();
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let Some(jsz) = node.monitor("jsz").await else {
                return false;
            };
            match jsz["meta_cluster"]["leader"].as_str() {
                Some(leader) if !leader.is_empty() => leaders.push(leader.to_owned()),
                _ => return false,
            }
        }
        !leaders.is_empty() && leaders.windows(2).all(|w| w[0] == w[1])
    }

    /// Every node's URL, comma-separated, as a service is configured with.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(Node::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The (node, connection id) of every client connection named `name`.
    pub async fn connections(&self, name: &str) -> Vec<(usize, u64)> {
        let mut found = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(connz) = node.monitor("connz?limit=1024").await else {
                continue;
            };
            for c in connz["connections"].as_array().into_iter().flatten() {
                if c["name"] == name {
                    let cid = c["cid"].as_u64().expect("connz lists a cid");
                    found.push((i, cid));
                }
            }
        }
        found
    }

    /// Steps the leader of `stream` down until `node` leads it, then waits until every replica
    /// is current.
    pub async fn lead(&self, nats: &async_nats::Client, stream: &str, node: usize) {
        let js = jetstream::new(nats.clone());
        let wanted = self.nodes[node].name.clone();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let leader = stream_leader(&js, stream).await;
            if leader.as_deref() == Some(wanted.as_str()) {
                break;
            }
            assert!(Instant::now() < deadline, "{wanted} never led {stream}");
            if leader.is_some() {
                let _ = nats
                    .request(
                        format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}"),
                        "".into(),
                    )
                    .await;
                // Wait for the election to end before asking again.
                until("a new leader", Duration::from_secs(20), || {
                    let (js, leader) = (js.clone(), leader.clone());
                    async move {
                        let now = stream_leader(&js, stream).await;
                        (now.is_some() && now != leader).then_some(())
                    }
                })
                .await;
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        until_stream(
            &js,
            stream,
            "every replica current",
            Duration::from_secs(20),
            replicas_current,
        )
        .await;
    }
}

/// Two nats-servers of one cluster, JetStream on each, whose routes pass through a [`Proxy`]
/// each that the test can cut. A message published at one while the routes are cut never
/// reaches the other's subscribers, though a stream on the first (one replica) stores it: a
/// partition between cluster servers.
pub struct RoutedPair {
    pub cluster: Cluster,
    routes: [Proxy; 2],
}

impl RoutedPair {
    /// Starts both servers and waits until they are routed and agree on a JetStream meta
    /// leader.
    pub async fn start() -> RoutedPair {
        let mut cluster = Cluster::on_free_ports();
        cluster.nodes.truncate(2);
        // Each server solicits the route to the other through a proxy of its own (JetStream
        // in a cluster wants a configured route on each).
        let to = |i: usize| format!("127.0.0.1:{}", cluster.nodes[i].cluster_port);
        let routes = [Proxy::to(to(1)).await, Proxy::to(to(0)).await];
        for (i, proxy) in routes.iter().enumerate() {
            let through_proxy = format!("nats://127.0.0.1:{}", proxy.port);
            let store = cluster.nodes[i].store.clone();
            let store = store.to_str().expect("a UTF-8 store path");
            cluster.spawn(i, &["--routes", &through_proxy, "-js", "-sd", store]);
        }
        let pair = RoutedPair { cluster, routes };
        pair.wait_routed(true).await;
        pair.cluster.wait_for_meta_leader().await;
        pair
    }

    /// Cuts the routes (`false`) or opens them again (`true`), and waits until both servers
    /// say so.
    pub async fn set_routed(&self, routed: bool) {
        for route in &self.routes {
            route.set(if routed { Link::Open } else { Link::Cut });
        }
        self.wait_routed(routed).await;
    }

    /// The index of the server that leads `stream` (the one that holds it, at one replica).
    pub async fn holder(&self, js: &jetstream::Context, stream: &str) -> usize {
        let within = Duration::from_secs(30);
        let leader = until_stream(js, stream, "a leader", within, stream_leader).await;
        self.cluster
            .nodes
            .iter()
            .position(|n| n.name == leader)
            .expect("the leader is a server of the pair")
    }

    async fn wait_routed(&self, routed: bool) {
        let what = if routed {
            "the route up"
        } else {
            "the route down"
        };
        until(what, Duration::from_secs(30), || async {
            for node in &self.cluster.nodes {
                let routez = node.monitor("routez").await?;
                let up = routez["num_routes"].as_u64().unwrap_or(0) > 0;
                if up != routed {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }
}

/// Polls `probe` on `stream` until it answers, or panics naming the stream and `what` after
/// `within`: what each wait on a stream of the cluster shares.
pub async fn until_stream<'a, T, Fut>(
    js: &'a jetstream::Context,
    stream: &'a str,
    what: &str,
    within: Duration,
    probe: impl Fn(&'a jetstream::Context, &'a str) -> Fut,
) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    until(&format!("{stream}: {what}"), within, || probe(js, stream)).await
}

/// The stream's info, or `None` when no answer comes within a second (no leader, say).
pub async fn stream_info(js: &jetstream::Context, stream: &str) -> Option<jetstream::stream::Info> {
    let read = async {
        let mut s = js.get_stream(stream).await.ok()?;
        s.info().await.ok().cloned()
    };
    tokio::time::timeout(Duration::from_secs(1), read)
        .await
        .ok()
        .flatten()
}

pub async fn stream_leader(js: &jetstream::Context, stream: &str) -> Option<String> {
    stream_info(js, stream).await?.cluster?.leader
}

/// `Some` once the stream has a leader and both other replicas are current and online.
pub async fn replicas_current(js: &jetstream::Context, stream: &str) -> Option<()> {
    let cluster = stream_info(js, stream).await?.cluster?;
    cluster.leader?;
    let ok =
        cluster.replicas.len() == 2 && cluster.replicas.iter().all(|r| r.current && !r.offline);
    ok.then_some(())
}
