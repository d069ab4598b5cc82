//! A simulated network and clock around one SFU core and some simulated
//! browsers. Time only moves when the test advances it, and every datagram
//! goes through a seeded queue that can delay and drop, so runs are
//! deterministic and faster than real time.

use super::{Datagram, MediaShape, SimPeer};
use crate::api::{Command, Event, ParticipantId};
use crate::core::{Core, CoreConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The SFU's advertised address in simulations.
pub const SFU: &str = "10.0.0.1:5000";

/// A deterministic xorshift generator for loss decisions.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// Next value in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Next raw value.
    pub fn next_u64(&mut self) -> u64 {
        self.next_f64();
        self.0
    }
}

/// Loss and delay applied to every datagram.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// Probability a datagram is dropped.
    pub loss: f64,
    /// One-way delay.
    pub delay: Duration,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            loss: 0.0,
            delay: Duration::from_millis(5),
        }
    }
}

/// A bottleneck in front of one address: a link of `bits_per_second`
/// with a drop-tail queue, as a weak Wi-Fi or mobile downlink is. What
/// arrives faster than the link drains waits (its delay grows, which a
/// delay-based estimator sees), and what would wait longer than
/// `max_queue` is dropped.
#[derive(Debug, Clone, Copy)]
pub struct Bottleneck {
    /// Link rate.
    pub bits_per_second: u64,
    /// Longest a datagram may wait in the queue.
    pub max_queue: Duration,
    /// When the link has sent everything queued so far.
    free_at: Option<Instant>,
}

impl Bottleneck {
    /// A link of `bits_per_second` with a 200 ms queue.
    pub fn new(bits_per_second: u64) -> Self {
        Self {
            bits_per_second: bits_per_second.max(1),
            max_queue: Duration::from_millis(200),
            free_at: None,
        }
    }

    /// When a datagram of `bytes` sent at `now` leaves the link, or `None`
    /// when the queue is full and it is dropped.
    pub fn admit(&mut self, now: Instant, bytes: usize) -> Option<Instant> {
        let start = self.free_at.map_or(now, |free| free.max(now));
        if start.saturating_duration_since(now) > self.max_queue {
            return None;
        }
        let wire = bytes as u64 + 28; // IPv4 and UDP headers
        let serialise = Duration::from_nanos(wire * 8 * 1_000_000_000 / self.bits_per_second);
        let done = start + serialise;
        self.free_at = Some(done);
        Some(done)
    }
}

/// The whole simulated world.
pub struct Sim {
    /// Simulated time.
    pub now: Instant,
    /// Simulated time at the start (the peers' payload stamps count from it).
    pub epoch: Instant,
    /// The SFU core under test.
    pub core: Core,
    /// The SFU's address.
    pub sfu: SocketAddr,
    /// The simulated browsers.
    pub peers: Vec<SimPeer>,
    /// Loss and delay of every datagram.
    pub link: Link,
    rng: Rng,
    /// In flight: (deliver at, sequence) → datagram; the sequence keeps
    /// order among equal times.
    in_flight: BTreeMap<(Instant, u64), Datagram>,
    sequence: u64,
    /// Datagrams the simulated network dropped.
    pub lost: u64,
    /// Datagrams dropped by a full bottleneck queue (also counted in
    /// `lost`).
    pub lost_in_queues: u64,
    /// Bottlenecks by destination address (see [`Sim::cap_downlink`]).
    bottlenecks: Vec<(SocketAddr, Bottleneck)>,
    /// Wall-clock time spent inside the core during [`Sim::tick`]s (what a
    /// worker's turn costs, without the peers' work).
    pub core_busy: Duration,
    /// Peers ever added (numbers ids and addresses).
    added: u64,
    /// Addresses behind a changed NAT mapping: (the peer's own, what the
    /// SFU sees). See [`Sim::move_subscribe`].
    nat: Vec<(SocketAddr, SocketAddr)>,
    /// Addresses whose network passes nothing, either way (see
    /// [`Sim::cut_off`]).
    cut: Vec<SocketAddr>,
}

impl Sim {
    /// An SFU core and no peers yet.
    pub fn new(link: Link, seed: u64) -> Self {
        Self::with_config(link, seed, |_| {})
    }

    /// An SFU core whose default settings `adjust` changes, and no peers.
    pub fn with_config(link: Link, seed: u64, adjust: impl FnOnce(&mut CoreConfig)) -> Self {
        let now = Instant::now();
        let sfu: SocketAddr = SFU.parse().expect("address");
        let mut config = CoreConfig::new(sfu);
        adjust(&mut config);
        Self {
            now,
            epoch: now,
            core: Core::new(config),
            sfu,
            peers: Vec::new(),
            link,
            rng: Rng::new(seed),
            in_flight: BTreeMap::new(),
            sequence: 0,
            lost: 0,
            lost_in_queues: 0,
            bottlenecks: Vec::new(),
            core_busy: Duration::ZERO,
            added: 0,
            nat: Vec::new(),
            cut: Vec::new(),
        }
    }

