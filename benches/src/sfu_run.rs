//! A run through Zync: a `zync` server (spawned on loopback, or given by
//! URL), users signed up over HTTP, and simulated participants (str0m
//! peers) that join over the WebSocket, negotiate via `signal`, and send
//! and receive media over UDP.

use crate::crowd::{Crowd, LatencyMarks, Totals};
use crate::delay::{DelayCounts, DelayFigures};
use crate::lag::LagProbe;
use crate::plan::{Plan, Storm};
use crate::procstat::{self, ProcSample};
use crate::report::{Adaptation, Delivery, Percentiles, Side, StormFigures};
use anyhow::{Context, Result, bail};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zync_tests::impair::{ImpairRelay, Limits, RelayStats, Route};
use zync_tests::{Client, PASSWORD};

/// The first of `count` consecutive UDP ports free on 127.0.0.1 and
/// 127.0.0.2 (taken again a moment later by the server and the relay).
fn free_port_run(count: usize) -> Result<u16> {
    let free = |ip: [u8; 4], port: u16| {
        std::net::UdpSocket::bind(std::net::SocketAddr::from((ip, port))).is_ok()
    };
    for _ in 0..100 {
        let first = 20_000 + rand::random::<u16>() % 30_000;
        if (first..first + count as u16).all(|p| free([127, 0, 0, 1], p) && free([127, 0, 0, 2], p))
        {
            return Ok(first);
        }
    }
    bail!("no run of {count} free UDP ports on loopback")
}

/// The server under test.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its process id, for CPU and memory (None when unknown).
    pub pid: Option<u32>,
    child: Option<Child>,
    /// The lossy relay media goes through (`Plan::impairment`).
    impair: Option<ImpairRelay>,
}

impl Server {
    /// Starts `zync` (this binary in server mode) on loopback with a
    /// fresh SQLite database, with bandwidth estimation if `plan` needs it.
    pub fn spawn(data_dir: &std::path::Path, plan: &Plan) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let mut command = Command::new(exe);
        // With an impairment, the server advertises 127.0.0.2 on fixed
        // ports, one per worker, and the relay listens there.
        let impair = match plan.impairment {
            Some(impaired) => {
                let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
                let first = free_port_run(workers)?;
                let routes: Vec<Route> = (first..first + workers as u16)
                    .map(|port| Route {
                        listen: ([127, 0, 0, 2], port).into(),
                        upstream: ([127, 0, 0, 1], port).into(),
                    })
                    .collect();
                command
                    .env("ZYNC_SFU_PUBLIC_IP", "127.0.0.2")
                    .env("ZYNC_SFU_WORKERS", workers.to_string())
                    .env("ZYNC_SFU_UDP_PORT_MIN", first.to_string())
                    .env(
                        "ZYNC_SFU_UDP_PORT_MAX",
                        (first + workers as u16 - 1).to_string(),
                    );
                Some(ImpairRelay::start(
                    &routes,
                    impaired.impairment(),
                    1,
                    Limits {
                        lifetime: Duration::from_secs(3600),
                        ..Limits::default()
                    },
                )?)
            }
            None => {
                command
                    .env("ZYNC_SFU_UDP_PORT_MIN", "0")
                    .env("ZYNC_SFU_UDP_PORT_MAX", "0");
                None
            }
        };
        let mut child = command
            .arg("--internal-server")
            .env("ZYNC_HTTP_BIND", "127.0.0.1:0")
            .env(
                "ZYNC_DATABASE_URL",
                format!("sqlite://{}/zync.db", data_dir.display()),
            )
            .env("ZYNC_SFU_BIND_IP", "127.0.0.1")
            .env("ZYNC_SFU_TCP_PORT_MIN", "0")
            .env("ZYNC_SFU_TCP_PORT_MAX", "0")
            .env("ZYNC_LIMITS_MAX_ROOM_PARTICIPANTS", "1000")
            // Every simulated person signs up and meets from loopback.
            .env("ZYNC_AUTH_MAX_REGISTRATIONS_PER_IP_PER_HOUR", "1000000")
            .env("ZYNC_AUTH_MAX_MEETINGS_PER_IP_PER_HOUR", "1000000")
            .env(
                "ZYNC_SFU_BANDWIDTH_ESTIMATION",
                plan.bandwidth_estimation.to_string(),
            )
            .env("ZYNC_LOG_LEVEL", "warn")
            // Its end of the pipe closes when we exit: the server follows.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines
                .next()
                .context("the server exited before listening")??;
            if let Some(url) = line.strip_prefix("ZYNC_LOAD_SERVER ") {
                break url.trim().to_string();
            }
        };
        let pid = Some(child.id());
        Ok(Self {
            base,
            pid,
            child: Some(child),
            impair,
        })
    }

    /// Stops the lossy relay, if there is one, and returns what it did.
    pub fn stop_relay(&mut self) -> Option<Result<RelayStats>> {
        self.impair.take().map(ImpairRelay::stop)
    }

    /// A server someone else runs.
    pub fn external(base: &str, pid: Option<u32>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            impair: None,
            pid,
            child: None,
        }
    }

    fn sample(&self) -> Option<ProcSample> {
        self.pid.and_then(procstat::sample)
    }

    /// RTP packets the SFU has received and sent, from `/metrics` (each
    /// worker updates them once a second: a cross-check, not the measure),
    /// and its forwarding-delay histogram (always current).
    async fn rtp_counts(&self) -> Option<RtpCounts> {
        let text = reqwest::get(format!("{}/metrics", self.base))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let sum = |name: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(name))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let by_layer = |layer: usize| {
            let label = format!("layer=\"{layer}\"");
            text.lines()
                .filter(|l| l.starts_with("zync_sfu_video_packets_out_total") && l.contains(&label))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        Some(RtpCounts {
            packets_in: sum("zync_sfu_rtp_packets_in_total"),
            packets_out: sum("zync_sfu_rtp_packets_out_total"),
            video_out_by_layer: [by_layer(0), by_layer(1), by_layer(2)],
            paused_tracks: sum("zync_sfu_paused_tracks"),
            switch_keyframes: sum("zync_sfu_layer_switch_keyframe_requests_total"),
            delay: DelayCounts::parse(&text),
        })
    }
}

