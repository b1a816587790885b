//! Where Redis is (`REDIS_URL`): one server, or a Redis Cluster.
//!
//! - `redis://host:port` — one server (or a Sentinel-managed address).
//! - `redis+cluster://host:port,host:port,…` — a cluster: any reachable node is enough to
//!   discover the rest; user and password, if any, are written once before the first node
//!   (`redis+cluster://:secret@host:7000,host:7001`) and apply to all.
//! - `redis://host:7000,redis://host:7001,…` — a list of node URLs: a cluster too.
//!
//! Commands go through [`RedisConnection`], which routes each one to the node that holds its
//! key on a cluster. Every key of a queue carries the queue's hash tag (`{prefix.queue}`),
//! so its Lua scripts, which touch several keys, run on one node.
//!
//! Pub/sub is the classic kind on both: a cluster forwards every PUBLISH to every node, so a
//! subscriber on any one node hears all of them ([`RedisTarget::subscribe`]). Sharded pub/sub
//! would spare the other nodes that traffic but offers no patterns, and the workers listen
//! for every queue with one pattern; our messages are one per pushed batch and one per
//! committed batch of balance changes, which the cluster bus carries easily.

use redis::{
    ConnectionInfo, IntoConnectionInfo, RedisResult,
    aio::{ConnectionLike, ConnectionManager, PubSub},
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
};
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// A parsed `REDIS_URL`.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    Server(ConnectionInfo),
    /// The nodes to discover the cluster from.
    Cluster(Vec<ConnectionInfo>),
}

const CLUSTER_SCHEME: &str = "redis+cluster://";

impl RedisTarget {
    pub fn parse(url: &str) -> RedisResult<Self> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) {
            let (auth, nodes) = match rest.rsplit_once('@') {
                Some((auth, nodes)) => (format!("{auth}@"), nodes),
                None => (String::new(), rest),
            };
            let (nodes, tail) = match nodes.find(['/', '?']) {
                Some(at) => nodes.split_at(at),
                None => (nodes, ""),
            };
            let nodes = nodes
                .split(',')
                .map(str::trim)
                .filter(|node| !node.is_empty())
                .map(|node| format!("redis://{auth}{node}{tail}").into_connection_info())
                .collect::<RedisResult<Vec<_>>>()?;
            return Self::cluster(nodes);
        }
        if url.contains(',') {
            let nodes = url
                .split(',')
                .map(str::trim)
                .filter(|node| !node.is_empty())
                .map(|node| node.into_connection_info())
                .collect::<RedisResult<Vec<_>>>()?;
            return Self::cluster(nodes);
        }
        Ok(Self::Server(url.into_connection_info()?))
    }

    fn cluster(nodes: Vec<ConnectionInfo>) -> RedisResult<Self> {
        if nodes.is_empty() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "a cluster URL names no node",
            )));
        }
        Ok(Self::Cluster(nodes))
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// A connection that connects lazily and reconnects by itself, with short timeouts so
    /// that a caller facing a dead Redis gets an error quickly instead of hanging.
    ///
    /// On a cluster, commands for the slots of a master that just died fail the same way
    /// until its replica is promoted and the connection has learnt the new map (a few
    /// seconds with `cluster-node-timeout 2000`, as `scripts/redis-cluster.sh` sets it):
    /// the API answers 503, workers retry, and `reconcile` re-enqueues from Postgres what
    /// the dead master had not yet passed to its replica.
    pub fn connect(&self) -> RedisResult<RedisConnection> {
        match self {
            Self::Server(info) => {
                let client = redis::Client::open(info.clone())?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200));
                Ok(RedisConnection::Server(
                    ConnectionManager::new_lazy_with_config(client, config)?,
                ))
            }
            Self::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(Duration::from_secs(1))
                    .response_timeout(Duration::from_secs(2))
                    .build()?;
                Ok(RedisConnection::Cluster(HealingCluster::new(client)))
            }
        }
    }

    /// A pub/sub connection: to the server, or to the first cluster node that answers
    /// (starting from a random one, so that processes spread over the nodes). When that
    /// node goes away the connection ends and the caller subscribes again.
    pub async fn subscribe(&self) -> RedisResult<PubSub> {
        let nodes = match self {
            Self::Server(info) => std::slice::from_ref(info),
            Self::Cluster(nodes) => nodes.as_slice(),
        };
        let start = rand::random_range(0..nodes.len());
        let mut last_error = None;
        for i in 0..nodes.len() {
            let info = nodes[(start + i) % nodes.len()].clone();
            let attempt = async {
                let client = redis::Client::open(info)?;
                tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub())
                    .await
                    .map_err(|_| {
                        redis::RedisError::from((
                            redis::ErrorKind::Io,
                            "timed out connecting for pub/sub",
                        ))
                    })?
            };
            match attempt.await {
                Ok(pubsub) => return Ok(pubsub),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("a target has at least one node"))
    }
}

/// A connection to a server or to a cluster; clones share it.
#[derive(Clone)]
pub enum RedisConnection {
    Server(ConnectionManager),
    Cluster(HealingCluster),
}

