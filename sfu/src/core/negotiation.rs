//! Negotiation state and rules: the m-lines of a participant's subscribe
//! connection, recycled as tracks come and go, and what a publisher's offer
//! may contain.
//!
//! SDP never removes an m-line: an offer lists every line the connection
//! ever had. So that a subscriber's SDP is bounded by how many tracks it
//! receives at once, not by how many came and went over the meeting, a line
//! whose track is gone turns `inactive` and waits; the next track of the
//! same kind takes it over (direction back to `sendonly`, a new msid naming
//! its publisher), keeping the line's send stream and its [`Numbering`]
//! (sequence numbers, timestamps and VP8 picture ids continue, so the
//! browser sees one stream without a gap).

use super::forward::Numbering;
use super::forward::TrackKey;
use super::leg::{LegError, LegEvent, LegRtc};
use super::outbox::Outbox;
use crate::api::{Kind, SdpRefused, Source, TrackLabel};
use std::time::Instant;
use str0m::change::{SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid};

/// What a subscribe m-line carries now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Carried {
    /// The track.
    pub key: TrackKey,
    /// What it is.
    pub source: Source,
}

/// One m-line of a subscribe connection.
#[derive(Debug)]
struct Line {
    mid: Mid,
    kind: Kind,
    /// `None`: inactive, free for the next track of this kind.
    carries: Option<Carried>,
    /// The numbering of the line's send stream while no track uses it, and
    /// since when.
    parked: Option<(Numbering, Instant)>,
}

/// The m-lines of one subscribe connection and its offer/answer state. Only
/// the SFU offers on this connection, one offer at a time.
#[derive(Debug, Default)]
pub struct SubscribeLines {
    lines: Vec<Line>,
    /// The offer awaiting the browser's answer.
    pending_offer: Option<SdpPendingOffer>,
    /// The room changed while an offer was out; offer again after it.
    renegotiate_after_answer: bool,
    /// Lines of the outstanding offer that start forwarding once answered.
    newly_offered: Vec<(TrackKey, Mid)>,
    /// The next offer restarts ICE (the browser lost its path).
    ice_restart: bool,
}

/// A subscribe offer to send.
#[derive(Debug)]
pub struct SubscribeOffer {
    /// The SDP (turned into text by signaling, off the media worker).
    pub sdp: SdpOffer,
    /// Lines this offer took a track off: their forwarding stops now.
    pub retired: Vec<(TrackKey, Mid)>,
}

impl SubscribeLines {
    /// The track carried on `mid`.
    pub fn track_on(&self, mid: Mid) -> Option<TrackKey> {
        self.lines
            .iter()
            .find(|l| l.mid == mid)
            .and_then(|l| l.carries)
            .map(|c| c.key)
    }

