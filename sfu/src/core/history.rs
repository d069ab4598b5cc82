//! The recent packets of one published track, kept once for all of its
//! subscribers, so that a subscriber's NACK can be answered.
//!
//! str0m would otherwise keep a resend cache per outgoing stream: in a
//! 25-person meeting that is 24 copies of every video packet's metadata per
//! participant, most of the memory the SFU used. Here a subscriber's NACK
//! is mapped back to the publisher's sequence number (its
//! [`Rewriter`](super::Rewriter)) and the packet is resent from this one
//! history through str0m's RTX stream of that subscriber.

use super::playout::MAX_DELAY_HUNDREDTHS;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::media::MediaTime;
use str0m::media::Pt;
use str0m::rtp::{ExtensionValues, VideoOrientation};

/// How long packets stay: a NACK answered later than this cannot help a
/// live stream any more.
pub const HISTORY_AGE: Duration = Duration::from_millis(1000);
/// Most packets kept per track, whatever the bitrate (about 1 s of a
/// 1.5 Mbit/s stream; a bound on memory for very high bitrates).
pub const HISTORY_PACKETS: usize = 192;

/// The header extension values the SFU forwards (a small copy of the
/// publisher's; str0m's `ExtensionValues` is ~200 bytes).
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardedExts {
    audio_level: Option<i8>,
    voice_activity: Option<bool>,
    video_orientation: Option<VideoOrientation>,
}

impl ForwardedExts {
    /// The values of `exts` that are forwarded.
    pub fn from(exts: &ExtensionValues) -> Self {
        Self {
            audio_level: exts.audio_level,
            voice_activity: exts.voice_activity,
            video_orientation: exts.video_orientation,
        }
    }

    /// The RFC 6464 audio level (`-127..=0` dBov), if the packet had one.
    pub fn audio_level(&self) -> Option<i8> {
        self.audio_level
    }

    /// As str0m's type, for a write, with a minimum playout delay
    /// (hundredths of a second, `crate::core::playout`) when given.
    pub fn to_ext_values(self, playout_min: Option<u16>) -> ExtensionValues {
        let playout = |hundredths: u64| Some(MediaTime::from_hundredths(hundredths));
        ExtensionValues {
            audio_level: self.audio_level,
            voice_activity: self.voice_activity,
            video_orientation: self.video_orientation,
            play_delay_min: playout_min.and_then(|min| playout(u64::from(min))),
            play_delay_max: playout_min.and_then(|_| playout(MAX_DELAY_HUNDREDTHS)),
            ..Default::default()
        }
    }
}

/// One packet as the publisher sent it.
#[derive(Debug, Clone)]
pub struct StoredPacket {
    /// The publisher's extended sequence number.
    pub seq: u64,
    /// Payload type (the publisher's numbering).
    pub pt: Pt,
    /// The publisher's RTP timestamp.
    pub time: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// When it arrived (also the wallclock it was forwarded with).
    pub arrived: Instant,
    /// The payload, shared with everything that forwarded it.
    pub payload: Arc<[u8]>,
    /// Its header extension values.
    pub exts: ForwardedExts,
}

/// Recent packets of one track, in sequence order.
#[derive(Debug, Default)]
pub struct PacketHistory {
    packets: VecDeque<StoredPacket>,
}

impl PacketHistory {
    /// Records a packet and forgets what is too old.
    pub fn push(&mut self, packet: StoredPacket) {
        let (seq, arrived) = (packet.seq, packet.arrived);
        match self.packets.back() {
            None => self.packets.push_back(packet),
            Some(last) if last.seq < seq => self.packets.push_back(packet),
            // Reordered on the way in: keep the order by sequence number.
            Some(_) => match self.packets.binary_search_by_key(&seq, |p| p.seq) {
                Ok(_) => return, // a duplicate
                Err(at) => self.packets.insert(at, packet),
            },
        }
        while self.packets.len() > HISTORY_PACKETS
            || self
                .packets
                .front()
                .is_some_and(|p| arrived.saturating_duration_since(p.arrived) > HISTORY_AGE)
        {
            self.packets.pop_front();
        }
    }

    /// The packet with the publisher's sequence number `seq`, if still kept.
    pub fn get(&self, seq: u64) -> Option<&StoredPacket> {
        let at = self.packets.binary_search_by_key(&seq, |p| p.seq).ok()?;
        self.packets.get(at)
    }

    /// Whether `seq` is older than anything kept (asked for too late), as
    /// opposed to missing from the span kept (never received from the
    /// publisher).
    pub fn is_older_than_kept(&self, seq: u64) -> bool {
        self.packets.front().is_none_or(|oldest| seq < oldest.seq)
    }

    /// Packets kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.packets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(h: &mut PacketHistory, seq: u64, at: Instant) {
        h.push(StoredPacket {
            seq,
            pt: 96.into(),
            time: seq as u32 * 3000,
            marker: false,
            arrived: at,
            payload: Arc::from(vec![seq as u8; 10]),
            exts: ForwardedExts::default(),
        });
    }

    #[test]
    fn finds_recent_packets_in_and_out_of_order() {
        let t0 = Instant::now();
        let mut h = PacketHistory::default();
        for seq in [10, 11, 13, 12, 12] {
            push(&mut h, seq, t0);
        }
        assert_eq!(h.len(), 4, "the duplicate is not kept twice");
        for seq in 10..=13 {
            let p = h.get(seq).expect("kept");
            assert_eq!(p.seq, seq);
            assert_eq!(p.payload[0], seq as u8);
        }
        assert!(h.get(14).is_none());
    }

    #[test]
    fn forgets_by_age_and_by_count() {
        let t0 = Instant::now();
        let mut h = PacketHistory::default();
        push(&mut h, 1, t0);
        push(&mut h, 2, t0 + HISTORY_AGE + Duration::from_millis(1));
        assert!(h.get(1).is_none(), "older than the history age");
        assert!(h.get(2).is_some());
        for seq in 3..3 + HISTORY_PACKETS as u64 {
            push(&mut h, seq, t0 + HISTORY_AGE);
        }
        assert_eq!(h.len(), HISTORY_PACKETS);
        assert!(h.get(2).is_none(), "pushed out by newer packets");
    }
}
