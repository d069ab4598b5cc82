//! A room: its participants, their published tracks, and who receives what.
//!
//! Everything here runs on the one worker thread that owns the room, so
//! forwarding takes no lock. Work that one participant's connection causes
//! for another (a keyframe request, a renegotiation) is queued as a
//! [`LegEvent`] and settled before the room returns, never by re-entering a
//! connection that is in the middle of being drained.
//!
//! This file holds membership and input dispatch; offers and answers are
//! in `offers.rs`, writing forwarded packets in `send.rs`, keyframe
//! requests and NACK answers in `repair.rs` (the per-packet decision itself
//! is `super::forward`).

mod layers;
mod offers;
mod repair;
mod send;

use super::forward::{Queued, Track, TrackKey};
use super::history::{ForwardedExts, StoredPacket};
use super::layers::{MAX_LAYERS, keyframe_start};
use super::leg::{LegError, LegEvent};
use super::participant::Participant;
use super::speaker::{self, Dominance};
use super::{CoreConfig, Outputs, Transport};
use crate::api::{Event, Kind, Leg, ParticipantId, Source};
use rustc_hash::FxHashMap;
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;
use str0m::rtp::RtpPacket;

/// Leg events waiting to be acted on, and a reusable buffer to collect one
/// call's events in.
#[derive(Default)]
struct PendingEvents {
    queue: VecDeque<(ParticipantId, Leg, LegEvent)>,
    scratch: Vec<LegEvent>,
}

impl PendingEvents {
    /// Runs `f` with an event buffer and queues what it produced as
    /// `id`'s `leg` events.
    fn collect<T>(
        &mut self,
        id: ParticipantId,
        leg: Leg,
        f: impl FnOnce(&mut Vec<LegEvent>) -> T,
    ) -> T {
        let mut events = std::mem::take(&mut self.scratch);
        let result = f(&mut events);
        self.queue.extend(events.drain(..).map(|e| (id, leg, e)));
        self.scratch = events;
        result
    }
}

/// A room and everything in it.
pub struct Room {
    name: String,
    participants: FxHashMap<ParticipantId, Participant>,
    tracks: FxHashMap<TrackKey, Track>,
    pending: PendingEvents,
    /// Participants that failed during the current call.
    failed: Vec<(ParticipantId, String)>,
    /// Participants removed, for the core to unregister.
    removed: Vec<Participant>,
    /// Participants whose subscribe connection needs a new offer now, made
    /// a few per turn (see `Room::offer_some`).
    to_offer: VecDeque<ParticipantId>,
    /// Offers that wait until their participant's last offer is
    /// `OFFER_INTERVAL` old, by when they are due.
    offer_later: BTreeSet<(Instant, ParticipantId)>,
    /// When the room next has offers to make.
    offers_due: Option<Instant>,
    /// Forwarded packets not yet written (see [`Queued`]).
    queued: Vec<Queued>,
    /// The batch being written, sorted by subscriber, and how far.
    sending: Vec<Queued>,
    sent: usize,
    /// A layer started or a view changed: choose subscribers' layers again.
    layers_changed: bool,
    /// When layers are next chosen again anyway (a layer may have stopped).
    next_layer_check: Option<Instant>,
    /// The dominant speaker and the last report of speakers.
    dominance: Dominance,
    /// When microphone levels are next averaged.
    next_speaker_tick: Option<Instant>,
}

impl Room {
    /// An empty room.
    pub fn new(name: String) -> Self {
        Self {
            name,
            participants: FxHashMap::default(),
            tracks: FxHashMap::default(),
            pending: PendingEvents::default(),
            failed: Vec::new(),
            removed: Vec::new(),
            to_offer: VecDeque::new(),
            offer_later: BTreeSet::new(),
            offers_due: None,
            queued: Vec::new(),
            sending: Vec::new(),
            sent: 0,
            layers_changed: false,
            next_layer_check: None,
            dominance: Dominance::default(),
            next_speaker_tick: None,
        }
    }

    /// Whether nobody is left.
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    /// Published tracks.
    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    /// Subscriptions being forwarded.
    pub fn forwarded_track_count(&self) -> usize {
        self.tracks.values().map(|t| t.subscriptions.len()).sum()
    }

    /// Video subscriptions the room forwards nothing of (not shown).
    pub fn paused_track_count(&self) -> usize {
        self.tracks
            .values()
            .filter(|t| t.kind == Kind::Video)
            .flat_map(|t| &t.subscriptions)
            .filter(|s| s.target.is_none())
            .count()
    }

