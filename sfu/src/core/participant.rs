//! A participant's two connections, what its published m-lines carry, and
//! the m-lines of its subscribe connection.

use super::CoreConfig;
use super::bandwidth::Downlink;
use super::layers::layer_of_rid;
use super::leg::{LegError, LegRtc};
use super::negotiation::SubscribeLines;
use super::playout::RepairNeed;
use super::repair::ResendBudget;
use crate::api::{Kind, Leg, ParticipantId, Source, TrackLabel, View};
use rustc_hash::FxHashMap;
use std::time::Instant;
use str0m::media::{Mid, Rid};
use str0m::rtp::Ssrc;

/// One participant in the media plane.
pub struct Participant {
    /// Signaling's id for it.
    pub id: ParticipantId,
    /// Browser → SFU.
    pub publish: LegRtc,
    /// SFU → browser.
    pub subscribe: LegRtc,
    /// The subscribe connection's m-lines and offer state.
    pub lines: SubscribeLines,
    /// When it joined.
    joined: Instant,
    /// In the room's queue of subscribe offers to make.
    pub offer_queued: bool,
    /// When its last subscribe offer was made.
    pub last_offer: Option<Instant>,
    /// How many NACKed packets it may still have resent.
    pub resend_budget: ResendBudget,
    /// What the browser says each of its m-lines carries.
    labels: FxHashMap<String, Source>,
    /// Incoming SSRC → the m-line and simulcast layer it belongs to
    /// (cache of str0m's lookup).
    ssrc_mid: FxHashMap<Ssrc, Incoming>,
    /// What it shows of others' video tracks, by (publisher, source).
    pub views: FxHashMap<(ParticipantId, Source), View>,
    /// What its downlink carries, as estimated.
    pub downlink: Downlink,
    /// Whether its video needs repairs (a playout floor, see
    /// `crate::core::playout`).
    pub repairs: RepairNeed,
    /// Its sources a host holds: nothing of theirs is forwarded.
    pub held: Vec<Source>,
}

/// Where an incoming SSRC's packets belong.
#[derive(Debug, Clone, Copy)]
pub struct Incoming {
    /// The publish m-line.
    pub mid: Mid,
    /// The simulcast layer (0 without simulcast).
    pub layer: u8,
    /// The layer's RTP stream id, when it has one.
    pub rid: Option<Rid>,
}

impl Participant {
    /// Both connections, fresh.
    pub fn new(now: Instant, id: ParticipantId, config: &CoreConfig) -> Result<Self, LegError> {
        Ok(Self {
            id,
            publish: LegRtc::new(now, config, Leg::Publish)?,
            subscribe: LegRtc::new(now, config, Leg::Subscribe)?,
            lines: SubscribeLines::default(),
            joined: now,
            offer_queued: false,
            last_offer: None,
            resend_budget: ResendBudget::default(),
            labels: FxHashMap::default(),
            ssrc_mid: FxHashMap::default(),
            views: FxHashMap::default(),
            downlink: Downlink::default(),
            repairs: RepairNeed::default(),
            held: Vec::new(),
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
    /// media timeout after the last datagram on a connected leg, or, while
    /// neither leg has connected, the join timeout after joining.
    pub fn silence_deadline(&self, config: &CoreConfig) -> Instant {
        [&self.publish, &self.subscribe]
            .into_iter()
            .filter(|leg| leg.connected)
            .map(|leg| leg.last_heard)
            .max()
            .map_or(self.joined + config.join_media_timeout, |heard| {
                heard + config.media_timeout
            })
    }

    /// Whether either connection has ever connected.
    pub fn has_connected(&self) -> bool {
        self.publish.connected || self.subscribe.connected
    }

    /// Records the labels of the browser's m-lines (those of its latest
    /// offer replace earlier ones).
    pub fn set_labels(&mut self, labels: Vec<TrackLabel>) {
        self.labels = labels.into_iter().map(|l| (l.mid, l.source)).collect();
    }

    /// What the m-line `mid` carries: the browser's label, or by kind.
    pub fn label(&self, mid: Mid, kind: Kind) -> Source {
        match self.labels.get(&*mid) {
            Some(source) => *source,
            None if kind == Kind::Audio => Source::Microphone,
            None => Source::Camera,
        }
    }

    /// The publish m-line and layer an incoming SSRC belongs to.
    pub fn incoming(&mut self, ssrc: Ssrc) -> Option<Incoming> {
        if let Some(known) = self.ssrc_mid.get(&ssrc) {
            return Some(*known);
        }
        let mut api = self.publish.rtc.direct_api();
        let stream = api.stream_rx(&ssrc)?;
        let rid = stream.rid();
        let incoming = Incoming {
            mid: stream.mid(),
            layer: layer_of_rid(rid.as_deref()),
            rid,
        };
        self.ssrc_mid.insert(ssrc, incoming);
        Some(incoming)
    }
}
