//! Offers and answers: a publisher's offer on its publish connection
//! (checked, answered, its m-lines becoming tracks), and the SFU's offers on
//! each subscribe connection as tracks come and go.

use super::Room;
use crate::api::{Event, Kind, Leg, OfferedTrack, ParticipantId, PublishOffer, Source};
use crate::core::forward::{Subscription, Track, TrackKey};
use crate::core::leg::LegEvent;
use crate::core::red::PayloadTypes;
use crate::core::{CoreConfig, Outputs, VideoCodec};
use std::time::{Duration, Instant};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind, Mid};

/// str0m's own resend cache per outgoing stream: unused (NACKs are answered
/// from the track's history), so as small as it goes.
const RTX_CACHE_PACKETS: usize = 0;
const RTX_CACHE_AGE: Duration = Duration::from_millis(100);
/// Subscribe offers a room makes per worker turn when a change concerns
/// everyone (a track published or gone): a bound on how long media waits.
const OFFERS_PER_TURN: usize = 4;
/// Shortest time between two subscribe offers to one participant. The
/// first change after a quiet spell is offered at once; changes that follow
/// within this time (a join storm, people coming and going) wait and go out
/// together in one offer rather than one offer each, which is what a join
/// costs every subscriber (building, parsing and answering an SDP that
/// grows with the room).
const OFFER_INTERVAL: Duration = Duration::from_millis(250);

impl Room {
    /// Applies the browser's offer (checked and parsed by signaling) on its
    /// publish connection.
    pub fn publish_offer(
        &mut self,
        now: Instant,
        id: ParticipantId,
        offer: PublishOffer,
        config: &CoreConfig,
        out: &mut Outputs,
    ) {
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        participant.set_labels(offer.labels);
        let sdp = offer.sdp;
        let answer = self.pending.collect(id, Leg::Publish, |events| {
            participant
                .publish
                .mutate(out.transmits, events, |rtc| rtc.sdp_api().accept_offer(sdp))
        });
        match answer {
            Ok(Ok(answer)) => out.event(id, Event::PublishAnswer { answer }),
            Ok(Err(e)) => out.event(
                id,
                Event::Error {
                    code: "invalid_sdp",
                    message: format!("the offer was refused: {e}"),
                },
            ),
            Err(e) => self.failed.push((id, e.to_string())),
        }
        self.settle(now, config, out);
    }

    /// Applies the browser's answer on its subscribe connection.
    pub fn subscribe_answer(
        &mut self,
        now: Instant,
        id: ParticipantId,
        answer: SdpAnswer,
        config: &CoreConfig,
        out: &mut Outputs,
    ) {
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        let Some(pending) = participant.lines.take_pending_offer() else {
            return out.event(
                id,
                Event::Error {
                    code: "no_offer_pending",
                    message: "an answer arrived but no subscribe offer is outstanding".into(),
                },
            );
        };
        let result = self.pending.collect(id, Leg::Subscribe, |events| {
            participant.subscribe.mutate(out.transmits, events, |rtc| {
                rtc.sdp_api().accept_answer(pending, answer)
            })
        });
        match result {
            Ok(Ok(())) => {
                self.activate_offered(now, id);
                if self
                    .participants
                    .get(&id)
                    .is_some_and(|p| p.lines.wants_renegotiation())
                {
                    self.queue_offer(now, id);
                }
            }
            Ok(Err(e)) => {
                // The offer/answer exchange is broken for this connection.
                self.failed
                    .push((id, format!("subscribe answer refused: {e}")));
            }
            Err(e) => self.failed.push((id, e.to_string())),
        }
        self.settle(now, config, out);
    }

    /// Restarts ICE on `id`'s subscribe connection with its next offer,
    /// made as soon as the offer pacing allows.
    pub fn restart_subscribe_ice(
        &mut self,
        now: Instant,
        id: ParticipantId,
        config: &CoreConfig,
        out: &mut Outputs,
    ) {
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        participant.lines.request_ice_restart();
        self.queue_offer(now, id);
        self.settle(now, config, out);
    }

    /// Adds a trickled remote candidate.
    pub fn candidate(
        &mut self,
        now: Instant,
        id: ParticipantId,
        leg: Leg,
        candidate: &str,
        config: &CoreConfig,
        out: &mut Outputs,
    ) {
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        let line = candidate.trim().trim_start_matches("a=");
        let Ok(candidate) = str0m::Candidate::from_sdp_string(line) else {
            return out.event(
                id,
                Event::Error {
                    code: "invalid_candidate",
                    message: format!("not an ICE candidate: {line:?}"),
                },
            );
        };
        let result = self.pending.collect(id, leg, |events| {
            participant
                .leg_mut(leg)
                .mutate(out.transmits, events, |rtc| {
                    rtc.add_remote_candidate(candidate)
                })
        });
        if let Err(e) = result {
            self.failed.push((id, e.to_string()));
        }
        self.settle(now, config, out);
    }

