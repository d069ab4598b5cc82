//! How much a subscriber's downlink carries, and how the room spends it.
//!
//! str0m's send-side estimator (Google congestion control over the TWCC
//! feedback browsers send) gives each subscribe connection an estimate of
//! the bitrate the path to the browser sustains. [`Downlink`] keeps it with
//! a short history; [`allocate`] spends it by priority: audio always, then
//! shared screens, the active speaker, and the other visible tiles, largest
//! first. A track that does not fit even at its lowest layer is paused.
//!
//! Downgrades are quick (the latest estimate counts at once), upgrades wait
//! for a steady one: a layer above the one a subscriber receives is only
//! taken when the lowest estimate of the last [`UPGRADE_HOLD`] pays for it.
//! LiveKit's stream allocator works alike.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long the estimate must have allowed a higher layer before a
/// subscriber is moved up to it.
pub const UPGRADE_HOLD: Duration = Duration::from_millis(1500);

/// Where a subscribe connection's estimator starts, before feedback:
/// WebRTC's own start bitrate (a browser's sender starts there too), audio
/// and a lowest layer or two. Starting higher floods a weak link before
/// the first feedback, and its queue drops audio with the video; probes
/// find more within a few seconds on a good link.
pub const INITIAL_ESTIMATE_BPS: u64 = 300_000;

/// The desired bitrate told to the estimator changes only by more than
/// this share (each rise above the estimate may start a probe).
const DESIRED_STEP: f64 = 0.1;

/// A layer a subscriber receives is kept while it costs up to this much
/// more than what is left of the estimate. Congestion control's estimate
/// swings by about a tenth around the link's capacity; without the margin
/// a subscriber just fitting would lose its video at each dip, and once
/// paused it sends too little for the estimate to climb back.
const KEEP_MARGIN: f64 = 0.15;

/// A subscriber that wants more than it gets is probed for it once its
/// allocation has held this long (probing right after a downgrade only
/// disturbs a link that just proved too small).
const PROBE_AFTER: Duration = Duration::from_secs(2);

/// How long the desired bitrate stays at the goal after a probe: the
/// estimator follows a successful probe with larger ones while it is
/// below the goal, then it goes back to what is spent (no probing).
const PROBE_WINDOW: Duration = Duration::from_secs(2);

/// For this long after a subscriber's first allocation its estimator is
/// told everything the views ask for, so that it probes up from
/// [`INITIAL_ESTIMATE_BPS`] as a browser's sender does from its start (3×
/// and 6× at once, then doubling while each probe is met): a good link is
/// found within a few seconds, and on a weak one the doubling stops at the
/// first probe it cannot carry. Probes are bounded by twice that want.
/// Afterwards [`Downlink::desired_update`] probes one step at a time.
///
/// It must end before str0m's periodic ALR probe, 5 s into an
/// application-limited stretch at twice the desired rate: on a weak link
/// still told everything the views ask, that probe overflowed the queue
/// (one audio packet lost per capped viewer in the `weak` simulation).
const START_RAMP: Duration = Duration::from_secs(4);

/// The first wait between probes for the same goal; each probe that does
/// not reach it doubles the wait, up to [`PROBE_BACKOFF_MAX`].
const PROBE_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between probes for the same goal.
const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(4);

/// One subscriber's downlink estimate.
#[derive(Debug, Default)]
pub struct Downlink {
    /// Estimates of the last [`UPGRADE_HOLD`], oldest first (the latest
    /// one is kept however old).
    history: VecDeque<(Instant, u64)>,
    /// The desired bitrate the estimator was last given.
    desired: u64,
    /// What the allocation spent when it last changed, and since when.
    spend: Option<(u64, Instant)>,
    /// Where a probe stands.
    probe: ProbeStep,
    /// When the next probe may start, and the wait after it.
    next_probe: Option<Instant>,
    backoff: Duration,
    /// The first allocation (the start of [`START_RAMP`]).
    started: Option<Instant>,
}

/// What an allocation spends and could use, bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desire {
    /// What the chosen layers cost (audio included).
    pub spend: u64,
    /// `spend` plus the next step up, what a probe aims for.
    pub goal: u64,
    /// Every track at the layer its view asks for.
    pub full: u64,
}

/// A probe through the desired bitrate: str0m probes when the desired
/// bitrate rises above the estimate, so it is lowered for one check,
/// raised to the goal for one, and set back to what is spent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ProbeStep {
    #[default]
    Idle,
    Lowered,
    Raised(Instant),
}

