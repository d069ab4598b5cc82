//! The typed sections of the configuration, their defaults and validation.

use crate::ConfigError;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// The whole configuration of one `zync` process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The HTTP listener and the public origin.
    pub http: HttpConfig,
    /// Where accounts, meetings, chat and sessions are stored.
    pub database: DatabaseConfig,
    /// Bounds on every input.
    pub limits: LimitsConfig,
    /// Sessions and login throttling.
    pub auth: AuthConfig,
    /// WebSocket keep-alive.
    pub websocket: WebSocketConfig,
    /// Logging.
    pub log: LogConfig,
    /// The media plane.
    pub sfu: SfuConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// A TURN server for clients whose network blocks UDP to the SFU.
    pub turn: TurnConfig,
    /// Several Zync nodes sharing one Redis.
    pub cluster: ClusterConfig,
}

/// `[http]`: the HTTP listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port the HTTP server listens on.
    pub bind: SocketAddr,
    /// The origin browsers use to reach Zync, e.g. `https://meet.example.com`.
    /// Empty means `http://<bind>`. Drives the WebSocket Origin check and the
    /// cookie's `Secure` flag.
    pub public_url: String,
    /// Seconds a client has to send a request's headers, counted from when
    /// the connection is ready for the next request: closes slow-header
    /// connections and idle keep-alive ones alike.
    pub header_timeout_secs: u32,
    /// Most HTTP connections open at once (WebSockets, once upgraded, are
    /// not counted). More wait in the kernel's accept queue. Lowered at
    /// start to fit the process's file-descriptor limit.
    pub max_connections: u32,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For`
    /// or `Forwarded` header says who the client is. Empty: the TCP peer is
    /// the client, and the headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// PEM file with the certificate chain for HTTPS served by Zync itself.
    /// Empty (with `tls_key`): plain HTTP, e.g. behind a TLS proxy.
    pub tls_cert: String,
    /// PEM file with the private key of `tls_cert`.
    pub tls_key: String,
    /// With TLS on: an extra plain-HTTP listener (e.g. `0.0.0.0:80`) that
    /// redirects every request to the https origin. Empty: none.
    pub redirect_bind: String,
    /// On SIGTERM, how long Zync waits for clients (told
    /// `server-restarting`) to leave before it exits, in seconds.
    pub shutdown_grace_secs: u32,
    /// With `redirect_bind`: a directory whose
    /// `.well-known/acme-challenge/` files the redirect listener serves,
    /// for certbot's `--webroot` renewals. Empty: none.
    pub acme_webroot: String,
}

impl HttpConfig {
    /// Whether Zync serves HTTPS itself (`tls_cert` and `tls_key` set).
    pub fn tls_enabled(&self) -> bool {
        !self.tls_cert.is_empty()
    }

    /// The redirect listener's address, if any (call after validation).
    pub fn redirect_address(&self) -> Option<SocketAddr> {
        self.redirect_bind.parse().ok()
    }

    /// The trusted proxies as networks (a bare address is a /32 or /128).
    /// Call after validation; entries that do not parse are left out.
    pub fn trusted_networks(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| parse_network(p).ok())
            .collect()
    }
}

impl HttpConfig {
    fn validate_tls(&self) -> Result<(), ConfigError> {
        match (self.tls_cert.is_empty(), self.tls_key.is_empty()) {
            (true, false) => return Err(invalid("http.tls_cert", "must be set with http.tls_key")),
            (false, true) => return Err(invalid("http.tls_key", "must be set with http.tls_cert")),
            _ => {}
        }
        if !self.redirect_bind.is_empty() {
            if !self.tls_enabled() {
                return Err(invalid(
                    "http.redirect_bind",
                    "redirects to https, so it needs http.tls_cert and http.tls_key",
                ));
            }
            if self.public_url.is_empty() {
                return Err(invalid(
                    "http.redirect_bind",
                    "redirects to http.public_url, so set that to the https origin",
                ));
            }
            let address: SocketAddr = self.redirect_bind.parse().map_err(|_| {
                invalid(
                    "http.redirect_bind",
                    format!("not an address:port: {:?}", self.redirect_bind),
                )
            })?;
            if self.bind.port() == address.port()
                && (self.bind.ip() == address.ip()
                    || self.bind.ip().is_unspecified()
                    || address.ip().is_unspecified())
            {
                return Err(invalid(
                    "http.redirect_bind",
                    format!("overlaps http.bind ({})", self.bind),
                ));
            }
        }
        if !self.acme_webroot.is_empty() && self.redirect_bind.is_empty() {
            return Err(invalid(
                "http.acme_webroot",
                "is served by the redirect listener, so it needs http.redirect_bind",
            ));
        }
        if self.tls_enabled()
            && !self.public_url.is_empty()
            && !self.public_url.starts_with("https://")
        {
            return Err(invalid(
                "http.public_url",
                "must be an https:// origin when Zync serves TLS itself",
            ));
        }
        Ok(())
    }
}

/// An address or a CIDR range.
fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("{text:?} is neither an IP address nor a CIDR range"))
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: String::new(),
            header_timeout_secs: 15,
            max_connections: 4096,
            trusted_proxies: Vec::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            redirect_bind: String::new(),
            shutdown_grace_secs: 5,
            acme_webroot: String::new(),
        }
    }
}

/// `[database]`: storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (the file is created on first start) or
    /// `postgres://user:password@host/dbname`.
    pub url: String,
    /// Size of the connection pool.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/zync.db".into(),
            max_connections: 8,
        }
    }
}

