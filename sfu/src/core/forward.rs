//! The forwarding decision for one incoming packet: which subscribers of its
//! track get it, with which payload type, sequence number and timestamp.
//!
//! No str0m connection is touched here: the decisions are queued as
//! [`Queued`] packets and the room writes them per subscriber at the end of
//! the datagram batch (see `Room::flush`).

use super::history::{ForwardedExts, PacketHistory, StoredPacket};
use super::repair::KeyframeThrottle;
use super::rewrite::Rewriter;
use crate::api::{Kind, ParticipantId, Source};
use std::sync::Arc;
use std::time::Instant;
use str0m::media::{Mid, Pt};
use str0m::rtp::{RtpWrite, Ssrc};

/// Identifies a published track: its publisher and the publisher's mid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrackKey {
    /// The publisher.
    pub publisher: ParticipantId,
    /// The m-line on the publisher's publish connection.
    pub mid: Mid,
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
    pub pt_map: Vec<(Pt, Pt)>,
}

impl Subscription {
    /// The subscriber's payload type for the publisher's `pt`.
    pub fn map_pt(&self, pt: Pt) -> Option<Pt> {
        self.pt_map
            .iter()
            .find(|(from, _)| *from == pt)
            .map(|&(_, to)| to)
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
        .ext_vals(self.exts.to_ext_values())
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
    /// Keyframe requests to the publisher, throttled.
    pub keyframes: KeyframeThrottle,
    /// Recent video packets, for subscribers' NACKs (empty for audio).
    pub history: PacketHistory,
}

impl Track {
    /// A track nobody receives yet.
    pub fn new(kind: Kind, source: Source) -> Self {
        Self {
            kind,
            source,
            subscriptions: Vec::new(),
            keyframes: KeyframeThrottle::default(),
            history: PacketHistory::default(),
        }
    }

    /// Queues `packet` once for every subscriber (renumbered for each) and
    /// keeps video in the history for NACKs. Subscribers that did not
    /// negotiate the packet's codec skip it.
    pub fn forward(&mut self, packet: &StoredPacket, queue: &mut Vec<Queued>) {
        if self.kind == Kind::Video {
            self.history.push(packet.clone());
        }
        for sub in &mut self.subscriptions {
            let Some(pt) = sub.map_pt(packet.pt) else {
                continue;
            };
            let Some((seq, time)) = sub.rewriter.map(packet.seq, packet.time) else {
                continue;
            };
            queue.push(Queued {
                subscriber: sub.subscriber,
                ssrc: sub.ssrc,
                pt,
                seq,
                time,
                marker: packet.marker,
                wallclock: packet.arrived,
                payload: packet.payload.clone(),
                exts: packet.exts,
            });
        }
    }

    /// `subscriber`'s subscription on its m-line `mid`.
    pub fn subscription(&self, subscriber: ParticipantId, mid: Mid) -> Option<&Subscription> {
        self.subscriptions
            .iter()
            .find(|s| s.subscriber == subscriber && s.mid == mid)
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

    fn subscription(subscriber: u64, mid: &str, start: u16, pt_map: &[(u8, u8)]) -> Subscription {
        Subscription {
            subscriber: ParticipantId(subscriber),
            mid: mid.into(),
            ssrc: (1000 + subscriber as u32).into(),
            rewriter: Rewriter::new(start),
            pt_map: pt_map.iter().map(|&(a, b)| (a.into(), b.into())).collect(),
        }
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
        track.forward(&packet(7_000, 96, t0), &mut queue);
        track.forward(&packet(7_001, 96, t0), &mut queue);

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
            track.history.get(7_001).is_some(),
            "video is kept for NACKs"
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
        track.forward(&packet(1, 96, t0), &mut queue);
        assert!(queue.is_empty(), "a codec the subscriber lacks is skipped");
        track.forward(&packet(2, 111, t0), &mut queue);
        assert_eq!(queue.len(), 1);
        assert!(track.history.get(2).is_none(), "audio is not kept");
    }

    #[test]
    fn a_recycled_line_continues_its_numbering_with_the_next_track() {
        let t0 = Instant::now();
        let mut first = Track::new(Kind::Video, Source::Camera);
        first
            .subscriptions
            .push(subscription(9, "4", 10, &[(96, 96)]));
        let mut queue = Vec::new();
        first.forward(&packet(50, 96, t0), &mut queue);
        first.forward(&packet(51, 96, t0), &mut queue);

        // The publisher leaves; the subscriber's line moves to another track.
        let mut sub = first
            .unsubscribe(ParticipantId(9), "4".into())
            .expect("subscribed");
        assert!(first.subscriptions.is_empty());
        sub.rewriter.resume(9_000);
        let mut second = Track::new(Kind::Video, Source::Camera);
        second.subscriptions.push(sub);
        second.forward(&packet(60_000, 96, t0), &mut queue);

        let seqs: Vec<u64> = queue.iter().map(|q| q.seq).collect();
        assert_eq!(seqs, [10, 11, 12], "no gap on the subscriber's stream");
        assert_eq!(queue[2].time, 51 * 3000 + 9_000);
    }
}
