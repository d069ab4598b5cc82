//! `zync-load`: the load generator. See the README's "Performance" section.

use anyhow::{Context, Result, bail};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use zync_bench::plan::Plan;
use zync_bench::report::{self, Report, Round, Side};
use zync_bench::{procstat, relay, sfu_run};

/// Simulated meetings against Zync, with a raw UDP relay as the baseline.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// A preset: tiny, tiny-churn (CI), small (4x5), meeting (1x25), large
    /// (1x100, 10 publishing, 90 with muted microphones), fanout (1
    /// publisher, 200 viewers), churn (1x60, 200 leave/rejoin cycles),
    /// join-storm (25 more join a meeting of 25 at 10/s).
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
    /// Measured seconds (after everyone joined; churn and a join storm
    /// happen within).
    #[arg(long)]
    duration: Option<f64>,
    /// Participants joining per second.
    #[arg(long)]
    join_rate: Option<f64>,
    /// Leave/rejoin cycles (presets with churn).
    #[arg(long)]
    cycles: Option<usize>,
    /// Run the server with `sfu.bandwidth_estimation` on or off (overrides
    /// the preset).
    #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
    bandwidth_estimation: Option<bool>,
    /// Percent of datagrams lost each way between every participant and
    /// the server: media goes through `zync-impair`'s relay (the server
    /// advertises 127.0.0.2, where it listens).
    #[arg(long)]
    loss: Option<f64>,
    /// One-way delay added each way, milliseconds (through the relay).
    #[arg(long)]
    delay_ms: Option<u64>,
    /// The delay varies by up to this many milliseconds either way.
    #[arg(long)]
    jitter_ms: Option<u64>,
    /// Target a running Zync instead of starting one (loopback only).
    #[arg(long)]
    url: Option<String>,
    /// With --url: the server's process id, for its CPU and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Also run the raw UDP relay baseline with the same pattern (steady
    /// meetings only: the relay has no churn or join storm).
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
    if args.internal_server || args.internal_relay {
        procstat::exit_with_parent();
    }
    if args.internal_relay {
        return relay::serve();
    }
    if args.internal_server {
        return zync::runtime()?.block_on(internal_server());
    }
    // The simulated browsers stand in for other machines: their threads
    // yield to the server's media workers as the server's own signaling
    // does, so on a shared box the contention between the two processes
    // does not decide the server's forwarding delay. (The main thread,
    // which starts the server and the relay, keeps its priority for them.)
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(zync_sfu::yield_to_media)
        .build()?;
    let plan = plan(&args)?;
    runtime.block_on(run(args, plan))
}

/// The preset with the command line's overrides, checked.
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
    if let Some(on) = args.bandwidth_estimation {
        plan.bandwidth_estimation = on;
    }
    if let Some(kbps) = args.bitrate_kbps {
        plan.video_bitrate = kbps.saturating_mul(1000);
    }
    if let Some(d) = args.duration {
        plan.duration = Duration::try_from_secs_f64(d)
            .ok()
            .context("--duration must be a number of seconds")?;
    }
    plan.join_rate = args.join_rate.unwrap_or(plan.join_rate);
    if let Some(cycles) = args.cycles {
        let churn = plan
            .churn
            .as_mut()
            .context("--cycles needs a preset with churn")?;
        churn.cycles = cycles;
    }
    if let Err(why) = plan.check() {
        bail!("{why}");
    }
    if args.loss.is_some() || args.delay_ms.is_some() || args.jitter_ms.is_some() {
        if args.url.is_some() || args.baseline || args.baseline_only {
            bail!(
                "--loss, --delay-ms and --jitter-ms put a relay before a server zync-load starts: \
                 not with --url or the baseline"
            );
        }
        let impaired = zync_bench::plan::Impaired {
            loss_percent: args.loss.unwrap_or(0.0),
            delay_ms: args.delay_ms.unwrap_or(0),
            jitter_ms: args.jitter_ms.unwrap_or(0),
        };
        if !(0.0..=100.0).contains(&impaired.loss_percent) || impaired.jitter_ms > impaired.delay_ms
        {
            bail!("--loss is a percentage, and --jitter-ms cannot exceed --delay-ms");
        }
        plan.impairment = Some(impaired);
    }
    if (args.baseline || args.baseline_only) && (plan.churn.is_some() || plan.storm.is_some()) {
        bail!(
            "the relay baseline runs steady meetings only: no --baseline with churn or a join storm"
        );
    }
    if (args.baseline || args.baseline_only) && plan.adapts() {
        bail!(
            "the relay forwards everything to everyone: no --baseline with simulcast, views or capped \
             downlinks (the report compares such runs with the same room unadapted)"
        );
    }
    Ok(plan)
}

/// Runs the rounds, prints the report (and writes it as JSON), then fails
/// if any check of any round failed.
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
    let failures = failures(&results, args.rounds > 1);
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
        failures,
    };
    println!("{}", report.table());
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !report.failures.is_empty() {
        bail!(
            "{} check(s) failed (see FAILED above)",
            report.failures.len()
        );
    }
    Ok(())
}

/// Every round's failed checks, named by round (when there are several)
/// and forwarder.
fn failures(results: &[(Option<Side>, Option<Side>)], name_rounds: bool) -> Vec<String> {
    let mut all = Vec::new();
    for (i, (sfu, baseline)) in results.iter().enumerate() {
        for side in [sfu, baseline].into_iter().flatten() {
            for failure in &side.failures {
                all.push(if name_rounds {
                    format!("round {} {}: {failure}", i + 1, side.forwarder)
                } else {
                    format!("{}: {failure}", side.forwarder)
                });
            }
        }
    }
    all
}

/// One run through Zync: a fresh server (unless `--url`), torn down after.
async fn run_sfu(args: &Args, plan: &Plan) -> Result<Side> {
    let data = tempdir()?;
    let mut server = match &args.url {
        Some(url) => {
            if !(url.starts_with("http://127.")
                || url.starts_with("http://localhost")
                || url.starts_with("http://[::1]"))
            {
                bail!("--url must be a loopback address: load runs never leave this machine");
            }
            sfu_run::Server::external(url, args.server_pid)
        }
        None => sfu_run::Server::spawn(&data, plan)?,
    };
    eprintln!("running {} against {}", plan.name, server.base);
    let side = sfu_run::run(plan, &server).await;
    if let Some(stats) = server.stop_relay() {
        eprintln!("impairment relay: {}", serde_json::to_string(&stats?)?);
    }
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
