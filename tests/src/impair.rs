//! A UDP relay that impairs what it forwards: random loss and a delay with
//! jitter, both ways. This machine's kernel has no `netem`, so media-quality
//! tests put this relay between the browsers (or simulated participants)
//! and the SFU instead: the SFU advertises a second loopback address
//! (`sfu.public_ip = "127.0.0.2"`, bound on 127.0.0.1) and the relay
//! listens there (`../shared/TESTING.md`).
//!
//! It works like a NAT: each client address gets its own upstream socket,
//! so the server sees one address per client and its replies find their
//! way back. Only datagrams are relayed; the WebSocket is not impaired.
//! One thread runs every route; it stops when told to or at its deadline,
//! and holds at most [`Limits`] flows and queued datagrams.

use anyhow::{Context, Result, bail};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What happens to each datagram, in each direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Share of datagrams dropped, 0.0..=1.0, each independently.
    pub loss: f64,
    /// One-way delay added to every datagram.
    pub delay: Duration,
    /// The delay varies uniformly by up to this much either way; a flow's
    /// datagrams still leave in the order they came (a path that delays,
    /// not one that reorders).
    pub jitter: Duration,
}

impl Impairment {
    /// Nothing lost, nothing delayed.
    pub const NONE: Self = Self {
        loss: 0.0,
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
    };

    fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.loss) {
            bail!(
                "loss must be between 0 and 100 %, not {}",
                self.loss * 100.0
            );
        }
        if self.jitter > self.delay {
            bail!(
                "jitter ({:?}) cannot exceed the delay ({:?})",
                self.jitter,
                self.delay
            );
        }
        Ok(())
    }
}

/// One address the relay listens on, and where it forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Where clients send (the address the server advertises).
    pub listen: SocketAddr,
    /// The server's real address.
    pub upstream: SocketAddr,
}

impl FromStr for Route {
    type Err = anyhow::Error;

    /// `LISTEN=UPSTREAM`, e.g. `127.0.0.2:50000=127.0.0.1:50000`.
    fn from_str(s: &str) -> Result<Self> {
        let (listen, upstream) = s
            .split_once('=')
            .with_context(|| format!("{s:?}: expected LISTEN=UPSTREAM"))?;
        Ok(Self {
            listen: listen
                .parse()
                .with_context(|| format!("{listen:?} is not an address"))?,
            upstream: upstream
                .parse()
                .with_context(|| format!("{upstream:?} is not an address"))?,
        })
    }
}

/// Bounds on what the relay holds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Client addresses across all routes; datagrams from more are dropped.
    pub flows: usize,
    /// Datagrams waiting out their delay; more are dropped.
    pub queued: usize,
    /// The relay stops by itself after this long.
    pub lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            flows: 4096,
            queued: 200_000,
            lifetime: Duration::from_secs(600),
        }
    }
}

/// Counts for one direction.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct DirectionStats {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams sent on after their delay.
    pub forwarded: u64,
    /// Dropped on purpose (the loss).
    pub dropped: u64,
    /// Dropped because a limit was reached or the socket would block.
    pub overflowed: u64,
    /// RTP packets (SRTP keeps the header readable) that came in behind a
    /// later sequence number of their stream, as they reached the relay:
    /// reordering by the sender, before any impairment.
    pub rtp_late: u64,
    /// Sequence numbers skipped as packets reached the relay (not counting
    /// the late ones that filled them).
    pub rtp_skipped: u64,
}

impl DirectionStats {
    /// Counts an RTP packet's place in its stream (`highest`: the highest
    /// sequence number seen on it so far).
    fn on_rtp(&mut self, seq: u16, highest: &mut Option<u16>) {
        let Some(top) = *highest else {
            *highest = Some(seq);
            return;
        };
        let ahead = seq.wrapping_sub(top);
        if ahead == 0 {
            return;
        }
        if ahead < 0x8000 {
            self.rtp_skipped += u64::from(ahead - 1);
            *highest = Some(seq);
        } else {
            self.rtp_late += 1;
        }
    }
}

/// The SSRC and sequence number of an RTP (not RTCP) datagram.
fn rtp_header(datagram: &[u8]) -> Option<(u32, u16)> {
    let header = datagram.get(..12)?;
    // Version 2, and payload types outside RTCP's 64..=95 (RFC 5761).
    if header[0] >> 6 != 2 || (64..=95).contains(&(header[1] & 0x7f)) {
        return None;
    }
    let seq = u16::from_be_bytes([header[2], header[3]]);
    let ssrc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    Some((ssrc, seq))
}

