//! The WebSocket protocol's messages, both directions. `docs/protocol.md`
//! describes them for client authors; keep the two in step.

use crate::meetings::ChatView;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zync_config::LimitsConfig;

/// Why a text frame from the browser is not a message: the `error` code
/// and text it is answered with, and the message's `ref` if it had one.
#[derive(Debug)]
pub struct Refused {
    /// `message_too_large`, `invalid_json`, `invalid_message` or
    /// `unknown_type`.
    pub code: &'static str,
    /// What was wrong, for people.
    pub message: String,
    /// The message's `ref`, echoed in the error.
    pub reference: Option<Value>,
}

/// Parses one text frame from the browser, within `limits`: only `signal`
/// (which carries SDP) may be larger than `max_ws_message_bytes`.
pub fn parse_client_message(text: &str, limits: &LimitsConfig) -> Result<ClientMessage, Refused> {
    let limit = limits.max_ws_message_bytes as usize;
    let signal_limit = super::signal_limit(limits);
    let refuse = |code, message, reference: Option<&Value>| Refused {
        code,
        message,
        reference: reference.cloned(),
    };
    if text.len() > limit.max(signal_limit) {
        let message = format!("messages are limited to {limit} bytes ({signal_limit} for signal)");
        return Err(refuse("message_too_large", message, None));
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| refuse("invalid_json", e.to_string(), None))?;
    let reference = value.get("ref");
    let Some(kind) = value.get("type").and_then(Value::as_str) else {
        let message = "expected a JSON object with a string \"type\"".to_owned();
        return Err(refuse("invalid_message", message, reference));
    };
    // Only negotiation carries large messages: everything else (chat)
    // keeps the small limit.
    if kind != "signal" && text.len() > limit {
        let message = format!("{kind} messages are limited to {limit} bytes");
        return Err(refuse("message_too_large", message, reference));
    }
    if !CLIENT_TYPES.contains(&kind) {
        let message = format!("unknown type {kind:?}; expected one of {CLIENT_TYPES:?}");
        return Err(refuse("unknown_type", message, reference));
    }
    let kind = kind.to_owned();
    let reference = reference.cloned();
    serde_json::from_value::<ClientMessage>(value).map_err(|e| Refused {
        code: "invalid_message",
        message: format!("invalid {kind}: {e}"),
        reference,
    })
}

/// A message from the browser. The `type` field selects the variant.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Enter a meeting; answered by `existing-users`.
    JoinMeeting {
        /// The meeting's slug.
        slug: String,
        /// Echoed in errors, to match them to this request.
        #[serde(rename = "ref", default)]
        reference: Option<serde_json::Value>,
    },
    /// Leave the meeting (the connection stays open).
    LeaveMeeting {
        /// Echoed in errors.
        #[serde(rename = "ref", default)]
        reference: Option<serde_json::Value>,
    },
    /// WebRTC negotiation with the SFU on one of the two connections.
    Signal {
        /// `publish` (the browser offers) or `subscribe` (the SFU offers).
        pc: PcName,
        /// An offer (publish) or an answer (subscribe).
        #[serde(default)]
        sdp: Option<SessionDescription>,
        /// A trickled ICE candidate.
        #[serde(default)]
        candidate: Option<CandidateInit>,
        /// With a publish offer: what each m-line carries.
        #[serde(default)]
        tracks: Option<Vec<TrackLabelIn>>,
        /// Echoed in errors.
        #[serde(rename = "ref", default)]
        reference: Option<serde_json::Value>,
    },
    /// The browser lost the path of its subscribe connection (a network
    /// change): the SFU's next subscribe offer restarts ICE.
    IceRestart {
        /// Echoed in errors.
        #[serde(rename = "ref", default)]
        reference: Option<serde_json::Value>,
    },
    /// The participant's microphone, camera or screen changed.
    MediaState {
        /// Microphone live.
        audio: bool,
        /// Camera on.
        video: bool,
        /// Sharing the screen.
        #[serde(default)]
        screen: bool,
        /// Echoed in errors.
        #[serde(rename = "ref", default)]
        reference: Option<serde_json::Value>,
    },
    /// What the client shows of one remote video track: the server sends
    /// nothing for a track off screen, and the smallest simulcast layer
    /// that covers the displayed size.
    TrackView {
        /// The publisher's participant id.
        participant: String,
        /// `camera` or `screen`.
        source: String,
        /// On screen (not paged out, tab visible).
        visible: bool,
        /// Displayed width in device pixels.
        #[serde(default)]
        width: u32,
        /// Displayed height in device pixels.
        #[serde(default)]
        height: u32,
        /// Echoed in errors.
        #[serde(rename = "ref", default)]
        reference: Option<serde_json::Value>,
    },
    /// Post a chat message to the meeting.
    ChatMessage {
        /// The text; rendered as text by clients, never as HTML.
        text: String,
        /// Echoed in errors.
        #[serde(rename = "ref", default)]
        reference: Option<serde_json::Value>,
    },
    /// Hosts only: take someone out of the meeting; their account cannot
    /// come back while the meeting lasts.
    RemoveParticipant {
        /// Who (their participant id).
        participant_id: String,
        /// Echoed in errors.
        #[serde(rename = "ref", default)]
        reference: Option<serde_json::Value>,
    },
    /// Hosts only: turn someone's microphone off. The server stops
    /// forwarding it at once; they may turn it on again themselves.
    MuteParticipant {
        /// Who (their participant id).
        participant_id: String,
        /// Echoed in errors.
        #[serde(rename = "ref", default)]
        reference: Option<serde_json::Value>,
    },
    /// Hosts only: turn every non-host's microphone off.
    MuteAll {
        /// Echoed in errors.
        #[serde(rename = "ref", default)]
        reference: Option<serde_json::Value>,
    },
    /// Hosts only: turn someone's camera or shared screen off. The server
    /// stops forwarding it at once; they may turn it on again themselves.
    StopVideo {
        /// Who (their participant id).
        participant_id: String,
        /// `camera` or `screen`.
        source: VideoSource,
        /// Echoed in errors.
        #[serde(rename = "ref", default)]
        reference: Option<serde_json::Value>,
    },
    /// Hosts only: make someone a co-host of this meeting (stored: it
    /// holds in later sessions too).
    MakeHost {
        /// Who (their participant id).
        participant_id: String,
        /// Echoed in errors.
        #[serde(rename = "ref", default)]
        reference: Option<serde_json::Value>,
    },
    /// Hosts only: lock the meeting (newcomers who are not hosts wait in
    /// the lobby until a host admits them) or unlock it (which admits
    /// everyone waiting).
    LockMeeting {
        /// Lock (`true`) or unlock.
        locked: bool,
        /// Echoed in errors.
        #[serde(rename = "ref", default)]
        reference: Option<serde_json::Value>,
    },
    /// Hosts only: let someone in from the lobby.
    Admit {
        /// Who (their participant id, from `lobby`).
        participant_id: String,
        /// Echoed in errors.
        #[serde(rename = "ref", default)]
        reference: Option<serde_json::Value>,
    },
    /// Hosts only: send someone in the lobby away.
    Deny {
        /// Who (their participant id, from `lobby`).
        participant_id: String,
        /// Echoed in errors.
        #[serde(rename = "ref", default)]
        reference: Option<serde_json::Value>,
    },
    /// Hosts only: end the meeting for everyone in it.
    EndMeeting {
        /// Echoed in errors.
        #[serde(rename = "ref", default)]
        reference: Option<serde_json::Value>,
    },
}

