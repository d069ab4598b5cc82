//! Dynacast: a publisher encodes only the simulcast layers someone needs.
//!
//! Each simulcast track keeps the layers up to the highest one any
//! subscriber wants (the lower ones stay on, so a subscriber whose view
//! shrinks or whose link weakens can step down at once). A layer nobody has
//! wanted for [`HOLD`] is turned off; one that is wanted again is turned on
//! at once. The room tells the publisher (`Event::PublisherLayers`) and the
//! browser sets its encodings' `active` flags. A track nobody watches has
//! every layer off: its camera costs nothing upstream. LiveKit's dynacast
//! works the same way (its "max subscribed quality" per track).

use super::layers::MAX_LAYERS;
use std::time::{Duration, Instant};

/// How long a layer goes unwanted before the publisher is told to stop it:
/// long enough that a tile resized or paged back and forth does not make
/// the encoder start and stop, short enough to save the bits soon.
pub const HOLD: Duration = Duration::from_secs(3);

/// What the publisher of one simulcast track was told to send.
#[derive(Debug, Clone, Copy)]
pub struct Dynacast {
    /// Layers the publisher sends (browsers start with all of them).
    active: [bool; MAX_LAYERS],
    /// Since when each active layer has been unwanted.
    unwanted_since: [Option<Instant>; MAX_LAYERS],
}

impl Default for Dynacast {
    fn default() -> Self {
        Self {
            active: [true; MAX_LAYERS],
            unwanted_since: [None; MAX_LAYERS],
        }
    }
}

impl Dynacast {
    /// Given the highest layer any subscriber wants (`None`: nobody wants
    /// any), returns the layers the publisher should now send when that
    /// differs from what it was told, else `None`.
    pub fn update(&mut self, now: Instant, highest: Option<u8>) -> Option<[bool; MAX_LAYERS]> {
        let mut changed = false;
        for layer in 0..MAX_LAYERS {
            let wanted = highest.is_some_and(|h| layer <= usize::from(h));
            if wanted {
                self.unwanted_since[layer] = None;
                if !self.active[layer] {
                    self.active[layer] = true;
                    changed = true;
                }
            } else if self.active[layer] {
                let since = *self.unwanted_since[layer].get_or_insert(now);
                if now.saturating_duration_since(since) >= HOLD {
                    self.active[layer] = false;
                    self.unwanted_since[layer] = None;
                    changed = true;
                }
            }
        }
        changed.then_some(self.active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwanted_layers_stop_after_the_hold_and_return_at_once() {
        let start = Instant::now();
        let mut d = Dynacast::default();
        // Everyone shows small tiles: only `q` is wanted.
        assert_eq!(d.update(start, Some(0)), None, "not before the hold");
        assert_eq!(
            d.update(start + HOLD / 2, Some(0)),
            None,
            "still within the hold"
        );
        assert_eq!(
            d.update(start + HOLD, Some(0)),
            Some([true, false, false]),
            "h and f stop"
        );
        assert_eq!(d.update(start + HOLD * 2, Some(0)), None, "told once");
        // Someone maximises a tile: everything up to `f` at once.
        assert_eq!(
            d.update(start + HOLD * 2, Some(2)),
            Some([true, true, true])
        );
    }

    #[test]
    fn a_layer_wanted_again_within_the_hold_never_stops() {
        let start = Instant::now();
        let mut d = Dynacast::default();
        d.update(start, Some(1));
        d.update(start + HOLD / 2, Some(2));
        // The hold starts again from the next time `f` is unwanted.
        assert_eq!(d.update(start + HOLD, Some(1)), None);
        assert_eq!(d.update(start + HOLD * 3 / 2, Some(1)), None);
        assert_eq!(
            d.update(start + HOLD * 2, Some(1)),
            Some([true, true, false])
        );
    }

    #[test]
    fn a_track_nobody_watches_stops_entirely() {
        let start = Instant::now();
        let mut d = Dynacast::default();
        d.update(start, None);
        assert_eq!(d.update(start + HOLD, None), Some([false; MAX_LAYERS]));
        assert_eq!(d.update(start + HOLD, Some(0)), Some([true, false, false]));
    }
}
