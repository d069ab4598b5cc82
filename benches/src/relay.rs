//! The baseline: a raw UDP relay that does nothing but forward, with the
//! same system calls and batching as the SFU's workers (`recvmmsg`, up to
//! `MAX_BATCHES_PER_TURN` receive batches per wakeup, sends of
//! `OUTBOX_BYTES` from the SFU's own `Outbox`, GSO runs, `sendmmsg`), no
//! WebRTC and no crypto. It is what this machine can do at best; the report
//! divides the SFU's CPU per packet by the relay's.
//!
//! Members join a group by sending `JOIN <group>`; every other datagram is
//! sent to every other member of the sender's group.

use crate::plan::Plan;
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
use zync_sfu::driver::{MAX_BATCHES_PER_TURN, OUTBOX_BYTES, udp};

/// Runs the relay on `127.0.0.1:0` until killed; prints its address, then
/// how many datagrams it forwarded, once a second.
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
    let mut forwarded: u64 = 0;
    let mut last_report = Instant::now();
    loop {
        poll.poll(&mut events, Some(Duration::from_millis(250)))?;
        // The worker's turn: up to MAX_BATCHES_PER_TURN receive batches,
        // sending whenever OUTBOX_BYTES wait, the rest at the end.
        for _ in 0..MAX_BATCHES_PER_TURN {
            let n = receiver.receive(&socket, |from, data| {
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
                for member in members.get(group).into_iter().flatten() {
                    if *member != from {
                        outbox.push_with(|arena| {
                            arena.extend_from_slice(data);
                            Some((local, *member))
                        });
                    }
                }
            })?;
            if outbox.bytes() >= OUTBOX_BYTES {
                forwarded += sender.send_outbox(&socket, &mut outbox)?.datagrams as u64;
            }
            if n == 0 {
                break;
            }
        }
        forwarded += sender.send_outbox(&socket, &mut outbox)?.datagrams as u64;
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            println!("forwarded {forwarded}");
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
    fn spawn() -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--internal-relay")
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

/// Runs `plan` through the relay with plain UDP participants.
pub async fn run(plan: &Plan) -> Result<Side> {
    let relay = Relay::spawn()?;
    let epoch = Instant::now();
    let before = relay.sample();
    let mut ledgers = Vec::new();
    let mut tasks = Vec::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut joined_at = Vec::new();
    for i in 0..plan.total() {
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
        joined_at.push(opened);
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        ledgers.push(ledger.clone());
        let socket = Arc::new(socket);
        tasks.push(tokio::spawn(receive(
            socket.clone(),
            ledger,
            epoch,
            stop.clone(),
        )));
        if seat < plan.publishers {
            tasks.push(tokio::spawn(publish(
                socket,
                plan.clone(),
                i as u64,
                epoch,
                stop.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_secs_f64(
            1.0 / plan.join_rate.max(0.1) / 10.0,
        ))
        .await;
    }
    let after_join = relay.sample();
    let deadline = Instant::now() + Duration::from_secs(10);
    let expects_media = |i: usize| plan.receives_media(i);
    while ledgers
        .iter()
        .enumerate()
        .any(|(i, l)| expects_media(i) && l.lock().map(|l| l.first_at.is_none()).unwrap_or(false))
    {
        if Instant::now() > deadline {
            bail!("relay participants received nothing");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let join_ms = Percentiles::from_micros(
        ledgers
            .iter()
            .zip(&joined_at)
            .filter_map(|(l, at)| {
                Some(
                    l.lock()
                        .ok()?
                        .first_at?
                        .saturating_duration_since(*at)
                        .as_micros() as u64,
                )
            })
            .collect(),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sum = |ledgers: &[Arc<Mutex<Ledger>>]| {
        ledgers.iter().fold((0u64, 0u64), |(p, b), l| {
            let l = l.lock().unwrap_or_else(|e| e.into_inner());
            (p + l.packets, b + l.bytes)
        })
    };
    for l in &ledgers {
        l.lock()
            .unwrap_or_else(|e| e.into_inner())
            .latencies_us
            .clear();
    }
    let start = (
        Instant::now(),
        sum(&ledgers),
        relay.sample(),
        relay.forwarded.load(Ordering::Relaxed),
        procstat::sample(std::process::id()),
    );
    tokio::time::sleep(plan.duration).await;
    let end = (
        Instant::now(),
        sum(&ledgers),
        relay.sample(),
        relay.forwarded.load(Ordering::Relaxed),
        procstat::sample(std::process::id()),
    );
    stop.store(true, Ordering::Relaxed);
    let seconds = end.0.duration_since(start.0).as_secs_f64();
    let received = end.1.0 - start.1.0;
    // The relay prints its count once a second; scale to the window.
    let forwarded = (end.3 - start.3).max(1) as f64;
    let mut side = Side {
        forwarder: "relay".into(),
        joined: ledgers.len(),
        seconds,
        forwarded_pps: forwarded / seconds,
        received_pps: received as f64 / seconds,
        received_bps: (end.1.1 - start.1.1) as f64 * 8.0 / seconds,
        join_ms,
        ..Side::default()
    };
    if let (Some(a), Some(b)) = (start.2, end.2) {
        let cpu = (b.cpu - a.cpu).as_secs_f64();
        side.cpu_us_per_packet = cpu * 1e6 / forwarded;
        side.cpu_percent = cpu / seconds * 100.0;
        side.peak_rss_mib = b.peak_rss as f64 / (1 << 20) as f64;
    }
    if let (Some(a), Some(b)) = (before, after_join) {
        side.memory_per_participant_kib =
            b.rss.saturating_sub(a.rss) as f64 / 1024.0 / ledgers.len() as f64;
    }
    if let (Some(a), Some(b)) = (start.4, end.4) {
        let cpu = (b.cpu - a.cpu).as_secs_f64();
        side.generator_cpu_us_per_packet = cpu * 1e6 / received.max(1) as f64;
        side.generator_cpu_percent = cpu / seconds * 100.0;
    }
    let mut losses = Vec::new();
    let mut latencies = Vec::new();
    for l in &ledgers {
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
    side.loss_mean_percent = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
    side.loss_max_percent = losses.iter().copied().fold(0.0, f64::max);
    side.latency_ms = Percentiles::from_micros(latencies);
    for t in tasks {
        t.abort();
    }
    Ok(side)
}

async fn receive(
    socket: Arc<UdpSocket>,
    ledger: Arc<Mutex<Ledger>>,
    epoch: Instant,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut buf = vec![0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
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
        // Sampled like the SFU side (one packet in 16 per stream).
        if seq.is_multiple_of(16) {
            let now_us = now.saturating_duration_since(epoch).as_micros() as u64;
            l.latencies_us.push(now_us.saturating_sub(sent));
        }
    }
}

/// Sends the same pattern a simulated browser does: audio every 20 ms,
/// video frames split into 1200-byte packets.
async fn publish(
    socket: Arc<UdpSocket>,
    plan: Plan,
    id: u64,
    epoch: Instant,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let frame_bytes = (plan.video_bitrate / 8 / plan.fps.max(1)) as usize;
    let mut audio_next = Instant::now();
    let mut video_next = Instant::now();
    let (mut audio_seq, mut video_seq) = (0u32, 0u32);
    let mut buf = vec![0u8; 1200 + WIRE_OVERHEAD];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let sent_us = now.saturating_duration_since(epoch).as_micros() as u64;
        let stamp = |buf: &mut [u8], stream: u8, seq: u32| {
            buf[..2].copy_from_slice(b"ZB");
            buf[2..10].copy_from_slice(&id.to_be_bytes());
            buf[10] = stream;
            buf[11..15].copy_from_slice(&seq.to_be_bytes());
            buf[15..23].copy_from_slice(&sent_us.to_be_bytes());
        };
        if plan.audio && now >= audio_next {
            stamp(&mut buf, 2, audio_seq);
            audio_seq += 1;
            let _ = socket.send(&buf[..160 + WIRE_OVERHEAD]).await;
            audio_next += Duration::from_millis(20);
        }
        if plan.video && now >= video_next {
            let mut left = frame_bytes.max(HEADER);
            while left > 0 {
                let len = left.min(1200);
                stamp(&mut buf, 1, video_seq);
                video_seq += 1;
                let _ = socket.send(&buf[..len.max(HEADER) + WIRE_OVERHEAD]).await;
                left -= len;
            }
            video_next += Duration::from_secs(1) / plan.fps.max(1);
        }
        let next = match (plan.audio, plan.video) {
            (true, true) => audio_next.min(video_next),
            (true, false) => audio_next,
            _ => video_next,
        };
        tokio::time::sleep_until(next.into()).await;
    }
}
