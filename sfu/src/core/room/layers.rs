//! Which simulcast layer each subscriber receives of each video track:
//! chosen from what the subscriber shows of the track (its `track-view`)
//! and which layers the publisher is sending, again whenever either
//! changes and at least every [`LAYER_CHECK`] (a layer may have stopped).
//! The same pass tells publishers which layers anyone needs (dynacast,
//! see `crate::core::dynacast`).

use super::Room;
use crate::api::{Event, Kind, ParticipantId, Source, View};
use crate::core::forward::TrackKey;
use crate::core::layers::{LAYER_RIDS, MAX_LAYERS};
use crate::core::{CoreConfig, Outputs};
use std::time::{Duration, Instant};
use str0m::media::Mid;

/// How often layers are chosen again without a reason.
const LAYER_CHECK: Duration = Duration::from_millis(500);

impl Room {
    /// Records what `subscriber` shows of the track `shown` (publisher and
    /// source).
    pub fn set_view(
        &mut self,
        now: Instant,
        subscriber: ParticipantId,
        shown: (ParticipantId, Source),
        view: View,
        config: &CoreConfig,
        out: &mut Outputs,
    ) {
        let Some(participant) = self.participants.get_mut(&subscriber) else {
            return;
        };
        if participant.views.get(&shown) == Some(&view) {
            return;
        }
        // Bounded: one entry per (publisher, source) in the room; entries
        // of people who left are dropped with them (`Room::remove`).
        if participant.views.len() >= VIEWS_MAX && !participant.views.contains_key(&shown) {
            return;
        }
        participant.views.insert(shown, view);
        self.layers_changed = true;
        self.settle(now, config, out);
    }

    /// Chooses every video subscription's layer again; a subscriber moved
    /// to a layer it does not receive yet needs a keyframe of it.
    pub(super) fn choose_layers(&mut self, now: Instant, config: &CoreConfig, out: &mut Outputs) {
        self.layers_changed = false;
        self.next_layer_check = Some(now + LAYER_CHECK);
        let mut keyframes: Vec<(TrackKey, u8)> = Vec::new();
        for (key, track) in &mut self.tracks {
            if track.kind != Kind::Video {
                continue;
            }
            let simulcast = track.rids.iter().any(Option::is_some);
            let mut highest_wanted = None;
            for sub in &mut track.subscriptions {
                let view = self
                    .participants
                    .get(&sub.subscriber)
                    .and_then(|p| p.views.get(&(key.publisher, track.source)))
                    .copied();
                let target = track.layers.choose(view, now);
                if sub.set_target(target, now)
                    && let Some(layer) = target
                    && !keyframes.contains(&(*key, layer))
                {
                    keyframes.push((*key, layer));
                }
                if simulcast {
                    let wanted = track.layers.wanted(view, MAX_LAYERS as u8);
                    highest_wanted = highest_wanted.max(wanted);
                }
            }
            if simulcast && let Some(active) = track.dynacast.update(now, highest_wanted) {
                out.stats.dynacast_changes += 1;
                out.event(
                    key.publisher,
                    Event::PublisherLayers {
                        source: track.source,
                        active: LAYER_RIDS
                            .iter()
                            .zip(active)
                            .filter_map(|(rid, on)| on.then_some(*rid))
                            .collect(),
                    },
                );
            }
        }
        for (key, layer) in keyframes {
            out.stats.layer_switch_keyframes += 1;
            self.request_keyframe(now, key, layer, config, out);
        }
    }

    /// The layer `subscriber` wants on its m-line `mid` of `key`: the one
    /// it is moving to, else the one it receives.
    pub(super) fn layer_wanted(&self, key: TrackKey, subscriber: ParticipantId, mid: Mid) -> u8 {
        self.tracks
            .get(&key)
            .and_then(|t| t.subscription(subscriber, mid))
            .and_then(|s| s.target.or(s.current))
            .unwrap_or(0)
    }
}

/// Most views one participant may have recorded (a room of 100 has at
/// most 100 × 2 video tracks).
const VIEWS_MAX: usize = 512;
