//! Who is speaking, from the audio levels browsers put in every microphone
//! packet (RFC 6464: the level in -dBov, 127 silence, 0 loudest).
//!
//! Each microphone's packets are averaged over [`INTERVAL`]; an interval
//! above the speech threshold raises the participant's smoothed score,
//! a quiet one lowers it. The dominant speaker changes only when another
//! participant's score has been clearly higher for [`TAKEOVER`], so a cough
//! or a short "mm-hm" does not move the spotlight, while someone who starts
//! talking over others takes it in well under a second. The room reports
//! the speakers (dominant first, then by score) at most every
//! [`REPORT_EVERY`], and only when something changed. The idea follows
//! Jitsi's dominant speaker identification and LiveKit's speaker observer,
//! much simplified.

use crate::api::ParticipantId;
use std::time::{Duration, Instant};

/// How often levels are averaged and scores updated.
pub const INTERVAL: Duration = Duration::from_millis(100);
/// How long a challenger must lead before it becomes the dominant speaker.
const TAKEOVER: Duration = Duration::from_millis(400);
/// A challenger keeps its claim through pauses this short (between words,
/// syllables or beeps, its score may dip below the lead for an interval).
const CHALLENGE_GAP: Duration = Duration::from_millis(300);
/// Reports to the room at most this often.
pub const REPORT_EVERY: Duration = Duration::from_millis(250);
/// An interval whose mean level is louder than this (-dBov) counts as
/// speech: talking into a laptop microphone is -20 to -40, a quiet room
/// below -60.
const SPEECH_DBOV: f32 = 50.0;
/// Weight of the newest interval in a score (about 0.5 s to rise fully).
const RISE: f32 = 0.35;
/// Weight of a quiet interval in a score (about 1 s to fall).
const FALL: f32 = 0.15;
/// A challenger must score this many times the dominant speaker's score.
const LEAD: f32 = 1.3;
/// Scores under this count as silent (not reported).
const SILENT: f32 = 0.05;

/// One microphone's levels during the current interval and its score.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpeechLevel {
    level_sum: u32,
    packets: u32,
    score: f32,
}

impl SpeechLevel {
    /// Records one packet's level (`-127..=0`, str0m's form of RFC 6464).
    pub fn on_packet(&mut self, level: Option<i8>) {
        if let Some(level) = level {
            // 0 silence .. 127 loudest.
            self.level_sum += u32::from(127 - level.unsigned_abs().min(127));
            self.packets += 1;
        }
    }

    /// Ends the interval: the score moves towards how loud it was.
    fn close_interval(&mut self) {
        let loudness = if self.packets == 0 {
            0.0
        } else {
            self.level_sum as f32 / self.packets as f32
        };
        self.level_sum = 0;
        self.packets = 0;
        // 127 - SPEECH_DBOV .. 127 mapped to 0 .. 1.
        let floor = 127.0 - SPEECH_DBOV;
        let speech = ((loudness - floor) / SPEECH_DBOV).clamp(0.0, 1.0);
        let weight = if speech > self.score { RISE } else { FALL };
        self.score += weight * (speech - self.score);
    }

    /// The smoothed score, 0..1.
    pub fn score(&self) -> f32 {
        self.score
    }
}

/// The room's dominant speaker and what it last reported.
#[derive(Debug, Default)]
pub struct Dominance {
    dominant: Option<ParticipantId>,
    /// The participant leading the dominant speaker: since when, and when
    /// it last led.
    challenger: Option<(ParticipantId, Instant, Instant)>,
    last_report: Option<(Instant, Vec<(ParticipantId, u8)>)>,
}

