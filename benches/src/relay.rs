//! The baseline: a raw UDP relay that does nothing but forward, with the
//! same system calls and batching as the SFU's workers (`recvmmsg`, up to
//! `MAX_BATCHES_PER_TURN` receive batches per wakeup, each batch's copies
//! sent from the SFU's own `Outbox` before the next, GSO runs, `sendmmsg`), no
//! WebRTC and no crypto. It is what this machine can do at best; the report
//! divides the SFU's CPU per packet by the relay's.
//!
//! Members join a group by sending `JOIN <group>`; a datagram starting with
//! [`RTCP_MAGIC`] goes back to its sender (the RTCP a connection exchanges
//! with the SFU, which it answers rather than forwards); every other
//! datagram is sent to every other member of the sender's group.

use crate::plan::{KEYFRAME_INTERVAL, Plan};
use crate::procstat::{self, ProcSample};
use crate::report::{Percentiles, Side};
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use zync_sfu::core::Outbox;
use zync_sfu::driver::{MAX_BATCHES_PER_TURN, udp};

/// Marks the RTCP-sized datagrams the relay sends back to their sender.
const RTCP_MAGIC: &[u8; 2] = b"RC";
/// RTCP-like datagrams each participant sends, and gets back, per second.
/// Measured on the SFU (the generator's `sendto`/`recvfrom` under strace,
/// 6 and 12 participants all publishing): ~20 RTCP datagrams a second each
/// way per participant (TWCC feedback every 50 ms on a receiving
/// connection, sender and receiver reports), of 64-91 bytes on average,
/// growing with the streams a report covers.
const RTCP_PER_SECOND: u32 = 20;
/// Size of those datagrams (SRTCP included).
const RTCP_BYTES: usize = 100;

/// Runs the relay on `127.0.0.1:0` until killed; prints its address, then
/// how many media datagrams it forwarded (RTCP echoes not counted), once a
/// second.
pub fn serve() -> Result<()> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    socket.set_nonblocking(true)?;
    udp::tune_socket(&socket);
    println!("ZYNC_LOAD_RELAY {}", socket.local_addr()?);
    let mut socket = mio::net::UdpSocket::from_std(socket);
    let mut poll = mio::Poll::new()?;
    poll.registry()
        .register(&mut socket, mio::Token(0), mio::Interest::READABLE)?;
    let mut events = mio::Events::with_capacity(8);
    let mut receiver = udp::Receiver::default();
    let mut sender = udp::Sender::default();
    let mut group_of: HashMap<SocketAddr, u32> = HashMap::new();
    let mut members: HashMap<u32, Vec<SocketAddr>> = HashMap::new();
    let local = socket.local_addr()?;
    let mut outbox = Outbox::default();
    let (mut sent, mut echoed): (u64, u64) = (0, 0);
    let mut last_report = Instant::now();
    loop {
        poll.poll(&mut events, Some(Duration::from_millis(250)))?;
        // The worker's turn: up to MAX_BATCHES_PER_TURN receive batches,
        // each batch's copies sent before the next batch is received.
        for _ in 0..MAX_BATCHES_PER_TURN {
            let n = receiver.receive(&socket, udp::BATCH, |from, data| {
                if let Some(group) = data.strip_prefix(b"JOIN ") {
                    let group: u32 = std::str::from_utf8(group)
                        .ok()
                        .and_then(|g| g.trim().parse().ok())
                        .unwrap_or(0);
                    group_of.insert(from, group);
                    let list = members.entry(group).or_default();
                    if !list.contains(&from) {
                        list.push(from);
                    }
                    outbox.push_with(|arena| {
                        arena.extend_from_slice(b"OK");
                        Some((local, from))
                    });
                    return;
                }
                let Some(group) = group_of.get(&from) else {
                    return;
                };
                if data.starts_with(RTCP_MAGIC) {
                    echoed += 1;
                    outbox.push_with(|arena| {
                        arena.extend_from_slice(data);
                        Some((local, from))
                    });
                    return;
                }
                for member in members.get(group).into_iter().flatten() {
                    if *member != from {
                        outbox.push_with(|arena| {
                            arena.extend_from_slice(data);
                            Some((local, *member))
                        });
                    }
                }
            })?;
            sent += sender.send_outbox(&socket, &mut outbox, None)?.datagrams as u64;
            if n == 0 {
                break;
            }
        }
        sent += sender.send_outbox(&socket, &mut outbox, None)?.datagrams as u64;
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            println!("forwarded {}", sent.saturating_sub(echoed));
        }
    }
}