    /// Adds a peer (not yet joined); returns its index.
    pub fn add_peer(&mut self, shape: MediaShape) -> usize {
        let i = self.peers.len();
        let n = self.added;
        self.added += 1;
        // 10.1.0.10 and up: every peer ever added has its own address.
        let host = std::net::Ipv4Addr::from(0x0a01_000a + n as u32);
        let publish = SocketAddr::new(host.into(), 4000);
        let subscribe = SocketAddr::new(host.into(), 4001);
        let id = ParticipantId(1000 + n);
        self.peers.push(SimPeer::new(
            id, self.now, self.epoch, publish, subscribe, shape,
        ));
        i
    }

    /// Joins peer `i` to `room` and sends its publish offer.
    pub fn join(&mut self, i: usize, room: &str) {
        let participant = self.peers[i].id;
        self.core.handle_command(
            self.now,
            Command::Join {
                room: room.into(),
                participant,
            },
        );
        if let Some(offer) = self.peers[i].publish_offer() {
            self.core.handle_command(self.now, offer);
        }
        self.exchange();
    }

    /// Removes peer `i` from the SFU (as signaling does when it leaves).
    pub fn leave(&mut self, i: usize) {
        let participant = self.peers[i].id;
        self.core
            .handle_command(self.now, Command::Leave { participant });
        self.exchange();
    }

    /// Peer `i` leaves and is gone for good: later indices shift down by
    /// one, and datagrams still on their way to it are dropped.
    pub fn remove_peer(&mut self, i: usize) -> SimPeer {
        self.leave(i);
        self.peers.remove(i)
    }

    /// Moves outputs around: SFU events to peers (and their answers back),
    /// and every outgoing datagram onto the network.
    pub fn exchange(&mut self) {
        loop {
            let mut progressed = self.route_events();
            let outbox = self.core.transmits();
            progressed |= !outbox.is_empty();
            self.send_outbox();
            progressed |= self.send_from_peers();
            if !progressed {
                break;
            }
        }
    }

    /// Hands the SFU's events to their peers and the peers' answers back;
    /// `true` if there were any.
    fn route_events(&mut self) -> bool {
        let mut any = false;
        while let Some((id, event)) = self.core.poll_event() {
            any = true;
            let Some(peer) = self.peers.iter_mut().find(|p| p.id == id) else {
                continue;
            };
            // Signaling prints the SFU's offers for the browser; so does
            // the simulated network, to measure them.
            if let Event::SubscribeOffer { offer, .. } = &event {
                peer.note_offer_text(&offer.to_sdp_string());
            }
            if let Some(reply) = peer.on_event(self.now, event) {
                self.core.handle_command(self.now, reply);
            }
        }
        any
    }

    /// Puts what is in the SFU's outbox (already flushed) on the network.
    fn send_outbox(&mut self) {
        let outbox = self.core.outbox();
        let transmits: Vec<Datagram> = outbox
            .iter()
            .map(|(source, destination, bytes)| Datagram {
                source,
                destination,
                contents: bytes.to_vec(),
            })
            .collect();
        outbox.clear();
        for d in transmits {
            self.send(d);
        }
    }

    /// Puts every datagram the peers want to send on the network; `true` if
    /// there were any.
    fn send_from_peers(&mut self) -> bool {
        let from_peers: Vec<Datagram> = self
            .peers
            .iter_mut()
            .flat_map(|p| p.take_outgoing().collect::<Vec<_>>())
            .collect();
        let any = !from_peers.is_empty();
        for d in from_peers {
            self.send(d);
        }
        any
    }