/// The `type` values a client may send, for the `unknown_type` error.
pub const CLIENT_TYPES: &[&str] = &[
    "join-meeting",
    "leave-meeting",
    "signal",
    "ice-restart",
    "media-state",
    "track-view",
    "chat-message",
    "remove-participant",
    "mute-participant",
    "mute-all",
    "stop-video",
    "make-host",
    "lock-meeting",
    "admit",
    "deny",
    "end-meeting",
];

/// A video source a host may turn off (`stop-video`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum VideoSource {
    /// The camera.
    Camera,
    /// The shared screen.
    Screen,
}

/// Which of the participant's two peer connections.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PcName {
    /// Browser → SFU; the browser offers.
    Publish,
    /// SFU → browser; the SFU offers.
    Subscribe,
}

/// An SDP offer or answer, as `RTCSessionDescription` serializes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionDescription {
    /// `offer` or `answer`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The SDP text.
    pub sdp: String,
}

/// A trickled candidate: `RTCIceCandidate.toJSON()` or just the line.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CandidateInit {
    /// `{"candidate": "candidate:...", "sdpMid": ..., ...}`.
    Object {
        /// The candidate line (empty marks the end of candidates).
        candidate: String,
    },
    /// `"candidate:..."`.
    Line(String),
}

impl CandidateInit {
    /// The candidate line.
    pub fn line(&self) -> &str {
        match self {
            CandidateInit::Object { candidate } | CandidateInit::Line(candidate) => candidate,
        }
    }
}

/// A publisher's label for one of its m-lines.
#[derive(Debug, Clone, Deserialize)]
pub struct TrackLabelIn {
    /// The m-line's mid.
    pub mid: String,
    /// `camera`, `microphone`, `screen` or `screen-audio`.
    pub source: String,
}

/// A track on the subscribe connection, as the client sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TrackOut {
    /// The m-line's mid in the SFU's offer.
    pub mid: String,
    /// Whose track it is.
    pub participant_id: String,
    /// `camera`, `microphone`, `screen` or `screen-audio`.
    pub source: &'static str,
    /// `audio` or `video`.
    pub kind: &'static str,
}

/// How the server asks clients to publish (in `existing-users`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Publishing {
    /// Send the camera as simulcast layers `q`, `h`, `f` (else one
    /// encoding).
    pub simulcast: bool,
}

/// One entry of `active-speakers`.
#[derive(Debug, Serialize)]
pub struct SpeakerOut {
    /// Whose microphone.
    pub participant_id: String,
    /// How loud, 0–100 (smoothed over about half a second).
    pub level: u8,
}

