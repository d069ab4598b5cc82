//! The WebSocket protocol's messages, both directions. `docs/protocol.md`
//! describes them for client authors; keep the two in step.

use crate::meetings::ChatView;
use serde::{Deserialize, Serialize};

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
    /// Post a chat message to the meeting.
    ChatMessage {
        /// The text; rendered as text by clients, never as HTML.
        text: String,
        /// Echoed in errors.
        #[serde(rename = "ref", default)]
        reference: Option<serde_json::Value>,
    },
}

/// The `type` values a client may send, for the `unknown_type` error.
pub const CLIENT_TYPES: &[&str] = &["join-meeting", "leave-meeting", "chat-message"];

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
