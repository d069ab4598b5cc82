//! How many datagrams a worker takes from its socket at once.
//!
//! Every datagram of a receive batch waits until the whole batch has been
//! forwarded and sent, so a batch's delay grows with its size times the
//! fan-out: 64 datagrams to a room of 50 are ~3,100 sends, over 10 ms on
//! this kind of machine, added to the wait of the first datagram in it.
//! Taking fewer datagrams per batch in high fan-out rooms keeps that part
//! of the forwarding delay short; in small rooms batches stay full, which
//! is cheapest per packet.

use super::udp::BATCH;

/// Forwarded packets one batch aims at (~3 ms of sends).
const FORWARDS_PER_BATCH: f64 = 1024.0;
/// The smallest batch: below this the per-call overhead starts to show.
const MIN_BATCH: usize = 8;
/// Weight of the newest batch in the fan-out estimate.
const NEWEST_WEIGHT: f64 = 0.25;

/// The running fan-out estimate (packets forwarded per packet received)
/// and the batch size it implies.
#[derive(Debug, Clone)]
pub struct BatchSize {
    fanout: f64,
}

impl Default for BatchSize {
    fn default() -> Self {
        Self { fanout: 1.0 }
    }
}

impl BatchSize {
    /// Datagrams to take in the next receive.
    pub fn next(&self) -> usize {
        let fits = (FORWARDS_PER_BATCH / self.fanout.max(1.0)) as usize;
        fits.clamp(MIN_BATCH, BATCH)
    }

    /// Records what one batch did: `received` media packets led to
    /// `forwarded` sends. Batches without media (STUN, RTCP) say nothing
    /// about the fan-out and are ignored.
    pub fn observe(&mut self, received: u64, forwarded: u64) {
        if received == 0 {
            return;
        }
        let fanout = forwarded as f64 / received as f64;
        self.fanout += NEWEST_WEIGHT * (fanout - self.fanout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(received: u64, forwarded: u64) -> BatchSize {
        let mut size = BatchSize::default();
        for _ in 0..50 {
            size.observe(received, forwarded);
        }
        size
    }

    #[test]
    fn small_rooms_take_full_batches() {
        assert_eq!(BatchSize::default().next(), BATCH);
        assert_eq!(settled(64, 4 * 64).next(), BATCH);
        assert_eq!(settled(64, 16 * 64).next(), BATCH);
    }

    #[test]
    fn large_fan_out_takes_fewer_datagrams_per_batch() {
        let fifty = settled(20, 49 * 20);
        assert_eq!(fifty.next(), 20, "1024 sends / 49 subscribers");
        assert_eq!(settled(10, 99 * 10).next(), 10);
        assert_eq!(
            settled(8, 400 * 8).next(),
            MIN_BATCH,
            "never below the minimum"
        );
    }

    #[test]
    fn batches_without_media_leave_the_estimate_alone() {
        let mut size = settled(20, 49 * 20);
        size.observe(0, 0);
        assert_eq!(size.next(), 20);
    }

    #[test]
    fn the_estimate_follows_a_room_that_empties() {
        let mut size = settled(20, 49 * 20);
        for _ in 0..30 {
            size.observe(64, 2 * 64);
        }
        assert_eq!(size.next(), BATCH);
    }
}
