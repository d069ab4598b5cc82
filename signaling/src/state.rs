//! The state every handler shares.

use crate::auth::{AddressQuota, LoginThrottle, Passwords};
use crate::cpu::CpuPool;
use crate::db::Database;
use crate::room::Registry;
use std::sync::Arc;
use tokio::sync::watch;
use zync_config::Config;

/// Shared by all requests; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Storage.
    pub db: Database,
    /// Runs CPU-heavy work (argon2, image decoding) off the async threads.
    pub cpu: CpuPool,
    /// Password hashing and verification.
    pub passwords: Passwords,
    /// Failed-login counters.
    pub throttle: Arc<LoginThrottle>,
    /// Registrations per client address.
    pub registrations: Arc<AddressQuota>,
    /// New meetings per client address.
    pub meeting_creations: Arc<AddressQuota>,
    /// Live meetings: slug → the task that owns the meeting's state.
    pub rooms: Registry,
    /// This node's view of its cluster (cluster mode only).
    pub cluster: Option<crate::cluster::Cluster>,
    /// Origins the WebSocket accepts.
    pub allowed_origins: Arc<Vec<String>>,
    /// Turns true when the server shuts down; connections then close.
    pub shutdown: watch::Receiver<bool>,
    /// The media plane.
    pub sfu: zync_sfu::Sfu,
    /// Reverse proxies whose forwarding headers name the client.
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// Budgets a user's connections share.
    pub user_limits: crate::ws::rate::UserLimits,
    /// Open WebSockets per login session (closed when it ends).
    pub sockets: crate::ws::sessions::SessionSockets,
    /// Renders Prometheus metrics (when enabled).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}
