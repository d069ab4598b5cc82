//! A room: its participants, their published tracks, and who receives what.
//!
//! Everything here runs on the one worker thread that owns the room, so
//! forwarding takes no lock. Work that one participant's connection causes
//! for another (a keyframe request, a renegotiation) is queued in
//! `pending` and settled before the room returns, never by re-entering a
//! connection that is in the middle of being drained.

use super::history::{ForwardedExts, PacketHistory, StoredPacket};
use super::leg::{LegError, LegEvent};
use super::participant::Participant;
use super::rewrite::Rewriter;
use super::{CoreConfig, Outputs};
use crate::api::{Event, Kind, Leg, OfferedTrack, ParticipantId, Source, TrackLabel};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::rtp::{RtpPacket, RtpWrite, Ssrc};

/// str0m's own resend cache per outgoing stream: unused (NACKs are answered
/// from the track's [`PacketHistory`]), so as small as it goes.
const RTX_CACHE_PACKETS: usize = 0;
const RTX_CACHE_AGE: Duration = Duration::from_millis(100);

/// Identifies a published track: its publisher and the publisher's mid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrackKey {
    /// The publisher.
    pub publisher: ParticipantId,
    /// The m-line on the publisher's publish connection.
    pub mid: Mid,
}

/// One subscriber of a track: where to write and how to renumber.
struct Subscription {
    subscriber: ParticipantId,
    /// The m-line on the subscriber's subscribe connection.
    mid: Mid,
    /// The send stream of `mid`, once str0m has made it.
    ssrc: Option<Ssrc>,
    rewriter: Rewriter,
    /// Publisher payload type → subscriber payload type, by codec.
    pt_map: Vec<(Pt, Pt)>,
}

impl Subscription {
    /// The subscriber's payload type for the publisher's `pt`.
    fn map_pt(&self, pt: Pt) -> Option<Pt> {
        self.pt_map
            .iter()
            .find(|(from, _)| *from == pt)
            .map(|&(_, to)| to)
    }
}

/// A packet forwarded to one subscriber, waiting for the end of the
/// datagram batch: [`Room::flush`] sends each subscriber's packets one after
/// another, while its connection's state is in the CPU cache, instead of
/// touching every subscriber's state once per incoming packet.
struct Queued {
    subscriber: ParticipantId,
    ssrc: Ssrc,
    pt: Pt,
    seq: u64,
    time: u32,
    marker: bool,
    wallclock: Instant,
    payload: Arc<[u8]>,
    exts: ForwardedExts,
}

impl Queued {
    /// The write str0m sends it with.
    fn write(&self) -> RtpWrite {
        RtpWrite::new(
            self.pt,
            self.seq.into(),
            self.time,
            self.wallclock,
            self.payload.clone(),
        )
        .marker(self.marker)
        .ext_vals(self.exts.to_ext_values())
    }
}

/// A track published in the room.
struct Track {
    kind: Kind,
    source: Source,
    subscriptions: Vec<Subscription>,
    /// Last keyframe request sent to the publisher (throttling).
    last_keyframe_request: Option<Instant>,
    /// A request arrived inside the throttle window; send one when it ends.
    keyframe_owed: bool,
    /// Recent video packets, for subscribers' NACKs (empty for audio).
    history: PacketHistory,
}

/// A room and everything in it.
pub struct Room {
    name: String,
    participants: FxHashMap<ParticipantId, Participant>,
    tracks: FxHashMap<TrackKey, Track>,
    /// Leg events waiting to be acted on.
    pending: VecDeque<(ParticipantId, Leg, LegEvent)>,
    /// Scratch buffer for one drain's events.
    scratch: Vec<LegEvent>,
    /// Participants that failed during the current call.
    failed: Vec<(ParticipantId, String)>,
    /// Participants removed, for the core to unregister.
    removed: Vec<Participant>,
    /// Forwarded packets not yet written (see [`Queued`]).
    queued: Vec<Queued>,
    /// The batch being written, sorted by subscriber, and how far.
    sending: Vec<Queued>,
    sent: usize,
}

