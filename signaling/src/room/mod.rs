//! Live meetings. Each meeting that has someone in it is owned by one task,
//! the room actor: it alone holds the participant list and recent chat, and
//! connections talk to it by message (bounded channels, replies on
//! oneshots). No lock is held across an await.

mod actor;
mod registry;

pub use registry::{Registry, RoomHandle};

/// What every room applies: its bounds, and how clients are asked to
/// publish.
#[derive(Debug, Clone, Copy)]
pub struct RoomSettings {
    /// Most participants in the room.
    pub max_participants: usize,
    /// Most participants of one account in the room (tabs).
    pub max_per_user: usize,
    /// Chat messages one account may send to the room at once...
    pub chat_burst: u32,
    /// ...and per minute after that.
    pub chat_per_minute: u32,
    /// Whether clients send their camera as simulcast layers
    /// (`sfu.simulcast`), told in `existing-users`.
    pub simulcast: bool,
}

use crate::ws::protocol::Participant;
use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, oneshot};

/// Messages queued for one connection, already serialized. Bounded: a
/// connection that cannot keep up is dropped rather than slowing the room.
pub type Outbox = mpsc::Sender<Utf8Bytes>;

/// Capacity of each connection's outbox.
pub const OUTBOX_CAPACITY: usize = 512;

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinError {
    /// The meeting is at `limits.max_room_participants`.
    Full,
    /// The account is in the meeting `limits.max_participants_per_user`
    /// times already.
    TooManyTabs,
    /// The room task is shutting down; ask the registry again.
    Closed,
    /// A host removed this account from the meeting.
    Removed,
}

/// How the room answered a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// In the meeting (`existing-users` is queued).
    Joined,
    /// In the lobby of a locked meeting (`lobby-waiting` is queued); the
    /// room sends `admitted` or `denied` later, then drops the outbox.
    Waiting,
}

/// What a connection can ask of its room.
#[derive(Debug)]
pub enum RoomCommand {
    /// Add a participant. The room first queues `existing-users` on the
    /// outbox, then tells the others.
    Join {
        /// The newcomer.
        participant: Participant,
        /// Where the room sends the newcomer's messages.
        outbox: Outbox,
        /// Answered once the participant is in or waiting (or refused).
        reply: oneshot::Sender<Result<Admission, JoinError>>,
    },
    /// Store and broadcast a chat message.
    Chat {
        /// Sender.
        participant_id: String,
        /// Validated text.
        text: String,
        /// The request's `ref`, for an error reply.
        reference: Option<serde_json::Value>,
    },
    /// A participant's media state changed; tell everyone.
    MediaState {
        /// Whose.
        participant_id: String,
        /// The new state.
        media: crate::ws::protocol::MediaState,
    },
    /// Remove a participant (left, closed, or timed out).
    Leave {
        /// Who.
        participant_id: String,
    },
    /// A host removes someone (refused with `forbidden` for anyone else).
    Remove {
        /// Who asks.
        by: String,
        /// Whom.
        target: String,
        /// The request's `ref`, for an error reply.
        reference: Option<serde_json::Value>,
    },
    /// A host turns someone's microphone off (`target`), or every
    /// non-host's (`None`).
    Mute {
        /// Who asks.
        by: String,
        /// Whom; `None`: everyone but the hosts.
        target: Option<String>,
        /// The request's `ref`, for an error reply.
        reference: Option<serde_json::Value>,
    },
    /// A host turns someone's camera or shared screen off.
    StopVideo {
        /// Who asks.
        by: String,
        /// Whom.
        target: String,
        /// `Camera` or `Screen`.
        source: zync_sfu::Source,
        /// The request's `ref`, for an error reply.
        reference: Option<serde_json::Value>,
    },
    /// A host makes someone a co-host.
    MakeHost {
        /// Who asks.
        by: String,
        /// Whom.
        target: String,
        /// The request's `ref`, for an error reply.
        reference: Option<serde_json::Value>,
    },
    /// A host locks or unlocks the meeting.
    Lock {
        /// Who asks.
        by: String,
        /// Lock or unlock.
        locked: bool,
        /// The request's `ref`, for an error reply.
        reference: Option<serde_json::Value>,
    },
    /// A host admits (`admit`) or denies someone waiting in the lobby.
    Decide {
        /// Who asks.
        by: String,
        /// Who waits.
        target: String,
        /// Let in, or send away.
        admit: bool,
        /// The request's `ref`, for an error reply.
        reference: Option<serde_json::Value>,
    },
    /// Someone waiting in the lobby gave up (left, or closed the page).
    LeaveLobby {
        /// Who.
        participant_id: String,
    },
    /// A host ends the meeting for everyone.
    End {
        /// Who asks.
        by: String,
        /// The request's `ref`, for an error reply.
        reference: Option<serde_json::Value>,
    },
}
