//! Zync's server: HTTP API, WebSocket signaling, accounts, meetings, chat and
//! storage. The `zync` binary is a thin wrapper around [`serve`]; tests call
//! it directly on a listener bound to `127.0.0.1:0`.

pub mod app;
pub mod auth;
pub mod avatar;
pub mod client_ip;
pub mod cluster;
pub mod cpu;
pub mod db;
pub mod error;
pub mod http_server;
pub mod json;
pub mod meetings;
pub mod metrics;
pub mod redirect;
pub mod room;
pub mod state;
pub mod tls;
pub mod turn;
pub mod web;
pub mod ws;

use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_sessions::session_store::ExpiredDeletion;
use zync_config::Config;

pub use zync_config;

/// How often expired sessions are purged from the database.
const SESSION_SWEEP: Duration = Duration::from_secs(600);

/// The async runtime Zync's signaling runs on: multi-threaded, every thread
/// (workers and blocking pool) at a lower CPU priority than the media
/// workers, so a burst of HTTP, WebSocket and SDP work never delays
/// forwarding (see [`zync_sfu::yield_to_media`]).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(zync_sfu::yield_to_media)
        .build()
}

/// Runs Zync on `listener` until `shutdown` completes, then closes every
/// WebSocket (clients see `user-left` as usual), finishes in-flight HTTP
/// requests, and closes the database.
pub async fn serve(
    mut config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener
        .local_addr()
        .context("reading the listener's address")?;
    let allowed_origins = allowed_origins(&mut config, local);
    let (stop, stopped) = watch::channel(false);
    let tls = start_tls(&config, &stopped)?;
    let connected = db::Database::connect(&config.database.url, config.database.max_connections)
        .await
        .context("opening the database")?;
    let db = connected.db;
    let sweeper = tokio::spawn(
        connected
            .sessions
            .clone()
            .continuously_delete_expired(SESSION_SWEEP),
    );

    let auth = &config.auth;
    let throttle = auth::LoginThrottle::new(
        auth.max_failures_per_username,
        auth.max_failures_per_ip,
        Duration::from_secs(auth.throttle_window_secs.into()),
    );
    let limits = http_server::HttpLimits {
        header_timeout: Duration::from_secs(config.http.header_timeout_secs.into()),
        max_connections: http_server::fit_connections_to_descriptors(
            config.http.max_connections as usize,
        ),
    };
    let redirects = start_redirects(&config, limits, &stopped).await?;
    let cpu = cpu::CpuPool::per_core();
    let sfu = zync_sfu::Sfu::start(sfu_config(&config))
        .context("starting the media plane (config [sfu])")?;
    let metrics = config.metrics.enabled.then(metrics::handle);
    let trusted_proxies = Arc::new(config.http.trusted_networks());
    let rooms = room::Registry::new(
        db.clone(),
        room::RoomSettings {
            max_participants: config.limits.max_room_participants as usize,
            max_per_user: config.limits.max_participants_per_user as usize,
            chat_burst: config.limits.chat_burst,
            chat_per_minute: config.limits.chat_per_minute,
            simulcast: config.sfu.simulcast,
        },
        sfu.clone(),
    );
    let cluster = if config.cluster.enabled() {
        let identity = cluster::NodeIdentity::from_config(&config.cluster, config.public_origin())?;
        let load = cluster::LoadSampler::new(rooms.clone(), sfu.clone());
        Some(cluster::join(&config.cluster, identity, load, stopped.clone()).await?)
    } else {
        None
    };
    let state = state::AppState {
        rooms,
        cluster: cluster.as_ref().map(|(c, _)| c.clone()),
        passwords: auth::Passwords::new(cpu.clone()),
        cpu,
        throttle: Arc::new(throttle),
        registrations: Arc::new(auth::AddressQuota::new(
            config.auth.max_registrations_per_ip_per_hour,
            Duration::from_secs(3600),
        )),
        meeting_creations: Arc::new(auth::AddressQuota::new(
            config.auth.max_meetings_per_ip_per_hour,
            Duration::from_secs(3600),
        )),
        allowed_origins: Arc::new(allowed_origins),
        db: db.clone(),
        config: Arc::new(config),
        shutdown: stopped,
        sfu: sfu.clone(),
        sockets: ws::sessions::SessionSockets::default(),
        user_limits: ws::rate::UserLimits::default(),
        trusted_proxies,
        metrics,
    };
    let rooms = state.rooms.clone();
    let grace_secs = state.config.http.shutdown_grace_secs;
    tracing::info!(
        "Zync listening on {}://{local} (public origin {}, database {:?})",
        if tls.is_some() { "https" } else { "http" },
        state.config.public_origin(),
        db.backend()
    );
    let app = app::router(state, connected.sessions);
    let graceful = async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    };
    http_server::serve(listener, app, limits, tls, graceful).await;
    if let Some(redirects) = redirects {
        let _ = redirects.await;
    }
    // WebSockets live outside hyper once upgraded: each has told its
    // client `server-restarting` and is leaving its room; give them the
    // grace period before the database goes away.
    let grace = Duration::from_secs(grace_secs.into());
    let deadline = tokio::time::Instant::now() + grace;
    while rooms.room_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sweeper.abort();
    if let Some((_, beating)) = cluster {
        // It saw `stop` and is deleting this node's registry entry.
        let _ = beating.await;
    }
    tokio::task::spawn_blocking(move || sfu.shutdown())
        .await
        .context("stopping the media plane")?;
    db.close().await;
    Ok(())
}