/// The SFU's own counters.
#[derive(Debug, Clone)]
struct RtpCounts {
    packets_in: f64,
    packets_out: f64,
    /// Video packets sent of each simulcast layer (`q`, `h`, `f`).
    video_out_by_layer: [f64; 3],
    /// Tracks paused for subscribers now (a gauge).
    paused_tracks: f64,
    /// Keyframes asked of publishers to switch subscribers' layers.
    switch_keyframes: f64,
    delay: Option<DelayCounts>,
}

/// The forwarding delay between two readings of `/metrics`.
fn delay_between(a: Option<&RtpCounts>, b: Option<&RtpCounts>) -> Option<DelayFigures> {
    let (Some(a), Some(b)) = (a?.delay.as_ref(), b?.delay.as_ref()) else {
        return None;
    };
    b.since(a).figures()
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The moment CPU and packets are read together: the server's and the
/// generator's `/proc` samples around the subscribers' counters, with no
/// await in between, so per-packet figures cover one window.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    server: Option<ProcSample>,
    generator: Option<ProcSample>,
    received: Totals,
}

impl Sample {
    /// Reads the server's CPU, the subscribers' counters and our CPU now.
    fn take(server: &Server, crowd: &Crowd<'_>) -> Self {
        let server_cpu = server.sample();
        let received = crowd.totals();
        let generator = procstat::sample(std::process::id());
        Self {
            at: Instant::now(),
            server: server_cpu,
            generator,
            received,
        }
    }
}

/// Something the measured window does at a set time.
#[derive(Debug, Clone, Copy)]
enum Action {
    /// A churn leave/rejoin cycle.
    Cycle,
    /// A storm joiner joins every room.
    StormJoin { seat: usize },
}

