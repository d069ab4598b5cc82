//! Per-subscriber, per-m-line RTP numbering.
//!
//! A subscriber's outgoing stream has its own SSRC (str0m's), sequence
//! numbers and timestamps. Keeping them independent of the publisher's lets
//! the SFU switch what an m-line carries (another participant's track when
//! the line is recycled, later a simulcast layer) or pause and resume it, by
//! re-anchoring the offsets so the browser sees one continuous stream with
//! no gap.

/// Maps a source stream's sequence numbers and timestamps onto the
/// subscriber's stream.
#[derive(Debug, Clone)]
pub struct Rewriter {
    /// Added to the extended input sequence number (unset until the first
    /// packet).
    seq_delta: Option<i64>,
    /// Added (wrapping) to the input RTP timestamp.
    ts_delta: u32,
    /// First output sequence number.
    start_seq: u64,
    /// Highest sequence number sent so far.
    highest_out: Option<u64>,
    /// Timestamp of the highest packet sent so far.
    last_out_ts: u32,
    /// First output sequence number of the current anchoring: older ones
    /// were mapped with other offsets and cannot be mapped back.
    anchored_at: u64,
    /// Set by [`Rewriter::resume`]: the next packet re-anchors, this many
    /// timestamp ticks after the last one sent.
    resume_advance: Option<u32>,
}

impl Rewriter {
    /// A rewriter whose first output packet gets `start_seq` (random, as
    /// RFC 3550 asks) and keeps timestamps as they are.
    pub fn new(start_seq: u16) -> Self {
        Self {
            seq_delta: None,
            ts_delta: 0,
            start_seq: u64::from(start_seq),
            highest_out: None,
            last_out_ts: 0,
            anchored_at: u64::from(start_seq),
            resume_advance: None,
        }
    }

    /// Continues this output stream with a new source (a recycled m-line now
    /// carrying another track): its first packet follows the last one sent,
    /// `ts_advance` ticks later.
    pub fn resume(&mut self, ts_advance: u32) {
        self.resume_advance = Some(ts_advance);
    }

    /// Output sequence number and timestamp for an input packet, or `None`
    /// for a straggler older than the first packet forwarded.
    pub fn map(&mut self, in_seq: u64, in_ts: u32) -> Option<(u64, u32)> {
        if let Some(advance) = self.resume_advance.take() {
            self.rebase(in_seq, in_ts, advance);
        }
        let delta = *self
            .seq_delta
            .get_or_insert_with(|| self.start_seq as i64 - in_seq as i64);
        let out = u64::try_from(in_seq as i64 + delta).ok()?;
        let ts = in_ts.wrapping_add(self.ts_delta);
        if self.highest_out.is_none_or(|h| out > h) {
            self.highest_out = Some(out);
            self.last_out_ts = ts;
        }
        Some((out, ts))
    }

    /// Re-anchors on a new source (another layer, or after a pause): its
    /// packet `in_seq`/`in_ts` will follow the last one sent, `ts_advance`
    /// ticks later, so the subscriber sees no gap.
    pub fn rebase(&mut self, in_seq: u64, in_ts: u32, ts_advance: u32) {
        let next = self.highest_out.map_or(self.start_seq, |h| h + 1);
        self.seq_delta = Some(next as i64 - in_seq as i64);
        let target = self.last_out_ts.wrapping_add(ts_advance);
        self.ts_delta = target.wrapping_sub(in_ts);
        self.anchored_at = next;
    }

    /// The input sequence number an output one was mapped from (to answer
    /// a NACK from the source's history), or `None` if it was never sent
    /// under the current anchoring.
    pub fn unmap(&self, out_seq: u64) -> Option<u64> {
        let delta = self.seq_delta?;
        if out_seq < self.anchored_at || self.highest_out.is_none_or(|h| out_seq > h) {
            return None;
        }
        u64::try_from(out_seq as i64 - delta).ok()
    }

    /// The output timestamp for an input timestamp, as [`Rewriter::map`]
    /// gives it (without recording anything).
    pub fn map_ts(&self, in_ts: u32) -> u32 {
        in_ts.wrapping_add(self.ts_delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuous_from_the_start_value() {
        let mut r = Rewriter::new(1000);
        assert_eq!(r.map(70_000, 5), Some((1000, 5)));
        assert_eq!(r.map(70_001, 6), Some((1001, 6)));
        assert_eq!(r.map(70_003, 8), Some((1003, 8)), "gaps are kept for NACK");
        assert_eq!(r.map(70_002, 7), Some((1002, 7)), "reordering is kept");
        assert_eq!(r.map(60_000, 1), None, "older than the first packet");
    }

    #[test]
    fn rebase_continues_without_a_gap() {
        let mut r = Rewriter::new(10);
        r.map(500, 90_000);
        r.map(501, 93_000);
        // Switch to a source with unrelated numbering.
        r.rebase(9_000, 1_000_000, 3_000);
        assert_eq!(r.map(9_000, 1_000_000), Some((12, 96_000)));
        assert_eq!(r.map(9_001, 1_003_000), Some((13, 99_000)));
    }

    #[test]
    fn unmaps_only_what_the_current_anchoring_sent() {
        let mut r = Rewriter::new(100);
        assert_eq!(r.unmap(100), None, "nothing sent yet");
        r.map(5_000, 10);
        r.map(5_001, 20);
        assert_eq!(r.unmap(101), Some(5_001));
        assert_eq!(r.unmap(102), None, "not sent yet");
        assert_eq!(r.unmap(99), None);
        r.rebase(9_000, 500, 10);
        r.map(9_000, 500);
        assert_eq!(r.unmap(102), Some(9_000));
        assert_eq!(r.unmap(101), None, "sent under the old anchoring");
        assert_eq!(r.map_ts(500), 30);
    }

    #[test]
    fn resume_continues_on_the_next_source_packet() {
        let mut r = Rewriter::new(40);
        r.map(7, 1_000);
        r.map(8, 4_000);
        r.resume(90_000);
        assert_eq!(
            r.map(30_000, 5),
            Some((42, 94_000)),
            "next seq, ts advanced"
        );
        assert_eq!(r.map(30_001, 3_005), Some((43, 97_000)));
        assert_eq!(r.unmap(42), Some(30_000));
        assert_eq!(r.unmap(41), None, "the previous source's packets are gone");
    }

    #[test]
    fn timestamps_wrap() {
        let mut r = Rewriter::new(0);
        r.map(1, u32::MAX - 10);
        r.rebase(5, 100, 20);
        assert_eq!(
            r.map(5, 100).map(|x| x.1),
            Some((u32::MAX - 10).wrapping_add(20))
        );
    }
}
