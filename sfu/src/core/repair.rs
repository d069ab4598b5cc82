//! Repairing what subscribers lost: keyframe requests to a publisher,
//! throttled however many subscribers ask, and NACKed packets rebuilt from
//! the track's history for one subscriber's RTX stream.

use super::forward::{Queued, Subscription};
use super::history::PacketHistory;
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

/// The packets to resend for a subscriber's NACK of `seqs` (its own
/// sequence numbers), from the track's history, and how many could not be
/// (too old, or sent under an earlier anchoring of the m-line).
pub fn resends(sub: &Subscription, history: &PacketHistory, seqs: &[u64]) -> (Vec<Queued>, u64) {
    let mut again = Vec::with_capacity(seqs.len());
    let mut missed = 0;
    for &seq in seqs {
        let packet = sub.rewriter.unmap(seq).and_then(|s| history.get(s));
        let Some((packet, pt)) = packet.and_then(|p| Some((p, sub.map_pt(p.pt)?))) else {
            missed += 1;
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
            payload: packet.payload.clone(),
            exts: packet.exts,
        });
    }
    (again, missed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ParticipantId;
    use crate::core::history::{ForwardedExts, StoredPacket};
    use crate::core::rewrite::Rewriter;
    use std::sync::Arc;

    const WINDOW: Duration = Duration::from_millis(500);

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
        let mut sub = Subscription {
            subscriber: ParticipantId(3),
            mid: "2".into(),
            ssrc: 77.into(),
            rewriter: Rewriter::new(1_000),
            pt_map: vec![(96.into(), 100.into())],
        };
        for seq in 500..510u64 {
            history.push(StoredPacket {
                seq,
                pt: 96.into(),
                time: seq as u32 * 10,
                marker: false,
                arrived: t0,
                payload: Arc::from(vec![seq as u8]),
                exts: ForwardedExts::default(),
            });
            sub.rewriter.map(seq, seq as u32 * 10);
        }
        let (again, missed) = resends(&sub, &history, &[1_002, 1_009, 1_010, 999]);
        assert_eq!(missed, 2, "one never sent, one before the first");
        let got: Vec<(u64, u8, u64)> = again
            .iter()
            .map(|q| (q.seq, *q.pt, u64::from(q.payload[0])))
            .collect();
        // Payload bytes are the publisher's sequence numbers (mod 256).
        assert_eq!(got, [(1_002, 100, 502 % 256), (1_009, 100, 509 % 256)]);
        assert_eq!(*again[0].ssrc, 77);
    }
}
