//! HTTPS served by `zync` itself (`http.tls_cert`/`http.tls_key`): the API,
//! cookies and WebSocket over TLS, certificate reloads without a restart,
//! and the plain-HTTP redirect listener with ACME challenges.

use anyhow::{Context, Result, bail};
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use zync_config::Config;
use zync_tests::TestDatabase;

/// A self-signed certificate for `localhost` and 127.0.0.1.
struct TestCert {
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn new_cert(name: &str) -> Result<TestCert> {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(TestCert {
        der: cert.der().clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn install(cert: &TestCert, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, &cert.cert_pem)?;
    std::fs::write(&key_path, &cert.key_pem)?;
    Ok((cert_path, key_path))
}

/// A `zync` serving HTTPS on loopback.
struct TlsServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<()>>,
    _db: TestDatabase,
}

impl TlsServer {
    async fn start(cert: &Path, key: &Path, adjust: impl FnOnce(&mut Config)) -> Result<Self> {
        let db = TestDatabase::fresh().await?;
        let mut config = tls_config(&db, cert, key);
        adjust(&mut config);
        config.validate()?;
        let listener = TcpListener::bind(config.http.bind).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(zync::serve(config, listener, async move {
            let _ = stopped.await;
        }));
        // Serving once a handshake succeeds (the redirect listener, if
        // any, is up before that).
        let deadline = Instant::now() + Duration::from_secs(20);
        while presented(addr).await.is_err() {
            if task.is_finished() || Instant::now() > deadline {
                bail!("zync did not start serving TLS: {:?}", task.await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            addr,
            stop: Some(stop),
            task,
            _db: db,
        })
    }

    async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task).await???;
        Ok(())
    }
}

fn tls_config(db: &TestDatabase, cert: &Path, key: &Path) -> Config {
    let mut config = Config::default();
    config.database.url = db.url.clone();
    config.http.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    config.http.tls_cert = cert.display().to_string();
    config.http.tls_key = key.display().to_string();
    config.sfu.bind_ip = [127, 0, 0, 1].into();
    config.sfu.udp_port_min = 0;
    config.sfu.udp_port_max = 0;
    config.sfu.tcp_port_min = 0;
    config.sfu.tcp_port_max = 0;
    config
}

/// Opens a TLS connection that trusts only `trusted`.
async fn connect(
    addr: SocketAddr,
    trusted: &CertificateDer<'static>,
) -> Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    Ok(TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?)
}

/// The certificate the server presents, accepting any (for reload checks).
async fn presented(addr: SocketAddr) -> Result<CertificateDer<'static>> {
    #[derive(Debug)]
    struct AnyCert(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost")?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let (_, session) = tls.get_ref();
    let chain = session
        .peer_certificates()
        .context("no certificate presented")?;
    Ok(chain[0].clone().into_owned())
}

/// One HTTP/1.1 exchange on `stream` (`Connection: close`): the response's
/// head and body.
async fn exchange<S>(mut stream: S, request: &str) -> Result<(String, String)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .context("no response within 10 s")?
        .or_else(|e| {
            // A TLS peer may close without close_notify after the response.
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Ok(0)
            } else {
                Err(e)
            }
        })?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").context("no response head")?;
    Ok((head.to_string(), body.to_string()))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[tokio::test]
async fn the_api_cookies_and_websocket_work_over_https_with_hsts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cert = new_cert("zync test")?;
    let (cert_path, key_path) = install(&cert, dir.path())?;
    let server = TlsServer::start(&cert_path, &key_path, |_| {}).await?;
    let addr = server.addr;

    let (head, body) = exchange(
        connect(addr, &cert.der).await?,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "ok");
    assert_eq!(
        header(&head, "strict-transport-security"),
        Some("max-age=31536000"),
        "{head}"
    );

    let json = r#"{"username":"ada","password":"correct horse battery","display_name":"Ada"}"#;
    let (head, _) = exchange(
        connect(addr, &cert.der).await?,
        &format!(
            "POST /api/auth/register HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        ),
    )
    .await?;
    assert!(head.starts_with("HTTP/1.1 201"), "{head}");
    let cookie = header(&head, "set-cookie").context("no session cookie")?;
    assert!(cookie.contains("Secure"), "cookie not Secure: {cookie}");
    assert!(cookie.contains("HttpOnly"), "cookie not HttpOnly: {cookie}");
    let session = cookie
        .split(';')
        .next()
        .context("empty cookie")?
        .to_string();

    // The WebSocket, over TLS, with the https origin the server derives
    // from its bound address.
    let request = ws_request(addr, &format!("https://{addr}"), &session)?;
    let (ws, response) =
        tokio_tungstenite::client_async(request, connect(addr, &cert.der).await?).await?;
    assert_eq!(response.status(), 101);
    drop(ws);

    // An http:// Origin is refused: the public origin is https.
    let request = ws_request(addr, &format!("http://{addr}"), &session)?;
    let refused = tokio_tungstenite::client_async(request, connect(addr, &cert.der).await?).await;
    assert!(
        refused.is_err(),
        "an http:// origin was accepted over https"
    );

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(addr).await?;
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "plain HTTP was served on the TLS port"
    );
    server.stop().await
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let first = new_cert("first")?;
    let (cert_path, key_path) = install(&first, dir.path())?;
    let server = TlsServer::start(&cert_path, &key_path, |_| {}).await?;
    assert_eq!(presented(server.addr).await?, first.der);

    // A renewal rewrites both files; SIGHUP tells zync at once.
    let second = new_cert("second")?;
    install(&second, dir.path())?;
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::HUP)?;
    wait_for_cert(server.addr, &second.der, Duration::from_secs(5)).await?;

    // A broken file is reported and the working certificate stays.
    std::fs::write(&cert_path, "-----BEGIN CERTIFICATE-----\ngarbage\n")?;
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::HUP)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(presented(server.addr).await?, second.der);

    // Without a signal, the change is noticed by polling the files.
    let third = new_cert("third")?;
    install(&third, dir.path())?;
    wait_for_cert(server.addr, &third.der, Duration::from_secs(15)).await?;
    server.stop().await
}