/// `[limits]`: bounds on every input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest accepted upload (avatar) in bytes.
    pub max_upload_bytes: u64,
    /// Longest chat message, in characters.
    pub max_chat_chars: u32,
    /// Most participants (connections) in one meeting.
    pub max_room_participants: u32,
    /// Most participants one account may be in one meeting (browser tabs).
    pub max_participants_per_user: u32,
    /// Most WebSockets one account may have open.
    pub max_sockets_per_user: u32,
    /// Largest WebSocket message accepted from a client, in bytes (chat and
    /// every other message except `signal` with an SDP).
    pub max_ws_message_bytes: u32,
    /// Largest SDP a client may send in a `signal` message, in bytes. An
    /// SDP grows with the tracks a participant receives at once (about
    /// 1 KiB per m-line), so it has its own limit.
    pub max_sdp_bytes: u32,
    /// Chat messages an account may send to one meeting in a burst (over
    /// all its tabs).
    pub chat_burst: u32,
    /// Chat messages per minute an account may sustain in one meeting after
    /// the burst.
    pub chat_per_minute: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 5 * 1024 * 1024,
            max_chat_chars: 2000,
            max_room_participants: 100,
            max_participants_per_user: 3,
            max_sockets_per_user: 10,
            max_ws_message_bytes: 64 * 1024,
            max_sdp_bytes: 512 * 1024,
            chat_burst: 10,
            chat_per_minute: 60,
        }
    }
}

/// `[auth]`: sessions and login throttling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// A session ends after this many days without a request.
    pub session_days: u32,
    /// Failed logins allowed per username from one client address within
    /// `throttle_window_secs` (beyond, attempts at it are slowed, not
    /// refused, from other addresses).
    pub max_failures_per_username: u32,
    /// Failed logins allowed per client IP within `throttle_window_secs`.
    pub max_failures_per_ip: u32,
    /// The window over which failed logins are counted, in seconds.
    pub throttle_window_secs: u32,
    /// Accounts one client address may register per hour.
    pub max_registrations_per_ip_per_hour: u32,
    /// Meetings one client address may create per hour.
    pub max_meetings_per_ip_per_hour: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_days: 14,
            max_failures_per_username: 5,
            max_failures_per_ip: 50,
            throttle_window_secs: 300,
            max_registrations_per_ip_per_hour: 20,
            max_meetings_per_ip_per_hour: 100,
        }
    }
}

/// `[websocket]`: keep-alive of the signaling connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// How often the server pings each client, in milliseconds.
    pub ping_interval_ms: u32,
    /// A client that sends nothing (not even a pong) for this long is
    /// considered gone, in milliseconds.
    pub idle_timeout_ms: u32,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            ping_interval_ms: 10_000,
            idle_timeout_ms: 30_000,
        }
    }
}

