//! The harness Zync's cross-crate tests share: a real server on
//! `127.0.0.1:0` with a fresh database, an HTTP client with a cookie jar, and
//! a WebSocket client speaking the signaling protocol.
//!
//! The database is SQLite in a temporary directory, unless
//! `ZYNC_TEST_POSTGRES_URL` names a PostgreSQL server (an admin URL such as
//! `postgres://zync:zync@127.0.0.1:5432/postgres`); then every server gets a
//! database of its own there, dropped when the server stops.

pub mod impair;
pub mod participant;

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use reqwest::cookie::{CookieStore, Jar};
use serde_json::{Value, json};
use sqlx::Connection;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
pub use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use zync_config::Config;

/// Environment variable naming a PostgreSQL admin URL for the tests.
pub const POSTGRES_ENV: &str = "ZYNC_TEST_POSTGRES_URL";
/// How long a test waits for any one expected message.
pub const WAIT: Duration = Duration::from_secs(10);
/// A password every test account uses.
pub const PASSWORD: &str = "correct horse battery";

/// Where a test server keeps its data; survives restarts of the server.
pub struct TestDatabase {
    /// The `database.url` the server uses.
    pub url: String,
    /// Keeps the SQLite directory alive.
    _dir: Option<tempfile::TempDir>,
    /// For PostgreSQL: the admin URL and the database name to drop.
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    /// A fresh, empty database of the kind the environment selects.
    pub async fn fresh() -> Result<Self> {
        match std::env::var(POSTGRES_ENV) {
            Ok(admin) if !admin.is_empty() => {
                let name = format!("zync_test_{:016x}", rand::random::<u64>());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .with_context(|| format!("connecting to {POSTGRES_ENV}"))?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await?;
                let (base, _) = admin
                    .rsplit_once('/')
                    .context("admin URL has no database")?;
                Ok(Self {
                    url: format!("{base}/{name}"),
                    _dir: None,
                    postgres: Some((admin, name)),
                })
            }
            _ => {
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite://{}/zync.db", dir.path().display());
                Ok(Self {
                    url,
                    _dir: Some(dir),
                    postgres: None,
                })
            }
        }
    }

    /// Drops a PostgreSQL test database (SQLite's directory goes with `self`).
    pub async fn destroy(self) {
        if let Some((admin, name)) = &self.postgres
            && let Ok(mut conn) = sqlx::PgConnection::connect(admin).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        }
    }
}

/// A running `zync` on loopback.
pub struct TestServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The configuration it runs with.
    pub config: Config,
    db: Option<TestDatabase>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<()>>>,
}

impl TestServer {
    /// Starts a server with defaults on a fresh database.
    pub async fn start() -> Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Starts a server on a fresh database after `adjust` edits the config.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Result<Self> {
        let mut config = Config::default();
        adjust(&mut config);
        Self::start_on(TestDatabase::fresh().await?, config).await
    }

    /// Starts a server on `db` with `config` (its database URL is replaced).
    pub async fn start_on(db: TestDatabase, mut config: Config) -> Result<Self> {
        config.database.url = db.url.clone();
        config.http.bind = SocketAddr::from(([127, 0, 0, 1], 0));
        config.http.public_url = String::new();
        // Media on any free loopback port, so tests can run side by side.
        config.sfu.bind_ip = [127, 0, 0, 1].into();
        config.sfu.udp_port_min = 0;
        config.sfu.udp_port_max = 0;
        config.sfu.tcp_port_min = 0;
        config.sfu.tcp_port_max = 0;
        let listener = tokio::net::TcpListener::bind(config.http.bind).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(zync::serve(config.clone(), listener, async move {
            let _ = stopped.await;
        }));
        let server = Self {
            addr,
            base: format!("http://{addr}"),
            config,
            db: Some(db),
            stop: Some(stop),
            task: Some(task),
        };
        server.wait_healthy().await?;
        Ok(server)
    }