    /// A publisher's m-line appeared or changed direction.
    pub(super) fn publish_changed(
        &mut self,
        now: Instant,
        id: ParticipantId,
        mid: Mid,
        kind: Option<Kind>,
        direction: Direction,
        codec: VideoCodec,
    ) {
        let key = TrackKey { publisher: id, mid };
        let Some(participant) = self.participants.get(&id) else {
            return;
        };
        let kind = kind.or_else(|| {
            participant.publish.rtc.media(mid).map(|m| match m.kind() {
                MediaKind::Audio => Kind::Audio,
                MediaKind::Video => Kind::Video,
            })
        });
        match (
            direction.is_receiving(),
            self.tracks.contains_key(&key),
            kind,
        ) {
            (true, false, Some(kind)) => {
                let source = participant.label(mid, kind);
                tracing::info!(room = %self.name, participant = %id, mid = %mid, source = source.as_str(), "media: track published");
                let mut track = Track::new(kind, source);
                track.vp8 = kind == Kind::Video && codec == VideoCodec::Vp8;
                self.tracks.insert(key, track);
                self.renegotiate_others(now, id);
            }
            (false, true, _) => {
                tracing::info!(room = %self.name, participant = %id, mid = %mid, "media: track unpublished");
                self.drop_track(now, key);
                self.renegotiate_others(now, id);
            }
            _ => {}
        }
    }

    /// Everyone but `publisher` gets a new subscribe offer, a few per worker
    /// turn ([`Room::offer_some`]): building an offer takes ~0.3 ms for a
    /// subscriber of 118 tracks, so a join in a room of 60 would otherwise
    /// hold up everyone's media for ~18 ms at once.
    pub(super) fn renegotiate_others(&mut self, now: Instant, publisher: ParticipantId) {
        let others: Vec<ParticipantId> = self
            .participants
            .keys()
            .filter(|id| **id != publisher)
            .copied()
            .collect();
        for id in others {
            self.queue_offer(now, id);
        }
    }

    /// Queues a subscribe offer for `id`: due now, or [`OFFER_INTERVAL`]
    /// after its last offer if that was more recent.
    fn queue_offer(&mut self, now: Instant, id: ParticipantId) {
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        if participant.offer_queued {
            return;
        }
        participant.offer_queued = true;
        let due = participant.last_offer.map(|t| t + OFFER_INTERVAL);
        match due.filter(|due| *due > now) {
            Some(due) => {
                self.offer_later.insert((due, id));
            }
            None => self.to_offer.push_back(id),
        }
        self.update_offers_due(now);
    }

    /// When the room next has offers to make.
    fn update_offers_due(&mut self, now: Instant) {
        self.offers_due = if self.to_offer.is_empty() {
            self.offer_later.first().map(|(due, _)| *due)
        } else {
            Some(now)
        };
    }

    /// Makes up to [`OFFERS_PER_TURN`] of the subscribe offers that are
    /// due; the rest wait for the next turn (the room's timeout is due at
    /// once while any remain).
    pub(super) fn offer_some(&mut self, now: Instant, out: &mut Outputs) {
        while let Some(&(due, id)) = self.offer_later.first()
            && due <= now
        {
            self.offer_later.pop_first();
            self.to_offer.push_back(id);
        }
        for _ in 0..OFFERS_PER_TURN {
            let Some(id) = self.to_offer.pop_front() else {
                break;
            };
            if let Some(participant) = self.participants.get_mut(&id) {
                participant.offer_queued = false;
                self.renegotiate(now, id, out);
            }
        }
        self.update_offers_due(now);
    }