/// `[turn]`: a TURN server (e.g. coturn) for browsers that cannot reach the
/// SFU directly. Zync does not relay itself; it hands each signed-in user
/// short-lived credentials of the TURN REST API scheme: the username is
/// `EXPIRY:USER_ID` and the password `base64(HMAC-SHA1(secret, username))`,
/// which the TURN server checks with the same shared secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// TURN URLs given to browsers, e.g.
    /// `turn:turn.example.com:3478?transport=udp` and
    /// `turns:turn.example.com:443?transport=tcp`. Empty: no TURN.
    pub urls: Vec<String>,
    /// The secret shared with the TURN server (coturn's
    /// `static-auth-secret`).
    pub secret: String,
    /// How long handed-out credentials stay valid, in seconds. A relay
    /// cannot be refreshed after its credentials expire, so this should
    /// outlast a long meeting.
    pub credential_ttl_secs: u32,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            secret: String::new(),
            credential_ttl_secs: 86_400,
        }
    }
}

impl TurnConfig {
    /// Whether browsers get TURN servers.
    pub fn enabled(&self) -> bool {
        !self.urls.is_empty()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for url in &self.urls {
            let scheme_ok = url.starts_with("turn:") || url.starts_with("turns:");
            if !scheme_ok || url.len() <= "turns:".len() || url.contains(char::is_whitespace) {
                return Err(invalid(
                    "turn.urls",
                    format!("{url:?} is not a turn: or turns: URL"),
                ));
            }
        }
        if self.enabled() && self.secret.len() < 16 {
            return Err(invalid(
                "turn.secret",
                "must be set, at least 16 characters, when turn.urls is",
            ));
        }
        at_least(
            "turn.credential_ttl_secs",
            self.credential_ttl_secs.into(),
            60,
        )
    }
}

/// `[cluster]`: several Zync nodes that know of each other through one
/// Redis. Without `redis_url` the process runs alone and needs no Redis.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host[:port][/db]` of the Redis (7 or later)
    /// the nodes share. Empty: no cluster.
    pub redis_url: String,
    /// This node's name in the cluster, unique among the nodes: letters,
    /// digits, `.`, `_` and `-`, at most 64. Empty: the host name.
    pub node_id: String,
    /// `host:port` at which the other nodes reach this one (published in the
    /// node registry). Empty: not published.
    pub advertise: String,
    /// Secret the nodes share to authenticate traffic between them; at
    /// least 32 characters when `redis_url` is set.
    pub secret: String,
}

impl ClusterConfig {
    /// Whether this process is a node of a cluster.
    pub fn enabled(&self) -> bool {
        !self.redis_url.is_empty()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.node_id.is_empty() && !valid_node_id(&self.node_id) {
            return Err(invalid(
                "cluster.node_id",
                "use at most 64 letters, digits, '.', '_' or '-'",
            ));
        }
        if !self.advertise.is_empty() {
            let port = self
                .advertise
                .rsplit_once(':')
                .filter(|(host, _)| !host.is_empty())
                .and_then(|(_, port)| port.parse::<u16>().ok());
            if port.is_none_or(|p| p == 0) {
                return Err(invalid(
                    "cluster.advertise",
                    format!("not a host:port: {:?}", self.advertise),
                ));
            }
        }
        if !self.enabled() {
            return Ok(());
        }
        if !self.redis_url.starts_with("redis://") || self.redis_url.len() <= "redis://".len() {
            return Err(invalid(
                "cluster.redis_url",
                format!("{:?} is not a redis:// URL", self.redis_url),
            ));
        }
        if self.secret.len() < 32 {
            return Err(invalid(
                "cluster.secret",
                "must be set, at least 32 characters, when cluster.redis_url is",
            ));
        }
        Ok(())
    }
}