impl Dominance {
    /// Closes the interval for every microphone in `levels` and returns the
    /// speakers to report (dominant first, then by score; levels 0–100), or
    /// `None` when nothing changed or the last report is too recent.
    pub fn tick<'a>(
        &mut self,
        now: Instant,
        levels: impl Iterator<Item = (ParticipantId, &'a mut SpeechLevel)>,
    ) -> Option<Vec<(ParticipantId, u8)>> {
        let mut scores: Vec<(ParticipantId, f32)> = levels
            .map(|(id, level)| {
                level.close_interval();
                (id, level.score())
            })
            .collect();
        scores.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        self.elect(now, &scores);

        let mut speakers: Vec<(ParticipantId, u8)> = scores
            .iter()
            .filter(|(id, score)| *score >= SILENT || Some(*id) == self.dominant)
            .map(|&(id, score)| (id, (score * 100.0).round() as u8))
            .collect();
        if let Some(at) = speakers
            .iter()
            .position(|(id, _)| Some(*id) == self.dominant)
        {
            let dominant = speakers.remove(at);
            speakers.insert(0, dominant);
        }
        if let Some((at, said)) = &self.last_report
            && (now.saturating_duration_since(*at) < REPORT_EVERY || *said == speakers)
        {
            return None;
        }
        self.last_report = Some((now, speakers.clone()));
        Some(speakers)
    }

    /// Moves dominance to a participant who has clearly led for long
    /// enough. `scores` is sorted, loudest first.
    fn elect(&mut self, now: Instant, scores: &[(ParticipantId, f32)]) {
        if let Some(d) = self.dominant
            && !scores.iter().any(|(p, _)| *p == d)
        {
            // Unpublished or left: someone else may take over at once.
            self.dominant = None;
            self.challenger = None;
        }
        let score_of = |id: ParticipantId| {
            scores
                .iter()
                .find(|(p, _)| *p == id)
                .map_or(0.0, |(_, s)| *s)
        };
        let Some(&(loudest, top)) = scores.first() else {
            self.dominant = None;
            self.challenger = None;
            return;
        };
        let current = self.dominant.map(score_of);
        let leads = match (self.dominant, current) {
            (Some(d), _) if d == loudest => false,
            (Some(_), Some(current)) => top >= SILENT * 2.0 && top > current * LEAD,
            _ => top >= SILENT * 2.0,
        };
        if !leads {
            if self
                .challenger
                .is_some_and(|(_, _, last)| now.saturating_duration_since(last) > CHALLENGE_GAP)
            {
                self.challenger = None;
            }
            return;
        }
        match self.challenger {
            Some((id, since, _)) if id == loudest => {
                if now.saturating_duration_since(since) >= TAKEOVER || self.dominant.is_none() {
                    self.dominant = Some(loudest);
                    self.challenger = None;
                } else {
                    self.challenger = Some((id, since, now));
                }
            }
            _ => {
                if self.dominant.is_none() {
                    self.dominant = Some(loudest);
                } else {
                    self.challenger = Some((loudest, now, now));
                }
            }
        }
    }