impl Room {
    /// An empty room.
    pub fn new(name: String) -> Self {
        Self {
            name,
            participants: FxHashMap::default(),
            tracks: FxHashMap::default(),
            pending: VecDeque::new(),
            scratch: Vec::new(),
            failed: Vec::new(),
            removed: Vec::new(),
            queued: Vec::new(),
            sending: Vec::new(),
            sent: 0,
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

    /// Whether participants were removed since the last [`Room::take_removed`].
    pub fn has_removed(&self) -> bool {
        !self.removed.is_empty()
    }

    /// Participants removed since the last call, for unregistering.
    pub fn take_removed(&mut self) -> Vec<Participant> {
        std::mem::take(&mut self.removed)
    }

    /// The remote addresses routed to one of `id`'s connections.
    pub fn leg_addrs_mut(&mut self, id: ParticipantId, leg: Leg) -> Option<&mut Vec<SocketAddr>> {
        self.participants
            .get_mut(&id)
            .map(|p| &mut p.leg_mut(leg).addrs)
    }

    /// The earliest time any connection here wants attention.
    pub fn next_timeout(&self, config: &CoreConfig) -> Option<Instant> {
        let connections = self.participants.values().flat_map(|p| {
            let silence = p.silence_deadline(config.media_timeout);
            [
                Some(p.publish.next_timeout),
                Some(p.subscribe.next_timeout),
                silence,
            ]
        });
        let owed_keyframes = self.tracks.values().filter(|t| t.keyframe_owed).map(|t| {
            t.last_keyframe_request
                .map(|at| at + config.keyframe_throttle)
        });
        connections.chain(owed_keyframes).flatten().min()
    }

    /// Adds a participant and offers it everything already published.
    pub fn join(
        &mut self,
        now: Instant,
        id: ParticipantId,
        config: &CoreConfig,
        out: &mut Outputs,
    ) -> Result<&Participant, LegError> {
        let participant = Participant::new(now, id, config)?;
        tracing::info!(room = %self.name, participant = %id, "media: joined");
        self.participants.insert(id, participant);
        self.renegotiate(id, out);
        self.settle(now, config, out);
        self.participants.get(&id).ok_or(LegError::Closed)
    }

    /// Removes a participant; `reason` is sent to it when it failed.
    pub fn leave(
        &mut self,
        now: Instant,
        id: ParticipantId,
        config: &CoreConfig,
        out: &mut Outputs,
    ) {
        self.remove(id, None, out);
        self.settle(now, config, out);
    }

    /// A datagram for `id`'s `leg`.
    #[allow(clippy::too_many_arguments)]
    pub fn receive(
        &mut self,
        now: Instant,
        id: ParticipantId,
        leg: Leg,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
        config: &CoreConfig,
        out: &mut Outputs,
    ) {
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        let mut events = std::mem::take(&mut self.scratch);
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
                (Leg::Publish, LegEvent::Rtp(packet)) => self.forward(id, packet, out),
                (leg, event) => self.pending.push_back((id, leg, event)),
            }
        }
        self.scratch = events;
        self.settle(now, config, out);
    }

    /// Advances every connection whose timeout has come, and removes
    /// participants silent for longer than the media timeout.
    pub fn timeout(&mut self, now: Instant, config: &CoreConfig, out: &mut Outputs) {
        let mut events = std::mem::take(&mut self.scratch);
        for (id, participant) in &mut self.participants {
            if participant
                .silence_deadline(config.media_timeout)
                .is_some_and(|d| d <= now)
            {
                self.failed
                    .push((*id, "no media traffic (connection lost)".into()));
                continue;
            }
            for leg in [Leg::Publish, Leg::Subscribe] {
                let rtc = participant.leg_mut(leg);
                if rtc.next_timeout > now {
                    continue;
                }
                if let Err(e) = rtc.timeout(now, out.transmits, &mut events) {
                    self.failed.push((*id, e.to_string()));
                }
                self.pending.extend(events.drain(..).map(|e| (*id, leg, e)));
            }
        }
        self.scratch = events;
        let owed: Vec<TrackKey> = self
            .tracks
            .iter()
            .filter(|(_, t)| {
                t.keyframe_owed
                    && t.last_keyframe_request
                        .is_none_or(|at| now.duration_since(at) >= config.keyframe_throttle)
            })
            .map(|(k, _)| *k)
            .collect();
        for key in owed {
            self.request_keyframe(now, key, config, out);
        }
        self.settle(now, config, out);
    }