    /// Every line that carries a track: (mid, kind, what it carries).
    pub fn carried(&self) -> impl Iterator<Item = (Mid, Kind, Carried)> + '_ {
        self.lines
            .iter()
            .filter_map(|l| Some((l.mid, l.kind, l.carries?)))
    }

    /// Whether the room changed while an offer was out (and none is now).
    pub fn wants_renegotiation(&self) -> bool {
        self.renegotiate_after_answer && self.pending_offer.is_none()
    }

    /// Makes the next offer restart ICE (after the outstanding one is
    /// answered, if one is out).
    pub fn request_ice_restart(&mut self) {
        self.ice_restart = true;
        if self.pending_offer.is_some() {
            self.renegotiate_after_answer = true;
        }
    }

    /// Takes the outstanding offer, to accept an answer against it.
    pub fn take_pending_offer(&mut self) -> Option<SdpPendingOffer> {
        self.pending_offer.take()
    }

    /// Lines the answered offer gave a track.
    pub fn take_newly_offered(&mut self) -> Vec<(TrackKey, Mid)> {
        std::mem::take(&mut self.newly_offered)
    }

    /// Keeps the numbering of a line whose track was taken off.
    pub fn park(&mut self, mid: Mid, numbering: Numbering, now: Instant) {
        if let Some(line) = self.lines.iter_mut().find(|l| l.mid == mid) {
            line.parked = Some((numbering, now));
        }
    }

    /// The numbering for a line's new track: the parked one, continuing as
    /// much later as the line was idle, or a fresh one for a new line.
    pub fn numbering_for(&mut self, mid: Mid, now: Instant) -> Numbering {
        let line = self.lines.iter_mut().find(|l| l.mid == mid);
        let Some((kind, (mut numbering, since))) =
            line.and_then(|l| Some((l.kind, l.parked.take()?)))
        else {
            return Numbering::new(first_sequence_number());
        };
        let clock_rate: u64 = match kind {
            Kind::Audio => 48_000,
            Kind::Video => 90_000,
        };
        // One frame at least, so two sources never share a timestamp.
        let idle_us = now.saturating_duration_since(since).as_micros().max(20_000) as u64;
        let ticks = (idle_us * clock_rate / 1_000_000) as u32;
        numbering.rewriter.resume(ticks);
        numbering
    }

    /// Creates an offer that makes the connection carry exactly `wanted`:
    /// lines whose track is gone turn inactive, new tracks take free lines
    /// of their kind (made free by an earlier offer) before new lines are
    /// added. `Ok(None)` when nothing changes or an offer is already out
    /// (then a new one follows its answer).
    pub fn offer(
        &mut self,
        leg: &mut LegRtc,
        wanted: &[(TrackKey, Kind, Source)],
        transmits: &mut Outbox,
        events: &mut Vec<LegEvent>,
    ) -> Result<Option<SubscribeOffer>, LegError> {
        if self.pending_offer.is_some() {
            self.renegotiate_after_answer = true;
            return Ok(None);
        }
        self.renegotiate_after_answer = false;

        let mut retired = Vec::new();
        for line in &mut self.lines {
            if let Some(c) = line.carries
                && !wanted.iter().any(|(key, _, _)| *key == c.key)
            {
                line.carries = None;
                retired.push((c.key, line.mid));
            }
        }
        // Free lines the browser already knows are inactive: a line retired
        // in this very offer is not reused until the next, so the browser
        // always sees a track end before the line carries another.
        let mut free: Vec<(Mid, Kind)> = self
            .lines
            .iter()
            .filter(|l| l.carries.is_none() && !retired.iter().any(|(_, mid)| *mid == l.mid))
            .map(|l| (l.mid, l.kind))
            .collect();
        let mut reused = Vec::new();
        let mut added = Vec::new();
        for &(key, kind, source) in wanted {
            if self
                .lines
                .iter()
                .any(|l| l.carries.is_some_and(|c| c.key == key))
            {
                continue;
            }
            let carried = Carried { key, source };
            match free.iter().position(|(_, k)| *k == kind) {
                Some(at) => {
                    let (mid, _) = free.swap_remove(at);
                    if let Some(line) = self.lines.iter_mut().find(|l| l.mid == mid) {
                        line.carries = Some(carried);
                    }
                    reused.push((mid, carried));
                }
                None => added.push((kind, carried)),
            }
        }
        let restart = self.ice_restart;
        if retired.is_empty() && reused.is_empty() && added.is_empty() && !restart {
            return Ok(None);
        }

        let Self {
            lines,
            newly_offered,
            ..
        } = self;
        let applied = leg.mutate(transmits, events, |rtc| {
            let mut api = rtc.sdp_api();
            if restart {
                // Keeps our candidates; only the credentials change.
                api.ice_restart(true);
            }
            for (_, mid) in &retired {
                api.set_direction(*mid, Direction::Inactive);
            }
            for (mid, carried) in &reused {
                let (stream, track) = msid(carried);
                api.set_msid(*mid, &stream, &track);
                api.set_direction(*mid, Direction::SendOnly);
                newly_offered.push((carried.key, *mid));
            }
            for (kind, carried) in &added {
                let media = match kind {
                    Kind::Audio => MediaKind::Audio,
                    Kind::Video => MediaKind::Video,
                };
                let (stream, track) = msid(carried);
                let mid =
                    api.add_media(media, Direction::SendOnly, Some(stream), Some(track), None);
                lines.push(Line {
                    mid,
                    kind: *kind,
                    carries: Some(*carried),
                    parked: None,
                });
                newly_offered.push((carried.key, mid));
            }
            api.apply()
        })?;
        Ok(applied.map(|(offer, pending)| {
            self.ice_restart = false;
            self.pending_offer = Some(pending);
            SubscribeOffer {
                sdp: offer,
                retired,
            }
        }))
    }
}

/// A random first sequence number for a new outgoing stream, in the lower
/// half of the range. SRTP's rollover counter starts at 0 with the first
/// packet a receiver decrypts; packets forwarded before the subscriber's
/// connection is up are numbered but never sent, so a start just below the
/// 16-bit wrap could make the first packet the browser sees one with
/// rollover 1, which it could never decrypt (seen in a load run: a stream
/// starting at 65,525 that a receiver never decrypted).
fn first_sequence_number() -> u16 {
    rand::random::<u16>() >> 1
}

/// The msid of a line carrying `carried`: the stream groups one publisher's
/// tracks (browsers synchronize audio and video within it), the track id
/// names publisher and source.
fn msid(carried: &Carried) -> (String, String) {
    let stream = carried.key.publisher.to_string();
    let track = format!("{}-{}", carried.key.publisher, carried.source.as_str());
    (stream, track)
}