/// An action, when it is due, and the latest it may still start: a churn
/// cycle that falls behind is dropped rather than run into the settle
/// time (the run then fails, saying how many ran).
#[derive(Debug, Clone, Copy)]
struct Due {
    at: Instant,
    until: Instant,
    action: Action,
}

/// The window's actions in time order, from its start `t0`.
fn agenda(plan: &Plan, t0: Instant) -> VecDeque<Due> {
    let mut actions = Vec::new();
    if let Some(churn) = plan.churn {
        let span = plan.duration.saturating_sub(churn.settle);
        let gap = span / churn.cycles.max(1) as u32;
        actions.extend((0..churn.cycles).map(|i| Due {
            at: t0 + gap * i as u32,
            until: t0 + span,
            action: Action::Cycle,
        }));
    }
    if let Some(storm) = plan.storm {
        let gap = Duration::from_secs_f64(1.0 / storm.rate);
        actions.extend((0..storm.joiners).map(|k| Due {
            at: t0 + storm.after + gap * k as u32,
            until: t0 + plan.duration,
            action: Action::StormJoin {
                seat: plan.participants + k,
            },
        }));
    }
    actions.sort_by_key(|d| d.at);
    actions.into()
}

/// Bounds how long the storm window waits for its joiners' first media.
const STORM_MEDIA_TIMEOUT: Duration = Duration::from_secs(10);

/// Samples (µs) before and during a join storm.
#[derive(Default)]
struct StormSamples {
    latency: (Vec<u64>, Vec<u64>),
    lag: (Vec<u64>, Vec<u64>),
    window: Duration,
    /// The SFU's counters at the window's start, the storm's start and its
    /// end (the last read just after the samples).
    counted: [Option<RtpCounts>; 3],
}

/// The join storm as it goes: marks at its start, samples at its end.
struct StormWatch {
    /// Joiners (per room) the storm brings.
    joiners: usize,
    /// Joiners that came so far.
    joined: usize,
    /// When the first joiner came, the latency and lag marks then.
    started: Option<(Instant, LatencyMarks, usize)>,
    /// The SFU's counters when the first joiner came.
    counted_at_start: Option<RtpCounts>,
    samples: Option<StormSamples>,
    last_join: Option<Instant>,
}

impl StormWatch {
    /// Waiting for the storm's first joiner.
    fn new(storm: &Storm) -> Self {
        Self {
            joiners: storm.joiners,
            joined: 0,
            started: None,
            counted_at_start: None,
            samples: None,
            last_join: None,
        }
    }

    /// Marks the start at the first joiner (`counted`: the SFU's counters
    /// read just before).
    fn on_join(&mut self, crowd: &Crowd<'_>, probe: &LagProbe, counted: Option<RtpCounts>) {
        if self.started.is_none() {
            self.started = Some((Instant::now(), crowd.latency_marks(), probe.mark()));
            self.counted_at_start = counted;
        }
        self.joined += 1;
        self.last_join = Some(Instant::now());
    }

    /// Closes the window once every joiner is in and received media (or
    /// waited too long, or the run ends: `force`). True when it closed now
    /// (the caller then reads the SFU's counters: [`StormWatch::closed`]).
    fn poll(&mut self, crowd: &Crowd<'_>, probe: &LagProbe, force: bool) -> bool {
        let Some((started, marks, lag_mark)) = &self.started else {
            return false;
        };
        if self.samples.is_some() {
            return false;
        }
        let overdue = self
            .last_join
            .is_some_and(|t| t.elapsed() > STORM_MEDIA_TIMEOUT);
        let done = self.joined == self.joiners && crowd.joiners_have_media();
        if !(force || overdue || done) {
            return false;
        }
        let now = crowd.latency_marks();
        self.samples = Some(StormSamples {
            latency: (
                crowd.latencies_between(None, Some(marks)),
                crowd.latencies_between(Some(marks), Some(&now)),
            ),
            lag: (
                probe.between(0, Some(*lag_mark)),
                probe.between(*lag_mark, None),
            ),
            window: started.elapsed(),
            counted: [None, self.counted_at_start.take(), None],
        });
        true
    }