/// A cluster connection that is replaced by a fresh one when it stops answering.
///
/// redis-rs 1.8's cluster connection can wedge for good when a master dies under
/// concurrent requests: after the replica's promotion every command still times out,
/// forever (its slot refresh never completes). Measured here with GETs in flight during a
/// failover: 400 at a time, silent 30 s after the promotion in 2 runs of 2; 100 at a time,
/// in 1 run of 2; one at a time, never (measured by hand when cluster support was written;
/// `tests/cluster` fails a master over under the processes' own load). A fresh
/// connection discovers the new map from the other nodes at once. A real failover also
/// goes unanswered for a few seconds and gets a fresh connection too: one slot discovery.
#[derive(Clone)]
pub struct HealingCluster(std::sync::Arc<Healing>);

struct Healing {
    client: redis::cluster::ClusterClient,
    /// The connection in use and its generation.
    current: std::sync::RwLock<(u64, ClusterConnection)>,
    /// Milliseconds since `epoch` of the last answer, and of the last replacement.
    last_answer_ms: AtomicU64,
    replaced_ms: AtomicU64,
    epoch: Instant,
}

/// A connection silent this long (timeouts only, no answer) is replaced, at most this often.
const WEDGED_AFTER: Duration = Duration::from_secs(5);

impl HealingCluster {
    fn new(client: redis::cluster::ClusterClient) -> Self {
        let conn = client.get_pending_async_connection_with_config(Default::default());
        Self(std::sync::Arc::new(Healing {
            client,
            current: std::sync::RwLock::new((0, conn)),
            last_answer_ms: AtomicU64::new(0),
            replaced_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }))
    }

    fn current(&self) -> (u64, ClusterConnection) {
        self.0
            .current
            .read()
            .expect("cluster connection lock")
            .clone()
    }

    fn now_ms(&self) -> u64 {
        self.0.epoch.elapsed().as_millis() as u64
    }

    /// Notes how a command went; replaces a connection that only times out.
    fn outcome<T>(&self, generation: u64, result: &RedisResult<T>) {
        let now = self.now_ms();
        match result {
            Err(e) if e.is_timeout() => {
                let wedged = WEDGED_AFTER.as_millis() as u64;
                let silent = now.saturating_sub(self.0.last_answer_ms.load(Ordering::Acquire));
                let since_replaced = now.saturating_sub(self.0.replaced_ms.load(Ordering::Acquire));
                if silent < wedged || since_replaced < wedged {
                    return;
                }
                let mut current = self.0.current.write().expect("cluster connection lock");
                if current.0 != generation {
                    return;
                }
                tracing::warn!(
                    silent_ms = silent,
                    "the Redis Cluster connection stopped answering; opening a fresh one"
                );
                *current = (
                    generation + 1,
                    self.0
                        .client
                        .get_pending_async_connection_with_config(Default::default()),
                );
                self.0.replaced_ms.store(now, Ordering::Release);
            }
            _ => self.0.last_answer_ms.store(now, Ordering::Release),
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Server(conn) => conn.req_packed_command(cmd),
            Self::Cluster(healing) => {
                let (generation, mut conn) = healing.current();
                Box::pin(async move {
                    let result = conn.req_packed_command(cmd).await;
                    healing.outcome(generation, &result);
                    result
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Server(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(healing) => {
                let (generation, mut conn) = healing.current();
                Box::pin(async move {
                    let result = conn.req_packed_commands(pipeline, offset, count).await;
                    healing.outcome(generation, &result);
                    result
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Server(conn) => conn.get_db(),
            Self::Cluster(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(target: &RedisTarget) -> Vec<String> {
        let nodes = match target {
            RedisTarget::Server(info) => vec![info.clone()],
            RedisTarget::Cluster(nodes) => nodes.clone(),
        };
        nodes.iter().map(|n| n.addr().to_string()).collect()
    }

    #[test]
    fn a_plain_url_is_one_server() {
        let target = RedisTarget::parse("redis://127.0.0.1:6379").unwrap();
        assert!(!target.is_cluster());
        assert_eq!(addresses(&target), ["127.0.0.1:6379"]);
    }

    #[test]
    fn a_cluster_url_lists_its_nodes_and_gives_each_the_password() {
        let target =
            RedisTarget::parse("redis+cluster://:s3cret@127.0.0.1:7000,127.0.0.1:7001,").unwrap();
        assert!(target.is_cluster());
        assert_eq!(addresses(&target), ["127.0.0.1:7000", "127.0.0.1:7001"]);
        let RedisTarget::Cluster(nodes) = target else {
            unreachable!()
        };
        assert!(
            nodes
                .iter()
                .all(|n| n.redis_settings().password() == Some("s3cret"))
        );
    }

    #[test]
    fn a_list_of_node_urls_is_a_cluster() {
        let target = RedisTarget::parse("redis://10.0.0.1:7000, redis://10.0.0.2:7000").unwrap();
        assert!(target.is_cluster());
        assert_eq!(addresses(&target), ["10.0.0.1:7000", "10.0.0.2:7000"]);
    }

    #[test]
    fn a_cluster_url_without_nodes_is_refused() {
        assert!(RedisTarget::parse("redis+cluster://").is_err());
        assert!(RedisTarget::parse("redis+cluster://127.0.0.1:notaport").is_err());
    }
}
