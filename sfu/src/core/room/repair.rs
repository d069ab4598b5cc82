//! Repair on behalf of subscribers: keyframe requests to publishers
//! (throttled per track) and NACKed packets resent from the track's history.

use super::Room;
use crate::api::{Kind, Leg, ParticipantId};
use crate::core::forward::TrackKey;
use crate::core::leg::LegEvent;
use crate::core::repair;
use crate::core::{CoreConfig, Outputs};
use std::time::Instant;
use str0m::media::Mid;

impl Room {
    /// Queues a keyframe request for every video subscription of the
    /// track `key` by `subscriber` that `pick` selects, as if the
    /// subscriber asked (the throttle makes it one request per track and
    /// layer however many there are). Used where packets were lost: sent
    /// before a subscribe connection was up (the keyframe asked for at
    /// subscription time may have been among them), or on a path a browser
    /// has just left.
    pub(super) fn request_keyframes(&mut self, pick: impl Fn(&TrackKey, ParticipantId) -> bool) {
        for (key, track) in self.tracks.iter().filter(|(_, t)| t.kind == Kind::Video) {
            for sub in track
                .subscriptions
                .iter()
                .filter(|s| pick(key, s.subscriber))
            {
                self.pending.queue.push_back((
                    sub.subscriber,
                    Leg::Subscribe,
                    LegEvent::KeyframeRequest(sub.mid),
                ));
            }
        }
    }

    /// Asks a track's publisher for a keyframe of one layer, at most once
    /// per throttle interval however many subscribers ask.
    pub(super) fn request_keyframe(
        &mut self,
        now: Instant,
        key: TrackKey,
        layer: u8,
        config: &CoreConfig,
        out: &mut Outputs,
    ) {
        let Some(track) = self.tracks.get_mut(&key) else {
            return;
        };
        if track.kind != Kind::Video {
            return;
        }
        let Some(throttle) = track.keyframes.get_mut(usize::from(layer)) else {
            return;
        };
        if !throttle.admit(now, config.keyframe_throttle) {
            out.stats.keyframe_requests_throttled += 1;
            return;
        }
        let Some(publisher) = self.participants.get_mut(&key.publisher) else {
            return;
        };
        let rid = track.rids[usize::from(layer)];
        let requested = self.pending.collect(key.publisher, Leg::Publish, |events| {
            publisher
                .publish
                .request_keyframe(key.mid, rid, out.transmits, events)
        });
        match requested {
            Ok(true) => {
                track.keyframes[usize::from(layer)].sent(now);
                out.stats.keyframe_requests += 1;
            }
            Ok(false) => {}
            Err(e) => self.failed.push((key.publisher, e.to_string())),
        }
    }

    /// Answers a subscriber's NACK on its m-line `mid` from the track's
    /// history, through its RTX stream.
    pub(super) fn resend(
        &mut self,
        now: Instant,
        id: ParticipantId,
        mid: Mid,
        seqs: &[u64],
        out: &mut Outputs,
    ) {
        let Some(key) = self
            .participants
            .get(&id)
            .and_then(|p| p.lines.track_on(mid))
        else {
            return;
        };
        let (Some(track), Some(subscriber)) =
            (self.tracks.get(&key), self.participants.get_mut(&id))
        else {
            return;
        };
        let Some(sub) = track.subscription(id, mid) else {
            return;
        };
        subscriber.repairs.on_nack(now);
        let (again, unanswered) = repair::resends(sub, track.history_of(sub), seqs);
        out.stats.resends_missed += unanswered.too_old;
        out.stats.resends_not_received += unanswered.not_received;
        for q in again {
            if !subscriber.resend_budget.spend() {
                out.stats.resends_over_budget += 1;
                continue;
            }
            match subscriber
                .subscribe
                .resend_now(now, q.ssrc, &q.write(), out.transmits)
            {
                Ok(true) => out.stats.resends += 1,
                Ok(false) => out.stats.resends_missed += 1,
                Err(e) => {
                    self.failed.push((id, e.to_string()));
                    return;
                }
            }
        }
    }
}