    /// The SFU's counters at the start of the measured window and at the
    /// close of the storm's.
    fn closed(&mut self, window_start: Option<&RtpCounts>, end: Option<RtpCounts>) {
        if let Some(samples) = self.samples.as_mut() {
            samples.counted[0] = window_start.cloned();
            samples.counted[2] = end;
        }
    }
}

/// What the measured window produced besides its two samples.
struct Window {
    start: Sample,
    end: Sample,
    /// The forwarder's own counts at the start and end (`/metrics`).
    counted: (Option<RtpCounts>, Option<RtpCounts>),
    delivery: Option<(Delivery, Vec<String>)>,
    storm: Option<StormWatch>,
    /// The generator's wake-up lateness over the window, µs.
    lag: Vec<u64>,
    failures: Vec<String>,
}

/// Runs the measured window: samples at both ends, a progress line each
/// second, and the plan's churn cycles, storm joins and delivery check.
async fn measure(plan: &Plan, server: &Server, crowd: &mut Crowd<'_>) -> Result<Window> {
    let start = Sample::take(server, crowd);
    let counted_start = server.rtp_counts().await;
    let end_at = start.at + plan.duration;
    let check_at = end_at - plan.check_window();
    let probe = LagProbe::start(end_at);
    let mut actions = agenda(plan, start.at);
    let mut storm = plan.storm.as_ref().map(StormWatch::new);
    let mut snapshot = None;
    let mut progress = Progress::new(&start, counted_start.clone());
    while Instant::now() < end_at {
        if snapshot.is_none() && Instant::now() >= check_at {
            snapshot = Some(crowd.delivery_snapshot());
        }
        // One action per turn, so progress lines and the check start keep
        // their time when actions fall behind.
        if let Some(due) = actions.front().copied()
            && due.at <= Instant::now()
        {
            actions.pop_front();
            perform(plan, server, crowd, due, storm.as_mut(), &probe).await?;
        }
        if let Some(watch) = storm.as_mut()
            && watch.poll(crowd, &probe, false)
        {
            watch.closed(counted_start.as_ref(), server.rtp_counts().await);
        }
        progress.tick(plan, server, crowd).await;
        let mut next = actions
            .front()
            .map_or(end_at, |d| d.at)
            .min(progress.next)
            .min(end_at)
            .min(Instant::now() + Duration::from_millis(100));
        if snapshot.is_none() {
            next = next.min(check_at);
        }
        tokio::time::sleep_until(next.into()).await;
    }
    let end = Sample::take(server, crowd);
    let counted_end = server.rtp_counts().await;
    if let Some(watch) = storm.as_mut()
        && watch.poll(crowd, &probe, true)
    {
        watch.closed(counted_start.as_ref(), counted_end.clone());
    }
    Ok(Window {
        start,
        end,
        counted: (counted_start, counted_end),
        delivery: snapshot.map(|s| crowd.check_delivery(&s)),
        storm,
        lag: probe.between(0, None),
        failures: churn_shortfall(plan, crowd).into_iter().collect(),
    })
}

/// Does one due action; nothing if it is past the latest it may start.
async fn perform(
    plan: &Plan,
    server: &Server,
    crowd: &mut Crowd<'_>,
    due: Due,
    storm: Option<&mut StormWatch>,
    probe: &LagProbe,
) -> Result<()> {
    if Instant::now() > due.until {
        return Ok(());
    }
    match due.action {
        Action::Cycle => crowd.cycle().await,
        Action::StormJoin { seat } => {
            if let Some(watch) = storm {
                let counted = match watch.started {
                    None => server.rtp_counts().await,
                    Some(_) => None,
                };
                watch.on_join(crowd, probe, counted);
            }
            for room in 0..plan.rooms {
                crowd.join(room, seat).await?;
            }
            Ok(())
        }
    }
}

