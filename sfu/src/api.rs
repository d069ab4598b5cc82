//! The vocabulary between signaling and the media plane: what signaling asks
//! of the SFU ([`Command`]) and what the SFU tells one participant
//! ([`Event`]).

use std::fmt;

/// A participant, as numbered by signaling (unique per server lifetime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

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
    /// An SDP offer from the browser for its publish connection.
    PublishOffer {
        /// Who.
        participant: ParticipantId,
        /// The SDP text.
        sdp: String,
        /// What each m-line carries (m-lines not listed default by kind:
        /// audio is the microphone, video the camera).
        tracks: Vec<TrackLabel>,
    },
    /// The browser's SDP answer on its subscribe connection.
    SubscribeAnswer {
        /// Who.
        participant: ParticipantId,
        /// The SDP text.
        sdp: String,
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
    /// Removes a participant and everything it published.
    Leave {
        /// Who.
        participant: ParticipantId,
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
            | Command::Leave { participant } => *participant,
        }
    }
}

/// Something the SFU tells one participant (through signaling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The SFU's answer on the publish connection.
    PublishAnswer {
        /// The SDP text.
        sdp: String,
    },
    /// A new offer on the subscribe connection: tracks appeared or went.
    SubscribeOffer {
        /// The SDP text.
        sdp: String,
        /// Every live track in this offer, by mid.
        tracks: Vec<OfferedTrack>,
    },
    /// A request was refused (bad SDP, answer without offer, ...). The
    /// participant stays; only that request failed.
    Error {
        /// Machine-readable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// The participant's media failed (ICE timed out, DTLS failed, an
    /// internal error) and it has been removed from the media plane.
    Failed {
        /// Why.
        reason: String,
    },
}