/// What the relay did.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct RelayStats {
    /// Client to server.
    pub up: DirectionStats,
    /// Server to client.
    pub down: DirectionStats,
    /// Client addresses seen.
    pub flows: usize,
}

/// A running relay; [`ImpairRelay::stop`] ends it and returns its counts.
pub struct ImpairRelay {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<RelayStats>>,
}

impl ImpairRelay {
    /// Binds every route's listening address and starts relaying. `seed`
    /// makes the losses and delays repeatable.
    pub fn start(
        routes: &[Route],
        impairment: Impairment,
        seed: u64,
        limits: Limits,
    ) -> Result<Self> {
        impairment.validate()?;
        if routes.is_empty() {
            bail!("no route to relay");
        }
        let mut relay = Relay::bind(routes, impairment, seed, limits)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("zync-impair".into())
            .spawn(move || relay.run(&flag))?;
        Ok(Self { stop, thread })
    }

    /// Whether the relay has stopped (its lifetime is over, or it failed).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Stops relaying (datagrams still delayed are dropped) and returns
    /// what was relayed.
    pub fn stop(self) -> Result<RelayStats> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the relay thread panicked"))?
    }
}

/// Sockets at or above this token are flows' upstream sockets.
const FLOW_TOKENS: usize = 1 << 20;
/// How often the loop looks at the stop flag when nothing is due.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Where a delayed datagram leaves from.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// A route's listening socket (server to client).
    Listen(usize),
    /// A flow's upstream socket (client to server).
    Flow(usize),
}

struct Flow {
    socket: UdpSocket,
    route: usize,
    client: SocketAddr,
    /// When the last datagram each way is due, to keep them in order.
    last_up: Instant,
    last_down: Instant,
}

/// A datagram waiting out its delay; ordered by when it is due, then by
/// arrival.
struct Delayed {
    due: Instant,
    seq: u64,
    via: Via,
    to: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

struct Relay {
    poll: Poll,
    routes: Vec<(Route, UdpSocket)>,
    flows: Vec<Flow>,
    flow_of: HashMap<(usize, SocketAddr), usize>,
    queue: BinaryHeap<Reverse<Delayed>>,
    seq: u64,
    impairment: Impairment,
    limits: Limits,
    rng: StdRng,
    stats: RelayStats,
    /// Highest sequence number per (flow, upstream?, SSRC).
    highest: HashMap<(usize, bool, u32), Option<u16>>,
    buf: Vec<u8>,
}

impl Relay {
    fn bind(routes: &[Route], impairment: Impairment, seed: u64, limits: Limits) -> Result<Self> {
        let poll = Poll::new()?;
        let mut bound = Vec::with_capacity(routes.len());
        for (i, route) in routes.iter().enumerate() {
            let mut socket = UdpSocket::bind(route.listen)
                .with_context(|| format!("cannot listen on {}", route.listen))?;
            poll.registry()
                .register(&mut socket, Token(i), Interest::READABLE)?;
            bound.push((*route, socket));
        }
        Ok(Self {
            poll,
            routes: bound,
            flows: Vec::new(),
            flow_of: HashMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            impairment,
            limits,
            rng: StdRng::seed_from_u64(seed),
            stats: RelayStats::default(),
            highest: HashMap::new(),
            buf: vec![0; 65_536],
        })
    }

    fn run(&mut self, stop: &AtomicBool) -> Result<RelayStats> {
        let deadline = Instant::now() + self.limits.lifetime;
        let mut events = Events::with_capacity(256);
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            self.send_due(now);
            let next = self
                .queue
                .peek()
                .map_or(STOP_POLL, |Reverse(d)| d.due.saturating_duration_since(now));
            self.poll.poll(&mut events, Some(next.min(STOP_POLL)))?;
            for event in events.iter() {
                let Token(token) = event.token();
                if token >= FLOW_TOKENS {
                    self.receive_from_server(token - FLOW_TOKENS)?;
                } else {
                    self.receive_from_clients(token)?;
                }
            }
        }
        self.stats.flows = self.flows.len();
        Ok(self.stats)
    }

