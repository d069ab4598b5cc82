//! A floor under a subscriber's video jitter buffer while its video needs
//! repair, sent in the playout-delay RTP header extension
//! (<http://www.webrtc.org/experiments/rtp-hdrext/playout-delay>).
//!
//! A browser holds video back for the jitter it sees and, once it has to
//! NACK, for one round trip more: long enough for a repair to arrive. On a
//! receive-only connection it knows no round trip (Chromium measures one
//! only where it sends, and answers no RTCP XR for receivers), so through
//! the SFU it waits for jitter alone. At 5 % loss and 40 ± 10 ms per hop
//! that was ~100 ms against ~190 ms peer to peer, and frames whose repair
//! came later froze: 6–8 % of the time against 1–4 %.
//!
//! The SFU knows both round trips (str0m measures one to every browser it
//! sends to, from its receiver reports) and when a subscriber needs
//! repairs (its NACKs). While a subscriber has NACKed within
//! [`REPAIR_HOLD`], its video packets carry a minimum playout delay of the
//! subscriber's round trip plus the publisher's (a packet lost on the way
//! in is repaired across the publisher's path, then forwarded), plus
//! [`MARGIN`]: about what the browser would choose peer to peer. Otherwise
//! nothing is written and the browser sizes its buffer as it likes; also
//! for a viewer whose link already limits its layers (see `choose_layers`).

use std::time::{Duration, Instant};

/// How long after a subscriber's last NACK its video keeps the floor
/// (losses come in spells; the floor should not come and go with each).
pub const REPAIR_HOLD: Duration = Duration::from_secs(30);

/// Added to the round trips: the jitter, decoding and rendering a browser
/// adds to its own target.
pub const MARGIN: Duration = Duration::from_millis(40);

/// The largest floor: past this, waiting costs more than a freeze.
pub const MAX_FLOOR: Duration = Duration::from_millis(400);

/// The round trip assumed for a browser nothing has measured yet (one the
/// SFU sends nothing to), as str0m and WebRTC assume.
pub const DEFAULT_RTT: Duration = Duration::from_millis(100);

/// How long a lifted floor keeps being sent as zero, so that the browser
/// (which keeps the last value it got) hears of it.
const LIFT_FOR: Duration = Duration::from_secs(1);

/// The maximum sent with every floor: WebRTC's own default (10 s), so
/// only the minimum constrains the browser.
pub const MAX_DELAY_HUNDREDTHS: u64 = 1000;

/// Whether, and since when, a subscriber needs repairs.
#[derive(Debug, Default, Clone, Copy)]
pub struct RepairNeed {
    last_nack: Option<Instant>,
}

impl RepairNeed {
    /// The subscriber NACKed.
    pub fn on_nack(&mut self, now: Instant) {
        self.last_nack = Some(now);
    }

    /// The floor for the subscriber's video from a publisher, given both
    /// round trips (`None`: not measured yet), or `None` while no repairs
    /// are needed.
    pub fn floor(
        &self,
        now: Instant,
        subscriber_rtt: Option<Duration>,
        publisher_rtt: Option<Duration>,
    ) -> Option<Duration> {
        let last = self.last_nack?;
        if now.saturating_duration_since(last) > REPAIR_HOLD {
            return None;
        }
        let floor =
            subscriber_rtt.unwrap_or(DEFAULT_RTT) + publisher_rtt.unwrap_or(DEFAULT_RTT) + MARGIN;
        // In the extension's unit, so that small changes of the measured
        // round trips do not change what is sent.
        let hundredths = floor.min(MAX_FLOOR).as_millis().div_ceil(10);
        Some(Duration::from_millis(hundredths as u64 * 10))
    }
}

/// What one subscription writes in the extension: the floor while there
/// is one, then zero for [`LIFT_FOR`], then nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlayoutFloor {
    min: Option<Duration>,
    lifted_at: Option<Instant>,
}

impl PlayoutFloor {
    /// Follows the floor wanted `now`.
    pub fn update(&mut self, now: Instant, wanted: Option<Duration>) {
        match (wanted, self.min) {
            (Some(floor), _) => {
                self.min = Some(floor);
                self.lifted_at = None;
            }
            (None, Some(min)) if !min.is_zero() => {
                self.min = Some(Duration::ZERO);
                self.lifted_at = Some(now);
            }
            (None, Some(_)) => {
                if self
                    .lifted_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= LIFT_FOR)
                {
                    self.min = None;
                    self.lifted_at = None;
                }
            }
            (None, None) => {}
        }
    }

    /// The minimum to write, in hundredths of a second (the extension's
    /// unit), or `None` to write no extension.
    pub fn hundredths(&self) -> Option<u16> {
        self.min.map(|m| (m.as_millis() / 10) as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn no_floor_before_a_nack_nor_long_after_it() {
        let now = Instant::now();
        let mut need = RepairNeed::default();
        assert_eq!(need.floor(now, Some(MS(80)), Some(MS(80))), None);
        need.on_nack(now);
        assert_eq!(need.floor(now, Some(MS(80)), Some(MS(80))), Some(MS(200)));
        let later = now + REPAIR_HOLD + MS(1);
        assert_eq!(need.floor(later, Some(MS(80)), Some(MS(80))), None);
    }

    #[test]
    fn the_floor_is_both_round_trips_and_the_margin_in_whole_hundredths_capped() {
        let now = Instant::now();
        let mut need = RepairNeed::default();
        need.on_nack(now);
        assert_eq!(need.floor(now, Some(MS(31)), Some(MS(42))), Some(MS(120)));
        assert_eq!(need.floor(now, None, None), Some(MS(240)), "defaults");
        assert_eq!(
            need.floor(now, Some(MS(900)), Some(MS(10))),
            Some(MAX_FLOOR)
        );
    }

    #[test]
    fn a_lifted_floor_is_sent_as_zero_for_a_while_then_not_at_all() {
        let now = Instant::now();
        let mut floor = PlayoutFloor::default();
        assert_eq!(floor.hundredths(), None);
        floor.update(now, Some(MS(200)));
        assert_eq!(floor.hundredths(), Some(20));
        floor.update(now + MS(500), None);
        assert_eq!(floor.hundredths(), Some(0));
        floor.update(now + MS(600), None);
        assert_eq!(floor.hundredths(), Some(0), "still telling");
        floor.update(now + MS(500) + LIFT_FOR, None);
        assert_eq!(floor.hundredths(), None);
        floor.update(now + MS(3000), Some(MS(150)));
        assert_eq!(floor.hundredths(), Some(15));
    }
}