async fn wait_for_cert(
    addr: SocketAddr,
    wanted: &CertificateDer<'static>,
    within: Duration,
) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if presented(addr).await? == *wanted {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the new certificate was not served within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_redirect_listener_sends_everyone_to_https_and_serves_acme_challenges() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cert = new_cert("zync test")?;
    let (cert_path, key_path) = install(&cert, dir.path())?;
    let webroot = dir.path().join("acme");
    std::fs::create_dir_all(webroot.join(".well-known/acme-challenge"))?;
    std::fs::write(
        webroot.join(".well-known/acme-challenge/tok-EN_123"),
        "tok-EN_123.thumbprint",
    )?;
    std::fs::write(dir.path().join("secret"), "not for you")?;
    // A free port for the redirect listener (the server binds it itself).
    let redirect = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let server = TlsServer::start(&cert_path, &key_path, |config| {
        config.http.public_url = "https://meet.example.test".into();
        config.http.redirect_bind = redirect.to_string();
        config.http.acme_webroot = webroot.display().to_string();
    })
    .await?;

    let get = |path: &str| {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n");
        async move { exchange(TcpStream::connect(redirect).await?, &request).await }
    };
    let (head, _) = get("/m/abc-defg-hij?x=1").await?;
    assert!(head.starts_with("HTTP/1.1 308"), "{head}");
    assert_eq!(
        header(&head, "location"),
        Some("https://meet.example.test/m/abc-defg-hij?x=1"),
        "the redirect must follow public_url, not the Host header"
    );

    let (head, body) = get("/.well-known/acme-challenge/tok-EN_123").await?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "tok-EN_123.thumbprint");
    for escape in [
        "/.well-known/acme-challenge/..%2f..%2fsecret",
        "/.well-known/acme-challenge/%2e%2e",
        "/.well-known/acme-challenge/missing",
    ] {
        let (head, _) = get(escape).await?;
        assert!(head.starts_with("HTTP/1.1 404"), "{escape}: {head}");
    }
    server.stop().await
}

#[tokio::test]
async fn an_unusable_certificate_stops_the_start_with_a_clear_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let one = new_cert("one")?;
    let other = new_cert("other")?;
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, &one.cert_pem)?;
    std::fs::write(&key_path, &other.key_pem)?;
    let db = TestDatabase::fresh().await?;
    let cases = [
        (
            dir.path().join("missing.pem"),
            key_path.clone(),
            "http.tls_cert",
        ),
        (
            cert_path.clone(),
            dir.path().join("missing.pem"),
            "http.tls_key",
        ),
        (cert_path.clone(), key_path.clone(), "does not belong"),
    ];
    for (cert, key, expected) in cases {
        let config = tls_config(&db, &cert, &key);
        let listener = TcpListener::bind(config.http.bind).await?;
        let error = match zync::serve(config, listener, async {}).await {
            Ok(()) => bail!("zync started with {cert:?} and {key:?}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(error.contains(expected), "{expected:?} not in {error:?}");
    }
    Ok(())
}

/// A WebSocket upgrade request to `wss://addr/ws` from `origin`, with the
/// session cookie.
fn ws_request(
    addr: std::net::SocketAddr,
    origin: &str,
    session: &str,
) -> anyhow::Result<tokio_tungstenite::tungstenite::http::Request<()>> {
    Ok(tokio_tungstenite::tungstenite::http::Request::builder()
        .uri(format!("wss://{addr}/ws"))
        .header("Host", addr.to_string())
        .header("Origin", origin)
        .header("Cookie", session)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        )
        .body(())?)
}
