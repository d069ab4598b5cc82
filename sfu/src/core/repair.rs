//! Repairing what subscribers lost: keyframe requests to a publisher,
//! throttled however many subscribers ask, and NACKed packets rebuilt from
//! the track's history for one subscriber's RTX stream.

use super::forward::{Queued, Subscription};
use super::history::PacketHistory;
use super::vp8::Vp8Numbers;
use std::time::{Duration, Instant};

/// At most one keyframe request to a publisher per interval for one track;
/// a request inside the window is owed and goes out when it ends, so a late
/// viewer still gets its keyframe promptly.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyframeThrottle {
    /// When the last request went to the publisher.
    last_sent: Option<Instant>,
    /// A request arrived inside the window.
    owed: bool,
}

impl KeyframeThrottle {
    /// Whether a request may go to the publisher now; if not, it is owed.
    pub fn admit(&mut self, now: Instant, interval: Duration) -> bool {
        if self
            .last_sent
            .is_some_and(|at| now.duration_since(at) < interval)
        {
            self.owed = true;
            return false;
        }
        self.owed = false;
        true
    }

    /// Records that a request went out.
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
    }

    /// When an owed request may go out.
    pub fn owed_at(&self, interval: Duration) -> Option<Instant> {
        if !self.owed {
            return None;
        }
        self.last_sent.map(|at| at + interval)
    }

    /// Whether an owed request may go out now.
    pub fn owed_due(&self, now: Instant, interval: Duration) -> bool {
        self.owed
            && self
                .last_sent
                .is_none_or(|at| now.duration_since(at) >= interval)
    }
}

/// Why NACKed packets could not be resent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unanswered {
    /// Older than the history (or sent under an earlier anchoring of the
    /// m-line): asked for too late.
    pub too_old: u64,
    /// Within the history's span but missing: the SFU never received them
    /// from the publisher (lost on the way in).
    pub not_received: u64,
}

/// The packets to resend for a subscriber's NACK of `seqs` (its own
/// sequence numbers), from the track's history, and why the others could
/// not be.
pub fn resends(
    sub: &Subscription,
    history: &PacketHistory,
    seqs: &[u64],
) -> (Vec<Queued>, Unanswered) {
    let mut again = Vec::with_capacity(seqs.len());
    let mut unanswered = Unanswered::default();
    for &seq in seqs {
        let Some(publisher_seq) = sub.rewriter.unmap(seq) else {
            unanswered.too_old += 1;
            continue;
        };
        let packet = history.get(publisher_seq);
        let Some((packet, pt)) = packet.and_then(|p| Some((p, sub.map_pt(p.pt)?))) else {
            if history.is_older_than_kept(publisher_seq) {
                unanswered.too_old += 1;
            } else {
                unanswered.not_received += 1;
            }
            continue;
        };
        again.push(Queued {
            subscriber: sub.subscriber,
            ssrc: sub.ssrc,
            pt,
            seq,
            time: sub.rewriter.map_ts(packet.time),
            marker: packet.marker,
            wallclock: packet.arrived,
            // As it was sent: with the subscription's VP8 numbering.
            payload: match Vp8Numbers::parse(&packet.payload) {
                Some(numbers) => sub.vp8.apply(&packet.payload, numbers),
                None => packet.payload.clone(),
            },
            exts: packet.exts,
            playout_min: sub.playout.hundredths(),
        });
    }
    (again, unanswered)
}

/// How many resends a subscriber may still get: earned as a share of what
/// is forwarded to it, so one NACK datagram (up to ~200 sequence numbers)
/// or a subscriber on a hopeless link cannot make the SFU resend more than
/// a bounded fraction of its stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResendBudget {
    tokens: f32,
}

impl ResendBudget {
    /// Resends earned per forwarded packet (a fifth: repairs 20 % loss).
    const SHARE: f32 = 0.2;
    /// Most resends saved up (a keyframe's worth lost at once).
    const BURST: f32 = 100.0;

    /// Credits `packets` forwarded to the subscriber.
    pub fn earn(&mut self, packets: u32) {
        self.tokens = (self.tokens + packets as f32 * Self::SHARE).min(Self::BURST);
    }

    /// Takes one resend, if the budget allows it.
    pub fn spend(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Default for ResendBudget {
    /// A full burst, so a new subscriber's first losses are repaired.
    fn default() -> Self {
        Self {
            tokens: Self::BURST,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ParticipantId;
    use crate::core::forward::Numbering;
    use crate::core::history::{ForwardedExts, StoredPacket};
    use std::sync::Arc;

    const WINDOW: Duration = Duration::from_millis(500);

    #[test]
    fn resends_are_a_bounded_share_of_what_is_forwarded() {
        let mut budget = ResendBudget::default();
        let burst = (0..1_000).filter(|_| budget.spend()).count();
        assert_eq!(burst, 100, "a burst at first");
        budget.earn(50);
        assert_eq!((0..1_000).filter(|_| budget.spend()).count(), 10);
        budget.earn(1_000_000);
        assert_eq!(
            (0..1_000).filter(|_| budget.spend()).count(),
            100,
            "saved up to the burst"
        );
    }

    #[test]
    fn one_request_per_window_and_the_owed_one_after_it() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::default();
        assert!(k.admit(t0, WINDOW), "the first request goes out");
        k.sent(t0);
        assert_eq!(k.owed_at(WINDOW), None);
        let t1 = t0 + Duration::from_millis(100);
        assert!(!k.admit(t1, WINDOW), "inside the window");
        assert!(!k.admit(t1, WINDOW), "still one owed, however many ask");
        assert_eq!(k.owed_at(WINDOW), Some(t0 + WINDOW));
        assert!(!k.owed_due(t1, WINDOW));
        assert!(k.owed_due(t0 + WINDOW, WINDOW));
        assert!(k.admit(t0 + WINDOW, WINDOW), "the owed request goes out");
        assert_eq!(k.owed_at(WINDOW), None, "and is no longer owed");
    }

    #[test]
    fn resends_map_back_through_the_rewriter() {
        let t0 = Instant::now();
        let mut history = PacketHistory::default();
        let mut sub = Subscription::new(
            ParticipantId(3),
            "2".into(),
            77.into(),
            Numbering::new(1_000),
            crate::core::red::PayloadTypes::new(vec![(96.into(), 100.into())]),
            Some(0),
            t0,
        );
        for seq in 500..510u64 {
            sub.rewriter.map(seq, seq as u32 * 10);
            if seq == 505 {
                continue; // lost on the way in
            }
            history.push(StoredPacket {
                seq,
                pt: 96.into(),
                time: seq as u32 * 10,
                marker: false,
                arrived: t0,
                payload: Arc::from(vec![seq as u8]),
                exts: ForwardedExts::default(),
            });
        }
        let (again, missed) = resends(&sub, &history, &[1_002, 1_005, 1_009, 1_010, 999]);
        assert_eq!(
            missed,
            Unanswered {
                too_old: 2,
                not_received: 1
            },
            "one never sent, one before the first; one the SFU never received"
        );
        let got: Vec<(u64, u8, u64)> = again
            .iter()
            .map(|q| (q.seq, *q.pt, u64::from(q.payload[0])))
            .collect();
        // Payload bytes are the publisher's sequence numbers (mod 256).
        assert_eq!(got, [(1_002, 100, 502 % 256), (1_009, 100, 509 % 256)]);
        assert_eq!(*again[0].ssrc, 77);
    }
}
