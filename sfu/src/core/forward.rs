//! The forwarding decision for one incoming packet: which subscribers of its
//! track get it, with which payload type, sequence number and timestamp.
//!
//! A simulcast track has up to three layers; each subscriber receives at
//! most one of them, chosen by the room (see `super::layers`), and is moved
//! to another only where a keyframe of that layer starts, renumbered so
//! that its stream goes on without a gap.
//!
//! No str0m connection is touched here: the decisions are queued as
//! [`Queued`] packets and the room writes them per subscriber at the end of
//! the datagram batch (see `Room::flush`).

use super::dynacast::Dynacast;
use super::history::{ForwardedExts, PacketHistory, StoredPacket};
use super::layers::{KeyframeStart, Layers, MAX_LAYERS};
use super::playout::PlayoutFloor;
use super::red::{self, Mapped, PayloadTypes};
use super::repair::KeyframeThrottle;
use super::rewrite::Rewriter;
use super::speaker::SpeechLevel;
use super::vp8::{Vp8Munger, Vp8Numbers};
use crate::api::{Kind, ParticipantId, Source};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::media::{Mid, Pt, Rid};
use str0m::rtp::{RtpWrite, Ssrc};

/// Identifies a published track: its publisher and the publisher's mid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrackKey {
    /// The publisher.
    pub publisher: ParticipantId,
    /// The m-line on the publisher's publish connection.
    pub mid: Mid,
}

/// How a subscribe m-line's send stream is numbered: RTP sequence numbers
/// and timestamps, and VP8 picture ids. It outlives a subscription when the
/// line is recycled for another track, so that the browser sees one stream
/// going on: a picture id jumping back makes Chromium drop the newcomer's
/// frames as old ones.
#[derive(Debug)]
pub struct Numbering {
    /// Sequence numbers and timestamps.
    pub rewriter: Rewriter,
    /// VP8 picture ids and TL0PICIDX.
    pub vp8: Vp8Munger,
    /// The playout floor last sent: the browser keeps it for the line's
    /// next track until told otherwise.
    pub playout: PlayoutFloor,
}

impl Numbering {
    /// The numbering of a new line, starting at sequence number `first`.
    pub fn new(first: u16) -> Self {
        Self {
            rewriter: Rewriter::new(first),
            vp8: Vp8Munger::default(),
            playout: PlayoutFloor::default(),
        }
    }
}

/// One subscriber of a track: where to write and how to renumber.
#[derive(Debug)]
pub struct Subscription {
    /// Who receives.
    pub subscriber: ParticipantId,
    /// The m-line on the subscriber's subscribe connection.
    pub mid: Mid,
    /// The send stream of `mid`.
    pub ssrc: Ssrc,
    /// The numbering of that send stream (it outlives the subscription when
    /// the m-line is recycled for another track).
    pub rewriter: Rewriter,
    /// Publisher payload type → subscriber payload type, by codec.
    pub payload_types: PayloadTypes,
    /// The layer being forwarded (`None`: nothing yet, or paused).
    pub current: Option<u8>,
    /// The layer the room chose; forwarding moves there at its next
    /// keyframe (`None`: pause at once).
    pub target: Option<u8>,
    /// When forwarding was paused, to continue the timestamps after it.
    paused_at: Option<Instant>,
    /// When the keyframe `target` waits for was last asked for.
    keyframe_asked: Option<Instant>,
    /// VP8 picture numbering continued across layer switches (and, like
    /// `rewriter`, across the tracks the m-line carries).
    pub vp8: Vp8Munger,
    /// The playout floor its packets carry (`crate::core::playout`).
    pub playout: PlayoutFloor,
}

impl Subscription {
    /// A subscription that starts forwarding at the first switch point of
    /// layer `target` (a keyframe, or any audio packet), whose keyframe is
    /// asked for `now`.
    pub fn new(
        subscriber: ParticipantId,
        mid: Mid,
        ssrc: Ssrc,
        numbering: Numbering,
        payload_types: PayloadTypes,
        target: Option<u8>,
        now: Instant,
    ) -> Self {
        Self {
            subscriber,
            mid,
            ssrc,
            rewriter: numbering.rewriter,
            payload_types,
            current: None,
            target,
            paused_at: None,
            keyframe_asked: target.map(|_| now),
            vp8: numbering.vp8,
            playout: numbering.playout,
        }
    }

