//! A participant's two connections and the state of its subscriptions.

use super::CoreConfig;
use super::leg::{LegError, LegEvent, LegRtc};
use super::outbox::Outbox;
use super::room::TrackKey;
use crate::api::{Kind, Leg, ParticipantId, Source, TrackLabel};
use rustc_hash::FxHashMap;
use std::time::{Duration, Instant};
use str0m::change::SdpPendingOffer;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::rtp::Ssrc;

/// An m-line of the subscribe connection that carries a track.
#[derive(Debug, Clone, Copy)]
struct OfferedLine {
    mid: Mid,
    key: TrackKey,
    kind: Kind,
    source: Source,
}

/// One participant in the media plane.
pub struct Participant {
    /// Signaling's id for it.
    pub id: ParticipantId,
    /// Browser → SFU.
    pub publish: LegRtc,
    /// SFU → browser.
    pub subscribe: LegRtc,
    /// What the browser says each of its m-lines carries.
    labels: FxHashMap<String, Source>,
    /// Incoming SSRC → the m-line it belongs to (cache of str0m's lookup).
    ssrc_mid: FxHashMap<Ssrc, Mid>,
    /// The subscribe offer awaiting the browser's answer.
    pending_offer: Option<SdpPendingOffer>,
    /// The room changed while an offer was out; offer again after it.
    renegotiate_after_answer: bool,
    /// Live m-lines of the subscribe connection.
    offered: Vec<OfferedLine>,
    /// Lines in the outstanding offer that start forwarding once answered.
    newly_offered: Vec<(TrackKey, Mid)>,
    /// Lines the last offer turned off.
    retired: Vec<(TrackKey, Mid)>,
}

impl Participant {
    /// Both connections, fresh.
    pub fn new(now: Instant, id: ParticipantId, config: &CoreConfig) -> Result<Self, LegError> {
        Ok(Self {
            id,
            publish: LegRtc::new(now, config.candidate, config.codec)?,
            subscribe: LegRtc::new(now, config.candidate, config.codec)?,
            labels: FxHashMap::default(),
            ssrc_mid: FxHashMap::default(),
            pending_offer: None,
            renegotiate_after_answer: false,
            offered: Vec::new(),
            newly_offered: Vec::new(),
            retired: Vec::new(),
        })
    }

    /// One of the two connections.
    pub fn leg_mut(&mut self, leg: Leg) -> &mut LegRtc {
        match leg {
            Leg::Publish => &mut self.publish,
            Leg::Subscribe => &mut self.subscribe,
        }
    }

    /// When this participant counts as gone if nothing more arrives: the
    /// media timeout after the last datagram on a connected leg.
    pub fn silence_deadline(&self, timeout: Duration) -> Option<Instant> {
        [&self.publish, &self.subscribe]
            .into_iter()
            .filter(|leg| leg.connected)
            .map(|leg| leg.last_heard)
            .max()
            .map(|heard| heard + timeout)
    }

    /// Records the labels of the browser's m-lines.
    pub fn set_labels(&mut self, labels: Vec<TrackLabel>) {
        for label in labels {
            self.labels.insert(label.mid, label.source);
        }
    }

    /// What the m-line `mid` carries: the browser's label, or by kind.
    pub fn label(&self, mid: Mid, kind: Kind) -> Source {
        match self.labels.get(&*mid) {
            Some(source) => *source,
            None if kind == Kind::Audio => Source::Microphone,
            None => Source::Camera,
        }
    }

    /// The publish m-line an incoming SSRC belongs to.
    pub fn mid_of(&mut self, ssrc: Ssrc) -> Option<Mid> {
        if let Some(mid) = self.ssrc_mid.get(&ssrc) {
            return Some(*mid);
        }
        let mid = self.publish.rtc.direct_api().stream_rx(&ssrc)?.mid();
        self.ssrc_mid.insert(ssrc, mid);
        Some(mid)
    }