impl Downlink {
    /// Records the estimator's current estimate, in bits per second.
    pub fn on_estimate(&mut self, now: Instant, bps: u64) {
        self.history.push_back((now, bps));
        while self.history.len() > 1
            && self
                .history
                .front()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) > UPGRADE_HOLD)
        {
            self.history.pop_front();
        }
    }

    /// What the latest estimate allows now (`None` before any).
    pub fn now(&self) -> Option<u64> {
        self.history.back().map(|(_, bps)| *bps)
    }

    /// What the estimate has allowed throughout the last [`UPGRADE_HOLD`]:
    /// the budget for moving up.
    pub fn steady(&self) -> Option<u64> {
        self.history.iter().map(|(_, bps)| *bps).min()
    }

    /// The highest estimate of the last [`UPGRADE_HOLD`]: the budget for
    /// keeping a video at its lowest layer rather than pausing it, so that
    /// only a lasting fall freezes a picture, not a dip.
    pub fn recent_high(&self) -> Option<u64> {
        self.history.iter().map(|(_, bps)| *bps).max()
    }

    /// The three budgets. Before the estimator's first value, what it
    /// starts from (as a browser's sender does): everything at the top
    /// layers would flood a weak link until the first feedback.
    pub fn budget(&self) -> Budget {
        match (self.now(), self.steady(), self.recent_high()) {
            (Some(now), Some(steady), Some(recent_high)) => Budget {
                now,
                steady,
                recent_high,
            },
            _ => Budget::flat(INITIAL_ESTIMATE_BPS),
        }
    }

    /// The desired bitrate to give the estimator now, if it should change.
    /// During [`START_RAMP`] it is everything the views ask for. Then the
    /// estimator is told what the allocation spends, at most half the
    /// estimate (so it does not probe on its own); when the goal (one step
    /// up) is above the estimate and the allocation has held for
    /// [`PROBE_AFTER`], one probe for the goal, then again after a wait
    /// that doubles while the goal stays out of reach.
    pub fn desired_update(&mut self, now: Instant, desire: Desire) -> Option<u64> {
        let Desire { spend, goal, full } = desire;
        let moved = self.spend.is_none_or(|(last, _)| {
            (spend as f64 - last as f64).abs() > last as f64 * DESIRED_STEP
        });
        if moved {
            // After a step up the link has just proved itself: the next
            // probe may follow at once. After a step down, hold.
            let up = self.spend.is_some_and(|(last, _)| spend > last);
            let since = if up { now - PROBE_AFTER } else { now };
            self.spend = Some((spend, since));
            self.next_probe = None;
            self.backoff = PROBE_BACKOFF;
        }
        let started = *self.started.get_or_insert(now);
        if now.saturating_duration_since(started) < START_RAMP {
            let told = self.desired as f64;
            let changed = self.desired == 0 || (full as f64 - told).abs() > told * DESIRED_STEP;
            if changed {
                self.desired = full;
            }
            return changed.then_some(full);
        }
        // Outside of a probe the estimator is told at most half its
        // estimate: it probes on its own while the estimate is under twice
        // the desired bitrate (and at every rise above the estimate), and
        // a probe costs a timer pass per padding packet. Told more, it
        // chases its own successes to tens of Mbit/s.
        let quiet = self.now().map_or(spend, |estimate| spend.min(estimate / 2));
        let tell = match self.probe {
            ProbeStep::Lowered => {
                self.probe = ProbeStep::Raised(now);
                Some(goal)
            }
            ProbeStep::Raised(at) if moved || now.saturating_duration_since(at) >= PROBE_WINDOW => {
                self.probe = ProbeStep::Idle;
                Some(quiet)
            }
            ProbeStep::Raised(_) => None,
            ProbeStep::Idle => {
                let held = self
                    .spend
                    .is_some_and(|(_, since)| now.saturating_duration_since(since) >= PROBE_AFTER);
                let short = self.now().is_some_and(|estimate| goal > estimate);
                let due = self.next_probe.is_none_or(|at| now >= at);
                if held && short && due && goal > spend {
                    self.probe = ProbeStep::Lowered;
                    self.next_probe = Some(now + self.backoff);
                    self.backoff = (self.backoff * 2).min(PROBE_BACKOFF_MAX);
                    Some(spend / 2)
                } else {
                    let told = self.desired as f64;
                    let changed =
                        self.desired == 0 || (quiet as f64 - told).abs() > told * DESIRED_STEP;
                    changed.then_some(quiet)
                }
            }
        };
        if let Some(bps) = tell {
            self.desired = bps;
        }
        tell
    }
}

