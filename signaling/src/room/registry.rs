//! The registry of live meetings: slug → handle of the task that owns it.

use super::actor::RoomActor;
use super::{Admission, JoinError, Outbox, RoomCommand, RoomSettings};
use crate::db::{Database, Meeting};
use crate::ws::protocol::{MeetingInfo, Participant};
use dashmap::DashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Commands a room may have queued before senders wait.
const COMMAND_CAPACITY: usize = 1024;
/// Attempts at joining when a room closes under us.
const JOIN_ATTEMPTS: usize = 3;

/// A cheap, cloneable way to reach a live room.
#[derive(Clone, Debug)]
pub struct RoomHandle {
    entry_id: u64,
    commands: mpsc::Sender<RoomCommand>,
    count: Arc<AtomicUsize>,
}

impl RoomHandle {
    /// Sends a command; `false` if the room has closed.
    pub async fn send(&self, command: RoomCommand) -> bool {
        self.commands.send(command).await.is_ok()
    }
}

/// All live rooms of this server. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    rooms: Arc<DashMap<String, RoomHandle>>,
    next_entry: Arc<AtomicU64>,
    db: Database,
    settings: RoomSettings,
    /// The media plane, for host actions on someone else's tracks.
    pub(super) sfu: zync_sfu::Sfu,
}

impl Registry {
    /// An empty registry whose rooms store chat in `db` and whose hosts
    /// act on media through `sfu`.
    pub fn new(db: Database, settings: RoomSettings, sfu: zync_sfu::Sfu) -> Self {
        Self {
            rooms: Arc::new(DashMap::new()),
            next_entry: Arc::new(AtomicU64::new(1)),
            db,
            settings,
            sfu,
        }
    }

    /// People in the meeting right now (0 when no room is live).
    pub fn participant_count(&self, slug: &str) -> usize {
        self.rooms
            .get(slug)
            .map_or(0, |h| h.count.load(Ordering::Relaxed))
    }

    /// Live rooms.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Puts `participant` into the meeting's room (or its lobby, when
    /// locked), starting the room if needed. On success returns the room's
    /// handle and which of the two it was.
    pub async fn join(
        &self,
        meeting: &Meeting,
        participant: Participant,
        outbox: Outbox,
    ) -> Result<(RoomHandle, Admission), JoinError> {
        for _ in 0..JOIN_ATTEMPTS {
            let handle = self.room_for(meeting);
            let (reply, answer) = oneshot::channel();
            let command = RoomCommand::Join {
                participant: participant.clone(),
                outbox: outbox.clone(),
                reply,
            };
            if !handle.send(command).await {
                self.remove_entry(&meeting.slug, handle.entry_id);
                continue;
            }
            match answer.await {
                Ok(Ok(admission)) => return Ok((handle, admission)),
                Ok(Err(
                    refused @ (JoinError::Full | JoinError::TooManyTabs | JoinError::Removed),
                )) => {
                    return Err(refused);
                }
                Ok(Err(JoinError::Closed)) | Err(_) => {
                    self.remove_entry(&meeting.slug, handle.entry_id);
                }
            }
        }
        Err(JoinError::Closed)
    }

    /// The live room of `meeting`, started if there is none.
    fn room_for(&self, meeting: &Meeting) -> RoomHandle {
        self.rooms
            .entry(meeting.slug.clone())
            .or_insert_with(|| {
                let entry_id = self.next_entry.fetch_add(1, Ordering::Relaxed);
                let (commands, receiver) = mpsc::channel(COMMAND_CAPACITY);
                let count = Arc::new(AtomicUsize::new(0));
                let actor = RoomActor::new(
                    entry_id,
                    meeting.id,
                    MeetingInfo {
                        slug: meeting.slug.clone(),
                        title: meeting.title.clone(),
                    },
                    self.db.clone(),
                    self.clone(),
                    self.settings,
                    count.clone(),
                    receiver,
                );
                tokio::spawn(actor.run());
                RoomHandle {
                    entry_id,
                    commands,
                    count,
                }
            })
            .clone()
    }

    /// Removes the entry for `slug` if it is still the one with `entry_id`
    /// (a newer room for the same meeting is left alone).
    pub(super) fn remove_entry(&self, slug: &str, entry_id: u64) {
        self.rooms.remove_if(slug, |_, h| h.entry_id == entry_id);
    }
}
