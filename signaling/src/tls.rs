//! HTTPS served by Zync itself: the certificate chain and key from
//! `http.tls_cert` and `http.tls_key` (PEM), re-read on SIGHUP and when
//! either file changes, so a certbot renewal needs no restart.
//!
//! Every handshake asks [`ReloadingCert`] for the current certificate, so a
//! reload applies to the next connection; open connections keep theirs. A
//! reload that fails (a half-written file, a key that does not match) is
//! logged and the previous certificate stays in use.

use anyhow::{Context, bail};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// How often the files are checked for changes (one `stat` each).
const POLL: Duration = Duration::from_secs(5);

/// Where the certificate and key are read from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// When and how large each file was when last read: a change in either
/// means a renewal.
type Stamp = [Option<(SystemTime, u64)>; 2];

/// The certificate every new handshake gets, swapped on reload.
pub struct ReloadingCert {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    stamp: Mutex<Stamp>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().clone())
    }
}

impl ReloadingCert {
    /// Reads the files; fails with what is wrong with them.
    pub fn load(files: TlsFiles) -> anyhow::Result<Arc<Self>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let stamp = stamp_of(&files);
        let key = read_certified_key(&files, &provider)?;
        Ok(Arc::new(Self {
            files,
            provider,
            current: RwLock::new(Arc::new(key)),
            stamp: Mutex::new(stamp),
        }))
    }

    /// An acceptor whose handshakes use the current certificate (HTTP/1.1
    /// only: that is what the server speaks).
    pub fn acceptor(self: &Arc<Self>) -> anyhow::Result<TlsAcceptor> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// The certificate handshakes get now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the files if they changed since the last read (or always,
    /// with `force`). Returns whether a new certificate is in use.
    pub fn reload(&self, force: bool) -> bool {
        let stamp = stamp_of(&self.files);
        {
            let mut last = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
            if !force && *last == stamp {
                return false;
            }
            // Recorded even if the read fails: a broken file is reported
            // once per change, not on every poll.
            *last = stamp;
        }
        match read_certified_key(&self.files, &self.provider) {
            Ok(key) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(
                    "TLS certificate not reloaded, the previous one stays in use: {e:#}"
                );
                false
            }
        }
    }

    /// Reloads on SIGHUP and when the files change, until `stop` turns true.
    pub async fn watch(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut hangup = hangups();
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let force = tokio::select! {
                _ = poll.tick() => false,
                Some(()) = next_hangup(&mut hangup) => true,
                _ = stop.wait_for(|stopped| *stopped) => return,
            };
            let this = self.clone();
            // File reads and key parsing are blocking work.
            let _ = tokio::task::spawn_blocking(move || this.reload(force)).await;
        }
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

#[cfg(unix)]
fn hangups() -> Hangups {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; certificate files are still polled");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangups() -> Hangups {
    None
}

#[cfg(unix)]
async fn next_hangup(hangups: &mut Hangups) -> Option<()> {
    match hangups {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangups) -> Option<()> {
    std::future::pending().await
}

fn stamp_of(files: &TlsFiles) -> Stamp {
    let of = |path: &Path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    };
    [of(&files.cert), of(&files.key)]
}

fn read_certified_key(files: &TlsFiles, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let cert_path = files.cert.display();
    let key_path = files.key.display();
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read {cert_path} (config key `http.tls_cert`)"))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{cert_path} (config key `http.tls_cert`) is not valid PEM"))?;
    if chain.is_empty() {
        bail!("{cert_path} (config key `http.tls_cert`) holds no CERTIFICATE block");
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).with_context(|| {
        format!("cannot read a private key from {key_path} (config key `http.tls_key`)")
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .with_context(|| format!("{key_path} (config key `http.tls_key`): unsupported key"))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().with_context(|| {
        format!("the key in {key_path} does not belong to the certificate in {cert_path}")
    })?;
    Ok(certified)
}