    /// Reads every datagram clients sent to route `route`.
    fn receive_from_clients(&mut self, route: usize) -> Result<()> {
        loop {
            let (len, client) = match self.routes[route].1.recv_from(&mut self.buf) {
                Ok(got) => got,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                // An ICMP error for an earlier send; nothing to do.
                Err(_) => continue,
            };
            self.stats.up.received += 1;
            let Some(flow) = self.flow(route, client)? else {
                self.stats.up.overflowed += 1;
                continue;
            };
            let upstream = self.routes[route].0.upstream;
            self.delay(flow, Via::Flow(flow), upstream, len);
        }
    }

    /// Reads every datagram the server sent to flow `flow`.
    fn receive_from_server(&mut self, flow: usize) -> Result<()> {
        loop {
            let Some(f) = self.flows.get(flow) else {
                return Ok(());
            };
            let len = match f.socket.recv_from(&mut self.buf) {
                Ok((len, _)) => len,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(_) => continue,
            };
            self.stats.down.received += 1;
            let (route, client) = (f.route, f.client);
            self.delay(flow, Via::Listen(route), client, len);
        }
    }

    /// The flow for `client` on `route`, made on its first datagram.
    fn flow(&mut self, route: usize, client: SocketAddr) -> Result<Option<usize>> {
        if let Some(&flow) = self.flow_of.get(&(route, client)) {
            return Ok(Some(flow));
        }
        if self.flows.len() >= self.limits.flows {
            return Ok(None);
        }
        let upstream = self.routes[route].0.upstream;
        let local = SocketAddr::new(
            if upstream.is_ipv4() {
                [127, 0, 0, 1].into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            },
            0,
        );
        let mut socket = UdpSocket::bind(local)?;
        let id = self.flows.len();
        self.poll
            .registry()
            .register(&mut socket, Token(FLOW_TOKENS + id), Interest::READABLE)?;
        let now = Instant::now();
        self.flows.push(Flow {
            socket,
            route,
            client,
            last_up: now,
            last_down: now,
        });
        self.flow_of.insert((route, client), id);
        Ok(Some(id))
    }

    /// Drops the datagram in `buf[..len]`, of `flow`, or queues it for its
    /// due time.
    fn delay(&mut self, flow: usize, via: Via, to: SocketAddr, len: usize) {
        let up = matches!(via, Via::Flow(_));
        let stats = if up {
            &mut self.stats.up
        } else {
            &mut self.stats.down
        };
        if let Some((ssrc, seq)) = rtp_header(&self.buf[..len])
            && (self.highest.len() < self.limits.flows * 16
                || self.highest.contains_key(&(flow, up, ssrc)))
        {
            stats.on_rtp(seq, self.highest.entry((flow, up, ssrc)).or_default());
        }
        if self.impairment.loss > 0.0 && self.rng.random::<f64>() < self.impairment.loss {
            stats.dropped += 1;
            return;
        }
        if self.queue.len() >= self.limits.queued {
            stats.overflowed += 1;
            return;
        }
        let jitter = self.impairment.jitter.as_secs_f64();
        let offset = if jitter > 0.0 {
            self.rng.random_range(-jitter..=jitter)
        } else {
            0.0
        };
        let delay =
            Duration::from_secs_f64((self.impairment.delay.as_secs_f64() + offset).max(0.0));
        let mut due = Instant::now() + delay;
        if let Some(f) = self.flows.get_mut(flow) {
            let last = match via {
                Via::Flow(_) => &mut f.last_up,
                Via::Listen(_) => &mut f.last_down,
            };
            due = due.max(*last);
            *last = due;
        }
        self.seq += 1;
        self.queue.push(Reverse(Delayed {
            due,
            seq: self.seq,
            via,
            to,
            data: self.buf[..len].to_vec(),
        }));
    }

    /// Sends every datagram whose delay is over.
    fn send_due(&mut self, now: Instant) {
        while self.queue.peek().is_some_and(|Reverse(d)| d.due <= now) {
            let Some(Reverse(d)) = self.queue.pop() else {
                return;
            };
            let (socket, stats) = match d.via {
                Via::Listen(route) => (&self.routes[route].1, &mut self.stats.down),
                Via::Flow(flow) => (&self.flows[flow].socket, &mut self.stats.up),
            };
            match socket.send_to(&d.data, d.to) {
                Ok(_) => stats.forwarded += 1,
                Err(_) => stats.overflowed += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket as StdUdp;

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().expect("address")
    }

    /// An echo server on loopback and a relay in front of it.
    fn echo_behind_relay(impairment: Impairment) -> (ImpairRelay, SocketAddr, StdUdp) {
        let server = StdUdp::bind(loopback()).expect("bind server");
        let upstream = server.local_addr().expect("addr");
        let echo = server.try_clone().expect("clone");
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            echo.set_read_timeout(Some(Duration::from_secs(5))).ok();
            while let Ok((len, from)) = echo.recv_from(&mut buf) {
                let _ = echo.send_to(&buf[..len], from);
            }
        });
        // A free port for the relay to listen on.
        let listen = StdUdp::bind(loopback())
            .and_then(|s| s.local_addr())
            .expect("free port");
        let relay = ImpairRelay::start(
            &[Route { listen, upstream }],
            impairment,
            7,
            Limits {
                lifetime: Duration::from_secs(30),
                ..Limits::default()
            },
        )
        .expect("relay");
        let client = StdUdp::bind(loopback()).expect("bind client");
        client
            .set_read_timeout(Some(Duration::from_millis(500)))
            .ok();
        (relay, listen, client)
    }