/// What a subscriber's allocation may spend, bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The latest estimate: for keeping a layer or stepping down.
    pub now: u64,
    /// The lowest of the last seconds: for stepping up.
    pub steady: u64,
    /// The highest of the last seconds: for keeping a video's lowest
    /// layer instead of pausing it.
    pub recent_high: u64,
}

impl Budget {
    /// The same budget for every purpose.
    fn flat(bps: u64) -> Self {
        Self {
            now: bps,
            steady: bps,
            recent_high: bps,
        }
    }
}

/// One video track as a subscriber's allocation sees it.
#[derive(Debug, Clone)]
pub struct Demand {
    /// Lower sorts first: spent on before the others.
    pub priority: (u8, u64),
    /// The layer the subscriber's view asks for (`None`: not shown).
    pub wanted: Option<u8>,
    /// The layer it receives now or is moving to.
    pub current: Option<u8>,
    /// Bits per second of each layer (index = layer), for layers that can
    /// be chosen (live); `None` for the others.
    pub costs: [Option<u64>; 3],
}

/// Spends `budget` on `demands`, in priority order, after `audio`
/// (always forwarded). Returns the layer each demand gets, in the same
/// order: at most the wanted one, lower when it does not fit, `None`
/// (paused) when not even the lowest live layer does.
///
/// A layer being received is kept while it costs up to [`KEEP_MARGIN`]
/// more than what is left; a video at (or falling to) its lowest layer is
/// only paused when even the recent high does not pay for it; stepping up
/// needs the steady budget, except that a paused video resumes at its
/// lowest layer as soon as the latest estimate allows.
pub fn allocate(demands: &[Demand], audio: u64, budget: Budget) -> Vec<Option<u8>> {
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by_key(|&i| demands[i].priority);
    let mut now_left = budget.now.saturating_sub(audio);
    let mut steady_left = budget.steady.saturating_sub(audio);
    let mut high_left = budget.recent_high.saturating_sub(audio);
    let keep = |cost: u64, left: u64| cost as f64 <= left as f64 * (1.0 + KEEP_MARGIN);
    let mut chosen = vec![None; demands.len()];
    for i in order {
        let demand = &demands[i];
        let Some(wanted) = demand.wanted else {
            continue;
        };
        let lowest = demand.costs.iter().position(Option::is_some);
        let fits = (0..=wanted).rev().find_map(|layer| {
            let cost = demand.costs[usize::from(layer)]?;
            let is_lowest = lowest == Some(usize::from(layer));
            let affordable = match demand.current {
                Some(_) if is_lowest => keep(cost, high_left),
                Some(current) if layer == current => keep(cost, now_left),
                Some(current) if layer < current => cost <= now_left,
                None if is_lowest => cost <= now_left,
                _ => cost <= now_left && cost <= steady_left,
            };
            affordable.then_some((layer, cost))
        });
        if let Some((layer, cost)) = fits {
            chosen[i] = Some(layer);
            now_left = now_left.saturating_sub(cost);
            steady_left = steady_left.saturating_sub(cost);
            high_left = high_left.saturating_sub(cost);
        }
    }
    chosen
}