    /// The dominant speaker.
    pub fn dominant(&self) -> Option<ParticipantId> {
        self.dominant
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TALK: i8 = -25;
    const QUIET: i8 = -90;

    /// Runs `steps` intervals in which each participant's packets have the
    /// level `level_of(id, step)`; returns the dominant speaker after each.
    struct Sim {
        levels: Vec<(ParticipantId, SpeechLevel)>,
        dominance: Dominance,
        now: Instant,
        reports: Vec<Vec<(ParticipantId, u8)>>,
    }

    impl Sim {
        fn new(people: u64) -> Self {
            Self {
                levels: (1..=people)
                    .map(|i| (ParticipantId(i), SpeechLevel::default()))
                    .collect(),
                dominance: Dominance::default(),
                now: Instant::now(),
                reports: Vec::new(),
            }
        }

        fn run(&mut self, steps: usize, level_of: impl Fn(u64) -> i8) -> Vec<Option<u64>> {
            let mut dominant = Vec::new();
            for _ in 0..steps {
                for (id, level) in &mut self.levels {
                    for _ in 0..5 {
                        level.on_packet(Some(level_of(id.0)));
                    }
                }
                self.now += INTERVAL;
                let report = self
                    .dominance
                    .tick(self.now, self.levels.iter_mut().map(|(id, l)| (*id, l)));
                self.reports.extend(report);
                dominant.push(self.dominance.dominant().map(|p| p.0));
            }
            dominant
        }
    }

    #[test]
    fn someone_talking_over_two_others_takes_over_within_a_second() {
        let mut sim = Sim::new(3);
        sim.run(30, |id| if id == 1 { TALK } else { QUIET });
        assert_eq!(sim.dominance.dominant(), Some(ParticipantId(1)));
        // 2 starts talking and 1 stops.
        let after = sim.run(10, |id| if id == 2 { TALK } else { QUIET });
        let took = after
            .iter()
            .position(|d| *d == Some(2))
            .expect("2 takes over");
        assert!(took < 10, "within 1 s (took {} intervals)", took + 1);
        assert!(after[took..].iter().all(|d| *d == Some(2)), "and keeps it");
    }

    #[test]
    fn a_talker_with_short_pauses_takes_over() {
        let mut sim = Sim::new(3);
        sim.run(30, |id| if id == 1 { TALK } else { QUIET });
        // 1 stops; 2 talks in bursts: 200 ms of sound, 100 ms of pause.
        let mut dominant = Vec::new();
        for step in 0..10 {
            dominant.extend(sim.run(1, |id| {
                if id == 2 && step % 3 != 2 {
                    TALK
                } else {
                    QUIET
                }
            }));
        }
        assert_eq!(dominant.last(), Some(&Some(2)), "{dominant:?}");
    }

    #[test]
    fn a_short_cough_does_not_take_over() {
        let mut sim = Sim::new(3);
        sim.run(30, |id| if id == 1 { TALK } else { QUIET });
        // 3 coughs for 200 ms while 1 goes on talking.
        sim.run(2, |id| if id == 1 || id == 3 { -5 } else { QUIET });
        let after = sim.run(20, |id| if id == 1 { TALK } else { QUIET });
        assert!(after.iter().all(|d| *d == Some(1)), "{after:?}");
        // Even a cough while the speaker pauses for breath.
        sim.run(2, |id| if id == 3 { -5 } else { QUIET });
        let after = sim.run(10, |id| if id == 1 { TALK } else { QUIET });
        assert!(after.iter().all(|d| *d == Some(1)), "{after:?}");
    }

    #[test]
    fn reports_are_spaced_and_only_on_change() {
        let mut sim = Sim::new(2);
        sim.run(40, |id| if id == 1 { TALK } else { QUIET });
        // A steady talker: levels settle, reports stop.
        let before = sim.reports.len();
        sim.run(20, |id| if id == 1 { TALK } else { QUIET });
        assert_eq!(
            sim.reports.len(),
            before,
            "nothing changed, nothing reported"
        );
        let first = &sim.reports[0];
        assert_eq!(first[0].0, ParticipantId(1), "the dominant speaker first");
        // At most one report per 250 ms (every 100 ms interval would be 40).
        assert!(before <= 40 * 100 / 250 + 1, "{before} reports");
        // Silence: the speaker fades out of the list, the dominant stays
        // first (with a level near 0) until someone else speaks.
        sim.run(50, |_| QUIET);
        let last = sim.reports.last().expect("reports");
        assert_eq!(last.len(), 1, "{last:?}");
        assert!(last[0].1 < 5, "{last:?}");
    }

    #[test]
    fn levels_map_from_dbov() {
        let mut loud = SpeechLevel::default();
        let mut quiet = SpeechLevel::default();
        for _ in 0..20 {
            loud.on_packet(Some(-10));
            loud.close_interval();
            quiet.on_packet(Some(-80));
            quiet.close_interval();
        }
        assert!(loud.score() > 0.7, "{}", loud.score());
        assert!(quiet.score() < 0.01, "{}", quiet.score());
        loud.on_packet(None);
        loud.close_interval();
        assert!(loud.score() < 0.7, "no level is silence");
    }
}