/// A relay child process and the last count it printed.
struct Relay {
    addr: SocketAddr,
    pid: u32,
    forwarded: Arc<AtomicU64>,
    child: Child,
}

impl Relay {
    /// Starts the relay (this binary, `--internal-relay`) and reads its
    /// address.
    fn spawn() -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--internal-relay")
            // Its end of the pipe closes when we exit: the relay follows.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the relay")?;
        let stdout = child.stdout.take().context("relay stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines.next().context("the relay exited")??;
            if let Some(addr) = line.strip_prefix("ZYNC_LOAD_RELAY ") {
                break addr.trim().parse()?;
            }
        };
        let forwarded = Arc::new(AtomicU64::new(0));
        let count = forwarded.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some(n) = line
                    .strip_prefix("forwarded ")
                    .and_then(|n| n.trim().parse().ok())
                {
                    count.store(n, Ordering::Relaxed);
                }
            }
        });
        Ok(Self {
            addr,
            pid: child.id(),
            forwarded,
            child,
        })
    }

    fn sample(&self) -> Option<ProcSample> {
        procstat::sample(self.pid)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one baseline participant received.
#[derive(Default)]
struct Ledger {
    /// Per sender stream: (first, highest, count).
    streams: HashMap<(u64, u8), (u32, u32, u64)>,
    packets: u64,
    bytes: u64,
    latencies_us: Vec<u64>,
    first_at: Option<Instant>,
}

/// Header of a baseline datagram: magic, sender, stream, packet number,
/// send time (µs since the run's epoch).
const HEADER: usize = 2 + 8 + 1 + 4 + 8;
/// What SRTP and the RTP header add to a payload, so datagrams are the
/// size the SFU sends.
const WIRE_OVERHEAD: usize = 12 + 8 + 16;

/// Packets and bytes the relay participants received at one moment, read
/// between the relay's and the generator's `/proc` samples (no await in
/// between), so CPU and packets cover one window.
struct Sample {
    at: Instant,
    relay: Option<ProcSample>,
    generator: Option<ProcSample>,
    packets: u64,
    bytes: u64,
    /// The relay's own count (printed once a second: a cross-check).
    counted: u64,
}

impl Sample {
    /// Reads the relay's CPU, the participants' counters and our CPU now.
    fn take(relay: &Relay, ledgers: &[Arc<Mutex<Ledger>>]) -> Self {
        let relay_cpu = relay.sample();
        let (packets, bytes) = ledgers.iter().fold((0u64, 0u64), |(p, b), l| {
            let l = l.lock().unwrap_or_else(|e| e.into_inner());
            (p + l.packets, b + l.bytes)
        });
        let generator = procstat::sample(std::process::id());
        Self {
            at: Instant::now(),
            relay: relay_cpu,
            generator,
            packets,
            bytes,
            counted: relay.forwarded.load(Ordering::Relaxed),
        }
    }
}

/// The relay's participants: what each received, when each joined, and
/// their sending and receiving tasks, which run until this is dropped.
struct Members {
    ledgers: Vec<Arc<Mutex<Ledger>>>,
    joined_at: Vec<Instant>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Members {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Runs `plan` through the relay with plain UDP participants. The relay
/// has no equivalent of churn or a join storm: it runs the steady meeting.
pub async fn run(plan: &Plan) -> Result<Side> {
    let relay = Relay::spawn()?;
    let epoch = Instant::now();
    let before = relay.sample();
    let members = join(plan, &relay, epoch).await?;
    wait_for_media(plan, &members.ledgers).await?;
    let join_ms = Percentiles::from_micros(
        members
            .ledgers
            .iter()
            .zip(&members.joined_at)
            .filter_map(|(l, at)| {
                let first = l.lock().ok()?.first_at?;
                Some(first.saturating_duration_since(*at).as_micros() as u64)
            })
            .collect(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    for l in &members.ledgers {
        l.lock()
            .unwrap_or_else(|e| e.into_inner())
            .latencies_us
            .clear();
    }
    let start = Sample::take(&relay, &members.ledgers);
    tokio::time::sleep(plan.duration).await;
    let end = Sample::take(&relay, &members.ledgers);
    let mut side = figures(&start, &end, before, members.ledgers.len());
    side.join_ms = join_ms;
    let (losses, latencies) = losses_and_latencies(&members.ledgers);
    side.loss_mean_percent = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
    side.loss_max_percent = losses.iter().copied().fold(0.0, f64::max);
    side.latency_ms = Percentiles::from_micros(latencies);
    Ok(side)
}

/// Everyone joins the relay (faster than the SFU's join rate: a relay join
/// is one datagram) and starts sending: media if a publisher, RTCP-like
/// datagrams in any case.
async fn join(plan: &Plan, relay: &Relay, epoch: Instant) -> Result<Members> {
    let mut members = Members {
        ledgers: Vec::new(),
        joined_at: Vec::new(),
        tasks: Vec::new(),
    };
    for i in 0..plan.rooms * plan.participants {
        let (room, seat) = (i / plan.participants, i % plan.participants);
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        udp::tune_socket(&socket);
        socket.connect(relay.addr).await?;
        let opened = Instant::now();
        socket.send(format!("JOIN {room}").as_bytes()).await?;
        let mut ok = [0u8; 8];
        tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut ok))
            .await
            .context("relay did not answer")??;
        members.joined_at.push(opened);
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        members.ledgers.push(ledger.clone());
        let socket = Arc::new(socket);
        let tasks = &mut members.tasks;
        tasks.push(tokio::spawn(receive(
            socket.clone(),
            ledger,
            epoch,
            plan.sample_every,
        )));
        tasks.push(tokio::spawn(rtcp(socket.clone())));
        if seat < plan.publishers {
            let publisher = Publisher::new(plan, i as u64, epoch);
            tasks.push(tokio::spawn(publisher.run(socket)));
        }
        tokio::time::sleep(Duration::from_secs_f64(1.0 / plan.join_rate / 10.0)).await;
    }
    Ok(members)
}

/// Waits (at most 10 s) until everyone who should receive media got some.
async fn wait_for_media(plan: &Plan, ledgers: &[Arc<Mutex<Ledger>>]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while ledgers.iter().enumerate().any(|(i, l)| {
        plan.receives_media(i) && l.lock().map(|l| l.first_at.is_none()).unwrap_or(false)
    }) {
        if Instant::now() > deadline {
            bail!("relay participants received nothing");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Rates, CPU and memory between two samples; memory per participant at
/// the end of the window (steady state).
fn figures(start: &Sample, end: &Sample, before: Option<ProcSample>, joined: usize) -> Side {
    let seconds = end.at.duration_since(start.at).as_secs_f64();
    let received = end.packets.saturating_sub(start.packets);
    let mut side = Side {
        forwarder: "relay".into(),
        joined,
        seconds,
        forwarded_pps: received as f64 / seconds,
        forwarder_count_pps: Some(end.counted.saturating_sub(start.counted) as f64 / seconds),
        received_bps: end.bytes.saturating_sub(start.bytes) as f64 * 8.0 / seconds,
        ..Side::default()
    };
    if let (Some(a), Some(b)) = (start.relay, end.relay) {
        let cpu = (b.cpu - a.cpu).as_secs_f64();
        side.cpu_us_per_packet = cpu * 1e6 / received.max(1) as f64;
        side.cpu_percent = cpu / seconds * 100.0;
        side.peak_rss_mib = b.peak_rss as f64 / (1 << 20) as f64;
    }
    if let (Some(a), Some(b)) = (before, end.relay) {
        side.memory_per_participant_kib =
            b.rss.saturating_sub(a.rss) as f64 / 1024.0 / joined.max(1) as f64;
    }
    if let (Some(a), Some(b)) = (start.generator, end.generator) {
        let cpu = (b.cpu - a.cpu).as_secs_f64();
        side.generator_cpu_us_per_packet = cpu * 1e6 / received.max(1) as f64;
        side.generator_cpu_percent = cpu / seconds * 100.0;
    }
    side
}

/// Every participant's loss (%) and every latency sample (µs).
fn losses_and_latencies(ledgers: &[Arc<Mutex<Ledger>>]) -> (Vec<f64>, Vec<u64>) {
    let mut losses = Vec::new();
    let mut latencies = Vec::new();
    for l in ledgers {
        let l = l.lock().unwrap_or_else(|e| e.into_inner());
        let (got, expected) = l
            .streams
            .values()
            .fold((0u64, 0u64), |(g, e), (first, highest, count)| {
                (g + count, e + u64::from(highest - first) + 1)
            });
        if expected > 0 {
            losses.push(expected.saturating_sub(got) as f64 / expected as f64 * 100.0);
        }
        latencies.extend_from_slice(&l.latencies_us);
    }
    (losses, latencies)
}

/// Counts what arrives at one participant; samples latency of one packet
/// in `every` per stream, as the SFU side decrypts one in `every`.
async fn receive(socket: Arc<UdpSocket>, ledger: Arc<Mutex<Ledger>>, epoch: Instant, every: u64) {
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok(n) = socket.recv(&mut buf).await else {
            return;
        };
        let data = &buf[..n];
        if n < HEADER || &data[..2] != b"ZB" {
            continue;
        }
        let sender = u64::from_be_bytes(data[2..10].try_into().unwrap_or_default());
        let stream = data[10];
        let seq = u32::from_be_bytes(data[11..15].try_into().unwrap_or_default());
        let sent = u64::from_be_bytes(data[15..23].try_into().unwrap_or_default());
        let now = Instant::now();
        let mut l = ledger.lock().unwrap_or_else(|e| e.into_inner());
        l.first_at.get_or_insert(now);
        l.packets += 1;
        l.bytes += n as u64;
        let entry = l.streams.entry((sender, stream)).or_insert((seq, seq, 0));
        entry.0 = entry.0.min(seq);
        entry.1 = entry.1.max(seq);
        entry.2 += 1;
        if u64::from(seq).is_multiple_of(every.max(1)) {
            let now_us = now.saturating_duration_since(epoch).as_micros() as u64;
            l.latencies_us.push(now_us.saturating_sub(sent));
        }
    }
}

/// RTCP-sized datagrams to the relay, which sends them back: a
/// connection's feedback and reports (see [`RTCP_PER_SECOND`]).
async fn rtcp(socket: Arc<UdpSocket>) {
    let mut datagram = vec![0u8; RTCP_BYTES];
    datagram[..2].copy_from_slice(RTCP_MAGIC);
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / RTCP_PER_SECOND);
    loop {
        ticks.tick().await;
        let _ = socket.send(&datagram).await;
    }
}

/// Sends the same pattern a simulated browser does: audio at the plan's
/// rate, video frames split into packets of at most 1200 bytes, a keyframe
/// of three frames' bytes first and every [`KEYFRAME_INTERVAL`].
struct Publisher {
    plan: Plan,
    id: u64,
    epoch: Instant,
    seq: [u32; 2],
    buf: Vec<u8>,
}

/// Stream numbers in the datagram header.
const VIDEO: u8 = 1;
const AUDIO: u8 = 2;

impl Publisher {
    /// Publisher `id` of `plan`; stamps count µs from `epoch`.
    fn new(plan: &Plan, id: u64, epoch: Instant) -> Self {
        Self {
            plan: plan.clone(),
            id,
            epoch,
            seq: [0, 0],
            buf: vec![0u8; 1200 + WIRE_OVERHEAD],
        }
    }

    /// Sends until its task is aborted (when the run's `Members` go).
    async fn run(mut self, socket: Arc<UdpSocket>) {
        let frame_bytes = (self.plan.video_bitrate / 8 / self.plan.fps.max(1)) as usize;
        let audio_gap = Duration::from_secs(1) / self.plan.audio_rate.max(1);
        let video_gap = Duration::from_secs(1) / self.plan.fps.max(1);
        let mut audio_next = Instant::now();
        let mut video_next = Instant::now();
        let mut last_keyframe: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if self.plan.audio && now >= audio_next {
                self.send(&socket, AUDIO, 160).await;
                audio_next += audio_gap;
            }
            if self.plan.video && now >= video_next {
                let keyframe = last_keyframe.is_none_or(|t| now - t >= KEYFRAME_INTERVAL);
                if keyframe {
                    last_keyframe = Some(now);
                }
                let mut left = if keyframe {
                    frame_bytes * 3
                } else {
                    frame_bytes
                }
                .max(HEADER);
                while left > 0 {
                    let len = left.min(1200);
                    self.send(&socket, VIDEO, len).await;
                    left -= len;
                }
                video_next += video_gap;
            }
            let next = match (self.plan.audio, self.plan.video) {
                (true, true) => audio_next.min(video_next),
                (true, false) => audio_next,
                _ => video_next,
            };
            tokio::time::sleep_until(next.into()).await;
        }
    }

    /// One datagram of `stream` with a `payload`-byte payload, stamped.
    async fn send(&mut self, socket: &UdpSocket, stream: u8, payload: usize) {
        let seq = &mut self.seq[usize::from(stream == AUDIO)];
        let sent_us = self.epoch.elapsed().as_micros() as u64;
        let buf = &mut self.buf;
        buf[..2].copy_from_slice(b"ZB");
        buf[2..10].copy_from_slice(&self.id.to_be_bytes());
        buf[10] = stream;
        buf[11..15].copy_from_slice(&seq.to_be_bytes());
        buf[15..23].copy_from_slice(&sent_us.to_be_bytes());
        *seq += 1;
        let len = payload.clamp(HEADER, 1200) + WIRE_OVERHEAD;
        let _ = socket.send(&buf[..len]).await;
    }
}