    /// Applies the browser's offer on its publish connection.
    pub fn publish_offer(
        &mut self,
        now: Instant,
        id: ParticipantId,
        sdp: &str,
        labels: Vec<TrackLabel>,
        config: &CoreConfig,
        out: &mut Outputs,
    ) {
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        let offer = match SdpOffer::from_sdp_string(sdp) {
            Ok(offer) => offer,
            Err(e) => {
                return out.event(id, invalid_sdp(format!("the offer is not valid SDP: {e}")));
            }
        };
        participant.set_labels(labels);
        let mut events = std::mem::take(&mut self.scratch);
        let answer = participant
            .publish
            .mutate(out.transmits, &mut events, |rtc| {
                rtc.sdp_api().accept_offer(offer)
            });
        self.pending
            .extend(events.drain(..).map(|e| (id, Leg::Publish, e)));
        self.scratch = events;
        match answer {
            Ok(Ok(answer)) => out.event(
                id,
                Event::PublishAnswer {
                    sdp: answer.to_sdp_string(),
                },
            ),
            Ok(Err(e)) => out.event(id, invalid_sdp(format!("the offer was refused: {e}"))),
            Err(e) => self.failed.push((id, e.to_string())),
        }
        self.settle(now, config, out);
    }

    /// Applies the browser's answer on its subscribe connection.
    pub fn subscribe_answer(
        &mut self,
        now: Instant,
        id: ParticipantId,
        sdp: &str,
        config: &CoreConfig,
        out: &mut Outputs,
    ) {
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        let Some(pending) = participant.take_pending_offer() else {
            return out.event(
                id,
                Event::Error {
                    code: "no_offer_pending",
                    message: "an answer arrived but no subscribe offer is outstanding".into(),
                },
            );
        };
        let answer = match SdpAnswer::from_sdp_string(sdp) {
            Ok(answer) => answer,
            Err(e) => {
                // Keep waiting for a usable answer to the same offer.
                participant.restore_pending_offer(pending);
                return out.event(id, invalid_sdp(format!("the answer is not valid SDP: {e}")));
            }
        };
        let mut events = std::mem::take(&mut self.scratch);
        let result = participant
            .subscribe
            .mutate(out.transmits, &mut events, |rtc| {
                rtc.sdp_api().accept_answer(pending, answer)
            });
        self.pending
            .extend(events.drain(..).map(|e| (id, Leg::Subscribe, e)));
        self.scratch = events;
        match result {
            Ok(Ok(())) => {
                self.activate_offered(id);
                if self
                    .participants
                    .get(&id)
                    .is_some_and(Participant::wants_renegotiation)
                {
                    self.renegotiate(id, out);
                }
            }
            Ok(Err(e)) => {
                // The offer/answer exchange is broken for this connection.
                self.failed
                    .push((id, format!("subscribe answer refused: {e}")));
            }
            Err(e) => self.failed.push((id, e.to_string())),
        }
        self.settle(now, config, out);
    }

    /// Adds a trickled remote candidate.
    pub fn candidate(
        &mut self,
        now: Instant,
        id: ParticipantId,
        leg: Leg,
        candidate: &str,
        config: &CoreConfig,
        out: &mut Outputs,
    ) {
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        let line = candidate.trim().trim_start_matches("a=");
        let Ok(candidate) = str0m::Candidate::from_sdp_string(line) else {
            return out.event(
                id,
                Event::Error {
                    code: "invalid_candidate",
                    message: format!("not an ICE candidate: {line:?}"),
                },
            );
        };
        let mut events = std::mem::take(&mut self.scratch);
        let result = participant
            .leg_mut(leg)
            .mutate(out.transmits, &mut events, |rtc| {
                rtc.add_remote_candidate(candidate)
            });
        self.pending.extend(events.drain(..).map(|e| (id, leg, e)));
        self.scratch = events;
        if let Err(e) = result {
            self.failed.push((id, e.to_string()));
        }
        self.settle(now, config, out);
    }

