//! The sans-IO core of the SFU: rooms and participants, driven only by
//! inputs (commands, datagrams, time) and producing outputs (datagrams to
//! send, events for signaling, the next timeout). No sockets, threads or
//! clock: tests drive it with simulated time and a simulated network.

mod bandwidth;
mod dynacast;
mod forward;
mod history;
pub(crate) mod layers;
mod leg;
mod negotiation;
mod outbox;
mod participant;
mod playout;
pub(crate) mod red;
mod repair;
mod rewrite;
mod room;
mod speaker;
mod stun;
mod vp8;

pub use leg::VideoCodec;
pub(crate) use negotiation::check_publish_offer;
pub use outbox::Outbox;
pub use rewrite::Rewriter;
pub use stun::local_ufrag;

use crate::api::{Command, Event, Leg, ParticipantId};
use room::Room;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::config::DtlsCert;

/// Most remote addresses routed to one connection. A browser checks a few
/// candidate pairs (IPv4 and IPv6, an interface or two); a new one beyond
/// this replaces the oldest.
const MAX_ADDRS_PER_LEG: usize = 8;

pub(crate) use participant::Participant;

/// How a packet came or goes: UDP, or a browser's ICE-TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// The worker's UDP socket.
    Udp,
    /// A framed TCP connection to the worker's ICE-TCP port (RFC 6544).
    Tcp,
}

/// Counters the core keeps; the driver exports them as metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CoreStats {
    /// RTP packets received from publishers.
    pub rtp_in: u64,
    /// RTP payload bytes received from publishers.
    pub rtp_bytes_in: u64,
    /// RTP packets forwarded to subscribers.
    pub rtp_out: u64,
    /// RTP payload bytes forwarded to subscribers.
    pub rtp_bytes_out: u64,
    /// Datagrams dropped: unknown sender, unparsable, or refused by str0m.
    pub dropped_datagrams: u64,
    /// Keyframe requests sent to publishers.
    pub keyframe_requests: u64,
    /// Keyframe requests suppressed by the per-track throttle.
    pub keyframe_requests_throttled: u64,
    /// Keyframe requests made because a subscriber moved to another
    /// simulcast layer (or resumed a paused track).
    pub layer_switch_keyframes: u64,
    /// Times a publisher was told to start or stop simulcast layers.
    pub dynacast_changes: u64,
    /// Video packets queued for subscribers, by simulcast layer (0 is `q`,
    /// or the only layer of a track without simulcast).
    pub video_out_by_layer: [u64; 3],
    /// NACKs received from subscribers.
    pub nacks: u64,
    /// Packets resent to subscribers that NACKed them.
    pub resends: u64,
    /// NACKed packets that could not be resent: older than the history.
    pub resends_missed: u64,
    /// NACKed packets that could not be resent: the SFU never received them
    /// from the publisher.
    pub resends_not_received: u64,
    /// NACKed packets not resent because the subscriber's resend budget
    /// (a share of what is forwarded to it) was spent.
    pub resends_over_budget: u64,
}

/// Where room operations put their results.
pub struct Outputs<'a> {
    /// Datagrams to send.
    pub transmits: &'a mut Outbox,
    /// Events for participants.
    pub events: &'a mut VecDeque<(ParticipantId, Event)>,
    /// Counters.
    pub stats: &'a mut CoreStats,
}

impl Outputs<'_> {
    fn event(&mut self, to: ParticipantId, event: Event) {
        self.events.push_back((to, event));
    }
}

