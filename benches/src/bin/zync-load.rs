//! `zync-load`: the load generator. See the README's "Performance" section.

use anyhow::{Context, Result, bail};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use zync_bench::plan::Plan;
use zync_bench::report::{self, Report, Round, Side};
use zync_bench::{relay, sfu_run};

/// Simulated meetings against Zync, with a raw UDP relay as the baseline.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// A preset: tiny, small (4x5), meeting (1x25), large (1x100, 10
    /// publishing), fanout (1 publisher, 200 viewers).
    #[arg(long, default_value = "small")]
    preset: String,
    /// Rooms (overrides the preset).
    #[arg(long)]
    rooms: Option<usize>,
    /// Participants per room.
    #[arg(long)]
    participants: Option<usize>,
    /// Publishers per room (the rest only watch).
    #[arg(long)]
    publishers: Option<usize>,
    /// Publish no video (audio only).
    #[arg(long)]
    no_video: bool,
    /// Video bitrate per publisher, kbit/s.
    #[arg(long)]
    bitrate_kbps: Option<u32>,
    /// Measured seconds (after everyone joined).
    #[arg(long)]
    duration: Option<f64>,
    /// Participants joining per second.
    #[arg(long)]
    join_rate: Option<f64>,
    /// Target a running Zync instead of starting one (loopback only).
    #[arg(long)]
    url: Option<String>,
    /// With --url: the server's process id, for its CPU and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Also run the raw UDP relay baseline with the same pattern.
    #[arg(long)]
    baseline: bool,
    /// Run only the baseline.
    #[arg(long)]
    baseline_only: bool,
    /// Run the SFU (and the relay) this many times, alternating, and report
    /// the round with the median SFU/relay ratio: this host's speed drifts
    /// by ±10 % from minute to minute.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    rounds: u32,
    /// Write the report as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long, hide = true)]
    internal_server: bool,
    #[arg(long, hide = true)]
    internal_relay: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.internal_relay {
        return relay::serve();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.internal_server {
        return runtime.block_on(internal_server());
    }
    let plan = plan(&args)?;
    runtime.block_on(run(args, plan))
}

fn plan(args: &Args) -> Result<Plan> {
    let mut plan = Plan::preset(&args.preset).with_context(|| {
        format!(
            "unknown preset {:?}; use one of {:?}",
            args.preset,
            Plan::PRESETS
        )
    })?;
    if args.rooms.is_some() || args.participants.is_some() || args.publishers.is_some() {
        plan.name = "custom".into();
    }
    plan.rooms = args.rooms.unwrap_or(plan.rooms);
    plan.participants = args.participants.unwrap_or(plan.participants);
    plan.publishers = args
        .publishers
        .unwrap_or(plan.publishers)
        .min(plan.participants);
    plan.video &= !args.no_video;
    plan.video_bitrate = args.bitrate_kbps.map_or(plan.video_bitrate, |k| k * 1000);
    if let Some(d) = args.duration {
        plan.duration = Duration::from_secs_f64(d);
    }
    plan.join_rate = args.join_rate.unwrap_or(plan.join_rate);
    if plan.rooms == 0 || plan.participants < 2 || plan.publishers == 0 {
        bail!("a run needs at least one room of two participants with a publisher");
    }
    if plan.duration > Duration::from_secs(600) {
        bail!("runs are bounded: at most 600 s");
    }
    Ok(plan)
}

async fn run(args: Args, plan: Plan) -> Result<()> {
    let mut results = Vec::new();
    for round in 1..=args.rounds {
        if args.rounds > 1 {
            eprintln!("round {round}/{}", args.rounds);
        }
        let sfu = if args.baseline_only {
            None
        } else {
            Some(run_sfu(&args, &plan).await?)
        };
        let baseline = if args.baseline || args.baseline_only {
            eprintln!("running {} through the raw UDP relay", plan.name);
            Some(relay::run(&plan).await?)
        } else {
            None
        };
        results.push((sfu, baseline));
    }
    let rounds: Vec<Round> = results
        .iter()
        .map(|(s, b)| Round::of(s.as_ref(), b.as_ref()))
        .collect();
    let median = Round::median(&rounds);
    let ratio = rounds[median].ratio;
    let (sfu, baseline) = results.swap_remove(median);
    let report = Report {
        plan,
        machine: report::machine(),
        date: report::now_rfc3339(),
        sfu,
        baseline,
        cpu_ratio_sfu_to_baseline: ratio,
        rounds,
    };
    println!("{}", report.table());
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// One run through Zync: a fresh server (unless `--url`), torn down after.
async fn run_sfu(args: &Args, plan: &Plan) -> Result<Side> {
    let data = tempdir()?;
    let server = match &args.url {
        Some(url) => {
            if !(url.starts_with("http://127.")
                || url.starts_with("http://localhost")
                || url.starts_with("http://[::1]"))
            {
                bail!("--url must be a loopback address: load runs never leave this machine");
            }
            sfu_run::Server::external(url, args.server_pid)
        }
        None => sfu_run::Server::spawn(&data)?,
    };
    eprintln!("running {} against {}", plan.name, server.base);
    let side = sfu_run::run(plan, &server).await;
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    side
}

/// Runs Zync itself (this process becomes the server under test): the same
/// code as the `zync` binary, configured from the environment.
async fn internal_server() -> Result<()> {
    let config = zync_config::Config::load(None)?;
    let listener = tokio::net::TcpListener::bind(config.http.bind).await?;
    println!("ZYNC_LOAD_SERVER http://{}", listener.local_addr()?);
    zync::serve(config, listener, std::future::pending()).await
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("zync-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
