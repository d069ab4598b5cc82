//! `zync-impair`: a UDP relay that drops and delays datagrams both ways,
//! for media-quality tests on a kernel without `netem` (see
//! `zync_tests::impair`).
//!
//! ```text
//! zync-impair --forward 127.0.0.2:50000=127.0.0.1:50000 --loss 5 --delay-ms 40 --jitter-ms 10
//! ```
//!
//! Runs until SIGTERM, SIGINT or `--seconds`, then prints what it relayed
//! as one JSON line.

use anyhow::Result;
use clap::Parser;
use std::time::Duration;
use zync_tests::impair::{ImpairRelay, Impairment, Limits, Route};

#[derive(Parser)]
#[command(about = "Relays UDP with loss and delay, both ways (a stand-in for netem).")]
struct Args {
    /// LISTEN=UPSTREAM: clients send to LISTEN, the relay forwards to
    /// UPSTREAM (repeat for several ports).
    #[arg(long = "forward", required = true)]
    routes: Vec<Route>,
    /// Percent of datagrams dropped in each direction.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// One-way delay in milliseconds, each direction.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// The delay varies by up to this many milliseconds either way.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Seed for the losses and delays (a run can be repeated).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop by itself after this many seconds.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let lifetime = Duration::from_secs(args.seconds);
    let relay = ImpairRelay::start(
        &args.routes,
        Impairment {
            loss: args.loss / 100.0,
            delay: Duration::from_millis(args.delay_ms),
            jitter: Duration::from_millis(args.jitter_ms),
        },
        args.seed,
        Limits {
            lifetime,
            ..Limits::default()
        },
    )?;
    for route in &args.routes {
        println!("relaying {} -> {}", route.listen, route.upstream);
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = tokio::time::sleep(lifetime) => {}
    }
    println!("{}", serde_json::to_string(&relay.stop()?)?);
    Ok(())
}