/// Whether `id` may name a node: what is safe in a Redis key, a metric
/// label and a log line.
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `debug`, or per module like
    /// `info,zync::ws=debug`. `RUST_LOG`, when set, takes precedence.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// `[sfu]`: the media plane (UDP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SfuConfig {
    /// Address the media sockets bind to.
    pub bind_ip: IpAddr,
    /// Address browsers are told to send media to (the public IP when
    /// behind 1:1 NAT). Empty means `bind_ip`.
    pub public_ip: String,
    /// Lowest UDP port the workers take (one port per worker).
    pub udp_port_min: u16,
    /// Highest UDP port the workers may take.
    pub udp_port_max: u16,
    /// Also accept media over TCP (ICE-TCP, RFC 6544): for browsers on
    /// networks that block UDP. Each worker listens on one TCP port and
    /// offers it as a lower-priority candidate next to its UDP one.
    pub ice_tcp: bool,
    /// Lowest TCP port the workers take for ICE-TCP (one per worker).
    pub tcp_port_min: u16,
    /// Highest TCP port the workers may take.
    pub tcp_port_max: u16,
    /// Worker threads; 0 means one per CPU core.
    pub workers: u32,
    /// The video codec of every room: `vp8` or `h264`.
    pub video_codec: String,
    /// Ask browsers to send their camera as three simulcast layers, so
    /// each viewer gets the size its tile needs.
    pub simulcast: bool,
    /// The highest simulcast layer any viewer receives: "q", "h" or "f"
    /// (everything). Below "f", publishers stop encoding the layers above
    /// (dynacast), capping what each camera costs upstream and down.
    pub max_video_layer: String,
    /// Estimate each viewer's downlink (from the congestion feedback
    /// browsers send) and send it only what fits.
    pub bandwidth_estimation: bool,
    /// A participant whose media connection is silent this long is removed.
    pub media_timeout_secs: u32,
    /// A participant whose media never connected this long after it joined
    /// is removed (so sockets that join and never negotiate cannot hold a
    /// meeting's places; a participant without camera or microphone still
    /// connects its receiving side within a second or two).
    pub join_media_timeout_secs: u32,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            public_ip: String::new(),
            udp_port_min: 50000,
            udp_port_max: 50099,
            ice_tcp: true,
            tcp_port_min: 50100,
            tcp_port_max: 50199,
            workers: 0,
            video_codec: "vp8".into(),
            simulcast: true,
            max_video_layer: "f".into(),
            bandwidth_estimation: false,
            media_timeout_secs: 10,
            join_media_timeout_secs: 20,
        }
    }
}

impl SfuConfig {
    /// `max_video_layer` as a layer index (0 is `q`), if valid.
    pub fn max_video_layer_index(&self) -> Option<u8> {
        ["q", "h", "f"]
            .iter()
            .position(|rid| *rid == self.max_video_layer)
            .map(|i| i as u8)
    }

    /// The advertised address, when set.
    pub fn public_ip(&self) -> Option<IpAddr> {
        self.public_ip.parse().ok()
    }