    /// Every subscriber's latest downlink estimate, bits/s (those with
    /// bandwidth estimation on and an estimate yet).
    pub fn downlink_estimates(&self) -> impl Iterator<Item = u64> + '_ {
        self.participants.values().filter_map(|p| p.downlink.now())
    }

    /// Whether participants were removed since the last [`Room::take_removed`].
    pub fn has_removed(&self) -> bool {
        !self.removed.is_empty()
    }

    /// Participants removed since the last call, for unregistering.
    pub fn take_removed(&mut self) -> Vec<Participant> {
        std::mem::take(&mut self.removed)
    }

    /// `id`'s connections whose ICE ufrag changed (an ICE restart): (leg,
    /// old ufrag, new ufrag).
    pub fn update_ufrags(&mut self, id: ParticipantId) -> Vec<(Leg, String, String)> {
        let Some(participant) = self.participants.get_mut(&id) else {
            return Vec::new();
        };
        let mut changed = Vec::new();
        for (leg, rtc) in [
            (Leg::Publish, &mut participant.publish),
            (Leg::Subscribe, &mut participant.subscribe),
        ] {
            if let Some(old) = rtc.update_ufrag() {
                changed.push((leg, old, rtc.ufrag.clone()));
            }
        }
        changed
    }

    /// The remote addresses routed to one of `id`'s connections.
    pub fn leg_addrs_mut(
        &mut self,
        id: ParticipantId,
        leg: Leg,
    ) -> Option<&mut Vec<(Transport, SocketAddr)>> {
        self.participants
            .get_mut(&id)
            .map(|p| &mut p.leg_mut(leg).addrs)
    }

    /// The earliest time any connection here wants attention.
    pub fn next_timeout(&self, config: &CoreConfig) -> Option<Instant> {
        let connections = self.participants.values().flat_map(|p| {
            let silence = Some(p.silence_deadline(config));
            [
                Some(p.publish.next_timeout),
                Some(p.subscribe.next_timeout),
                silence,
            ]
        });
        let owed_keyframes = self
            .tracks
            .values()
            .flat_map(|t| t.keyframes.iter())
            .map(|k| k.owed_at(config.keyframe_throttle));
        connections
            .chain(owed_keyframes)
            .chain([
                self.offers_due,
                self.next_layer_check,
                self.next_speaker_tick,
            ])
            .flatten()
            .min()
    }

    /// Adds a participant (its connections built already) and offers it
    /// everything already published.
    pub fn join(
        &mut self,
        now: Instant,
        participant: Participant,
        config: &CoreConfig,
        out: &mut Outputs,
    ) -> Result<&Participant, LegError> {
        let id = participant.id;
        tracing::info!(room = %self.name, participant = %id, "media: joined");
        self.participants.insert(id, participant);
        self.renegotiate(now, id, out);
        self.settle(now, config, out);
        self.participants.get(&id).ok_or(LegError::Closed)
    }

    /// Removes a participant that left.
    pub fn leave(
        &mut self,
        now: Instant,
        id: ParticipantId,
        config: &CoreConfig,
        out: &mut Outputs,
    ) {
        self.remove(now, id, None, out);
        self.settle(now, config, out);
    }

    /// A datagram for `id`'s `leg`.
    #[allow(clippy::too_many_arguments)]
    pub fn receive(
        &mut self,
        now: Instant,
        id: ParticipantId,
        leg: Leg,
        source: (Transport, SocketAddr),
        destination: SocketAddr,
        contents: &[u8],
        config: &CoreConfig,
        out: &mut Outputs,
    ) {
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        let mut events = std::mem::take(&mut self.pending.scratch);
        let result = participant.leg_mut(leg).receive(
            now,
            source,
            destination,
            contents,
            out.transmits,
            &mut events,
        );
        match result {
            Ok(true) => {}
            Ok(false) => out.stats.dropped_datagrams += 1,
            Err(e) => self.failed.push((id, e.to_string())),
        }
        for event in events.drain(..) {
            match (leg, event) {
                // Media goes straight out, the hot path.
                (Leg::Publish, LegEvent::Rtp(packet)) => self.forward(id, packet, config, out),
                (leg, event) => self.pending.queue.push_back((id, leg, event)),
            }
        }
        self.pending.scratch = events;
        self.settle(now, config, out);
    }

    /// Advances every connection whose timeout has come, removes
    /// participants silent for longer than the media timeout, and sends
    /// keyframe requests that were owed.
    pub fn timeout(&mut self, now: Instant, config: &CoreConfig, out: &mut Outputs) {
        for (id, participant) in &mut self.participants {
            if participant.silence_deadline(config) <= now {
                let reason = if participant.has_connected() {
                    "no media traffic (connection lost)".to_string()
                } else {
                    format!(
                        "no media connection within {} s of joining",
                        config.join_media_timeout.as_secs()
                    )
                };
                self.failed.push((*id, reason));
                continue;
            }
            for leg in [Leg::Publish, Leg::Subscribe] {
                let rtc = participant.leg_mut(leg);
                if rtc.next_timeout > now {
                    continue;
                }
                let result = self
                    .pending
                    .collect(*id, leg, |events| rtc.timeout(now, out.transmits, events));
                if let Err(e) = result {
                    self.failed.push((*id, e.to_string()));
                }
            }
        }
        self.offer_some(now, out);
        let owed: Vec<(TrackKey, u8)> = self
            .tracks
            .iter()
            .flat_map(|(k, t)| {
                (0..MAX_LAYERS as u8)
                    .filter(|&l| {
                        t.keyframes[usize::from(l)].owed_due(now, config.keyframe_throttle)
                    })
                    .map(|l| (*k, l))
            })
            .collect();
        for (key, layer) in owed {
            self.request_keyframe(now, key, layer, config, out);
        }
        if self.next_layer_check.is_some_and(|at| at <= now) {
            self.layers_changed = true;
        }
        if self.next_speaker_tick.is_none_or(|at| at <= now) {
            self.report_speakers(now, out);
        }
        self.settle(now, config, out);
    }

    /// Acts on queued leg events and failures until none are left.
    fn settle(&mut self, now: Instant, config: &CoreConfig, out: &mut Outputs) {
        if self.layers_changed {
            self.choose_layers(now, config, out);
        }
        loop {
            if let Some((id, reason)) = self.failed.pop() {
                self.remove(now, id, Some(reason), out);
                continue;
            }
            let Some((id, leg, event)) = self.pending.queue.pop_front() else {
                break;
            };
            if !self.participants.contains_key(&id) {
                continue;
            }
            match (leg, event) {
                (Leg::Publish, LegEvent::Rtp(packet)) => self.forward(id, packet, config, out),
                (
                    Leg::Publish,
                    LegEvent::MediaAdded {
                        mid,
                        kind,
                        direction,
                    },
                ) => {
                    self.publish_changed(now, id, mid, Some(kind), direction, config.codec);
                }
                (Leg::Publish, LegEvent::MediaChanged { mid, direction }) => {
                    self.publish_changed(now, id, mid, None, direction, config.codec);
                }
                (Leg::Subscribe, LegEvent::KeyframeRequest(mid)) => {
                    let track = self
                        .participants
                        .get(&id)
                        .and_then(|p| p.lines.track_on(mid));
                    if let Some(track) = track {
                        let layer = self.layer_wanted(track, id, mid);
                        self.request_keyframe(now, track, layer, config, out);
                    }
                }
                (_, LegEvent::Nacks(count)) => out.stats.nacks += count,
                (Leg::Subscribe, LegEvent::EstimateMoved) => {
                    if let Some(p) = self.participants.get_mut(&id)
                        && let Some(bps) = p.subscribe.estimate()
                    {
                        let before = p.downlink.now();
                        p.downlink.on_estimate(now, bps);
                        // A fall is acted on at once; a rise waits for the
                        // regular check (upgrades need a steady estimate).
                        if before.is_none_or(|b| bps < b) {
                            self.layers_changed = true;
                        }
                    }
                }
                (Leg::Subscribe, LegEvent::Resend { mid, seqs }) => {
                    self.resend(now, id, mid, &seqs, out);
                }
                (leg, LegEvent::Connected) => {
                    tracing::info!(room = %self.name, participant = %id, leg = leg.as_str(), "media: connected");
                    if leg == Leg::Subscribe {
                        self.request_keyframes(|_, subscriber| subscriber == id);
                    }
                }
                (leg, LegEvent::PathChanged) => {
                    tracing::info!(room = %self.name, participant = %id, leg = leg.as_str(), "media: moved to another path");
                    // Video sent while the old path was failing is lost:
                    // decoders on the far side need a keyframe to go on.
                    match leg {
                        Leg::Subscribe => self.request_keyframes(|_, subscriber| subscriber == id),
                        Leg::Publish => self.request_keyframes(|track, _| track.publisher == id),
                    }
                }
                _ => {}
            }
        }
    }

    /// Queues one incoming packet for every subscriber of its track (and
    /// layer); [`Room::flush`] writes them.
    fn forward(
        &mut self,
        id: ParticipantId,
        packet: RtpPacket,
        config: &CoreConfig,
        out: &mut Outputs,
    ) {
        out.stats.rtp_in += 1;
        out.stats.rtp_bytes_in += packet.payload.len() as u64;
        let Some(publisher) = self.participants.get_mut(&id) else {
            return;
        };
        let Some(incoming) = publisher.incoming(packet.header.ssrc) else {
            return;
        };
        let key = TrackKey {
            publisher: id,
            mid: incoming.mid,
        };
        let Some(track) = self.tracks.get_mut(&key) else {
            return;
        };
        if publisher.held.contains(&track.source) {
            return;
        }
        let keyframe = match track.kind {
            Kind::Video => keyframe_start(config.codec, &packet.payload),
            Kind::Audio => None,
        };
        let packet = StoredPacket {
            seq: *packet.seq_no,
            pt: packet.header.payload_type,
            time: packet.header.timestamp,
            marker: packet.header.marker,
            arrived: packet.timestamp,
            payload: packet.payload,
            exts: ForwardedExts::from(&packet.header.ext_vals),
        };
        let queued = self.queued.len();
        let started = track.forward(&packet, incoming.layer, keyframe, &mut self.queued);
        if track.kind == Kind::Video
            && let Some(count) = out
                .stats
                .video_out_by_layer
                .get_mut(usize::from(incoming.layer))
        {
            *count += (self.queued.len() - queued) as u64;
        }
        if started {
            // A layer (re)started: subscribers may want it.
            track.rids[usize::from(incoming.layer)] = incoming.rid;
            self.layers_changed = true;
            // After an outage (the publisher's network dropped, or its
            // browser was moving to a new path), whoever was on the layer
            // has missed frames that later ones refer to: unless the layer
            // came back with a keyframe (a camera turned on again), ask for
            // one as soon as the media is back, rather than when each
            // viewer's browser notices and asks, some round trips later.
            let layer = incoming.layer;
            let waiting = track.kind == Kind::Video
                && keyframe.is_none()
                && track
                    .subscriptions
                    .iter()
                    .any(|s| s.current == Some(layer) || s.target == Some(layer));
            if waiting {
                self.request_keyframe(packet.arrived, key, layer, config, out);
            }
        }
    }

    /// A host holds (or releases) one of `id`'s sources: while held its
    /// packets are dropped on arrival (see [`Room::forward`]), whatever its
    /// browser sends.
    pub fn hold(&mut self, id: ParticipantId, source: Source, held: bool) {
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        participant.held.retain(|s| *s != source);
        if held {
            participant.held.push(source);
        }
        tracing::info!(room = %self.name, participant = %id, source = source.as_str(), held, "media: held by a host");
    }

    /// Removes a published track. Each subscriber's m-line keeps the
    /// track's numbering, so the next track the line carries continues the
    /// same stream without a jump in sequence numbers.
    fn drop_track(&mut self, now: Instant, key: TrackKey) {
        let Some(track) = self.tracks.remove(&key) else {
            return;
        };
        for sub in track.subscriptions {
            if let Some(subscriber) = self.participants.get_mut(&sub.subscriber) {
                subscriber.lines.park(sub.mid, sub.into_numbering(), now);
            }
        }
    }

    /// Takes a participant out: its tracks stop everywhere, its
    /// subscriptions end, and (when it failed) it is told why.
    fn remove(
        &mut self,
        now: Instant,
        id: ParticipantId,
        failure: Option<String>,
        out: &mut Outputs,
    ) {
        let Some(participant) = self.participants.remove(&id) else {
            return;
        };
        match &failure {
            Some(reason) => {
                tracing::warn!(room = %self.name, participant = %id, reason, "media: participant failed");
                out.event(
                    id,
                    Event::Failed {
                        reason: reason.clone(),
                    },
                );
            }
            None => tracing::info!(room = %self.name, participant = %id, "media: left"),
        }
        let published: Vec<TrackKey> = self
            .tracks
            .keys()
            .filter(|k| k.publisher == id)
            .copied()
            .collect();
        for key in &published {
            self.drop_track(now, *key);
        }
        for track in self.tracks.values_mut() {
            track.subscriptions.retain(|s| s.subscriber != id);
        }
        for other in self.participants.values_mut() {
            other.views.retain(|(publisher, _), _| *publisher != id);
        }
        let had_tracks = !published.is_empty();
        self.removed.push(participant);
        if had_tracks {
            self.renegotiate_others(now, id);
        }
    }
}

impl Room {
    /// Averages every microphone's levels over the last interval and tells
    /// everyone in the room who is speaking, when that changed.
    fn report_speakers(&mut self, now: Instant, out: &mut Outputs) {
        self.next_speaker_tick = Some(now + speaker::INTERVAL);
        let microphones = self
            .tracks
            .iter_mut()
            .filter(|(_, t)| t.source == Source::Microphone)
            .map(|(key, t)| (key.publisher, &mut t.speech));
        let Some(speakers) = self.dominance.tick(now, microphones) else {
            return;
        };
        for id in self.participants.keys() {
            out.event(
                *id,
                Event::ActiveSpeakers {
                    speakers: speakers.clone(),
                },
            );
        }
    }
}