    /// Advances `dt` the way a worker's turn runs: every datagram now due
    /// at the SFU in one batch, its timers, then one flush of everything
    /// forwarded. The time the core takes is added to [`Sim::core_busy`].
    /// For benchmarks of a room in steady state (joins go through
    /// [`Sim::step`]).
    pub fn tick(&mut self, dt: Duration) {
        self.now += dt;
        for peer in &mut self.peers {
            peer.handle_timeout(self.now);
        }
        self.send_from_peers();
        let mut to_peers = Vec::new();
        let started = Instant::now();
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let d = entry.remove();
            if d.destination == self.sfu {
                self.core.handle_datagram(self.now, d.source, &d.contents);
            } else {
                to_peers.push(d);
            }
        }
        self.core.handle_timeout(self.now);
        self.core.flush();
        self.core_busy += started.elapsed();
        self.send_outbox();
        self.route_events();
        for d in to_peers {
            if let Some(peer) = self
                .peers
                .iter_mut()
                .find(|p| p.addresses().contains(&d.destination))
            {
                peer.handle_datagram(self.now, d.source, d.destination, &d.contents);
            }
        }
    }

    /// Puts peer `i`'s downlink (what the SFU sends to its subscribe
    /// connection) behind a bottleneck of `bits_per_second`, or takes it
    /// away (`None`).
    pub fn cap_downlink(&mut self, i: usize, bits_per_second: Option<u64>) {
        let [_, subscribe] = self.peers[i].addresses();
        self.bottlenecks.retain(|(addr, _)| *addr != subscribe);
        if let Some(rate) = bits_per_second {
            self.bottlenecks.push((subscribe, Bottleneck::new(rate)));
        }
    }

    /// Peer `i`'s subscribe connection reaches the SFU from another
    /// address from now on, as when its NAT mapping changes or it moves to
    /// another network: its datagrams arrive from a new port, and what is
    /// sent to the old address is lost. Returns the new address.
    pub fn move_subscribe(&mut self, i: usize) -> SocketAddr {
        let [_, inside] = self.peers[i].addresses();
        let moves = self.nat.iter().filter(|(a, _)| *a == inside).count();
        let outside = SocketAddr::new(inside.ip(), 20_000 + moves as u16);
        self.nat.retain(|(a, _)| *a != inside);
        self.nat.push((inside, outside));
        outside
    }

    /// Peer `i`'s publish connection loses everything it sends and
    /// everything sent to it while `cut` holds, as when a network stops
    /// passing UDP for a while and then comes back.
    pub fn cut_off_publish(&mut self, i: usize, cut: bool) {
        let [publish, _] = self.peers[i].addresses();
        self.cut.retain(|a| *a != publish);
        if cut {
            self.cut.push(publish);
        }
    }

    /// Puts a datagram on the network (maybe losing it).
    pub fn send(&mut self, mut datagram: Datagram) {
        if self
            .cut
            .iter()
            .any(|a| *a == datagram.source || *a == datagram.destination)
        {
            self.lost += 1;
            return;
        }
        if let Some((_, outside)) = self.nat.iter().find(|(a, _)| *a == datagram.source) {
            datagram.source = *outside;
        }
        if let Some((inside, _)) = self.nat.iter().find(|(_, o)| *o == datagram.destination) {
            datagram.destination = *inside;
        } else if self.nat.iter().any(|(a, _)| *a == datagram.destination) {
            // The old mapping is gone.
            self.lost += 1;
            return;
        }
        if self.rng.next_f64() < self.link.loss {
            self.lost += 1;
            return;
        }
        let mut departs = self.now;
        if let Some((_, bottleneck)) = self
            .bottlenecks
            .iter_mut()
            .find(|(addr, _)| *addr == datagram.destination)
        {
            match bottleneck.admit(self.now, datagram.contents.len()) {
                Some(at) => departs = at,
                None => {
                    self.lost += 1;
                    self.lost_in_queues += 1;
                    return;
                }
            }
        }
        self.sequence += 1;
        self.in_flight
            .insert((departs + self.link.delay, self.sequence), datagram);
    }

    /// Injects raw bytes to the SFU from `source` now.
    pub fn inject(&mut self, source: SocketAddr, bytes: Vec<u8>) {
        self.core.handle_datagram(self.now, source, &bytes);
        self.exchange();
    }

    /// Advances to the next thing that happens and handles it.
    pub fn step(&mut self) {
        let mut next = self.now + Duration::from_millis(50);
        if let Some(t) = self.core.next_timeout() {
            next = next.min(t);
        }
        for peer in &mut self.peers {
            next = next.min(peer.next_timeout());
        }
        if let Some(((t, _), _)) = self.in_flight.first_key_value() {
            next = next.min(*t);
        }
        self.now = self.now.max(next);
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let d = entry.remove();
            if d.destination == self.sfu {
                self.core.handle_datagram(self.now, d.source, &d.contents);
            } else if let Some(peer) = self
                .peers
                .iter_mut()
                .find(|p| p.addresses().contains(&d.destination))
            {
                peer.handle_datagram(self.now, d.source, d.destination, &d.contents);
            }
            self.exchange();
        }
        self.core.handle_timeout(self.now);
        for peer in &mut self.peers {
            peer.handle_timeout(self.now);
        }
        self.exchange();
    }

    /// Runs for `duration` of simulated time.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        while self.now < until {
            self.step();
        }
    }
}