    /// Acts on queued leg events and failures until none are left.
    fn settle(&mut self, now: Instant, config: &CoreConfig, out: &mut Outputs) {
        loop {
            if let Some((id, reason)) = self.failed.pop() {
                self.remove(id, Some(reason), out);
                continue;
            }
            let Some((id, leg, event)) = self.pending.pop_front() else {
                break;
            };
            if !self.participants.contains_key(&id) {
                continue;
            }
            match (leg, event) {
                (Leg::Publish, LegEvent::Rtp(packet)) => self.forward(id, packet, out),
                (
                    Leg::Publish,
                    LegEvent::MediaAdded {
                        mid,
                        kind,
                        direction,
                    },
                ) => {
                    self.publish_changed(id, mid, Some(kind), direction, out);
                }
                (Leg::Publish, LegEvent::MediaChanged { mid, direction }) => {
                    self.publish_changed(id, mid, None, direction, out);
                }
                (Leg::Subscribe, LegEvent::KeyframeRequest(mid)) => {
                    let track = self.participants.get(&id).and_then(|p| p.track_on_mid(mid));
                    if let Some(track) = track {
                        self.request_keyframe(now, track, config, out);
                    }
                }
                (_, LegEvent::Nacks(count)) => out.stats.nacks += count,
                (Leg::Subscribe, LegEvent::Resend { mid, seqs }) => {
                    self.resend(now, id, mid, &seqs, out);
                }
                (leg, LegEvent::Connected) => {
                    tracing::info!(room = %self.name, participant = %id, leg = leg.as_str(), "media: connected");
                    if leg == Leg::Subscribe {
                        self.request_keyframes_for(id);
                    }
                }
                _ => {}
            }
        }
    }

    /// A publisher's m-line appeared or changed direction.
    fn publish_changed(
        &mut self,
        id: ParticipantId,
        mid: Mid,
        kind: Option<Kind>,
        direction: Direction,
        out: &mut Outputs,
    ) {
        let key = TrackKey { publisher: id, mid };
        let Some(participant) = self.participants.get(&id) else {
            return;
        };
        let receiving = direction.is_receiving();
        let kind = kind.or_else(|| {
            participant.publish.rtc.media(mid).map(|m| match m.kind() {
                MediaKind::Audio => Kind::Audio,
                MediaKind::Video => Kind::Video,
            })
        });
        match (receiving, self.tracks.contains_key(&key), kind) {
            (true, false, Some(kind)) => {
                let source = participant.label(mid, kind);
                tracing::info!(room = %self.name, participant = %id, mid = %mid, source = source.as_str(), "media: track published");
                let track = Track {
                    kind,
                    source,
                    subscriptions: Vec::new(),
                    last_keyframe_request: None,
                    keyframe_owed: false,
                    history: PacketHistory::default(),
                };
                self.tracks.insert(key, track);
                self.renegotiate_others(id, out);
            }
            (false, true, _) => {
                tracing::info!(room = %self.name, participant = %id, mid = %mid, "media: track unpublished");
                self.tracks.remove(&key);
                self.renegotiate_others(id, out);
            }
            _ => {}
        }
    }

    /// Everyone but `publisher` gets a new subscribe offer.
    fn renegotiate_others(&mut self, publisher: ParticipantId, out: &mut Outputs) {
        let others: Vec<ParticipantId> = self
            .participants
            .keys()
            .copied()
            .filter(|p| *p != publisher)
            .collect();
        for other in others {
            self.renegotiate(other, out);
        }
    }

