//! The vocabulary between signaling and the media plane: what signaling asks
//! of the SFU ([`Command`]) and what the SFU tells one participant
//! ([`Event`]).

use std::fmt;
pub use str0m::change::{SdpAnswer, SdpOffer};

/// A participant, as numbered by signaling (unique per server lifetime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

impl ParticipantId {
    /// Reads the form [`fmt::Display`] writes (16 hex digits).
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 16 {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(Self)
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Which of a participant's two peer connections.
///
/// Every participant has two: on `Publish` the browser offers the tracks it
/// sends and the SFU answers; on `Subscribe` the SFU offers everyone else's
/// tracks and the browser answers. Each side only ever offers on its own
/// connection, so offers can never cross (no glare).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// Browser → SFU media; the browser offers.
    Publish,
    /// SFU → browser media; the SFU offers.
    Subscribe,
}

impl Leg {
    /// `"publish"` or `"subscribe"`, as in the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Leg::Publish => "publish",
            Leg::Subscribe => "subscribe",
        }
    }
}

/// What a published track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The camera.
    Camera,
    /// The microphone.
    Microphone,
    /// A shared screen (video).
    Screen,
    /// Sound of a shared screen or tab.
    ScreenAudio,
}

impl Source {
    /// The protocol's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Camera => "camera",
            Source::Microphone => "microphone",
            Source::Screen => "screen",
            Source::ScreenAudio => "screen-audio",
        }
    }

    /// Parses the protocol's name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "camera" => Some(Source::Camera),
            "microphone" => Some(Source::Microphone),
            "screen" => Some(Source::Screen),
            "screen-audio" => Some(Source::ScreenAudio),
            _ => None,
        }
    }

    /// Whether this source is video.
    pub fn is_video(self) -> bool {
        matches!(self, Source::Camera | Source::Screen)
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

impl Kind {
    /// `"audio"` or `"video"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }
}

/// A label the publisher gives one of its m-lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackLabel {
    /// The m-line's mid in the publisher's offer.
    pub mid: String,
    /// What it carries.
    pub source: Source,
}

/// A track offered to a subscriber: which of its m-lines carries whose what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedTrack {
    /// The m-line's mid in the SFU's offer.
    pub mid: String,
    /// The publisher.
    pub participant: ParticipantId,
    /// What it carries.
    pub source: Source,
    /// Audio or video.
    pub kind: Kind,
}

/// Why an SDP from a browser was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpRefused {
    /// Not SDP that str0m understands.
    #[error("{0}")]
    Invalid(String),
    /// An offer with more tracks than one participant may publish.
    #[error("{0}")]
    TooManyTracks(String),
}

impl SdpRefused {
    /// The protocol's error code.
    pub fn code(&self) -> &'static str {
        match self {
            SdpRefused::Invalid(_) => "invalid_sdp",
            SdpRefused::TooManyTracks(_) => "too_many_tracks",
        }
    }
}

/// A browser's offer on its publish connection, checked and parsed by the
/// caller (signaling's connection task): a large SDP takes milliseconds to
/// parse, which the media worker would otherwise spend instead of
/// forwarding everyone's packets.
#[derive(Debug)]
pub struct PublishOffer {
    pub(crate) sdp: SdpOffer,
    pub(crate) labels: Vec<TrackLabel>,
}

impl PublishOffer {
    /// Checks `sdp` against what one participant may publish (one
    /// microphone, camera, screen and screen-audio track at most; labels
    /// matching their m-line's kind) and parses it.
    pub fn parse(sdp: &str, labels: Vec<TrackLabel>) -> Result<Self, SdpRefused> {
        crate::core::check_publish_offer(sdp, &labels)?;
        let sdp = SdpOffer::from_sdp_string(sdp)
            .map_err(|e| SdpRefused::Invalid(format!("the offer is not valid SDP: {e}")))?;
        Ok(Self { sdp, labels })
    }

    /// The parsed offer.
    pub fn sdp(&self) -> &SdpOffer {
        &self.sdp
    }

    /// What the browser says each m-line carries.
    pub fn labels(&self) -> &[TrackLabel] {
        &self.labels
    }
}

/// Parses a browser's answer on its subscribe connection (on the caller's
/// thread, like [`PublishOffer::parse`]).
pub fn parse_answer(sdp: &str) -> Result<SdpAnswer, SdpRefused> {
    SdpAnswer::from_sdp_string(sdp)
        .map_err(|e| SdpRefused::Invalid(format!("the answer is not valid SDP: {e}")))
}