    /// The track carried on the subscribe m-line `mid`.
    pub fn track_on_mid(&self, mid: Mid) -> Option<TrackKey> {
        self.offered.iter().find(|l| l.mid == mid).map(|l| l.key)
    }

    /// Every live subscribe m-line: (mid, track, kind, source).
    pub fn offered_tracks(&self) -> impl Iterator<Item = (Mid, TrackKey, Kind, Source)> + '_ {
        self.offered
            .iter()
            .map(|l| (l.mid, l.key, l.kind, l.source))
    }

    /// Whether the room changed while an offer was out.
    pub fn wants_renegotiation(&self) -> bool {
        self.renegotiate_after_answer && self.pending_offer.is_none()
    }

    /// Takes the outstanding offer, to accept an answer against it.
    pub fn take_pending_offer(&mut self) -> Option<SdpPendingOffer> {
        self.pending_offer.take()
    }

    /// Puts back an offer whose answer could not be parsed.
    pub fn restore_pending_offer(&mut self, pending: SdpPendingOffer) {
        self.pending_offer = Some(pending);
    }

    /// Lines the answered offer added.
    pub fn take_newly_offered(&mut self) -> Vec<(TrackKey, Mid)> {
        std::mem::take(&mut self.newly_offered)
    }

    /// Lines the last offer turned off.
    pub fn retired_tracks(&mut self) -> Vec<(TrackKey, Mid)> {
        std::mem::take(&mut self.retired)
    }

    /// Creates an offer that makes the subscribe connection carry exactly
    /// `wanted`. `Ok(None)` when nothing changes or an offer is already out
    /// (then a new one follows its answer).
    pub fn offer_tracks(
        &mut self,
        wanted: &[(TrackKey, Kind, Source)],
        transmits: &mut Outbox,
        events: &mut Vec<LegEvent>,
    ) -> Result<Option<String>, LegError> {
        if self.pending_offer.is_some() {
            self.renegotiate_after_answer = true;
            return Ok(None);
        }
        self.renegotiate_after_answer = false;
        let to_add: Vec<_> = wanted
            .iter()
            .filter(|(key, _, _)| !self.offered.iter().any(|l| l.key == *key))
            .copied()
            .collect();
        let to_remove: Vec<OfferedLine> = self
            .offered
            .iter()
            .filter(|l| !wanted.iter().any(|(key, _, _)| *key == l.key))
            .copied()
            .collect();
        if to_add.is_empty() && to_remove.is_empty() {
            return Ok(None);
        }
        let Self {
            subscribe,
            offered,
            newly_offered,
            retired,
            ..
        } = self;
        let applied = subscribe.mutate(transmits, events, |rtc| {
            let mut api = rtc.sdp_api();
            for (key, kind, source) in &to_add {
                let media = match kind {
                    Kind::Audio => MediaKind::Audio,
                    Kind::Video => MediaKind::Video,
                };
                // msid: the stream groups a participant's tracks; the track
                // id names publisher and m-line.
                let stream_id = key.publisher.to_string();
                let track_id = format!("{}-{}", key.publisher, key.mid);
                let mid = api.add_media(
                    media,
                    Direction::SendOnly,
                    Some(stream_id),
                    Some(track_id),
                    None,
                );
                offered.push(OfferedLine {
                    mid,
                    key: *key,
                    kind: *kind,
                    source: *source,
                });
                newly_offered.push((*key, mid));
            }
            for line in &to_remove {
                api.set_direction(line.mid, Direction::Inactive);
                offered.retain(|l| l.mid != line.mid);
                newly_offered.retain(|(_, mid)| *mid != line.mid);
                retired.push((line.key, line.mid));
            }
            api.apply()
        })?;
        Ok(applied.map(|(offer, pending)| {
            self.pending_offer = Some(pending);
            offer.to_sdp_string()
        }))
    }
}