    /// The m-line's numbering, kept when the subscription ends.
    pub fn into_numbering(self) -> Numbering {
        Numbering {
            rewriter: self.rewriter,
            vp8: self.vp8,
            playout: self.playout,
        }
    }

    /// Sets the layer to move to (`None` pauses at once). Returns true
    /// when the subscriber now waits for a keyframe of a new layer (which
    /// the caller asks for).
    pub fn set_target(&mut self, target: Option<u8>, now: Instant) -> bool {
        if self.target == target {
            return false;
        }
        self.target = target;
        if target.is_none() && self.current.is_some() {
            self.current = None;
            self.paused_at = Some(now);
        }
        let waits = target.is_some() && target != self.current;
        self.keyframe_asked = waits.then_some(now);
        waits
    }

    /// Whether the keyframe this subscription waits for should be asked
    /// for again: `retry` has passed since it was asked for and none came.
    /// A publisher may let a request pass (libwebrtc acts on one per
    /// encoder every 300 ms, whichever layer it names) and sends no
    /// keyframe unasked, so one request is not enough.
    pub fn keyframe_overdue(&mut self, now: Instant, retry: Duration) -> bool {
        if self.target.is_none() || self.target == self.current {
            self.keyframe_asked = None;
            return false;
        }
        let asked = *self.keyframe_asked.get_or_insert(now);
        if now.saturating_duration_since(asked) < retry {
            return false;
        }
        self.keyframe_asked = Some(now);
        true
    }

    /// Whether forwarding may move to `layer` at a switch point of it: the
    /// layer it waits for, or, while it shows nothing yet, a lower one (a
    /// smaller picture beats a black tile until the keyframe it waits for
    /// comes, and costs less than the budget allowed).
    fn may_switch_to(&self, layer: u8) -> bool {
        match (self.current, self.target) {
            (_, Some(target)) if target == layer => true,
            (None, Some(target)) => layer < target,
            _ => false,
        }
    }

    /// Moves forwarding to `layer`, whose switch point `packet` is: the
    /// numbering continues from the last packet sent, as much later as the
    /// layer it leaves last sent (or the pause began).
    fn start(
        &mut self,
        layer: u8,
        packet: &StoredPacket,
        numbers: Option<Vp8Numbers>,
        layers: &Layers,
    ) {
        self.vp8.switch(numbers);
        let since = match self.current {
            Some(previous) => layers.last_packet(previous),
            None => self.paused_at.take(),
        };
        if let Some(since) = since {
            let advance = packet.arrived.saturating_duration_since(since);
            // 90 kHz: only video switches layers or pauses. One tick at
            // least, so two frames never share a timestamp.
            let ticks = (advance.as_micros() * 90 / 1000).max(1) as u32;
            self.rewriter.rebase(packet.seq, packet.time, ticks);
        }
        self.current = Some(layer);
    }

    /// The subscriber's payload type for the publisher's `pt`, for a
    /// packet sent on unchanged.
    pub fn map_pt(&self, pt: Pt) -> Option<Pt> {
        match self.payload_types.map(pt)? {
            Mapped::As(pt) => Some(pt),
            Mapped::Primary(_) => None,
        }
    }
}

/// A packet forwarded to one subscriber, waiting for the end of the
/// datagram batch: the room sends each subscriber's packets one after
/// another, while its connection's state is in the CPU cache, instead of
/// touching every subscriber's state once per incoming packet.
#[derive(Debug)]
pub struct Queued {
    /// Who receives it.
    pub subscriber: ParticipantId,
    /// The subscriber's send stream.
    pub ssrc: Ssrc,
    /// Payload type, in the subscriber's numbering.
    pub pt: Pt,
    /// Sequence number on the subscriber's stream.
    pub seq: u64,
    /// RTP timestamp on the subscriber's stream.
    pub time: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// When the packet arrived from the publisher.
    pub wallclock: Instant,
    /// The payload, shared by every subscriber.
    pub payload: Arc<[u8]>,
    /// Header extension values forwarded with it.
    pub exts: ForwardedExts,
    /// A minimum playout delay to send with it, hundredths of a second
    /// (`crate::core::playout`).
    pub playout_min: Option<u16>,
}

impl Queued {
    /// The write str0m sends it with.
    pub fn write(&self) -> RtpWrite {
        RtpWrite::new(
            self.pt,
            self.seq.into(),
            self.time,
            self.wallclock,
            self.payload.clone(),
        )
        .marker(self.marker)
        .ext_vals(self.exts.to_ext_values(self.playout_min))
    }
}