/// A failure if fewer churn cycles ran than planned.
fn churn_shortfall(plan: &Plan, crowd: &Crowd<'_>) -> Option<String> {
    let churn = plan.churn?;
    (crowd.cycles < churn.cycles).then(|| {
        format!(
            "only {} of {} churn cycles ran before the settle time (they fell behind)",
            crowd.cycles, churn.cycles
        )
    })
}

/// The once-a-second progress line.
struct Progress {
    next: Instant,
    start: Instant,
    last: Sample,
    counts: Option<RtpCounts>,
}

impl Progress {
    /// The first line comes a second after `start`.
    fn new(start: &Sample, counts: Option<RtpCounts>) -> Self {
        Self {
            next: start.at + Duration::from_secs(1),
            start: start.at,
            last: *start,
            counts,
        }
    }

    /// Prints, when a second has passed: packets/s the subscribers got,
    /// the SFU's own in/out rates (which tell a stalled generator, whose
    /// publishers send less, from a stalled SFU) and both processes' CPU.
    async fn tick(&mut self, plan: &Plan, server: &Server, crowd: &Crowd<'_>) {
        if Instant::now() < self.next {
            return;
        }
        let now = Sample::take(server, crowd);
        let counts = server.rtp_counts().await;
        let seconds = now.at.duration_since(self.last.at).as_secs_f64().max(1e-3);
        let cpu = |a: Option<ProcSample>, b: Option<ProcSample>| match (a, b) {
            (Some(a), Some(b)) => {
                format!("{:.0}%", (b.cpu - a.cpu).as_secs_f64() / seconds * 100.0)
            }
            _ => "-".into(),
        };
        let sfu = match (&self.counts, &counts) {
            (Some(a), Some(b)) => format!(
                "{:.0} in / {:.0} out",
                (b.packets_in - a.packets_in) / seconds,
                (b.packets_out - a.packets_out) / seconds
            ),
            _ => "-".into(),
        };
        eprintln!(
            "t={:>3.0}s  received {:>7.0} packets/s (expected ~{:.0}); SFU's count {sfu}; CPU SFU {} generator {}; {} present, {} cycles",
            now.at.duration_since(self.start).as_secs_f64(),
            now.received
                .packets
                .saturating_sub(self.last.received.packets) as f64
                / seconds,
            plan.expected_forward_rate(),
            cpu(self.last.server, now.server),
            cpu(self.last.generator, now.generator),
            crowd.present(),
            crowd.cycles,
        );
        self.next = now.at + Duration::from_secs(1);
        self.last = now;
        self.counts = counts;
    }
}

/// Runs `plan` against `server`, printing progress; returns the figures.
pub async fn run(plan: &Plan, server: &Server) -> Result<Side> {
    let epoch = Instant::now();
    eprintln!("signing up {} users…", plan.accounts());
    let clients = sign_up(&server.base, plan.accounts()).await?;
    let mut slugs = Vec::new();
    for room in 0..plan.rooms {
        slugs.push(
            clients[room * plan.room_size()]
                .create_meeting(&format!("load {room}"))
                .await?,
        );
    }
    // Let the server settle after the argon2 work before measuring memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_join = server.sample();
    let mut crowd = Crowd::new(plan, &clients, slugs, epoch);
    crowd.join_initial().await?;
    wait_for_media(&crowd).await?;
    let join_ms = Percentiles::from_micros(crowd.join_times_us());
    tokio::time::sleep(Duration::from_secs(2)).await;
    crowd.clear_latencies();
    let window = measure(plan, server, &mut crowd).await?;
    let side = figures(plan, &crowd, window, before_join, join_ms);
    crowd.vanish();
    Ok(side)
}