    /// Workers to start (0 resolves to the number of cores).
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n as usize,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` in Prometheus text format.
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

fn at_least(key: &str, value: u64, min: u64) -> Result<(), ConfigError> {
    if value < min {
        return Err(invalid(key, format!("must be at least {min}, got {value}")));
    }
    Ok(())
}

impl Config {
    /// Checks every value that has the right type but may still be unusable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.http.public_url.is_empty() {
            parse_origin(&self.http.public_url).map_err(|r| invalid("http.public_url", r))?;
        }
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database.url",
                format!("must start with sqlite:// or postgres://, got {url:?}"),
            ));
        }
        at_least(
            "database.max_connections",
            self.database.max_connections.into(),
            1,
        )?;
        at_least(
            "http.header_timeout_secs",
            self.http.header_timeout_secs.into(),
            1,
        )?;
        at_least("http.max_connections", self.http.max_connections.into(), 1)?;
        for proxy in &self.http.trusted_proxies {
            parse_network(proxy).map_err(|r| invalid("http.trusted_proxies", r))?;
        }
        self.http.validate_tls()?;
        let l = &self.limits;
        at_least("limits.max_upload_bytes", l.max_upload_bytes, 1024)?;
        at_least("limits.max_chat_chars", l.max_chat_chars.into(), 1)?;
        at_least(
            "limits.max_room_participants",
            l.max_room_participants.into(),
            1,
        )?;
        at_least(
            "limits.max_ws_message_bytes",
            l.max_ws_message_bytes.into(),
            1024,
        )?;
        at_least("limits.max_sdp_bytes", l.max_sdp_bytes.into(), 4096)?;
        at_least(
            "limits.max_participants_per_user",
            l.max_participants_per_user.into(),
            1,
        )?;
        at_least(
            "limits.max_sockets_per_user",
            l.max_sockets_per_user.into(),
            1,
        )?;
        at_least("limits.chat_burst", l.chat_burst.into(), 1)?;
        at_least("limits.chat_per_minute", l.chat_per_minute.into(), 1)?;
        let a = &self.auth;
        at_least("auth.session_days", a.session_days.into(), 1)?;
        at_least(
            "auth.max_failures_per_username",
            a.max_failures_per_username.into(),
            1,
        )?;
        at_least("auth.max_failures_per_ip", a.max_failures_per_ip.into(), 1)?;
        at_least(
            "auth.throttle_window_secs",
            a.throttle_window_secs.into(),
            1,
        )?;
        at_least(
            "auth.max_registrations_per_ip_per_hour",
            a.max_registrations_per_ip_per_hour.into(),
            1,
        )?;
        at_least(
            "auth.max_meetings_per_ip_per_hour",
            a.max_meetings_per_ip_per_hour.into(),
            1,
        )?;
        let w = &self.websocket;
        at_least("websocket.ping_interval_ms", w.ping_interval_ms.into(), 100)?;
        if w.idle_timeout_ms <= w.ping_interval_ms {
            return Err(invalid(
                "websocket.idle_timeout_ms",
                "must be longer than websocket.ping_interval_ms",
            ));
        }
        validate_log_level(&self.log.level).map_err(|r| invalid("log.level", r))?;
        self.sfu.validate()?;
        self.turn.validate()?;
        self.cluster.validate()?;
        Ok(())
    }

    /// The origin browsers use (`scheme://host[:port]`, no trailing slash).
    pub fn public_origin(&self) -> String {
        if self.http.public_url.is_empty() {
            let scheme = if self.http.tls_enabled() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", self.http.bind)
        } else {
            // Validated at load time.
            parse_origin(&self.http.public_url).unwrap_or_else(|_| self.http.public_url.clone())
        }
    }