/// Settings of one core (and of every room on it).
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The address (public IP and worker port) put in ICE candidates.
    pub candidate: SocketAddr,
    /// The worker's ICE-TCP address (public IP and TCP port), offered as a
    /// passive TCP candidate; `None` when ICE-TCP is off. Its port differs
    /// from `candidate`'s, so a packet's source tells the transports apart.
    pub tcp_candidate: Option<SocketAddr>,
    /// The video codec.
    pub codec: VideoCodec,
    /// At most one keyframe request per track per this interval.
    pub keyframe_throttle: Duration,
    /// A connected participant silent this long is removed.
    pub media_timeout: Duration,
    /// A participant whose media has not connected this long after joining
    /// is removed.
    pub join_media_timeout: Duration,
    /// The DTLS certificate every connection presents (browsers check its
    /// fingerprint from the SDP, not a chain, so one serves all).
    pub dtls_cert: DtlsCert,
    /// Estimate each subscriber's downlink and fit what it receives to it
    /// (see `bandwidth`). Off (the default for now: its probing is not yet
    /// cheap enough in rooms with churn), every subscriber gets what its
    /// views ask.
    pub bandwidth_estimation: bool,
    /// The highest simulcast layer any subscriber receives (0 `q`, 1 `h`,
    /// 2 `f`); dynacast then stops the publishers' layers above it.
    pub max_video_layer: u8,
}

impl CoreConfig {
    /// A participant's two connections for the core this config is for:
    /// the costly part of a join (two str0m connections), so that it can be
    /// done on the joiner's own thread rather than the worker's.
    pub(crate) fn connections(
        &self,
        now: Instant,
        id: ParticipantId,
    ) -> Result<Participant, leg::LegError> {
        Participant::new(now, id, self)
    }

    /// Defaults for a core advertising `candidate`, with a new DTLS
    /// certificate (clone the config to share it between cores).
    pub fn new(candidate: SocketAddr) -> Self {
        let cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            // The aws-lc-rs provider (the only one built) always generates.
            .expect("the crypto provider generates DTLS certificates");
        Self {
            candidate,
            tcp_candidate: None,
            codec: VideoCodec::Vp8,
            keyframe_throttle: Duration::from_millis(500),
            media_timeout: Duration::from_secs(10),
            join_media_timeout: Duration::from_secs(20),
            dtls_cert: cert,
            bandwidth_estimation: false,
            max_video_layer: 2,
        }
    }
}

/// The rooms of one worker and the demultiplexing of its socket.
pub struct Core {
    config: CoreConfig,
    // Fx hashing: these are looked up per datagram, and keys are not
    // attacker-chosen in a way that matters (addresses, our own ids).
    rooms: FxHashMap<String, Room>,
    // Shared names: a datagram's room is looked up (and its name cloned)
    // for every datagram.
    room_of: FxHashMap<ParticipantId, Arc<str>>,
    by_addr: FxHashMap<SocketAddr, (ParticipantId, Leg)>,
    /// Like `by_addr`, for ICE-TCP peers (a TCP peer may share its address
    /// and port number with a UDP one).
    by_tcp_addr: FxHashMap<SocketAddr, (ParticipantId, Leg)>,
    by_ufrag: FxHashMap<String, (ParticipantId, Leg)>,
    transmits: Outbox,
    events: VecDeque<(ParticipantId, Event)>,
    stats: CoreStats,
    /// Time of the latest input.
    now: Instant,
}

impl Core {
    /// An empty core.
    pub fn new(config: CoreConfig) -> Self {
        Self {
            config,
            rooms: FxHashMap::default(),
            room_of: FxHashMap::default(),
            by_addr: FxHashMap::default(),
            by_tcp_addr: FxHashMap::default(),
            by_ufrag: FxHashMap::default(),
            transmits: Outbox::default(),
            events: VecDeque::new(),
            stats: CoreStats::default(),
            now: Instant::now(),
        }
    }

    /// Live rooms.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Participants in all rooms.
    pub fn participant_count(&self) -> usize {
        self.room_of.len()
    }

    /// Published tracks in all rooms.
    pub fn track_count(&self) -> usize {
        self.rooms.values().map(Room::track_count).sum()
    }

    /// (track, subscriber) pairs being forwarded.
    pub fn forwarded_track_count(&self) -> usize {
        self.rooms.values().map(Room::forwarded_track_count).sum()
    }