/// A track published in the room and who receives it.
#[derive(Debug)]
pub struct Track {
    /// Audio or video.
    pub kind: Kind,
    /// What the publisher says it carries.
    pub source: Source,
    /// Its subscribers.
    pub subscriptions: Vec<Subscription>,
    /// Keyframe requests to the publisher, throttled, per layer.
    pub keyframes: [KeyframeThrottle; MAX_LAYERS],
    /// Recent video packets per layer, for subscribers' NACKs (empty for
    /// audio).
    pub history: [PacketHistory; MAX_LAYERS],
    /// What each layer sends.
    pub layers: Layers,
    /// Each layer's RTP stream id (none without simulcast), to ask the
    /// publisher for a keyframe of one layer.
    pub rids: [Option<Rid>; MAX_LAYERS],
    /// VP8 video: picture numbers are kept continuous across layers.
    pub vp8: bool,
    /// A microphone's recent loudness, for the active speaker.
    pub speech: SpeechLevel,
    /// Which simulcast layers the publisher was told to send.
    pub dynacast: Dynacast,
}

impl Track {
    /// A track nobody receives yet.
    pub fn new(kind: Kind, source: Source) -> Self {
        Self {
            kind,
            source,
            subscriptions: Vec::new(),
            keyframes: Default::default(),
            history: Default::default(),
            layers: Layers::default(),
            rids: [None; MAX_LAYERS],
            vp8: false,
            speech: SpeechLevel::default(),
            dynacast: Dynacast::default(),
        }
    }

    /// Queues `packet`, of layer `layer` (0 without simulcast), once for
    /// every subscriber of that layer (renumbered for each) and keeps video
    /// in the layer's history for NACKs. A subscriber waiting to move to
    /// this layer moves if the packet starts a keyframe (`keyframe`).
    /// Subscribers that did not negotiate the packet's codec skip it.
    /// Returns true when the layer (re)started sending.
    pub fn forward(
        &mut self,
        packet: &StoredPacket,
        layer: u8,
        keyframe: Option<KeyframeStart>,
        queue: &mut Vec<Queued>,
    ) -> bool {
        let started = self
            .layers
            .on_packet(layer, packet.arrived, packet.payload.len(), keyframe);
        if self.source == Source::Microphone {
            self.speech.on_packet(packet.exts.audio_level());
        }
        if self.kind == Kind::Video
            && let Some(history) = self.history.get_mut(usize::from(layer))
        {
            history.push(packet.clone());
        }
        // Audio can start anywhere; video only where a keyframe starts.
        let switch_point = self.kind == Kind::Audio || keyframe.is_some();
        let numbers = if self.vp8 {
            Vp8Numbers::parse(&packet.payload)
        } else {
            None
        };
        for sub in &mut self.subscriptions {
            // Steady state: the subscriber receives this layer.
            if sub.current != Some(layer) {
                if !(switch_point && sub.may_switch_to(layer)) {
                    continue;
                }
                sub.start(layer, packet, numbers, &self.layers);
            }
            let Some(mapped) = sub.payload_types.map(packet.pt) else {
                continue;
            };
            let (pt, unwrapped) = match mapped {
                Mapped::As(pt) => (pt, None),
                // A subscriber without RED gets the newest block only.
                Mapped::Primary(pt) => match red::primary(&packet.payload) {
                    Some(primary) => (pt, Some(Arc::from(primary))),
                    None => continue,
                },
            };
            let Some((seq, time)) = sub.rewriter.map(packet.seq, packet.time) else {
                continue;
            };
            let payload = unwrapped.unwrap_or_else(|| sub.vp8.forward(&packet.payload, numbers));
            queue.push(Queued {
                subscriber: sub.subscriber,
                ssrc: sub.ssrc,
                pt,
                seq,
                time,
                marker: packet.marker,
                wallclock: packet.arrived,
                payload,
                exts: packet.exts,
                playout_min: sub.playout.hundredths(),
            });
        }
        started
    }

    /// `subscriber`'s subscription on its m-line `mid`.
    pub fn subscription(&self, subscriber: ParticipantId, mid: Mid) -> Option<&Subscription> {
        self.subscriptions
            .iter()
            .find(|s| s.subscriber == subscriber && s.mid == mid)
    }