    /// Brings `id`'s subscribe connection in line with the room's tracks:
    /// one offer adding what is new and deactivating what is gone. If an
    /// offer is already out, this waits for its answer (one offer at a time
    /// on a connection where only the SFU offers: no glare).
    fn renegotiate(&mut self, id: ParticipantId, out: &mut Outputs) {
        let wanted: Vec<(TrackKey, Kind, Source)> = self
            .tracks
            .iter()
            .filter(|(k, _)| k.publisher != id)
            .map(|(k, t)| (*k, t.kind, t.source))
            .collect();
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        let mut events = std::mem::take(&mut self.scratch);
        let result = participant.offer_tracks(&wanted, out.transmits, &mut events);
        self.pending
            .extend(events.drain(..).map(|e| (id, Leg::Subscribe, e)));
        self.scratch = events;
        match result {
            Ok(Some(sdp)) => {
                let tracks = participant
                    .offered_tracks()
                    .map(|(mid, key, kind, source)| OfferedTrack {
                        mid: mid.to_string(),
                        participant: key.publisher,
                        source,
                        kind,
                    })
                    .collect();
                // Subscriptions on m-lines this offer turns off stop now.
                let retired = participant.retired_tracks();
                for (key, mid) in retired {
                    if let Some(track) = self.tracks.get_mut(&key) {
                        track
                            .subscriptions
                            .retain(|s| !(s.subscriber == id && s.mid == mid));
                    }
                }
                out.event(id, Event::SubscribeOffer { sdp, tracks });
            }
            Ok(None) => {}
            Err(e) => self.failed.push((id, e.to_string())),
        }
    }