/// Waits (at most 30 s) until everyone who should receive media got some.
async fn wait_for_media(crowd: &Crowd<'_>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting = crowd.waiting_for_media();
        if waiting == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{waiting} participants never received media");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The report's figures from the window's samples and what the crowd saw.
fn figures(
    plan: &Plan,
    crowd: &Crowd<'_>,
    window: Window,
    before_join: Option<ProcSample>,
    join_ms: Percentiles,
) -> Side {
    let (start, end) = (&window.start, &window.end);
    let seconds = end.at.duration_since(start.at).as_secs_f64();
    let received = end.received.packets.saturating_sub(start.received.packets);
    let received_bytes = end.received.bytes.saturating_sub(start.received.bytes);
    // Over the bound fails the run, naming who got such offers.
    let (largest_sdp, over_bound) = crowd.largest_offer();
    let mut side = Side {
        forwarder: "sfu".into(),
        joined: crowd.present(),
        seconds,
        forwarded_pps: received as f64 / seconds,
        forwarder_count_pps: match &window.counted {
            (Some(a), Some(b)) => Some((b.packets_out - a.packets_out) / seconds),
            _ => None,
        },
        forward_delay: delay_between(window.counted.0.as_ref(), window.counted.1.as_ref()),
        received_bps: received_bytes as f64 * 8.0 / seconds,
        join_ms,
        largest_sdp: Some(largest_sdp),
        churn_cycles: plan.churn.map(|_| crowd.cycles),
        failures: [window.failures, over_bound].concat(),
        ..Side::default()
    };
    if let (Some(a), Some(b)) = (start.server, end.server) {
        let cpu = (b.cpu - a.cpu).as_secs_f64();
        side.cpu_us_per_packet = cpu * 1e6 / received.max(1) as f64;
        side.cpu_percent = cpu / seconds * 100.0;
        side.peak_rss_mib = b.peak_rss as f64 / (1 << 20) as f64;
    }
    // At the end of the window: steady state, churn included.
    if let (Some(a), Some(b)) = (before_join, end.server) {
        side.memory_per_participant_kib =
            b.rss.saturating_sub(a.rss) as f64 / 1024.0 / crowd.present().max(1) as f64;
    }
    if let (Some(a), Some(b)) = (start.generator, end.generator) {
        let cpu = (b.cpu - a.cpu).as_secs_f64();
        side.generator_cpu_us_per_packet = cpu * 1e6 / received.max(1) as f64;
        side.generator_cpu_percent = cpu / seconds * 100.0;
    }
    let losses = crowd.losses();
    side.loss_mean_percent = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
    side.loss_max_percent = losses.iter().copied().fold(0.0, f64::max);
    side.latency_ms = Percentiles::from_micros(crowd.latencies_us());
    if let Some(targets) = plan.targets {
        if side.loss_mean_percent >= targets.loss_percent {
            side.failures.push(format!(
                "mean loss {:.2} % (target under {} %)",
                side.loss_mean_percent, targets.loss_percent
            ));
        }
        if side.latency_ms.p95 >= targets.latency_p95_ms {
            side.failures.push(format!(
                "latency p95 {:.1} ms (target under {} ms)",
                side.latency_ms.p95, targets.latency_p95_ms
            ));
        }
    }
    if let Some((delivery, failures)) = window.delivery {
        side.delivery = Some(delivery);
        side.failures.extend(failures);
    }
    if plan.adapts() {
        let adaptation = adaptation(plan, crowd, &window.counted, side.forwarded_pps);
        if let (Some(limit), Some(capped)) = (plan.capped, adaptation.capped) {
            if capped.seconds > limit.converge_within.as_secs_f64() {
                side.failures.push(format!(
                    "a capped subscriber received a camera above the lowest layer {:.1} s after its first media (limit {:.0} s)",
                    capped.seconds,
                    limit.converge_within.as_secs_f64()
                ));
            }
            if capped.audio_loss_percent > CAPPED_AUDIO_LOSS_LIMIT {
                side.failures.push(format!(
                    "a capped subscriber lost {:.2} % of its audio (limit {CAPPED_AUDIO_LOSS_LIMIT} %)",
                    capped.audio_loss_percent
                ));
            }
        }
        side.adaptation = Some(adaptation);
    }
    if let (Some(storm), Some(watch)) = (plan.storm, window.storm) {
        side.storm = storm_figures(&storm, watch, &mut side.failures);
    }
    side.generator_lag_ms = Some(Percentiles::from_micros(window.lag));
    side
}

/// Most audio a capped subscriber may lose, %: its link's queue may
/// overflow before the estimate first comes down.
const CAPPED_AUDIO_LOSS_LIMIT: f64 = 1.0;

/// Layer shares, paused tracks and the capped subscribers' convergence.
fn adaptation(
    plan: &Plan,
    crowd: &Crowd<'_>,
    counted: &(Option<RtpCounts>, Option<RtpCounts>),
    forwarded_pps: f64,
) -> Adaptation {
    let unadapted_pps = plan.unadapted_forward_rate();
    let mut figures = Adaptation {
        unadapted_pps,
        reduction: unadapted_pps / forwarded_pps.max(1.0),
        capped: crowd.convergence(),
        ..Adaptation::default()
    };
    if let (Some(a), Some(b)) = counted {
        let layers: Vec<f64> = (0..3)
            .map(|i| b.video_out_by_layer[i] - a.video_out_by_layer[i])
            .collect();
        let total: f64 = layers.iter().sum::<f64>().max(1.0);
        for (share, layer) in figures.layer_shares.iter_mut().zip(&layers) {
            *share = layer / total;
        }
        figures.paused_tracks = b.paused_tracks;
        figures.switch_keyframes = b.switch_keyframes - a.switch_keyframes;
    }
    figures
}

/// The storm's figures; fails the run if it never started or the
/// existing participants' p99 went over the limit.
fn storm_figures(
    storm: &Storm,
    watch: StormWatch,
    failures: &mut Vec<String>,
) -> Option<StormFigures> {
    let Some(samples) = watch.samples else {
        failures.push("the join storm did not run within the window".into());
        return None;
    };
    let figures = StormFigures {
        joiners: storm.joiners,
        window_seconds: samples.window.as_secs_f64(),
        before_ms: Percentiles::from_micros(samples.latency.0),
        during_ms: Percentiles::from_micros(samples.latency.1),
        generator_lag_before_ms: Percentiles::from_micros(samples.lag.0),
        generator_lag_during_ms: Percentiles::from_micros(samples.lag.1),
        forward_delay_before: delay_between(
            samples.counted[0].as_ref(),
            samples.counted[1].as_ref(),
        ),
        forward_delay_during: delay_between(
            samples.counted[1].as_ref(),
            samples.counted[2].as_ref(),
        ),
        p99_limit_ms: storm.p99_limit_ms,
    };
    // The SFU is held to its own forwarding delay: the latency the
    // generator measures adds the generator's lateness, which on a machine
    // it shares with the server can be the larger part (both are reported).
    match figures.forward_delay_during {
        Some(delay) if delay.p99_ms.is_some_and(|p99| p99 <= storm.p99_limit_ms) => {}
        Some(delay) => failures.push(format!(
            "the SFU's forwarding delay during the join storm: {} ms, p99 limit {} ms",
            delay.describe(),
            storm.p99_limit_ms
        )),
        None => failures.push(
            "the SFU's forwarding delay during the join storm was not measured (no zync_sfu_forward_delay_seconds in /metrics)".into(),
        ),
    }
    Some(figures)
}

/// Signs up `n` users, a few at a time (argon2 is deliberately slow).
async fn sign_up(base: &str, n: usize) -> Result<Vec<Client>> {
    // Unique per run, so runs against one long-lived server don't collide.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let run = format!("{:x}{nanos:x}", std::process::id());
    let mut clients = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let batch = chunk.iter().map(|i| {
            let client = Client::new(base);
            let name = format!("load{run}x{i}");
            async move {
                let (status, body) = client
                    .register(&name, &format!("Load {i}"), PASSWORD)
                    .await?;
                if !status.is_success() {
                    bail!("sign-up failed: {status} {body}");
                }
                Ok(client)
            }
        });
        for client in futures_util::future::join_all(batch).await {
            clients.push(client?);
        }
    }
    Ok(clients)
}