    /// Whether the public origin is served over HTTPS (cookies get `Secure`).
    pub fn is_https(&self) -> bool {
        self.public_origin().starts_with("https://")
    }
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Accepts `LEVEL` or `target=LEVEL` directives separated by commas.
fn validate_log_level(filter: &str) -> Result<(), String> {
    if filter.trim().is_empty() {
        return Err("must not be empty (try \"info\")".into());
    }
    for directive in filter.split(',').map(str::trim) {
        let level = match directive.split_once('=') {
            Some((target, level)) if !target.trim().is_empty() => level,
            Some(_) => return Err(format!("{directive:?} has no target before '='")),
            None => directive,
        };
        if !LEVELS.contains(&level.trim().to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{directive:?}: expected a level ({}) or target=level",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

impl SfuConfig {
    /// A `sfu.{kind}_port_min`/`max` range: both 0 (any free port) or a
    /// range with a port for every worker.
    fn validate_ports(&self, kind: &str, min: u16, max: u16) -> Result<(), ConfigError> {
        if min == 0 && max != 0 {
            return Err(invalid(
                &format!("sfu.{kind}_port_min"),
                format!("0 (any free port) needs sfu.{kind}_port_max = 0 too"),
            ));
        }
        if min > max {
            return Err(invalid(
                &format!("sfu.{kind}_port_max"),
                format!("must be at least sfu.{kind}_port_min ({min})"),
            ));
        }
        let ports = usize::from(max - min) + 1;
        if min != 0 && ports < self.worker_count() {
            return Err(invalid(
                &format!("sfu.{kind}_port_max"),
                format!(
                    "the range {min}-{max} has {ports} ports but {} workers need one each",
                    self.worker_count()
                ),
            ));
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.public_ip.is_empty() {
            let ip: IpAddr = self.public_ip.parse().map_err(|_| {
                invalid(
                    "sfu.public_ip",
                    format!("not an IP address: {:?}", self.public_ip),
                )
            })?;
            if ip.is_unspecified() {
                return Err(invalid(
                    "sfu.public_ip",
                    "must be a reachable address, not 0.0.0.0",
                ));
            }
        } else if self.bind_ip.is_unspecified() {
            return Err(invalid(
                "sfu.public_ip",
                format!(
                    "sfu.bind_ip is {}, so set sfu.public_ip to the address browsers reach this server on",
                    self.bind_ip
                ),
            ));
        }
        self.validate_ports("udp", self.udp_port_min, self.udp_port_max)?;
        if self.ice_tcp {
            self.validate_ports("tcp", self.tcp_port_min, self.tcp_port_max)?;
            // A worker tells its TCP packets from its UDP ones by their
            // port, so the ranges must not share a number.
            if self.tcp_port_min != 0
                && self.udp_port_min != 0
                && self.tcp_port_min <= self.udp_port_max
                && self.udp_port_min <= self.tcp_port_max
            {
                return Err(invalid(
                    "sfu.tcp_port_min",
                    format!(
                        "the TCP range {}-{} overlaps the UDP range {}-{}",
                        self.tcp_port_min, self.tcp_port_max, self.udp_port_min, self.udp_port_max
                    ),
                ));
            }
        }
        if self.workers > 1024 {
            return Err(invalid("sfu.workers", "at most 1024"));
        }
        if self.max_video_layer_index().is_none() {
            return Err(invalid(
                "sfu.max_video_layer",
                format!(
                    "must be \"q\", \"h\" or \"f\", got {:?}",
                    self.max_video_layer
                ),
            ));
        }
        if !matches!(self.video_codec.as_str(), "vp8" | "h264") {
            return Err(invalid(
                "sfu.video_codec",
                format!("must be \"vp8\" or \"h264\", got {:?}", self.video_codec),
            ));
        }
        at_least("sfu.media_timeout_secs", self.media_timeout_secs.into(), 2)?;
        at_least(
            "sfu.join_media_timeout_secs",
            self.join_media_timeout_secs.into(),
            2,
        )?;
        Ok(())
    }
}

/// Reduces `http(s)://host[:port][/]` to its origin as a browser sends it in
/// `Origin` (host lowercased, the scheme's default port left out); refuses
/// paths and queries, since an Origin header never carries them.
pub fn parse_origin(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("must start with http:// or https://, got {url:?}"))?;
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty() {
        return Err(format!("has no host: {url:?}"));
    }
    if host.contains(['/', '?', '#', ' ', '@']) {
        return Err(format!(
            "must be an origin like https://meet.example.com, without a path: {url:?}"
        ));
    }
    let scheme = &url[..url.len() - rest.len()];
    // Browsers leave the scheme's default port out of the Origin header.
    let default_port = if scheme == "https://" { ":443" } else { ":80" };
    let host = host.strip_suffix(default_port).unwrap_or(host);
    Ok(format!("{scheme}{}", host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_is_normalized() {
        assert_eq!(
            parse_origin("https://Meet.Example.com/").as_deref(),
            Ok("https://meet.example.com")
        );
        assert_eq!(
            parse_origin("http://127.0.0.1:8080").as_deref(),
            Ok("http://127.0.0.1:8080")
        );
        // Browsers leave the scheme's default port out of Origin.
        assert_eq!(
            parse_origin("https://meet.example.com:443").as_deref(),
            Ok("https://meet.example.com")
        );
        assert_eq!(
            parse_origin("http://127.0.0.1:80/").as_deref(),
            Ok("http://127.0.0.1")
        );
        assert_eq!(
            parse_origin("https://[::1]:8443").as_deref(),
            Ok("https://[::1]:8443")
        );
        assert!(parse_origin("ftp://x").is_err());
        assert!(parse_origin("https://x.com/meet").is_err());
        assert!(parse_origin("https://").is_err());
    }

    #[test]
    fn log_filters() {
        assert!(validate_log_level("info").is_ok());
        assert!(validate_log_level("warn,zync::ws=debug, tower_http=TRACE").is_ok());
        assert!(validate_log_level("loud").is_err());
        assert!(validate_log_level("zync=").is_err());
        assert!(validate_log_level("=info").is_err());
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().expect("defaults validate");
        assert_eq!(Config::default().public_origin(), "http://127.0.0.1:8080");
    }
}