    /// Video subscriptions paused: the subscriber does not show the track
    /// (off screen, tab hidden), so nothing of it is forwarded.
    pub fn paused_track_count(&self) -> usize {
        self.rooms.values().map(Room::paused_track_count).sum()
    }

    /// Every subscriber's latest downlink estimate, bits/s.
    pub fn downlink_estimates(&self) -> impl Iterator<Item = u64> + '_ {
        self.rooms.values().flat_map(Room::downlink_estimates)
    }

    /// The counters so far.
    pub fn stats(&self) -> CoreStats {
        self.stats
    }

    /// Datagrams to send, oldest first. The caller sends and clears them.
    /// Packets forwarded since the last call are turned into datagrams
    /// first (see [`Core::flush`]).
    pub fn transmits(&mut self) -> &mut Outbox {
        self.flush();
        &mut self.transmits
    }

    /// The datagrams written so far, without writing the forwarded packets
    /// still queued: the driver alternates [`Core::flush_some`] and sending
    /// this, which keeps the outbox within the budget it passes.
    pub fn outbox(&mut self) -> &mut Outbox {
        &mut self.transmits
    }

    /// Writes everything the rooms forwarded since the last flush into the
    /// outbox (each subscriber's packets together). [`Core::transmits`]
    /// flushes.
    pub fn flush(&mut self) {
        while self.flush_some(usize::MAX) {}
    }

    /// Writes forwarded packets until the outbox holds `budget` bytes;
    /// `true` while some remain (the driver sends the outbox, then calls
    /// again, which bounds the outbox's memory).
    pub fn flush_some(&mut self, budget: usize) -> bool {
        // The core has no clock: the time of the latest input stands in.
        let now = self.now;
        // Rooms where a send failed and removed someone (rare).
        let mut to_clean = Vec::new();
        let mut more = false;
        for (name, room) in self.rooms.iter_mut().filter(|(_, r)| r.has_queued()) {
            let mut out = Outputs {
                transmits: &mut self.transmits,
                events: &mut self.events,
                stats: &mut self.stats,
            };
            room.flush(now, budget, &self.config, &mut out);
            more |= room.has_queued();
            if room.has_removed() {
                to_clean.push(name.clone());
            }
        }
        for name in to_clean {
            self.cleanup(&name);
        }
        more
    }

    /// The next event for a participant.
    pub fn poll_event(&mut self) -> Option<(ParticipantId, Event)> {
        if self.events.is_empty() {
            self.flush();
        }
        self.events.pop_front()
    }

    /// When the core next needs [`Core::handle_timeout`].
    pub fn next_timeout(&self) -> Option<Instant> {
        self.rooms
            .values()
            .filter_map(|r| r.next_timeout(&self.config))
            .min()
    }

    /// Applies a command from signaling.
    pub fn handle_command(&mut self, now: Instant, command: Command) {
        self.now = now;
        match command {
            Command::Join { room, participant } => self.join(now, room, participant),
            Command::Leave { participant } => {
                self.with_room(participant, |room, config, out| {
                    room.leave(now, participant, config, out)
                });
            }
            Command::PublishOffer { participant, offer } => {
                self.with_room(participant, |room, config, out| {
                    room.publish_offer(now, participant, offer, config, out)
                });
                // The offer may restart ICE, which changes our ufrag.
                self.update_ufrags(participant);
            }
            Command::SubscribeAnswer {
                participant,
                answer,
            } => {
                self.with_room(participant, |room, config, out| {
                    room.subscribe_answer(now, participant, answer, config, out)
                });
                self.update_ufrags(participant);
            }
            Command::RestartIce { participant } => {
                self.with_room(participant, |room, config, out| {
                    room.restart_subscribe_ice(now, participant, config, out)
                });
            }
            Command::Hold {
                participant,
                source,
                held,
            } => {
                self.with_room(participant, |room, _, _| {
                    room.hold(participant, source, held)
                });
            }
            Command::TrackView {
                participant,
                publisher,
                source,
                view,
            } => {
                self.with_room(participant, |room, config, out| {
                    room.set_view(now, participant, (publisher, source), view, config, out)
                });
            }
            Command::Candidate {
                participant,
                leg,
                candidate,
            } => {
                self.with_room(participant, |room, config, out| {
                    room.candidate(now, participant, leg, &candidate, config, out)
                });
            }
        }
    }

    /// Feeds one datagram that arrived from `source` on the worker's UDP
    /// socket.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, contents: &[u8]) {
        self.receive(now, Transport::Udp, source, contents);
    }

    /// Feeds one packet (an RFC 4571 frame's contents) that arrived on the
    /// ICE-TCP connection from `source`.
    pub fn handle_tcp_frame(&mut self, now: Instant, source: SocketAddr, contents: &[u8]) {
        self.receive(now, Transport::Tcp, source, contents);
    }

    fn routes(&mut self, transport: Transport) -> &mut FxHashMap<SocketAddr, (ParticipantId, Leg)> {
        match transport {
            Transport::Udp => &mut self.by_addr,
            Transport::Tcp => &mut self.by_tcp_addr,
        }
    }

    #[inline]
    fn receive(&mut self, now: Instant, transport: Transport, source: SocketAddr, contents: &[u8]) {
        self.now = now;
        let destination = match transport {
            Transport::Udp => self.config.candidate,
            Transport::Tcp => match self.config.tcp_candidate {
                Some(candidate) => candidate,
                None => {
                    self.stats.dropped_datagrams += 1;
                    return;
                }
            },
        };
        // An unknown address reaches a connection only through a STUN
        // binding request naming its ufrag: a new flow.
        let (route, new_flow) = match self.routes(transport).get(&source) {
            Some(route) => (Some(*route), false),
            None => (
                stun::local_ufrag(contents).and_then(|ufrag| self.by_ufrag.get(ufrag).copied()),
                true,
            ),
        };
        let Some((participant, leg)) = route else {
            self.stats.dropped_datagrams += 1;
            return;
        };
        let sent_before = self.transmits.len();
        self.with_room(participant, |room, config, out| {
            room.receive(
                now,
                participant,
                leg,
                (transport, source),
                destination,
                contents,
                config,
                out,
            )
        });
        // A new flow for a known connection is routed from now on only if
        // str0m answered its binding request, which it does only once the
        // request's MESSAGE-INTEGRITY matched the connection's ICE
        // password: a stranger who knows a ufrag (it travels in SDP) cannot
        // add routes.
        if new_flow
            && self
                .transmits
                .iter()
                .skip(sent_before)
                .any(|(from, to, _)| from == destination && to == source)
        {
            self.route(participant, leg, transport, source);
        }
    }

    /// Routes `source` to one of `participant`'s connections, forgetting
    /// the oldest address if it has [`MAX_ADDRS_PER_LEG`] already.
    fn route(
        &mut self,
        participant: ParticipantId,
        leg: Leg,
        transport: Transport,
        source: SocketAddr,
    ) {
        let Some(addrs) = self
            .room_of
            .get(&participant)
            .and_then(|r| self.rooms.get_mut(&**r))
            .and_then(|room| room.leg_addrs_mut(participant, leg))
        else {
            return;
        };
        let oldest = (addrs.len() >= MAX_ADDRS_PER_LEG).then(|| addrs.remove(0));
        addrs.push((transport, source));
        if let Some((transport, addr)) = oldest {
            self.routes(transport).remove(&addr);
        }
        self.routes(transport).insert(source, (participant, leg));
    }

    /// Routes new flows by `participant`'s current ICE ufrags, after an
    /// ICE restart gave a connection new ones (the old ones route nothing).
    fn update_ufrags(&mut self, participant: ParticipantId) {
        let Some(room) = self
            .room_of
            .get(&participant)
            .and_then(|r| self.rooms.get_mut(&**r))
        else {
            return;
        };
        for (leg, old, new) in room.update_ufrags(participant) {
            self.by_ufrag.remove(&old);
            self.by_ufrag.insert(new, (participant, leg));
        }
    }

    /// Whether the ICE-TCP peer `addr` passed an ICE check and so is routed
    /// to a connection.
    pub fn routes_tcp_peer(&self, addr: SocketAddr) -> bool {
        self.by_tcp_addr.contains_key(&addr)
    }

    /// Addresses routed to a connection (for tests and metrics).
    pub fn routed_addresses(&self) -> usize {
        self.by_addr.len() + self.by_tcp_addr.len()
    }

    /// Advances time for every connection that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        let names: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.next_timeout(&self.config).is_some_and(|t| t <= now))
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            self.in_room(&name, |room, config, out| room.timeout(now, config, out));
        }
    }

    fn join(&mut self, now: Instant, room_name: String, participant: ParticipantId) {
        match Participant::new(now, participant, &self.config) {
            Ok(prepared) => self.join_prepared(now, room_name, prepared),
            Err(e) => self.setup_failed(participant, &e),
        }
    }

    /// Tells signaling that `participant`'s connections could not be set up.
    fn setup_failed(&mut self, participant: ParticipantId, error: &leg::LegError) {
        tracing::error!(participant = %participant, error = %error, "could not create connections");
        self.events.push_back((
            participant,
            Event::Failed {
                reason: error.to_string(),
            },
        ));
    }

    /// Puts a participant whose connections were built elsewhere (see
    /// [`CoreConfig::connections`]) into `room_name`.
    pub(crate) fn join_prepared(&mut self, now: Instant, room_name: String, prepared: Participant) {
        let participant = prepared.id;
        if self.room_of.contains_key(&participant) {
            self.events.push_back((
                participant,
                Event::Error {
                    code: "already_joined",
                    message: "this participant is already in the media plane".into(),
                },
            ));
            return;
        }
        let room = self
            .rooms
            .entry(room_name.clone())
            .or_insert_with(|| Room::new(room_name.clone()));
        let mut out = Outputs {
            transmits: &mut self.transmits,
            events: &mut self.events,
            stats: &mut self.stats,
        };
        match room.join(now, prepared, &self.config, &mut out) {
            Ok(p) => {
                self.by_ufrag
                    .insert(p.publish.ufrag.clone(), (participant, Leg::Publish));
                self.by_ufrag
                    .insert(p.subscribe.ufrag.clone(), (participant, Leg::Subscribe));
                self.room_of
                    .insert(participant, Arc::from(room_name.as_str()));
            }
            Err(e) => self.setup_failed(participant, &e),
        }
        self.cleanup(&room_name);
    }

    fn with_room(
        &mut self,
        participant: ParticipantId,
        f: impl FnOnce(&mut Room, &CoreConfig, &mut Outputs),
    ) {
        let Some(name) = self.room_of.get(&participant).cloned() else {
            return;
        };
        self.in_room(&name, f);
    }

    fn in_room(&mut self, name: &str, f: impl FnOnce(&mut Room, &CoreConfig, &mut Outputs)) {
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        let mut out = Outputs {
            transmits: &mut self.transmits,
            events: &mut self.events,
            stats: &mut self.stats,
        };
        f(room, &self.config, &mut out);
        self.cleanup(name);
    }

    /// Unregisters participants the room removed, and the room when empty.
    fn cleanup(&mut self, name: &str) {
        let Some(room) = self.rooms.get_mut(name) else {
            return;
        };
        for participant in room.take_removed() {
            self.room_of.remove(&participant.id);
            for leg in [&participant.publish, &participant.subscribe] {
                self.by_ufrag.remove(&leg.ufrag);
                for (transport, addr) in &leg.addrs {
                    match transport {
                        Transport::Udp => self.by_addr.remove(addr),
                        Transport::Tcp => self.by_tcp_addr.remove(addr),
                    };
                }
            }
        }
        if room.is_empty() {
            self.rooms.remove(name);
        }
    }
}