    async fn wait_healthy(&self) -> Result<()> {
        let url = format!("{}/healthz", self.base);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("server at {} never became healthy", self.base);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server gracefully and hands back its database.
    pub async fn shut_down(mut self) -> Result<TestDatabase> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .context("shutdown timed out")???;
        }
        self.db.take().context("database already taken")
    }

    /// Stops the server and starts a new one on the same database and config
    /// (on a new port).
    pub async fn restart(self) -> Result<Self> {
        let config = self.config.clone();
        let db = self.shut_down().await?;
        Self::start_on(db, config).await
    }

    /// Stops the server and removes its database.
    pub async fn stop(self) -> Result<()> {
        self.shut_down().await?.destroy().await;
        Ok(())
    }

    /// A new HTTP client with its own cookie jar (one browser).
    pub fn client(&self) -> Client {
        Client::new(&self.base)
    }

    /// A client already registered as `username` (display name capitalized).
    pub async fn user(&self, username: &str) -> Result<Client> {
        let client = self.client();
        let display = format!("{}{} Test", username[..1].to_uppercase(), &username[1..]);
        let (status, body) = client.register(username, &display, PASSWORD).await?;
        if status != StatusCode::CREATED {
            bail!("registering {username}: {status} {body}");
        }
        Ok(client)
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

/// One browser's HTTP side: a client and its cookies.
#[derive(Clone)]
pub struct Client {
    /// The underlying client (cookies included).
    pub http: reqwest::Client,
    jar: Arc<Jar>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Client {
    /// A new browser (empty cookie jar) for the server at `base`.
    pub fn new(base: &str) -> Self {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .build()
            .unwrap_or_default();
        Client {
            http,
            jar,
            base: base.to_string(),
        }
    }

    /// `POST` a JSON body; returns the status and the JSON answer (or Null).
    pub async fn post(&self, path: &str, body: Value) -> Result<(StatusCode, Value)> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await?;
        Ok((r.status(), r.json().await.unwrap_or(Value::Null)))
    }

    /// `GET`; returns the status and the JSON answer (or Null).
    pub async fn get(&self, path: &str) -> Result<(StatusCode, Value)> {
        let r = self.http.get(format!("{}{path}", self.base)).send().await?;
        Ok((r.status(), r.json().await.unwrap_or(Value::Null)))
    }

    /// `POST /api/auth/register`.
    pub async fn register(
        &self,
        username: &str,
        display_name: &str,
        password: &str,
    ) -> Result<(StatusCode, Value)> {
        let body =
            json!({"username": username, "display_name": display_name, "password": password});
        self.post("/api/auth/register", body).await
    }

    /// `POST /api/auth/login`.
    pub async fn login(&self, username: &str, password: &str) -> Result<(StatusCode, Value)> {
        self.post(
            "/api/auth/login",
            json!({"username": username, "password": password}),
        )
        .await
    }

    /// Creates a meeting and returns its slug.
    pub async fn create_meeting(&self, title: &str) -> Result<String> {
        let (status, body) = self.post("/api/meetings", json!({"title": title})).await?;
        if status != StatusCode::CREATED {
            bail!("creating a meeting: {status} {body}");
        }
        Ok(body["slug"].as_str().context("no slug")?.to_string())
    }

    /// The `Cookie` header this browser would send.
    pub fn cookie_header(&self) -> Option<String> {
        let url = self.base.parse().ok()?;
        self.jar
            .cookies(&url)
            .and_then(|v| v.to_str().ok().map(str::to_string))
    }

    /// Opens the signaling WebSocket with this browser's cookies and its
    /// proper Origin.
    pub async fn ws(&self) -> Result<WsClient> {
        let origin = self.base.clone();
        WsClient::connect(&self.base, self.cookie_header().as_deref(), Some(&origin))
            .await
            .map_err(|e| anyhow::anyhow!("WebSocket connect failed: {e}"))
    }
}

/// A signaling WebSocket client.
pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Connects to `base`'s `/ws` with the given cookie and Origin headers.
    /// The error keeps the HTTP status of a refused upgrade.
    pub async fn connect(
        base: &str,
        cookie: Option<&str>,
        origin: Option<&str>,
    ) -> std::result::Result<Self, tokio_tungstenite::tungstenite::Error> {
        let url = format!("{}/ws", base.replacen("http", "ws", 1));
        let mut request = url.into_client_request()?;
        let headers = request.headers_mut();
        if let Some(cookie) = cookie {
            headers.insert("cookie", cookie.parse().expect("cookie header value"));
        }
        if let Some(origin) = origin {
            headers.insert("origin", origin.parse().expect("origin header value"));
        }
        // Without Nagle, as browsers send: a small frame goes out at once.
        let (stream, _) = tokio_tungstenite::connect_async_with_config(request, None, true).await?;
        Ok(Self { stream })
    }

    /// Sends a JSON message.
    pub async fn send(&mut self, message: Value) -> Result<()> {
        self.stream.send(Message::text(message.to_string())).await?;
        Ok(())
    }

    /// Sends raw text (for malformed-input tests).
    pub async fn send_raw(&mut self, text: String) -> Result<()> {
        self.stream.send(Message::text(text)).await?;
        Ok(())
    }

    /// Sends a raw frame.
    pub async fn send_frame(&mut self, message: Message) -> Result<()> {
        self.stream.send(message).await?;
        Ok(())
    }

    /// The next JSON message, waiting at most [`WAIT`]. Pings are answered
    /// by tungstenite while reading.
    pub async fn recv(&mut self) -> Result<Value> {
        self.recv_within(WAIT).await
    }

    /// The next JSON message within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .context("timed out waiting for a message")?;
            match frame {
                Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text)?),
                Some(Ok(Message::Close(frame))) => bail!("connection closed: {frame:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("connection failed: {e}"),
                None => bail!("connection ended"),
            }
        }
    }

    /// Reads until a message of type `kind` arrives; returns it.
    pub async fn recv_type(&mut self, kind: &str) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = self
                .recv_within(left)
                .await
                .with_context(|| format!("waiting for {kind}"))?;
            if message["type"] == kind {
                return Ok(message);
            }
        }
    }

    /// Asserts nothing (but pings) arrives for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) -> Result<()> {
        match self.recv_within(wait).await {
            Ok(message) => bail!("expected silence, got {message}"),
            Err(_) => Ok(()),
        }
    }

    /// Joins `slug`; returns the `existing-users` answer.
    pub async fn join(&mut self, slug: &str) -> Result<Value> {
        self.send(json!({"type": "join-meeting", "slug": slug}))
            .await?;
        let answer = self.recv().await?;
        if answer["type"] != "existing-users" {
            bail!("join answered {answer}");
        }
        Ok(answer)
    }

    /// Closes the connection politely.
    pub async fn close(mut self) -> Result<()> {
        self.stream.close(None).await?;
        Ok(())
    }

    /// Drops the TCP connection without a close frame (a vanished client).
    pub fn vanish(self) {
        drop(self.stream);
    }

    /// Gives the stream back for tests that need the raw frames.
    pub fn into_inner(self) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        self.stream
    }
}

/// A Chrome-like publish offer with `videos` video m-lines.
pub fn offer_with_video_lines(videos: usize) -> String {
    let mut sdp = String::from(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         a=group:BUNDLE",
    );
    for mid in 0..videos {
        sdp.push_str(&format!(" {mid}"));
    }
    sdp.push_str("\r\na=msid-semantic: WMS\r\n");
    for mid in 0..videos {
        sdp.push_str(&format!(
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
             a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
             a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
             a=setup:actpass\r\na=mid:{mid}\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n\
             a=ssrc:{} cname:x\r\n",
            1000 + mid
        ));
    }
    sdp
}
