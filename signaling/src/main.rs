//! The `zync` binary: parse arguments, load the config, start the server.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;
use zync::zync_config::Config;

/// Zync: self-hosted video meetings.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// TOML config file; without it, built-in defaults apply. Any key can
    /// also be set as ZYNC_<SECTION>_<KEY> in the environment.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate FILE (plus the environment) and exit without starting.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
}

fn load(path: Option<&std::path::Path>) -> anyhow::Result<(Config, EnvFilter)> {
    let config = Config::load(path)?;
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(&directives)
            .with_context(|| format!("RUST_LOG={directives:?} is not a valid log filter"))?,
        _ => EnvFilter::try_new(&config.log.level)
            .map_err(|e| anyhow::anyhow!("config key `log.level`: {e}"))?,
    };
    Ok((config, filter))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.check_config {
        return match load(Some(path)) {
            Ok(_) => {
                println!("{}: configuration is valid", path.display());
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e:#}", path.display());
                std::process::ExitCode::from(2)
            }
        };
    }
    let (config, filter) = match load(args.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("zync: invalid configuration: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    match run(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("zync: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let runtime = zync::runtime().context("starting the async runtime")?;
    runtime.block_on(async {
        let bind = config.http.bind;
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("cannot listen on {bind} (config key `http.bind`)"))?;
        zync::serve(config, listener, shutdown_signal()).await
    })
}

/// Completes on Ctrl-C or SIGTERM (what `docker stop` sends).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