    /// Brings `id`'s subscribe connection in line with the room's tracks,
    /// in one offer (see [`crate::core::negotiation::SubscribeLines`]). If
    /// an offer is already out, this waits for its answer: only the SFU
    /// offers on this connection, one offer at a time, so no glare.
    pub(super) fn renegotiate(&mut self, now: Instant, id: ParticipantId, out: &mut Outputs) {
        let wanted: Vec<(TrackKey, Kind, Source)> = self
            .tracks
            .iter()
            .filter(|(k, _)| k.publisher != id)
            .map(|(k, t)| (*k, t.kind, t.source))
            .collect();
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        let offer = self.pending.collect(id, Leg::Subscribe, |events| {
            participant
                .lines
                .offer(&mut participant.subscribe, &wanted, out.transmits, events)
        });
        match offer {
            Ok(Some(offer)) => {
                participant.last_offer = Some(now);
                // Forwarding on lines that lost their track stops now; the
                // line keeps its numbering for the next track it carries.
                for (key, mid) in offer.retired {
                    let sub = self
                        .tracks
                        .get_mut(&key)
                        .and_then(|t| t.unsubscribe(id, mid));
                    if let Some(sub) = sub {
                        participant.lines.park(mid, sub.into_numbering(), now);
                    }
                }
                let tracks = participant
                    .lines
                    .carried()
                    .map(|(mid, kind, carried)| OfferedTrack {
                        mid: mid.to_string(),
                        participant: carried.key.publisher,
                        source: carried.source,
                        kind,
                    })
                    .collect();
                out.event(
                    id,
                    Event::SubscribeOffer {
                        offer: offer.sdp,
                        tracks,
                    },
                );
            }
            Ok(None) => {}
            Err(e) => self.failed.push((id, e.to_string())),
        }
    }

    /// After an answer: start forwarding on every m-line the answer accepted.
    fn activate_offered(&mut self, now: Instant, id: ParticipantId) {
        let Some(subscriber) = self.participants.get_mut(&id) else {
            return;
        };
        let newly = subscriber.lines.take_newly_offered();
        let mut started = Vec::new();
        for (key, mid) in newly {
            let (Some(publisher), Some(subscriber)) = (
                self.participants.get(&key.publisher),
                self.participants.get(&id),
            ) else {
                continue;
            };
            let pt_map = payload_type_map(&publisher.publish.rtc, &subscriber.subscribe.rtc);
            let (Some(track), Some(subscriber)) =
                (self.tracks.get_mut(&key), self.participants.get_mut(&id))
            else {
                continue;
            };
            let Some(ssrc) = subscriber.subscribe.send_stream_of(mid) else {
                tracing::warn!(room = %self.name, participant = %id, mid = %mid, "media: no send stream for an answered m-line");
                continue;
            };
            let view = subscriber
                .views
                .get(&(key.publisher, track.source))
                .copied();
            let target = match track.kind {
                Kind::Video => track.layers.choose(view, now),
                Kind::Audio => Some(0),
            };
            track.subscriptions.push(Subscription::new(
                id,
                mid,
                ssrc,
                subscriber.lines.numbering_for(mid, now),
                pt_map,
                target,
                now,
            ));
            if track.kind == Kind::Video {
                // A new viewer needs a keyframe to start decoding.
                self.pending
                    .queue
                    .push_back((id, Leg::Subscribe, LegEvent::KeyframeRequest(mid)));
            }
            started.push((mid, track.kind == Kind::Video));
        }
        // Video NACKs come to the room (answered from the track's history,
        // one for all subscribers); str0m's per-stream resend cache (2000
        // packets / 3 s by default) and its RTX ratio cap (a per-packet byte
        // history) would only cost memory.
        let Some(subscriber) = self.participants.get_mut(&id) else {
            return;
        };
        if started.is_empty() {
            return;
        }
        let configured = subscriber.subscribe.configure(|rtc| {
            for (mid, resends) in started {
                if let Some(stream) = rtc.direct_api().stream_tx_by_mid(mid, None) {
                    stream.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, None);
                    stream.set_external_resends(resends);
                }
            }
        });
        if let Err(e) = configured {
            self.failed.push((id, e.to_string()));
        }
    }
}

/// Maps each payload type the publisher negotiated to the subscriber's
/// payload type for the same codec (the two sides number codecs
/// independently), RED included; a publisher's RED audio goes to a
/// subscriber without RED as its primary block.
fn payload_type_map(publisher: &str0m::Rtc, subscriber: &str0m::Rtc) -> PayloadTypes {
    let outgoing = subscriber.codec_config();
    let mut map = Vec::new();
    let mut unwrap_red = None;
    for p in publisher.codec_config().params() {
        let Some(target) = outgoing
            .match_params(*p)
            .or_else(|| outgoing.find(|o| o.spec().codec == p.spec().codec))
        else {
            continue;
        };
        map.push((p.pt(), target.pt()));
        match (p.red(), target.red()) {
            (Some(from), Some(to)) => map.push((from, to)),
            (Some(from), None) => unwrap_red = Some((from, target.pt())),
            _ => {}
        }
    }
    let types = PayloadTypes::new(map);
    match unwrap_red {
        Some((red, primary)) => types.unwrapping_red(red, primary),
        None => types,
    }
}
