//! Which simulcast layer each subscriber receives of each video track:
//! chosen from what the subscriber shows of the track (its `track-view`)
//! and which layers the publisher is sending, again whenever either
//! changes and at least every [`LAYER_CHECK`] (a layer may have stopped).
//! The same pass tells publishers which layers anyone needs (dynacast,
//! see `crate::core::dynacast`) and sets each video subscription's
//! playout floor (`crate::core::playout`).

use super::Room;
use crate::api::{Event, Kind, Leg, ParticipantId, Source, View};
use crate::core::bandwidth::{Demand, allocate, desired};
use crate::core::forward::TrackKey;
use crate::core::layers::{LAYER_RIDS, MAX_LAYERS};
use crate::core::{CoreConfig, Outputs};
use rustc_hash::FxHashMap;
use std::time::{Duration, Instant};
use str0m::media::Mid;

/// How often layers are chosen again without a reason.
const LAYER_CHECK: Duration = Duration::from_millis(500);

/// A subscriber still waiting for the keyframe of a new layer this long
/// after asking asks again (at the next check). Longer than the 300 ms in
/// which a browser lets further requests pass, and than the round trip of
/// most paths; as long as the default keyframe throttle.
const KEYFRAME_RETRY: Duration = Duration::from_millis(500);

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

    /// Chooses every video subscription's layer again: what each
    /// subscriber's views ask for, fitted to its downlink estimate (see
    /// `crate::core::bandwidth`). A subscriber moved to a layer it does not
    /// receive yet needs a keyframe of it. Also tells publishers which
    /// layers anyone wants (dynacast).
    pub(super) fn choose_layers(&mut self, now: Instant, config: &CoreConfig, out: &mut Outputs) {
        self.layers_changed = false;
        self.next_layer_check = Some(now + LAYER_CHECK);
        let demands = self.collect_demands(now, config.max_video_layer, out);
        let mut keyframes: Vec<(TrackKey, u8)> = Vec::new();
        for (subscriber, wants) in demands {
            let Some(participant) = self.participants.get_mut(&subscriber) else {
                continue;
            };
            if let Some(bps) = participant.subscribe.estimate() {
                participant.downlink.on_estimate(now, bps);
            }
            let (repairs, round_trip) = (participant.repairs, participant.subscribe.round_trip());
            let budget = config
                .bandwidth_estimation
                .then(|| participant.downlink.budget());
            let targets: Vec<Option<u8>> = match budget {
                Some(budget) => allocate(&wants.demands, wants.audio, budget),
                None => wants.demands.iter().map(|d| d.wanted).collect(),
            };
            // Whether the link holds this subscriber below what it shows.
            let mut link_limited = false;
            if config.bandwidth_estimation {
                let desire = desired(&wants.demands, &targets, wants.audio);
                link_limited = desire.spend < desire.full;
                if let Some(desired) = participant.downlink.desired_update(now, desire) {
                    let leg = &mut participant.subscribe;
                    let result = self.pending.collect(subscriber, Leg::Subscribe, |events| {
                        leg.set_desired_bitrate(desired, out.transmits, events)
                    });
                    if let Err(e) = result {
                        self.failed.push((subscriber, e.to_string()));
                    }
                }
            }
            for ((key, index), target) in wants.slots.into_iter().zip(targets) {
                let publisher_rtt = self
                    .participants
                    .get(&key.publisher)
                    .and_then(|p| p.subscribe.round_trip());
                let Some(sub) = self
                    .tracks
                    .get_mut(&key)
                    .and_then(|t| t.subscriptions.get_mut(index))
                else {
                    continue;
                };
                // A playout floor helps a viewer whose packets get lost on
                // the way; one whose link is full loses them to congestion,
                // which a longer buffer does not repair. There it was also
                // measured to hurt: a simulated 300 kbit/s viewer's
                // estimate settled ~20 % lower with the floor and its video
                // paused (sfu/tests/simulcast.rs, weak link), for reasons
                // not yet understood.
                let floor = if link_limited {
                    None
                } else {
                    repairs.floor(now, round_trip, publisher_rtt)
                };
                sub.playout.update(now, floor);
                let ask = sub.set_target(target, now) || sub.keyframe_overdue(now, KEYFRAME_RETRY);
                if ask
                    && let Some(layer) = target
                    && !keyframes.contains(&(key, layer))
                {
                    keyframes.push((key, layer));
                }
            }
        }
        for (key, layer) in keyframes {
            out.stats.layer_switch_keyframes += 1;
            self.request_keyframe(now, key, layer, config, out);
        }
    }

    /// What every subscriber asks of the room's tracks: its video views
    /// with their costs (no simulcast layer above `max_layer`), and its
    /// audio. Runs dynacast on the way.
    fn collect_demands(
        &mut self,
        now: Instant,
        max_layer: u8,
        out: &mut Outputs,
    ) -> FxHashMap<ParticipantId, SubscriberWants> {
        let dominant = self.dominance.dominant();
        let mut demands: FxHashMap<ParticipantId, SubscriberWants> = FxHashMap::default();
        for (key, track) in &mut self.tracks {
            track.layers.measure(now);
            let simulcast = track.rids.iter().any(Option::is_some);
            if track.kind == Kind::Audio {
                let cost = track.layers.cost(0, false).min(AUDIO_MAX_BPS);
                for sub in &track.subscriptions {
                    demands.entry(sub.subscriber).or_default().audio += cost;
                }
                continue;
            }
            let mut highest_wanted = None;
            for (index, sub) in track.subscriptions.iter().enumerate() {
                let view = self
                    .participants
                    .get(&sub.subscriber)
                    .and_then(|p| p.views.get(&(key.publisher, track.source)))
                    .copied();
                // A track without simulcast has only layer 0: the cap
                // leaves it alone.
                let cap = |layer: Option<u8>| layer.map(|l| l.min(max_layer));
                let wanted = cap(track.layers.choose(view, now));
                if simulcast {
                    highest_wanted =
                        highest_wanted.max(cap(track.layers.wanted(view, MAX_LAYERS as u8)));
                }
                let layers = if simulcast {
                    max_layer.min(MAX_LAYERS as u8 - 1) + 1
                } else {
                    1
                };
                let costs = [0, 1, 2].map(|l: u8| {
                    let usable = l < layers && (track.layers.is_live(l, now) || Some(l) == wanted);
                    usable.then(|| track.layers.cost(l, simulcast))
                });
                let entry = demands.entry(sub.subscriber).or_default();
                entry.slots.push((*key, index));
                entry.demands.push(Demand {
                    priority: priority(track.source, Some(key.publisher) == dominant, view),
                    wanted,
                    current: sub.current.or(sub.target),
                    costs,
                });
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
        demands
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

/// What one subscriber asks of the room's tracks.
#[derive(Default)]
struct SubscriberWants {
    /// Its video subscriptions: (track, index in the track's
    /// subscriptions), in the order of `demands`.
    slots: Vec<(TrackKey, usize)>,
    /// What each of them asks for and costs.
    demands: Vec<Demand>,
    /// Bits per second of the audio it receives (always forwarded).
    audio: u64,
}

/// The most an audio track is counted at (Opus in stereo at its highest
/// is 510 kbit/s; a microphone is ~40–64).
const AUDIO_MAX_BPS: u64 = 128_000;

/// Which of a subscriber's video tracks are served first: shared screens,
/// then the active speaker's camera, then the others by displayed size,
/// largest first (a track shown without a size counts as large).
fn priority(source: Source, speaking: bool, view: Option<View>) -> (u8, u64) {
    let class = match source {
        Source::Screen => 0,
        _ if speaking => 1,
        _ => 2,
    };
    let area = view.map_or(u64::MAX, |v| u64::from(v.width) * u64::from(v.height));
    (class, u64::MAX - area)
}

/// Most views one participant may have recorded (a room of 100 has at
/// most 100 × 2 video tracks).
const VIEWS_MAX: usize = 512;