    #[test]
    fn relays_both_ways_in_order_after_the_delay() {
        let (relay, listen, client) = echo_behind_relay(Impairment {
            loss: 0.0,
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(10),
        });
        let started = Instant::now();
        for i in 0u32..50 {
            client.send_to(&i.to_be_bytes(), listen).expect("send");
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        while got.len() < 50 {
            let (len, from) = client.recv_from(&mut buf).expect("an echo");
            assert_eq!(
                from, listen,
                "replies come from the address the client sent to"
            );
            got.push(u32::from_be_bytes(buf[..len].try_into().expect("4 bytes")));
        }
        // Two hops of at least 10 ms each (20 ms minus 10 of jitter).
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert_eq!(got, (0..50).collect::<Vec<_>>(), "jitter never reorders");
        let stats = relay.stop().expect("stats");
        assert_eq!(stats.up.forwarded, 50);
        assert_eq!(stats.down.forwarded, 50);
        assert_eq!(stats.flows, 1);
    }

    #[test]
    fn drops_about_the_share_asked_each_way() {
        let (relay, listen, client) = echo_behind_relay(Impairment {
            loss: 0.1,
            ..Impairment::NONE
        });
        client
            .set_read_timeout(Some(Duration::from_millis(100)))
            .ok();
        let mut echoed = 0;
        let mut buf = [0u8; 16];
        // In rounds of 100, reading the echoes of each (socket buffers
        // are finite).
        for round in 0u32..20 {
            for i in 0..100 {
                client
                    .send_to(&(round * 100 + i).to_be_bytes(), listen)
                    .expect("send");
            }
            while client.recv_from(&mut buf).is_ok() {
                echoed += 1;
            }
        }
        let stats = relay.stop().expect("stats");
        assert_eq!(stats.up.received, 2000);
        // 10 % each way, seeded: within a few points of 10 %.
        let up = stats.up.dropped as f64 / 2000.0;
        assert!((0.07..0.13).contains(&up), "dropped {up} upstream");
        let down = stats.down.dropped as f64 / stats.down.received as f64;
        assert!((0.07..0.13).contains(&down), "dropped {down} downstream");
        assert_eq!(echoed as u64, stats.down.forwarded);
    }

    #[test]
    fn counts_rtp_packets_that_come_late_or_skip() {
        let mut stats = DirectionStats::default();
        let mut highest = None;
        for seq in [65_534, 65_535, 1, 0, 2, 2, 5] {
            stats.on_rtp(seq, &mut highest);
        }
        // 0 skipped then late; 3 and 4 skipped.
        assert_eq!((stats.rtp_late, stats.rtp_skipped), (1, 3));
        let mut packet = [0u8; 20];
        packet[0] = 0x80;
        packet[1] = 96;
        packet[2..4].copy_from_slice(&513u16.to_be_bytes());
        packet[8..12].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(rtp_header(&packet), Some((7, 513)));
        // RTCP (a receiver report, 201) is not RTP.
        packet[1] = 201;
        assert_eq!(rtp_header(&packet), None);
        // STUN starts with 0b00.
        assert_eq!(rtp_header(&[0u8; 20]), None);
    }

    #[test]
    fn refuses_nonsense() {
        let route: Route = "127.0.0.2:5000=127.0.0.1:5000".parse().expect("route");
        assert_eq!(route.upstream.port(), 5000);
        assert!("127.0.0.2:5000".parse::<Route>().is_err());
        let too_much = Impairment {
            loss: 1.5,
            ..Impairment::NONE
        };
        assert!(ImpairRelay::start(&[route], too_much, 0, Limits::default()).is_err());
    }
}