/// What this allocation spends, the goal to probe for, and everything the
/// views ask. The goal is what it spends plus the next step up (the first
/// track in priority order not at the layer it wants, moved one layer up
/// or resumed): probing for that much, rather than for everything, lets a
/// probe succeed on a weak link and the subscriber climb one step at a
/// time.
pub fn desired(demands: &[Demand], chosen: &[Option<u8>], audio: u64) -> Desire {
    let cost = |d: &Demand, layer: Option<u8>| -> u64 {
        layer
            .and_then(|l| d.costs.get(usize::from(l)).copied().flatten())
            .unwrap_or(0)
    };
    let spent: u64 = demands.iter().zip(chosen).map(|(d, c)| cost(d, *c)).sum();
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by_key(|&i| demands[i].priority);
    let step = order.into_iter().find_map(|i| {
        let (demand, now) = (&demands[i], chosen[i]);
        let wanted = demand.wanted?;
        let next = (0..=wanted)
            .filter(|&l| now.is_none_or(|n| l > n))
            .find(|&l| demand.costs[usize::from(l)].is_some())?;
        Some(cost(demand, Some(next)).saturating_sub(cost(demand, now)))
    });
    let full: u64 = demands.iter().map(|d| cost(d, d.wanted)).sum();
    Desire {
        spend: audio + spent,
        goal: audio + spent + step.unwrap_or(0),
        full: audio + full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIMULCAST: [Option<u64>; 3] = [Some(150_000), Some(500_000), Some(1_500_000)];

    fn camera(priority: u64, wanted: u8, current: Option<u8>) -> Demand {
        Demand {
            priority: (2, priority),
            wanted: Some(wanted),
            current,
            costs: SIMULCAST,
        }
    }

    #[test]
    fn spends_by_priority_and_pauses_what_does_not_fit() {
        let screen = Demand {
            priority: (0, 0),
            wanted: Some(0),
            current: Some(0),
            costs: [Some(1_000_000), None, None],
        };
        let demands = [
            camera(2, 2, Some(2)),
            screen,
            camera(1, 2, Some(2)),
            camera(3, 0, None),
        ];
        // 64k of audio, the screen 1M, then ~1.14M for three cameras: h
        // for the first two in priority, nothing left for the third.
        let got = allocate(&demands, 64_000, Budget::flat(2_200_000));
        assert_eq!(got, vec![Some(1), Some(0), Some(1), None]);
    }

    #[test]
    fn downgrades_at_once_upgrades_only_on_a_steady_estimate() {
        let budget = |now, steady, recent_high| Budget {
            now,
            steady,
            recent_high,
        };
        let demands = [camera(0, 2, Some(1))];
        // Now enough for f, but not steadily: stays on h.
        let got = allocate(&demands, 0, budget(2_000_000, 600_000, 2_000_000));
        assert_eq!(got, vec![Some(1)]);
        // Steady too: up to f.
        let got = allocate(&demands, 0, budget(2_000_000, 1_600_000, 2_000_000));
        assert_eq!(got, vec![Some(2)]);
        // The estimate falls: down to q at once.
        let got = allocate(&demands, 0, budget(300_000, 300_000, 1_600_000));
        assert_eq!(got, vec![Some(0)]);
        // A dip of less than the margin keeps what flows.
        let on_f = [camera(0, 2, Some(2))];
        assert_eq!(allocate(&on_f, 0, Budget::flat(1_400_000)), vec![Some(2)]);
        assert_eq!(allocate(&on_f, 0, Budget::flat(1_200_000)), vec![Some(1)]);
        // The lowest layer is paused only when the recent high is short.
        let on_q = [camera(0, 2, Some(0))];
        let got = allocate(&on_q, 0, budget(50_000, 50_000, 140_000));
        assert_eq!(got, vec![Some(0)]);
        assert_eq!(allocate(&on_q, 0, Budget::flat(100_000)), vec![None]);
        // A paused track resumes at its lowest layer as soon as the
        // current estimate pays for it; higher ones need a steady one.
        let paused = [camera(0, 2, None)];
        assert_eq!(allocate(&paused, 0, Budget::flat(100_000)), vec![None]);
        let got = allocate(&paused, 0, budget(600_000, 100_000, 600_000));
        assert_eq!(got, vec![Some(0)]);
        assert_eq!(allocate(&paused, 0, Budget::flat(600_000)), vec![Some(1)]);
    }

    #[test]
    fn probes_aim_one_step_up() {
        let demands = [camera(0, 2, None), camera(1, 2, None)];
        // Both paused on 200k: probe for audio and the first one's q.
        let full = 64_000 + 3_000_000;
        let got = desired(&demands, &[None, None], 64_000);
        assert_eq!((got.spend, got.goal, got.full), (64_000, 214_000, full));
        // The first on h: next is its f (1.5M instead of 500k).
        let spend = 64_000 + 500_000 + 150_000;
        let got = desired(&demands, &[Some(1), Some(0)], 64_000);
        assert_eq!((got.spend, got.goal), (spend, spend + 1_000_000));
        // Everything as wanted: no step.
        let got = desired(&demands, &[Some(2), Some(2)], 0);
        assert_eq!((got.spend, got.goal), (3_000_000, 3_000_000));
    }

    #[test]
    fn unshown_tracks_cost_nothing() {
        let hidden = Demand {
            wanted: None,
            ..camera(0, 2, Some(2))
        };
        let demands = [hidden, camera(1, 2, None)];
        let got = allocate(&demands, 0, Budget::flat(1_500_000));
        assert_eq!(got, vec![None, Some(2)]);
    }

    #[test]
    fn the_steady_estimate_is_the_lowest_of_the_hold() {
        let t0 = Instant::now();
        let mut d = Downlink::default();
        assert_eq!(d.now(), None);
        d.on_estimate(t0, 2_000_000);
        d.on_estimate(t0 + Duration::from_millis(500), 300_000);
        d.on_estimate(t0 + Duration::from_millis(1000), 1_800_000);
        assert_eq!(d.now(), Some(1_800_000));
        assert_eq!(d.steady(), Some(300_000));
        d.on_estimate(t0 + Duration::from_millis(2100), 1_900_000);
        assert_eq!(d.steady(), Some(1_800_000), "the dip has aged out");
    }

    /// An allocation spending `spend` with `goal` one step up (and
    /// nothing more wanted).
    fn want(spend: u64, goal: u64) -> Desire {
        Desire {
            spend,
            goal,
            full: goal,
        }
    }

    /// A downlink whose start ramp is over at `now`.
    fn past_start(now: Instant) -> Downlink {
        Downlink {
            started: Some(now - START_RAMP),
            ..Downlink::default()
        }
    }

    #[test]
    fn the_start_ramp_asks_for_everything_then_quiets() {
        let t0 = Instant::now();
        let mut d = Downlink::default();
        d.on_estimate(t0, 300_000);
        let desire = Desire {
            spend: 200_000,
            goal: 700_000,
            full: 9_000_000,
        };
        assert_eq!(d.desired_update(t0, desire), Some(9_000_000));
        assert_eq!(d.desired_update(t0 + START_RAMP / 2, desire), None);
        // Then at most half the estimate, which has grown.
        let t1 = t0 + START_RAMP;
        d.on_estimate(t1, 4_000_000);
        let later = Desire {
            spend: 3_000_000,
            ..desire
        };
        assert_eq!(d.desired_update(t1, later), Some(2_000_000));
    }

    #[test]
    fn probes_wait_for_a_held_allocation_and_back_off() {
        let t0 = Instant::now();
        let mut d = past_start(t0);
        d.on_estimate(t0, 300_000);
        // A new allocation: told what it spends, at most half the
        // estimate (150k), no probe yet.
        assert_eq!(d.desired_update(t0, want(200_000, 700_000)), Some(150_000));
        assert_eq!(
            d.desired_update(t0 + PROBE_AFTER / 2, want(200_000, 700_000)),
            None
        );
        // Held: a probe (lower, raise to the goal for the probe window,
        // back).
        let t1 = t0 + PROBE_AFTER;
        assert_eq!(d.desired_update(t1, want(200_000, 700_000)), Some(100_000));
        assert_eq!(d.desired_update(t1, want(200_000, 700_000)), Some(700_000));
        assert_eq!(d.desired_update(t1, want(200_000, 700_000)), None);
        let t2 = t1 + PROBE_WINDOW;
        assert_eq!(d.desired_update(t2, want(200_000, 700_000)), Some(150_000));
        // The goal stays out of reach: each probe waits twice as long as
        // the one before (1 s, 2 s, 4 s after it started).
        assert_eq!(d.desired_update(t2, want(200_000, 700_000)), Some(100_000));
        d.desired_update(t2, want(200_000, 700_000));
        let t3 = t2 + PROBE_WINDOW;
        assert_eq!(d.desired_update(t3, want(200_000, 700_000)), Some(150_000));
        assert_eq!(d.desired_update(t3, want(200_000, 700_000)), Some(100_000));
        d.desired_update(t3, want(200_000, 700_000));
        let t4 = t3 + PROBE_WINDOW;
        assert_eq!(d.desired_update(t4, want(200_000, 700_000)), Some(150_000));
        assert_eq!(
            d.desired_update(t4, want(200_000, 700_000)),
            None,
            "backing off"
        );
        let t5 = t3 + PROBE_BACKOFF_MAX;
        assert_eq!(d.desired_update(t5, want(200_000, 700_000)), Some(100_000));
        // A step up (the probe worked) may probe for the next at once.
        let mut up = past_start(t0);
        up.on_estimate(t0, 300_000);
        up.desired_update(t0, want(200_000, 700_000));
        assert_eq!(
            up.desired_update(t0, want(600_000, 1_600_000)),
            Some(300_000),
            "probe"
        );
        // Nothing more wanted: no probes.
        let mut calm = past_start(t0);
        calm.on_estimate(t0, 3_000_000);
        calm.desired_update(t0, want(1_000_000, 1_000_000));
        assert_eq!(
            calm.desired_update(t0 + PROBE_AFTER * 5, want(1_000_000, 1_000_000)),
            None
        );
    }
}