/// With `http.tls_cert` set: loads the certificate (a clear error if it
/// cannot be used) and keeps reloading it until `stopped`.
fn start_tls(
    config: &Config,
    stopped: &watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    if !config.http.tls_enabled() {
        return Ok(None);
    }
    let cert = tls::ReloadingCert::load(tls::TlsFiles {
        cert: config.http.tls_cert.clone().into(),
        key: config.http.tls_key.clone().into(),
    })
    .context("loading the TLS certificate")?;
    let acceptor = cert.acceptor()?;
    tokio::spawn(cert.watch(stopped.clone()));
    Ok(Some(acceptor))
}

/// With `http.redirect_bind` set: listens there and redirects to https
/// until `stopped`; the task ends once its connections have closed.
async fn start_redirects(
    config: &Config,
    limits: http_server::HttpLimits,
    stopped: &watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(address) = config.http.redirect_address() else {
        return Ok(None);
    };
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (config key `http.redirect_bind`)"))?;
    let webroot = Some(&config.http.acme_webroot)
        .filter(|w| !w.is_empty())
        .map(std::path::PathBuf::from);
    let app = redirect::router(config.public_origin(), webroot);
    let mut stopped = stopped.clone();
    let shutdown = async move {
        let _ = stopped.wait_for(|stopped| *stopped).await;
    };
    tracing::info!("redirecting http://{address} to {}", config.public_origin());
    Ok(Some(tokio::spawn(http_server::serve(
        listener, app, limits, None, shutdown,
    ))))
}

/// The media plane's settings from the operator config (validated already).
fn sfu_config(config: &Config) -> zync_sfu::SfuConfig {
    let sfu = &config.sfu;
    zync_sfu::SfuConfig {
        bind_ip: sfu.bind_ip,
        public_ip: sfu.public_ip(),
        port_min: sfu.udp_port_min,
        port_max: sfu.udp_port_max,
        tcp_ports: sfu.ice_tcp.then_some((sfu.tcp_port_min, sfu.tcp_port_max)),
        workers: sfu.worker_count(),
        codec: match sfu.video_codec.as_str() {
            "h264" => zync_sfu::VideoCodec::H264,
            _ => zync_sfu::VideoCodec::Vp8,
        },
        media_timeout: Duration::from_secs(sfu.media_timeout_secs.into()),
        join_media_timeout: Duration::from_secs(sfu.join_media_timeout_secs.into()),
        bandwidth_estimation: sfu.bandwidth_estimation,
        max_video_layer: sfu.max_video_layer_index().unwrap_or(2),
    }
}

/// Fills in `http.public_url` from the bound address when it is not set, and
/// lists the origins the WebSocket accepts.
fn allowed_origins(config: &mut Config, local: SocketAddr) -> Vec<String> {
    if !config.http.public_url.is_empty() {
        return vec![config.public_origin()];
    }
    let scheme = if config.http.tls_enabled() {
        "https"
    } else {
        "http"
    };
    // public_origin() leaves a default port out, as browsers do.
    config.http.public_url = format!("{scheme}://{local}");
    let mut origins = vec![config.public_origin()];
    if local.ip().is_loopback() {
        let localhost = format!("{scheme}://localhost:{}", local.port());
        origins.extend(zync_config::parse_origin(&localhost).ok());
    }
    origins
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_of_a_bound_address_leave_out_the_default_port() {
        let mut config = Config::default();
        config.http.tls_cert = "cert.pem".into();
        config.http.tls_key = "key.pem".into();
        let origins = allowed_origins(&mut config, "127.0.0.1:443".parse().expect("address"));
        assert_eq!(origins, ["https://127.0.0.1", "https://localhost"]);
        assert_eq!(config.public_origin(), "https://127.0.0.1");

        let mut config = Config::default();
        let origins = allowed_origins(&mut config, "127.0.0.1:8080".parse().expect("address"));
        assert_eq!(origins, ["http://127.0.0.1:8080", "http://localhost:8080"]);
    }
}