/// A request from signaling to the SFU.
#[derive(Debug)]
pub enum Command {
    /// Adds a participant to a room (created on first use).
    Join {
        /// Room name (the meeting slug).
        room: String,
        /// The newcomer.
        participant: ParticipantId,
    },
    /// An offer from the browser for its publish connection.
    PublishOffer {
        /// Who.
        participant: ParticipantId,
        /// The offer, checked and parsed, with what each m-line carries
        /// (m-lines not labelled default by kind: audio is the microphone,
        /// video the camera).
        offer: PublishOffer,
    },
    /// The browser's answer on its subscribe connection.
    SubscribeAnswer {
        /// Who.
        participant: ParticipantId,
        /// The answer, parsed ([`parse_answer`]).
        answer: SdpAnswer,
    },
    /// A trickled ICE candidate from the browser.
    Candidate {
        /// Who.
        participant: ParticipantId,
        /// Which connection.
        leg: Leg,
        /// The `candidate:...` line.
        candidate: String,
    },
    /// What a subscriber shows of one remote video track (its
    /// `track-view` message): the SFU forwards nothing for a track that is
    /// off screen, and the smallest simulcast layer that covers its size.
    TrackView {
        /// The subscriber.
        participant: ParticipantId,
        /// Whose track.
        publisher: ParticipantId,
        /// Which of the publisher's tracks.
        source: Source,
        /// On screen, and at what size.
        view: View,
    },
    /// The browser lost the path of its subscribe connection (a network
    /// change): the next subscribe offer restarts ICE (new credentials, so
    /// the browser checks every candidate pair again), and is made at once.
    /// A publish connection restarts with the browser's own offer.
    RestartIce {
        /// Who.
        participant: ParticipantId,
    },
    /// Removes a participant and everything it published.
    Leave {
        /// Who.
        participant: ParticipantId,
    },
    /// A host stopped (`held`) or released one of the participant's
    /// tracks: while held, none of its packets are forwarded, whatever the
    /// browser sends. Its subscribers keep their m-lines (no
    /// renegotiation).
    Hold {
        /// Whose track.
        participant: ParticipantId,
        /// Which.
        source: Source,
        /// Stop forwarding (`true`) or go on.
        held: bool,
    },
}

impl Command {
    /// The participant the command concerns.
    pub fn participant(&self) -> ParticipantId {
        match self {
            Command::Join { participant, .. }
            | Command::PublishOffer { participant, .. }
            | Command::SubscribeAnswer { participant, .. }
            | Command::Candidate { participant, .. }
            | Command::TrackView { participant, .. }
            | Command::RestartIce { participant }
            | Command::Leave { participant }
            | Command::Hold { participant, .. } => *participant,
        }
    }
}

/// What a subscriber shows of a remote video track (the `track-view`
/// message): whether it is on screen and at what size in device pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// On screen (not paged out, tab not hidden).
    pub visible: bool,
    /// Displayed width, device pixels.
    pub width: u32,
    /// Displayed height, device pixels.
    pub height: u32,
}

/// Something the SFU tells one participant (through signaling).
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The SFU's answer on the publish connection (signaling turns it into
    /// text, off the media worker).
    PublishAnswer {
        /// The answer.
        answer: SdpAnswer,
    },
    /// A new offer on the subscribe connection: tracks appeared or went.
    SubscribeOffer {
        /// The offer.
        offer: SdpOffer,
        /// Every live track in this offer, by mid.
        tracks: Vec<OfferedTrack>,
    },
    /// A request was refused (answer without offer, ...). The participant
    /// stays; only that request failed.
    Error {
        /// Machine-readable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// Which simulcast layers of its `source` track the publisher should
    /// encode (rids, lowest first; empty: none, nobody watches). The rest
    /// are not needed by any subscriber (dynacast).
    PublisherLayers {
        /// The track.
        source: Source,
        /// The rids to keep sending.
        active: Vec<&'static str>,
    },
    /// Who is speaking in the room: the dominant speaker first, then the
    /// others heard recently, each with a level 0–100. Sent to everyone in
    /// the room at most 4 times a second, when it changes.
    ActiveSpeakers {
        /// (participant, level).
        speakers: Vec<(ParticipantId, u8)>,
    },
    /// The participant's media failed (ICE timed out, DTLS failed, an
    /// internal error) and it has been removed from the media plane.
    Failed {
        /// Why.
        reason: String,
    },
}
