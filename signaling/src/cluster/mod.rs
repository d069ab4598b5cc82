//! Cluster mode (`[cluster]` with `redis_url`): this node's entry in the
//! node registry that every node keeps in one Redis, and this node's view
//! of the others (`GET /api/cluster`, `zync_cluster_*` metrics).
//!
//! Every [`HEARTBEAT`] a node writes `zync:node:<id>` (its [`NodeInfo`] as
//! JSON) with an expiry of [`ENTRY_TTL`], adds its id to the set
//! `zync:nodes`, and reads the entries of every id in the set. An entry
//! that has expired belongs to a node that stopped beating (killed, frozen,
//! cut off from Redis): its id leaves the set and the view, at most
//! `ENTRY_TTL + HEARTBEAT` (7 s) after its last beat. Expiry runs on
//! Redis's clock, so the nodes' clocks need not agree. A node that stops
//! normally deletes its entry at once.
//!
//! Redis being unreachable never stops a node: it keeps serving, says so
//! in its view and its metrics, and beats again once Redis is back.

mod load;

pub use load::{LoadSampler, NodeLoad};

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zync_config::ClusterConfig;

/// How often a node writes its entry and reads the others'.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long an entry outlives its node's last beat.
pub const ENTRY_TTL: Duration = Duration::from_secs(5);
/// How long one Redis command may take before the beat counts as failed.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// The set of node ids.
const NODES_KEY: &str = "zync:nodes";

fn entry_key(node_id: &str) -> String {
    format!("zync:node:{node_id}")
}

/// What a node publishes about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `cluster.node_id`.
    pub id: String,
    /// Random per process: tells a restarted node from the one before it,
    /// and two processes started with one id apart.
    pub instance: String,
    /// `cluster.advertise` (empty when not set).
    pub advertise: String,
    /// The origin browsers use for this node.
    pub public_url: String,
    /// Zync's version.
    pub version: String,
    /// When the process started (Unix seconds).
    pub started_at: u64,
    /// When this entry was written (Unix milliseconds, the node's clock;
    /// informational only).
    pub beat_at: u64,
    /// Its load at that moment.
    #[serde(flatten)]
    pub load: NodeLoad,
}

/// Whether the last beat reached Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisState {
    /// The last beat wrote and read the registry.
    Up,
    /// The last beat failed; `nodes` is what the last good one saw.
    Unavailable,
}

/// This node's view of the cluster (`GET /api/cluster`).
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    /// This node's id.
    pub node_id: String,
    /// Whether Redis answered the last beat.
    pub redis: RedisState,
    /// Why it did not, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The live nodes, this one included, by id.
    pub nodes: Vec<NodeInfo>,
}

/// A cheap handle on this node's view; the beat task keeps it current.
#[derive(Clone)]
pub struct Cluster {
    view: Arc<RwLock<ClusterView>>,
}

impl Cluster {
    /// The view as of the last beat.
    pub fn view(&self) -> ClusterView {
        match self.view.read() {
            Ok(view) => view.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// This node's identity, as configured.
pub struct NodeIdentity {
    /// `cluster.node_id`, or the host name.
    pub id: String,
    /// `cluster.advertise`.
    pub advertise: String,
    /// The public origin.
    pub public_url: String,
}

impl NodeIdentity {
    /// From the configuration: the node id defaults to the host name (an
    /// unusable host name is a clear error: set `cluster.node_id`).
    pub fn from_config(config: &ClusterConfig, public_url: String) -> anyhow::Result<Self> {
        let id = if config.node_id.is_empty() {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .context("cluster.node_id: reading the host name; set cluster.node_id")?
                .trim()
                .to_string();
            anyhow::ensure!(
                zync_config::valid_node_id(&host),
                "cluster.node_id: the host name {host:?} cannot name a node; set cluster.node_id"
            );
            host
        } else {
            config.node_id.clone()
        };
        Ok(Self {
            id,
            advertise: config.advertise.clone(),
            public_url,
        })
    }
}

/// Connects to Redis, claims this node's id (waiting up to [`ENTRY_TTL`]
/// for the entry of a process that had it before, e.g. this node before a
/// restart, to expire), writes the first entry, and starts beating until
/// `stopped` turns true; the task then deletes the entry.
///
/// Fails with a clear error when Redis cannot be reached or the id stays
/// taken by a live node.
pub async fn join(
    config: &ClusterConfig,
    identity: NodeIdentity,
    mut load: LoadSampler,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<(Cluster, JoinHandle<()>)> {
    let client = redis::Client::open(config.redis_url.as_str())
        .context("cluster.redis_url: not a usable Redis URL")?;
    let settings = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT))
        .set_number_of_retries(1);
    let mut redis = ConnectionManager::new_with_config(client, settings)
        .await
        .with_context(|| {
            format!(
                "cluster: cannot reach Redis at {}",
                redacted(&config.redis_url)
            )
        })?;
    let mut me = NodeInfo {
        id: identity.id,
        instance: format!("{:016x}", rand::random::<u64>()),
        advertise: identity.advertise,
        public_url: identity.public_url,
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: unix_millis() / 1000,
        beat_at: unix_millis(),
        load: load.sample(),
    };
    claim(&mut redis, &me).await?;
    let nodes = beat(&mut redis, &me)
        .await
        .context("cluster: the first heartbeat failed")?;
    tracing::info!(node = %me.id, nodes = nodes.len(), "cluster: joined");
    let view = Arc::new(RwLock::new(ClusterView {
        node_id: me.id.clone(),
        redis: RedisState::Up,
        error: None,
        nodes,
    }));
    let cluster = Cluster { view: view.clone() };
    publish_metrics(&cluster.view());
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(HEARTBEAT);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopped.wait_for(|s| *s) => break,
            }
            me.load = load.sample();
            me.beat_at = unix_millis();
            let outcome = beat(&mut redis, &me).await;
            let snapshot = {
                let mut current = match view.write() {
                    Ok(v) => v,
                    Err(poisoned) => poisoned.into_inner(),
                };
                match outcome {
                    Ok(nodes) => {
                        if current.redis == RedisState::Unavailable {
                            tracing::info!("cluster: Redis is reachable again");
                        }
                        current.redis = RedisState::Up;
                        current.error = None;
                        current.nodes = nodes;
                    }
                    Err(e) => {
                        if current.redis == RedisState::Up {
                            tracing::warn!(error = %e, "cluster: heartbeat failed; serving on without the registry");
                        }
                        current.redis = RedisState::Unavailable;
                        current.error = Some(e.to_string());
                    }
                }
                current.clone()
            };
            publish_metrics(&snapshot);
        }
        leave(&mut redis, &me).await;
    });
    Ok((cluster, task))
}