/// Checks a publisher's offer against what one participant may send: at
/// most one microphone, one camera, one screen and one screen-audio track,
/// each label on an m-line of its kind. Stopped m-lines (port 0) do not
/// count. m-lines without a label count as microphone (audio) or camera
/// (video), as they are published.
pub fn check_publish_offer(sdp: &str, labels: &[TrackLabel]) -> Result<(), SdpRefused> {
    let mut seen: Vec<Source> = Vec::new();
    for line in active_media_lines(sdp) {
        let label = line
            .mid
            .and_then(|mid| labels.iter().find(|l| l.mid == mid))
            .map(|l| l.source);
        let source = match (line.kind, label) {
            (kind, Some(source)) if source.is_video() == (kind == Kind::Video) => source,
            (kind, Some(source)) => {
                return Err(SdpRefused::TooManyTracks(format!(
                    "m-line {:?} is {} but labelled {}",
                    line.mid.unwrap_or_default(),
                    kind.as_str(),
                    source.as_str()
                )));
            }
            (Kind::Audio, None) => Source::Microphone,
            (Kind::Video, None) => Source::Camera,
        };
        if seen.contains(&source) {
            return Err(SdpRefused::TooManyTracks(format!(
                "a participant sends at most one microphone, one camera, one screen and one \
                 screen-audio track; this offer has a second {} m-line (mid {:?})",
                source.as_str(),
                line.mid.unwrap_or_default()
            )));
        }
        seen.push(source);
    }
    Ok(())
}

/// An audio or video m-line of an SDP that is not stopped.
struct MediaLine<'a> {
    kind: Kind,
    mid: Option<&'a str>,
}

/// The audio and video m-lines with a port other than 0, in order. Other
/// m-lines (data channels) are not counted: str0m refuses what it cannot
/// use when it parses the offer.
fn active_media_lines(sdp: &str) -> Vec<MediaLine<'_>> {
    let mut found = Vec::new();
    let mut current: Option<MediaLine> = None;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(media) = line.strip_prefix("m=") {
            found.extend(current.take());
            let mut fields = media.split(' ');
            let kind = match fields.next() {
                Some("audio") => Some(Kind::Audio),
                Some("video") => Some(Kind::Video),
                _ => None,
            };
            let stopped = fields.next() == Some("0");
            current = kind
                .filter(|_| !stopped)
                .map(|kind| MediaLine { kind, mid: None });
        } else if let (Some(m), Some(mid)) = (current.as_mut(), line.strip_prefix("a=mid:")) {
            m.mid = Some(mid);
        }
    }
    found.extend(current);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp(lines: &[(&str, &str, &str)]) -> String {
        let mut s = String::from("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
        for (kind, port, mid) in lines {
            s.push_str(&format!(
                "m={kind} {port} UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:{mid}\r\na=sendonly\r\n"
            ));
        }
        s
    }

    fn label(mid: &str, source: Source) -> TrackLabel {
        TrackLabel {
            mid: mid.into(),
            source,
        }
    }

    #[test]
    fn new_streams_start_far_from_the_sequence_wrap() {
        for _ in 0..1000 {
            assert!(first_sequence_number() < 1 << 15);
        }
    }

    #[test]
    fn the_four_sources_once_each_are_accepted() {
        let offer = sdp(&[
            ("audio", "9", "0"),
            ("video", "9", "1"),
            ("video", "9", "2"),
            ("audio", "9", "3"),
        ]);
        let labels = [
            label("0", Source::Microphone),
            label("1", Source::Camera),
            label("2", Source::Screen),
            label("3", Source::ScreenAudio),
        ];
        assert_eq!(check_publish_offer(&offer, &labels), Ok(()));
    }

    #[test]
    fn a_fifth_line_or_a_second_screen_is_refused() {
        let five_videos = sdp(&[
            ("video", "9", "0"),
            ("video", "9", "1"),
            ("video", "9", "2"),
            ("video", "9", "3"),
            ("video", "9", "4"),
        ]);
        let err = check_publish_offer(&five_videos, &[]).expect_err("five cameras");
        assert!(err.to_string().contains("second camera"), "{err}");

        let two_screens = sdp(&[("video", "9", "0"), ("video", "9", "1")]);
        let labels = [label("0", Source::Screen), label("1", Source::Screen)];
        let err = check_publish_offer(&two_screens, &labels).expect_err("two screens");
        assert!(err.to_string().contains("second screen"), "{err}");
    }

    #[test]
    fn stopped_lines_do_not_count_and_labels_must_match_the_kind() {
        // A screen share that was stopped (port 0), then a new one.
        let offer = sdp(&[
            ("video", "9", "0"),
            ("video", "0", "1"),
            ("video", "9", "2"),
        ]);
        let labels = [label("0", Source::Camera), label("2", Source::Screen)];
        assert_eq!(check_publish_offer(&offer, &labels), Ok(()));

        let audio_as_screen = sdp(&[("audio", "9", "0")]);
        let err = check_publish_offer(&audio_as_screen, &[label("0", Source::Screen)])
            .expect_err("audio labelled screen");
        assert!(
            err.to_string().contains("is audio but labelled screen"),
            "{err}"
        );
    }
}