    /// After an answer: start forwarding on every m-line the answer accepted.
    fn activate_offered(&mut self, id: ParticipantId) {
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        let newly = participant.take_newly_offered();
        let mut resend_caches = Vec::new();
        for (key, mid) in newly {
            let Some(publisher) = self.participants.get(&key.publisher) else {
                continue;
            };
            let Some(subscriber) = self.participants.get(&id) else {
                continue;
            };
            let Some(track) = self.tracks.get_mut(&key) else {
                continue;
            };
            let pt_map = payload_type_map(&publisher.publish.rtc, &subscriber.subscribe.rtc);
            track.subscriptions.push(Subscription {
                subscriber: id,
                mid,
                ssrc: None,
                rewriter: Rewriter::new(rand::random()),
                pt_map,
            });
            if track.kind == Kind::Video {
                // A new viewer needs a keyframe to start decoding.
                self.pending
                    .push_back((id, Leg::Subscribe, LegEvent::KeyframeRequest(mid)));
            }
            resend_caches.push((mid, track.kind == Kind::Video));
        }
        // Video NACKs come to the room (answered from the track's history,
        // one for all subscribers); str0m's per-stream resend cache (2000
        // packets / 3 s by default) and its RTX ratio cap (a per-packet byte
        // history) would only cost memory.
        if let Some(subscriber) = self.participants.get_mut(&id)
            && !resend_caches.is_empty()
        {
            let resized = subscriber.subscribe.configure(|rtc| {
                for (mid, resends) in resend_caches {
                    if let Some(stream) = rtc.direct_api().stream_tx_by_mid(mid, None) {
                        stream.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, None);
                        stream.set_external_resends(resends);
                    }
                }
            });
            if let Err(e) = resized {
                self.failed.push((id, e.to_string()));
            }
        }
    }

    /// Queues a keyframe request for every video track `id` receives:
    /// packets sent before its subscribe connection was up were dropped, and
    /// the keyframe asked for at subscription time may have been among them.
    fn request_keyframes_for(&mut self, id: ParticipantId) {
        for track in self.tracks.values().filter(|t| t.kind == Kind::Video) {
            for sub in track.subscriptions.iter().filter(|s| s.subscriber == id) {
                self.pending
                    .push_back((id, Leg::Subscribe, LegEvent::KeyframeRequest(sub.mid)));
            }
        }
    }

    /// Asks a track's publisher for a keyframe, at most once per throttle
    /// interval, however many subscribers ask.
    fn request_keyframe(
        &mut self,
        now: Instant,
        key: TrackKey,
        config: &CoreConfig,
        out: &mut Outputs,
    ) {
        let Some(track) = self.tracks.get_mut(&key) else {
            return;
        };
        if track.kind != Kind::Video {
            return;
        }
        if track
            .last_keyframe_request
            .is_some_and(|t| now.duration_since(t) < config.keyframe_throttle)
        {
            // Coalesce: one request goes out when the window ends, so a late
            // viewer still gets its keyframe promptly.
            track.keyframe_owed = true;
            out.stats.keyframe_requests_throttled += 1;
            return;
        }
        track.keyframe_owed = false;
        let Some(publisher) = self.participants.get_mut(&key.publisher) else {
            return;
        };
        let mut events = std::mem::take(&mut self.scratch);
        match publisher
            .publish
            .request_keyframe(key.mid, out.transmits, &mut events)
        {
            Ok(true) => {
                track.last_keyframe_request = Some(now);
                out.stats.keyframe_requests += 1;
            }
            Ok(false) => {}
            Err(e) => self.failed.push((key.publisher, e.to_string())),
        }
        self.pending
            .extend(events.drain(..).map(|e| (key.publisher, Leg::Publish, e)));
        self.scratch = events;
    }

    /// Queues one incoming packet for every subscriber of its track
    /// (renumbered for each); [`Room::flush`] writes them.
    fn forward(&mut self, id: ParticipantId, packet: RtpPacket, out: &mut Outputs) {
        out.stats.rtp_in += 1;
        out.stats.rtp_bytes_in += packet.payload.len() as u64;
        let Some(publisher) = self.participants.get_mut(&id) else {
            return;
        };
        let Some(mid) = publisher.mid_of(packet.header.ssrc) else {
            return;
        };
        let Some(track) = self.tracks.get_mut(&TrackKey { publisher: id, mid }) else {
            return;
        };
        let exts = ForwardedExts::from(&packet.header.ext_vals);
        if track.kind == Kind::Video {
            track.history.push(StoredPacket {
                seq: *packet.seq_no,
                pt: packet.header.payload_type,
                time: packet.header.timestamp,
                marker: packet.header.marker,
                arrived: packet.timestamp,
                payload: packet.payload.clone(),
                exts,
            });
        }
        for sub in &mut track.subscriptions {
            let Some(pt) = sub.map_pt(packet.header.payload_type) else {
                continue;
            };
            let ssrc = match sub.ssrc {
                Some(ssrc) => ssrc,
                None => {
                    let Some(ssrc) = self
                        .participants
                        .get_mut(&sub.subscriber)
                        .and_then(|s| s.subscribe.send_stream_of(sub.mid))
                    else {
                        continue;
                    };
                    sub.ssrc = Some(ssrc);
                    ssrc
                }
            };
            let Some((seq, time)) = sub.rewriter.map(*packet.seq_no, packet.header.timestamp)
            else {
                continue;
            };
            self.queued.push(Queued {
                subscriber: sub.subscriber,
                ssrc,
                pt,
                seq,
                time,
                marker: packet.header.marker,
                wallclock: packet.timestamp,
                payload: packet.payload.clone(),
                exts,
            });
        }
    }

    /// Writes queued packets, one subscriber at a time, until the outbox
    /// holds `budget` bytes (so its memory stays bounded however large the
    /// fan-out): each is written, encrypted and handed to the outbox at once
    /// ([`super::leg::LegRtc::send_now`]); the payload itself is shared,
    /// not copied.
    fn send_queued(&mut self, now: Instant, budget: usize, out: &mut Outputs) {
        if self.sent == self.sending.len() {
            self.sending.clear();
            self.sent = 0;
            std::mem::swap(&mut self.sending, &mut self.queued);
            // Stable: each subscriber's packets keep their order.
            self.sending.sort_by_key(|q| q.subscriber);
        }
        while self.sent < self.sending.len() && out.transmits.bytes() < budget {
            let rest = &self.sending[self.sent..];
            let id = rest[0].subscriber;
            let end = rest
                .iter()
                .position(|q| q.subscriber != id)
                .unwrap_or(rest.len());
            self.sent += end;
            // The next subscriber's first packet, while this one's are
            // written (within a subscriber, each packet fetches the next).
            if let Some(next) = rest.get(end)
                && let Some(p) = self.participants.get(&next.subscriber)
            {
                p.subscribe.prefetch(next.ssrc);
            }
            let Some(subscriber) = self.participants.get_mut(&id) else {
                continue;
            };
            let batch = &rest[..end];
            for (i, q) in batch.iter().enumerate() {
                if let Some(next) = batch.get(i + 1) {
                    subscriber.subscribe.prefetch(next.ssrc);
                }
                match subscriber
                    .subscribe
                    .send_now(now, q.ssrc, &q.write(), out.transmits)
                {
                    Ok(true) => {
                        out.stats.rtp_out += 1;
                        out.stats.rtp_bytes_out += q.payload.len() as u64;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        self.failed.push((id, e.to_string()));
                        break;
                    }
                }
            }
        }
        if self.sent == self.sending.len() {
            // Done: drop the payload references now, keep the capacity.
            self.sending.clear();
            self.sent = 0;
        }
    }

    /// Answers a subscriber's NACK on its m-line `mid` from the track's
    /// history, through its RTX stream.
    fn resend(
        &mut self,
        now: Instant,
        id: ParticipantId,
        mid: Mid,
        seqs: &[u64],
        out: &mut Outputs,
    ) {
        let Some(key) = self.participants.get(&id).and_then(|p| p.track_on_mid(mid)) else {
            return;
        };
        let (Some(track), Some(subscriber)) =
            (self.tracks.get(&key), self.participants.get_mut(&id))
        else {
            return;
        };
        let Some(sub) = track.subscriptions.iter().find(|s| s.subscriber == id) else {
            return;
        };
        let Some(ssrc) = sub.ssrc else {
            return;
        };
        for &seq in seqs {
            let Some(packet) = sub.rewriter.unmap(seq).and_then(|s| track.history.get(s)) else {
                out.stats.resends_missed += 1;
                continue;
            };
            let Some(pt) = sub.map_pt(packet.pt) else {
                continue;
            };
            let again = Queued {
                subscriber: id,
                ssrc,
                pt,
                seq,
                time: sub.rewriter.map_ts(packet.time),
                marker: packet.marker,
                wallclock: packet.arrived,
                payload: packet.payload.clone(),
                exts: packet.exts,
            };
            match subscriber
                .subscribe
                .resend_now(now, ssrc, &again.write(), out.transmits)
            {
                Ok(true) => out.stats.resends += 1,
                Ok(false) => out.stats.resends_missed += 1,
                Err(e) => {
                    self.failed.push((id, e.to_string()));
                    return;
                }
            }
        }
    }

    /// Whether forwarded packets wait to be sent.
    pub fn has_queued(&self) -> bool {
        !self.queued.is_empty() || self.sent < self.sending.len()
    }

    /// Writes forwarded packets (see [`Queued`]) until the outbox holds
    /// `budget` bytes.
    pub fn flush(&mut self, now: Instant, budget: usize, config: &CoreConfig, out: &mut Outputs) {
        self.send_queued(now, budget, out);
        self.settle(now, config, out);
    }

    /// Takes a participant out: its tracks stop everywhere, its
    /// subscriptions end, and (when it failed) it is told why.
    fn remove(&mut self, id: ParticipantId, failure: Option<String>, out: &mut Outputs) {
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
        let had_tracks = self.tracks.keys().any(|k| k.publisher == id);
        self.tracks.retain(|k, _| k.publisher != id);
        for track in self.tracks.values_mut() {
            track.subscriptions.retain(|s| s.subscriber != id);
        }
        self.removed.push(participant);
        if had_tracks {
            self.renegotiate_others(id, out);
        }
    }
}

fn invalid_sdp(message: String) -> Event {
    Event::Error {
        code: "invalid_sdp",
        message,
    }
}

/// Maps each payload type the publisher negotiated to the subscriber's
/// payload type for the same codec (the two sides number codecs
/// independently).
fn payload_type_map(publisher: &str0m::Rtc, subscriber: &str0m::Rtc) -> Vec<(Pt, Pt)> {
    let outgoing = subscriber.codec_config();
    publisher
        .codec_config()
        .params()
        .iter()
        .filter_map(|p| {
            let target = outgoing
                .match_params(*p)
                .or_else(|| outgoing.find(|o| o.spec().codec == p.spec().codec))?;
            Some((p.pt(), target.pt()))
        })
        .collect()
}