    /// The history `sub`'s sequence numbers currently map into.
    pub fn history_of(&self, sub: &Subscription) -> &PacketHistory {
        &self.history[usize::from(sub.current.unwrap_or(0)).min(MAX_LAYERS - 1)]
    }

    /// Ends `subscriber`'s subscription on `mid`, returning it (its
    /// rewriter goes back to the m-line).
    pub fn unsubscribe(&mut self, subscriber: ParticipantId, mid: Mid) -> Option<Subscription> {
        let at = self
            .subscriptions
            .iter()
            .position(|s| s.subscriber == subscriber && s.mid == mid)?;
        Some(self.subscriptions.swap_remove(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u64, pt: u8, at: Instant) -> StoredPacket {
        StoredPacket {
            seq,
            pt: pt.into(),
            time: seq as u32 * 3000,
            marker: seq.is_multiple_of(2),
            arrived: at,
            payload: Arc::from(vec![seq as u8; 20]),
            exts: ForwardedExts::default(),
        }
    }

    /// A subscription already receiving layer 0.
    fn subscription(subscriber: u64, mid: &str, start: u16, pt_map: &[(u8, u8)]) -> Subscription {
        let mut sub = waiting(subscriber, mid, start, pt_map, Some(0));
        sub.current = Some(0);
        sub
    }

    /// A new subscription waiting for a switch point of `target`.
    fn waiting(
        subscriber: u64,
        mid: &str,
        start: u16,
        pt_map: &[(u8, u8)],
        target: Option<u8>,
    ) -> Subscription {
        Subscription::new(
            ParticipantId(subscriber),
            mid.into(),
            (1000 + subscriber as u32).into(),
            Numbering::new(start),
            PayloadTypes::new(pt_map.iter().map(|&(a, b)| (a.into(), b.into())).collect()),
            target,
            Instant::now(),
        )
    }

    #[test]
    fn each_subscriber_gets_its_own_numbering_and_payload_type() {
        let t0 = Instant::now();
        let mut track = Track::new(Kind::Video, Source::Camera);
        track
            .subscriptions
            .push(subscription(1, "0", 100, &[(96, 96)]));
        track
            .subscriptions
            .push(subscription(2, "3", 500, &[(96, 102)]));
        let mut queue = Vec::new();
        track.forward(&packet(7_000, 96, t0), 0, None, &mut queue);
        track.forward(&packet(7_001, 96, t0), 0, None, &mut queue);

        let to = |id: u64| -> Vec<(u64, u8, u32)> {
            queue
                .iter()
                .filter(|q| q.subscriber == ParticipantId(id))
                .map(|q| (q.seq, *q.pt, *q.ssrc))
                .collect()
        };
        assert_eq!(to(1), [(100, 96, 1001), (101, 96, 1001)]);
        assert_eq!(to(2), [(500, 102, 1002), (501, 102, 1002)]);
        assert!(
            Arc::ptr_eq(&queue[0].payload, &queue[1].payload),
            "one payload is shared by every subscriber, not copied"
        );
        assert!(
            track.history[0].get(7_001).is_some(),
            "video is kept for NACKs"
        );
    }

    #[test]
    fn red_audio_goes_on_as_red_or_as_its_newest_block() {
        let t0 = Instant::now();
        let mut track = Track::new(Kind::Audio, Source::Microphone);
        // Negotiated RED (63 → 100) and Opus.
        track
            .subscriptions
            .push(subscription(1, "1", 0, &[(111, 109), (63, 100)]));
        // Opus only.
        let mut without = subscription(2, "1", 0, &[(111, 109)]);
        without.payload_types =
            PayloadTypes::new(vec![(111.into(), 109.into())]).unwrapping_red(63.into(), 109.into());
        track.subscriptions.push(without);
        // One redundant block of 3 bytes (the previous packet), then the
        // 2-byte primary.
        let mut red_packet = packet(5, 63, t0);
        red_packet.payload = Arc::from(vec![0x80 | 111, 0x0f, 0x00, 3, 111, 1, 1, 1, 9, 9]);
        let mut queue = Vec::new();
        track.forward(&red_packet, 0, None, &mut queue);
        let got: Vec<(u64, u8, &[u8])> = queue
            .iter()
            .map(|q| (q.subscriber.0, *q.pt, &q.payload[..]))
            .collect();
        assert_eq!(
            got,
            [(1, 100, &red_packet.payload[..]), (2, 109, &[9u8, 9][..])]
        );
    }

    #[test]
    fn unknown_codecs_and_audio_history() {
        let t0 = Instant::now();
        let mut track = Track::new(Kind::Audio, Source::Microphone);
        track
            .subscriptions
            .push(subscription(1, "1", 0, &[(111, 111)]));
        let mut queue = Vec::new();
        track.forward(&packet(1, 96, t0), 0, None, &mut queue);
        assert!(queue.is_empty(), "a codec the subscriber lacks is skipped");
        track.forward(&packet(2, 111, t0), 0, None, &mut queue);
        assert_eq!(queue.len(), 1);
        assert!(track.history[0].get(2).is_none(), "audio is not kept");
    }

    #[test]
    fn a_recycled_line_continues_its_numbering_with_the_next_track() {
        let t0 = Instant::now();
        let mut first = Track::new(Kind::Video, Source::Camera);
        first
            .subscriptions
            .push(subscription(9, "4", 10, &[(96, 96)]));
        let mut queue = Vec::new();
        first.forward(&packet(50, 96, t0), 0, None, &mut queue);
        first.forward(&packet(51, 96, t0), 0, None, &mut queue);

        // The publisher leaves; the subscriber's line moves to another track.
        let mut sub = first
            .unsubscribe(ParticipantId(9), "4".into())
            .expect("subscribed");
        assert!(first.subscriptions.is_empty());
        sub.rewriter.resume(9_000);
        let mut second = Track::new(Kind::Video, Source::Camera);
        second.subscriptions.push(sub);
        second.forward(&packet(60_000, 96, t0), 0, None, &mut queue);

        let seqs: Vec<u64> = queue.iter().map(|q| q.seq).collect();
        assert_eq!(seqs, [10, 11, 12], "no gap on the subscriber's stream");
        assert_eq!(queue[2].time, 51 * 3000 + 9_000);
    }

    const KEY: Option<KeyframeStart> = Some(KeyframeStart { size: None });

    /// Three layers' packets at one instant: each layer numbers its own
    /// stream (q from 1,000, h from 2,000, f from 3,000; timestamps apart).
    fn layer_packet(layer: u8, n: u64, at: Instant) -> StoredPacket {
        let mut p = packet(1_000 * (u64::from(layer) + 1) + n, 96, at);
        p.time = u32::from(layer) * 1_000_000 + n as u32 * 3000;
        p
    }

    #[test]
    fn a_new_video_subscriber_starts_at_a_keyframe_of_its_layer() {
        let t0 = Instant::now();
        let mut track = Track::new(Kind::Video, Source::Camera);
        track
            .subscriptions
            .push(waiting(1, "0", 100, &[(96, 96)], Some(1)));
        let mut queue = Vec::new();
        track.forward(&layer_packet(1, 0, t0), 1, None, &mut queue);
        track.forward(&layer_packet(2, 0, t0), 2, KEY, &mut queue);
        assert!(queue.is_empty(), "nothing before a keyframe, none above");
        track.forward(&layer_packet(1, 1, t0), 1, KEY, &mut queue);
        track.forward(&layer_packet(1, 2, t0), 1, None, &mut queue);
        track.forward(&layer_packet(0, 1, t0), 0, None, &mut queue);
        let seqs: Vec<u64> = queue.iter().map(|q| q.seq).collect();
        assert_eq!(seqs, [100, 101], "layer 1 only, from its keyframe");
    }

    #[test]
    fn a_new_video_subscriber_shows_a_lower_layer_until_its_own_keyframe() {
        let t0 = Instant::now();
        let frame = std::time::Duration::from_millis(33);
        let mut track = Track::new(Kind::Video, Source::Camera);
        track
            .subscriptions
            .push(waiting(1, "0", 100, &[(96, 96)], Some(2)));
        let mut queue = Vec::new();
        track.forward(&layer_packet(0, 0, t0), 0, KEY, &mut queue);
        track.forward(&layer_packet(0, 1, t0 + frame), 0, None, &mut queue);
        assert_eq!(track.subscriptions[0].current, Some(0), "showing q");
        track.forward(&layer_packet(1, 0, t0 + frame), 1, KEY, &mut queue);
        assert_eq!(
            track.subscriptions[0].current,
            Some(0),
            "h is not the target"
        );
        track.forward(&layer_packet(2, 0, t0 + frame * 2), 2, KEY, &mut queue);
        track.forward(&layer_packet(0, 2, t0 + frame * 2), 0, None, &mut queue);
        let sent: Vec<(u64, u32)> = queue.iter().map(|q| (q.seq, q.time)).collect();
        assert_eq!(
            sent,
            [(100, 0), (101, 3000), (102, 3000 + 2970)],
            "q from its keyframe, then f from its own, one stream"
        );
        assert_eq!(track.subscriptions[0].current, Some(2));
    }

    #[test]
    fn switching_layers_waits_for_a_keyframe_and_leaves_no_gap() {
        let t0 = Instant::now();
        let frame = std::time::Duration::from_millis(33);
        let mut track = Track::new(Kind::Video, Source::Camera);
        track
            .subscriptions
            .push(waiting(1, "0", 100, &[(96, 96)], Some(2)));
        let mut queue = Vec::new();
        track.forward(&layer_packet(2, 0, t0), 2, KEY, &mut queue);
        track.forward(&layer_packet(2, 1, t0 + frame), 2, None, &mut queue);
        // The room moves this subscriber down to layer 0.
        assert!(track.subscriptions[0].set_target(Some(0), t0 + frame));
        track.forward(&layer_packet(0, 5, t0 + frame), 0, None, &mut queue);
        track.forward(&layer_packet(2, 2, t0 + frame * 2), 2, None, &mut queue);
        track.forward(&layer_packet(0, 6, t0 + frame * 3), 0, KEY, &mut queue);
        track.forward(&layer_packet(2, 3, t0 + frame * 3), 2, None, &mut queue);
        track.forward(&layer_packet(0, 7, t0 + frame * 4), 0, None, &mut queue);

        let sent: Vec<(u64, u32)> = queue.iter().map(|q| (q.seq, q.time)).collect();
        let t = |n: u32| 2_000_000 + n * 3000;
        assert_eq!(
            sent,
            [
                (100, t(0)),
                (101, t(1)),
                (102, t(2)),
                // Layer 0 from its keyframe, one frame (2,970 ticks of 33
                // ms) after the last layer-2 packet sent.
                (103, t(2) + 2970),
                (104, t(2) + 2970 + 3000),
            ],
            "layer 2 until layer 0's keyframe, then layer 0, one continuous stream"
        );
        assert_eq!(track.subscriptions[0].current, Some(0));
    }

    #[test]
    fn a_paused_subscriber_gets_nothing_and_resumes_at_a_keyframe() {
        let t0 = Instant::now();
        let second = std::time::Duration::from_secs(1);
        let mut track = Track::new(Kind::Video, Source::Camera);
        track
            .subscriptions
            .push(subscription(1, "0", 100, &[(96, 96)]));
        let mut queue = Vec::new();
        track.forward(&layer_packet(0, 0, t0), 0, None, &mut queue);
        track.subscriptions[0].set_target(None, t0);
        track.forward(&layer_packet(0, 1, t0), 0, KEY, &mut queue);
        assert_eq!(queue.len(), 1, "paused: not even a keyframe");
        assert!(track.subscriptions[0].set_target(Some(0), t0 + second));
        track.forward(&layer_packet(0, 30, t0 + second), 0, None, &mut queue);
        track.forward(&layer_packet(0, 31, t0 + second), 0, KEY, &mut queue);
        let sent: Vec<(u64, u32)> = queue.iter().map(|q| (q.seq, q.time)).collect();
        assert_eq!(
            sent,
            [(100, 0), (101, 90_000)],
            "resumed at the keyframe, the pause's second later on the same stream"
        );
    }

    #[test]
    fn audio_starts_at_once_and_nacks_use_the_current_layer() {
        let t0 = Instant::now();
        let mut audio = Track::new(Kind::Audio, Source::Microphone);
        audio
            .subscriptions
            .push(waiting(1, "1", 10, &[(111, 111)], Some(0)));
        let mut queue = Vec::new();
        audio.forward(&packet(5, 111, t0), 0, None, &mut queue);
        assert_eq!(queue.len(), 1, "audio needs no keyframe");

        let mut video = Track::new(Kind::Video, Source::Camera);
        video
            .subscriptions
            .push(waiting(2, "2", 10, &[(96, 96)], Some(1)));
        video.forward(&layer_packet(1, 0, t0), 1, KEY, &mut queue);
        let sub = &video.subscriptions[0];
        assert!(video.history_of(sub).get(2_000).is_some());
        assert!(video.history[0].get(2_000).is_none());
    }
}