/// Takes `me.id`: free, held by an expired entry, or held by a process
/// that stops beating within [`ENTRY_TTL`].
async fn claim(redis: &mut ConnectionManager, me: &NodeInfo) -> anyhow::Result<()> {
    let key = entry_key(&me.id);
    let entry = serde_json::to_string(me)?;
    let deadline = tokio::time::Instant::now() + ENTRY_TTL + HEARTBEAT;
    loop {
        let claimed: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&entry)
            .arg("NX")
            .arg("PX")
            .arg(ENTRY_TTL.as_millis() as u64)
            .query_async(redis)
            .await
            .context("cluster: claiming this node's id in Redis")?;
        if claimed.is_some() {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "cluster.node_id {:?} is in use by another running node; give each node its own",
            me.id
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Writes this node's entry and reads every live node's (this one's
/// included); drops the ids whose entries have expired from the set.
async fn beat(redis: &mut ConnectionManager, me: &NodeInfo) -> anyhow::Result<Vec<NodeInfo>> {
    let entry = serde_json::to_string(me)?;
    let ids: Vec<String> = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(entry_key(&me.id))
        .arg(entry)
        .arg("PX")
        .arg(ENTRY_TTL.as_millis() as u64)
        .ignore()
        .cmd("SADD")
        .arg(NODES_KEY)
        .arg(&me.id)
        .ignore()
        .cmd("SMEMBERS")
        .arg(NODES_KEY)
        .query_async::<(Vec<String>,)>(redis)
        .await
        .map(|(ids,)| ids)?;
    let keys: Vec<String> = ids.iter().map(|id| entry_key(id)).collect();
    let entries: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(redis).await?;
    let mut nodes = Vec::with_capacity(ids.len());
    let mut gone = Vec::new();
    for (id, entry) in ids.into_iter().zip(entries) {
        match entry.map(|text| serde_json::from_str::<NodeInfo>(&text)) {
            Some(Ok(node)) => nodes.push(node),
            Some(Err(e)) => {
                tracing::warn!(node = %id, error = %e, "cluster: unreadable registry entry skipped");
            }
            None => gone.push(id),
        }
    }
    if !gone.is_empty() {
        tracing::info!(nodes = ?gone, "cluster: nodes stopped beating; dropped");
        let _: usize = redis::cmd("SREM")
            .arg(NODES_KEY)
            .arg(&gone)
            .query_async(redis)
            .await?;
    }
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(nodes)
}

/// Deletes this node's entry (only if it is still ours) as it stops.
async fn leave(redis: &mut ConnectionManager, me: &NodeInfo) {
    // Compare and delete in one step: a process that took the id over after
    // this one lost Redis keeps its entry.
    const DELETE_IF_OURS: &str = r#"
        local entry = redis.call('GET', KEYS[1])
        if entry and cjson.decode(entry).instance == ARGV[1] then
            redis.call('DEL', KEYS[1])
            redis.call('SREM', KEYS[2], ARGV[2])
        end
        return 0"#;
    let outcome: redis::RedisResult<i64> = redis::cmd("EVAL")
        .arg(DELETE_IF_OURS)
        .arg(2)
        .arg(entry_key(&me.id))
        .arg(NODES_KEY)
        .arg(&me.instance)
        .arg(&me.id)
        .query_async(redis)
        .await;
    match outcome {
        Ok(_) => tracing::info!(node = %me.id, "cluster: left"),
        Err(e) => {
            tracing::warn!(error = %e, "cluster: could not remove this node's entry; it expires by itself")
        }
    }
}

/// `GET /api/cluster`: this node's view of the cluster, for operators and
/// their monitoring. Like `/metrics` it is served only while metrics are
/// on (restrict both at the proxy); 404 when this server is not in a
/// cluster.
pub async fn view(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
) -> Result<axum::Json<ClusterView>, crate::error::ApiError> {
    use crate::error::ApiError;
    if state.metrics.is_none() {
        return Err(ApiError::NotFound("metrics are disabled"));
    }
    let cluster = state.cluster.as_ref().ok_or(ApiError::NotFound(
        "this server is not in a cluster (cluster.redis_url is not set)",
    ))?;
    Ok(axum::Json(cluster.view()))
}

fn publish_metrics(view: &ClusterView) {
    metrics::gauge!("zync_cluster_nodes").set(view.nodes.len() as f64);
    metrics::gauge!("zync_cluster_redis_up").set(match view.redis {
        RedisState::Up => 1.0,
        RedisState::Unavailable => 0.0,
    });
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The URL without its password, for logs and errors.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redacted("redis://:hunter2@10.0.0.5:6379/0"),
            "redis://***@10.0.0.5:6379/0"
        );
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
