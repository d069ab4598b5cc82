//! A run through Zync: a `zync` server (spawned on loopback, or given by
//! URL), users signed up over HTTP, and simulated participants (str0m
//! peers) that join over the WebSocket, negotiate via `signal`, and send
//! and receive media over UDP.

use crate::plan::Plan;
use crate::procstat::{self, ProcSample};
use crate::report::{Percentiles, Side};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zync_sfu::testkit::MediaShape;
use zync_tests::participant::TestParticipant;
use zync_tests::{Client, PASSWORD};

/// The server under test.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its process id, for CPU and memory (None when unknown).
    pub pid: Option<u32>,
    child: Option<Child>,
}

impl Server {
    /// Starts `zync` (this binary in server mode) on loopback with a
    /// fresh SQLite database.
    pub fn spawn(data_dir: &std::path::Path) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg("--internal-server")
            .env("ZYNC_HTTP_BIND", "127.0.0.1:0")
            .env(
                "ZYNC_DATABASE_URL",
                format!("sqlite://{}/zync.db", data_dir.display()),
            )
            .env("ZYNC_SFU_BIND_IP", "127.0.0.1")
            .env("ZYNC_SFU_UDP_PORT_MIN", "0")
            .env("ZYNC_SFU_UDP_PORT_MAX", "0")
            .env("ZYNC_LIMITS_MAX_ROOM_PARTICIPANTS", "1000")
            .env("ZYNC_LOG_LEVEL", "warn")
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
        })
    }

    /// A server someone else runs.
    pub fn external(base: &str, pid: Option<u32>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            pid,
            child: None,
        }
    }

    fn sample(&self) -> Option<ProcSample> {
        self.pid.and_then(procstat::sample)
    }

    /// RTP packets the SFU has sent, from `/metrics`.
    async fn packets_out(&self) -> Option<f64> {
        let text = reqwest::get(format!("{}/metrics", self.base))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        Some(
            text.lines()
                .filter(|l| l.starts_with("zync_sfu_rtp_packets_out_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Counters summed over all participants at one moment.
#[derive(Default, Clone, Copy)]
struct Totals {
    packets: u64,
    bytes: u64,
}

fn totals(people: &[TestParticipant]) -> Totals {
    let mut t = Totals::default();
    for p in people {
        let observed = p.observe();
        for ledger in observed.peer.headers.values() {
            t.packets += ledger.packets;
            t.bytes += ledger.bytes;
        }
    }
    t
}

/// Runs `plan` against `server`, printing progress; returns the figures.
pub async fn run(plan: &Plan, server: &Server) -> Result<Side> {
    let epoch = Instant::now();
    eprintln!("signing up {} users…", plan.total());
    let clients = sign_up(&server.base, plan.total()).await?;
    let mut slugs = Vec::new();
    for room in 0..plan.rooms {
        slugs.push(
            clients[room * plan.participants]
                .create_meeting(&format!("load {room}"))
                .await?,
        );
    }
    // Let the server settle after the argon2 work before measuring memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_join = server.sample();

    let mut people = Vec::new();
    let gap = Duration::from_secs_f64(1.0 / plan.join_rate.max(0.1));
    for (i, client) in clients.iter().enumerate() {
        let (room, seat) = (i / plan.participants, i % plan.participants);
        let publishes = seat < plan.publishers;
        let shape = MediaShape {
            audio: publishes && plan.audio,
            video: publishes && plan.video,
            video_bitrate: plan.video_bitrate,
            fps: plan.fps,
            ..Default::default()
        };
        let started = Instant::now();
        let person =
            TestParticipant::join_with(client, &slugs[room], shape, epoch, Some(plan.sample_every))
                .await
                .with_context(|| format!("participant {i} joining"))?;
        people.push(person);
        if (i + 1) % 10 == 0 || i + 1 == clients.len() {
            eprintln!("joined {}/{}", i + 1, clients.len());
        }
        tokio::time::sleep(gap.saturating_sub(started.elapsed())).await;
    }

    // Everyone who should receive media gets some.
    let deadline = Instant::now() + Duration::from_secs(30);
    let expects_media = |i: usize| plan.receives_media(i);
    loop {
        let waiting = people
            .iter()
            .enumerate()
            .filter(|(i, p)| expects_media(*i) && p.observe().peer.first_media_at.is_none())
            .count();
        if waiting == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{waiting} participants never received media");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let join_ms = Percentiles::from_micros(
        people
            .iter()
            .enumerate()
            .filter(|(i, _)| expects_media(*i))
            .filter_map(|(_, p)| {
                let o = p.observe();
                Some(
                    o.peer
                        .first_media_at?
                        .saturating_duration_since(o.opened_at)
                        .as_micros() as u64,
                )
            })
            .collect(),
    );
    let after_join = server.sample();

    tokio::time::sleep(Duration::from_secs(2)).await;
    for p in &people {
        for r in p.observe().peer.received.values_mut() {
            r.latencies_us.clear();
        }
    }
    let start = (
        Instant::now(),
        totals(&people),
        server.sample(),
        server.packets_out().await,
        procstat::sample(std::process::id()),
    );
    let mut last = start.1;
    let measure_until = Instant::now() + plan.duration;
    while Instant::now() < measure_until {
        tokio::time::sleep(
            Duration::from_secs(1).min(measure_until.saturating_duration_since(Instant::now())),
        )
        .await;
        let now = totals(&people);
        eprintln!(
            "t={:>3.0}s  received {:>8} packets/s (expected ~{:.0})",
            start.0.elapsed().as_secs_f64(),
            now.packets - last.packets,
            plan.expected_forward_rate()
        );
        last = now;
    }
    let end = (
        Instant::now(),
        totals(&people),
        server.sample(),
        server.packets_out().await,
        procstat::sample(std::process::id()),
    );
    let seconds = end.0.duration_since(start.0).as_secs_f64();
    let received = end.1.packets - start.1.packets;
    let forwarded = match (start.3, end.3) {
        (Some(a), Some(b)) => b - a,
        _ => received as f64,
    };
    let mut side = Side {
        forwarder: "sfu".into(),
        joined: people.len(),
        seconds,
        forwarded_pps: forwarded / seconds,
        received_pps: received as f64 / seconds,
        received_bps: (end.1.bytes - start.1.bytes) as f64 * 8.0 / seconds,
        join_ms,
        ..Side::default()
    };
    if let (Some(a), Some(b)) = (start.2, end.2) {
        let cpu = (b.cpu - a.cpu).as_secs_f64();
        side.cpu_us_per_packet = cpu * 1e6 / forwarded.max(1.0);
        side.cpu_percent = cpu / seconds * 100.0;
        side.peak_rss_mib = b.peak_rss as f64 / (1 << 20) as f64;
    }
    if let (Some(a), Some(b)) = (before_join, after_join) {
        side.memory_per_participant_kib =
            b.rss.saturating_sub(a.rss) as f64 / 1024.0 / people.len() as f64;
    }
    if let (Some(a), Some(b)) = (start.4, end.4) {
        let cpu = (b.cpu - a.cpu).as_secs_f64();
        side.generator_cpu_us_per_packet = cpu * 1e6 / (received.max(1)) as f64;
        side.generator_cpu_percent = cpu / seconds * 100.0;
    }
    let mut losses = Vec::new();
    let mut latencies = Vec::new();
    for p in &people {
        let o = p.observe();
        let (lost, expected) = o
            .peer
            .headers
            .values()
            .fold((0, 0), |(l, e), h| (l + h.lost(), e + h.expected()));
        if expected > 0 {
            losses.push(lost as f64 / expected as f64 * 100.0);
        }
        for r in o.peer.received.values() {
            latencies.extend_from_slice(&r.latencies_us);
        }
    }
    side.loss_mean_percent = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
    side.loss_max_percent = losses.iter().copied().fold(0.0, f64::max);
    side.latency_ms = Percentiles::from_micros(latencies);
    for p in people {
        p.vanish();
    }
    Ok(side)
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