/// A participant's media as others see it. The media plane fills it in.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MediaState {
    /// Microphone on and unmuted.
    pub audio: bool,
    /// Camera on.
    pub video: bool,
    /// Sharing the screen.
    pub screen: bool,
}

/// One connection in a meeting. The same user in two tabs is two of these.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Participant {
    /// Connection-scoped id, unique within the server's lifetime.
    pub id: String,
    /// The account behind it.
    pub user_id: i64,
    /// Shown name.
    pub display_name: String,
    /// Where to fetch the avatar.
    pub avatar_url: String,
    /// Microphone, camera and screen state.
    pub media: MediaState,
    /// What they may do in the meeting.
    pub role: Role,
}

/// A participant's role in a meeting.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May remove people and end the meeting: the meeting's owner.
    Host,
    /// Everyone else.
    #[default]
    Participant,
}

/// The meeting as `existing-users` describes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MeetingInfo {
    /// Slug.
    pub slug: String,
    /// Title (may be empty).
    pub title: String,
}

/// A message to the browser.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage<'a> {
    /// Answer to `join-meeting`: who is here and the recent chat.
    ExistingUsers {
        /// The meeting joined.
        meeting: &'a MeetingInfo,
        /// The joiner as others see it.
        #[serde(rename = "self")]
        me: &'a Participant,
        /// Everyone else, in order of arrival.
        participants: Vec<&'a Participant>,
        /// The last messages, oldest first.
        history: Vec<&'a ChatView>,
        /// How to send our media.
        publishing: Publishing,
        /// Whether newcomers wait in the lobby.
        locked: bool,
    },
    /// Someone arrived.
    UserJoined {
        /// Who.
        participant: &'a Participant,
    },
    /// Someone left or dropped.
    UserLeft {
        /// Their participant id.
        participant_id: &'a str,
    },
    /// A chat message, stored and broadcast to all (sender included).
    ChatMessage(&'a ChatView),
    /// Negotiation from the SFU: the publish answer or a subscribe offer.
    Signal {
        /// Which connection.
        pc: PcName,
        /// The SDP.
        sdp: SessionDescription,
        /// With a subscribe offer: whose track each m-line carries.
        #[serde(skip_serializing_if = "Option::is_none")]
        tracks: Option<Vec<TrackOut>>,
    },
    /// Which simulcast layers of one of our tracks anyone watches: the
    /// client turns the others' encodings off (dynacast).
    PublisherLayers {
        /// The track (`camera`).
        source: &'static str,
        /// Rids to keep sending, lowest first; empty when nobody watches.
        active: Vec<&'static str>,
    },
    /// Who is speaking: the dominant speaker first, then others heard
    /// recently (from the SFU, at most 4 a second).
    ActiveSpeakers {
        /// Speakers in order.
        speakers: Vec<SpeakerOut>,
    },
    /// A participant's microphone, camera or screen changed.
    MediaState {
        /// Whose.
        participant_id: &'a str,
        /// The new state.
        media: &'a MediaState,
    },
    /// To someone a host removed: why the meeting is gone. The server
    /// then closes the connection.
    Removed {
        /// The host's display name.
        by: &'a str,
    },
    /// To someone whose microphone a host turned off: the client shows it
    /// muted (the server already stopped forwarding it).
    MutedByHost {
        /// The host's display name.
        by: &'a str,
    },
    /// To someone whose camera or shared screen a host turned off.
    VideoStoppedByHost {
        /// The host's display name.
        by: &'a str,
        /// `camera` or `screen`.
        source: &'a str,
    },
    /// Someone's role changed (a host made them a co-host).
    RoleChanged {
        /// Whose.
        participant_id: &'a str,
        /// The new role.
        role: Role,
    },
    /// The answer to `join-meeting` in a locked meeting: we wait in the
    /// lobby until a host admits (`admitted`) or denies (`denied`) us.
    LobbyWaiting {
        /// The meeting.
        meeting: &'a MeetingInfo,
    },
    /// A host let us in: send `join-meeting` again.
    Admitted {},
    /// We may not come in: a host said no (`by`), or no host is left in
    /// the meeting (`by` null).
    Denied {
        /// The host's display name.
        by: Option<&'a str>,
    },
    /// To hosts: who is waiting in the lobby now, in order of arrival.
    Lobby {
        /// The people waiting.
        waiting: Vec<&'a Participant>,
    },
    /// To everyone: a host locked or unlocked the meeting.
    MeetingLocked {
        /// Locked now.
        locked: bool,
        /// The host's display name.
        by: &'a str,
    },
    /// To everyone, when a host ended the meeting. The server then closes
    /// every connection in it.
    MeetingEnded {
        /// The host's display name.
        by: &'a str,
    },
    /// A request was refused. The connection stays usable.
    Error {
        /// Machine-readable code (see `docs/protocol.md`).
        code: &'a str,
        /// Human-readable explanation.
        message: &'a str,
        /// The `ref` of the request it answers, if it had one.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a serde_json::Value>,
    },
}

impl ServerMessage<'_> {
    /// Serializes the message; our own types always serialize.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            tracing::error!(error = %e, "could not serialize a server message");
            String::from(r#"{"type":"error","code":"internal","message":"internal error"}"#)
        })
    }
}
