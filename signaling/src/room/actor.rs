//! The room actor: the one task that owns a live meeting's state.

use super::RoomSettings;
use super::{Admission, JoinError, Outbox, Registry, RoomCommand};
use crate::auth::PublicUser;
use crate::db::{Database, rfc3339};
use crate::meetings::ChatView;
use crate::ws::protocol::{MeetingInfo, Participant, Publishing, Role, ServerMessage};
use crate::ws::rate::RateLimit;
use axum::extract::ws::Utf8Bytes;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tracing::Instrument;
use zync_sfu::Source;

/// Chat messages a joiner receives in `existing-users`.
pub const HISTORY_ON_JOIN: usize = 50;

/// The error text for a host action on someone who is not in the meeting.
const NOT_IN_MEETING: &str = "that participant is not in the meeting";

/// What a host action records in the chat, when it took effect: the host
/// and the line ("Ada removed Bob").
type Audit = Option<(PublicUser, String)>;

struct Member {
    participant: Participant,
    outbox: Outbox,
}

/// A live meeting's state and the receiver of its commands.
pub(super) struct RoomActor {
    /// Registry entry id, so the actor removes its own entry and no other.
    pub entry_id: u64,
    pub meeting_id: i64,
    pub meeting: MeetingInfo,
    pub db: Database,
    pub registry: Registry,
    pub settings: RoomSettings,
    pub count: Arc<AtomicUsize>,
    pub commands: mpsc::Receiver<RoomCommand>,
    members: Vec<Member>,
    /// The last [`HISTORY_ON_JOIN`] messages, oldest first.
    history: VecDeque<ChatView>,
    /// Each account's chat budget here (shared by its tabs; forgotten
    /// with the room).
    chat_rates: HashMap<i64, RateLimit>,
    /// Accounts a host removed: refused until the meeting ends (the room
    /// closes).
    removed: HashSet<i64>,
    /// A host ended the meeting: the room closes.
    ended: bool,
    /// Sources a host turned off and the SFU holds, by participant, until
    /// they turn them on again themselves.
    held: HashSet<(String, Source)>,
    /// Newcomers who are not hosts wait in the lobby.
    locked: bool,
    /// Who waits, in order of arrival (their outbox gets `admitted` or
    /// `denied`, then is dropped).
    lobby: Vec<Member>,
    /// Accounts a host let in: they pass the lock while the meeting lasts.
    admitted: HashSet<i64>,
}

impl RoomActor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        entry_id: u64,
        meeting_id: i64,
        meeting: MeetingInfo,
        db: Database,
        registry: Registry,
        settings: RoomSettings,
        count: Arc<AtomicUsize>,
        commands: mpsc::Receiver<RoomCommand>,
    ) -> Self {
        Self {
            entry_id,
            meeting_id,
            meeting,
            db,
            registry,
            settings,
            count,
            commands,
            members: Vec::new(),
            history: VecDeque::with_capacity(HISTORY_ON_JOIN),
            chat_rates: HashMap::new(),
            removed: HashSet::new(),
            ended: false,
            held: HashSet::new(),
            locked: false,
            lobby: Vec::new(),
            admitted: HashSet::new(),
        }
    }

    /// Serves commands until the last participant leaves, then unregisters.
    pub async fn run(self) {
        let span = tracing::info_span!("room", slug = %self.meeting.slug);
        self.serve().instrument(span).await;
    }

    async fn serve(mut self) {
        match self
            .db
            .chat_page(self.meeting_id, None, HISTORY_ON_JOIN as i64)
            .await
        {
            Ok(page) => self.history = page.messages.iter().rev().map(ChatView::from).collect(),
            Err(e) => tracing::error!(error = %e, "could not load chat history"),
        }
        tracing::debug!("room opened");
        while let Some(command) = self.commands.recv().await {
            self.handle(command).await;
            if self.members.is_empty() || self.ended {
                break;
            }
        }
        // Nobody is left to let those waiting in.
        let denied = ServerMessage::Denied { by: None }.to_json();
        for waiting in self.lobby.drain(..) {
            let _ = waiting.outbox.try_send(denied.clone().into());
        }
        // Close in this order: once unregistered no new command can arrive
        // through the registry, and joins already queued are refused so the
        // sender retries with a fresh room.
        self.registry
            .remove_entry(&self.meeting.slug, self.entry_id);
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            if let RoomCommand::Join { reply, .. } = command {
                let _ = reply.send(Err(JoinError::Closed));
            }
        }
        tracing::debug!("room closed");
    }

    async fn handle(&mut self, command: RoomCommand) {
        match command {
            RoomCommand::Join {
                participant,
                outbox,
                reply,
            } => {
                let result = self.join(participant, outbox);
                let _ = reply.send(result);
            }
            RoomCommand::Chat {
                participant_id,
                text,
                reference,
            } => {
                self.chat(&participant_id, text, reference).await;
            }
            RoomCommand::Leave { participant_id } => self.leave(&participant_id),
            RoomCommand::Remove {
                by,
                target,
                reference,
            } => {
                let line = self.remove(&by, &target, reference);
                self.audit(line).await;
            }
            RoomCommand::Lock {
                by,
                locked,
                reference,
            } => {
                let line = self.lock(&by, locked, reference);
                self.audit(line).await;
            }
            RoomCommand::Decide {
                by,
                target,
                admit,
                reference,
            } => {
                let line = self.decide(&by, &target, admit, reference);
                self.audit(line).await;
            }
            RoomCommand::LeaveLobby { participant_id } => {
                let before = self.lobby.len();
                self.lobby.retain(|w| w.participant.id != participant_id);
                if self.lobby.len() != before {
                    self.tell_hosts_lobby();
                }
            }
            RoomCommand::End { by, reference } => {
                let line = self.end(&by, reference);
                self.audit(line).await;
            }
            RoomCommand::Mute {
                by,
                target,
                reference,
            } => {
                let line = self.mute(&by, target.as_deref(), reference);
                self.audit(line).await;
            }
            RoomCommand::MakeHost {
                by,
                target,
                reference,
            } => self.make_host(&by, &target, reference).await,
            RoomCommand::StopVideo {
                by,
                target,
                source,
                reference,
            } => {
                let line = self.stop_video(&by, &target, source, reference);
                self.audit(line).await;
            }
            RoomCommand::MediaState {
                participant_id,
                media,
            } => {
                let Some(member) = self
                    .members
                    .iter_mut()
                    .find(|m| m.participant.id == participant_id)
                else {
                    return;
                };
                if member.participant.media == media {
                    return;
                }
                // What they turn on again themselves is forwarded again.
                for (source, on) in [
                    (Source::Microphone, media.audio),
                    (Source::Camera, media.video),
                    (Source::Screen, media.screen),
                ] {
                    if on && self.held.remove(&(participant_id.clone(), source)) {
                        hold(
                            &self.registry.sfu,
                            &self.meeting.slug,
                            &participant_id,
                            source,
                            false,
                        );
                    }
                }
                member.participant.media = media;
                let json = ServerMessage::MediaState {
                    participant_id: &participant_id,
                    media: &member.participant.media,
                }
                .to_json();
                self.broadcast(json.into());
            }
        }
    }

    fn join(&mut self, participant: Participant, outbox: Outbox) -> Result<Admission, JoinError> {
        if self.removed.contains(&participant.user_id) {
            return Err(JoinError::Removed);
        }
        if self.locked
            && participant.role != Role::Host
            && !self.admitted.contains(&participant.user_id)
        {
            return self.wait_in_lobby(participant, outbox);
        }
        if self.members.len() >= self.settings.max_participants {
            return Err(JoinError::Full);
        }
        let tabs = self
            .members
            .iter()
            .filter(|m| m.participant.user_id == participant.user_id)
            .count();
        if tabs >= self.settings.max_per_user {
            return Err(JoinError::TooManyTabs);
        }
        let welcome = ServerMessage::ExistingUsers {
            meeting: &self.meeting,
            me: &participant,
            participants: self.members.iter().map(|m| &m.participant).collect(),
            history: self.history.iter().collect(),
            publishing: Publishing {
                simulcast: self.settings.simulcast,
            },
            locked: self.locked,
        }
        .to_json();
        // A fresh outbox has room; if not, the connection is already gone.
        if outbox.try_send(welcome.into()).is_err() {
            return Err(JoinError::Closed);
        }
        tracing::info!(participant = %participant.id, user_id = participant.user_id, "joined");
        let joined = ServerMessage::UserJoined {
            participant: &participant,
        }
        .to_json();
        self.broadcast(joined.into());
        let host = participant.role == Role::Host;
        self.members.push(Member {
            participant,
            outbox,
        });
        self.count.store(self.members.len(), Ordering::Relaxed);
        if host && !self.lobby.is_empty() {
            self.tell_hosts_lobby();
        }
        Ok(Admission::Joined)
    }

    /// Puts a newcomer of a locked meeting in the lobby and tells the
    /// hosts.
    fn wait_in_lobby(
        &mut self,
        participant: Participant,
        outbox: Outbox,
    ) -> Result<Admission, JoinError> {
        if self.lobby.len() >= self.settings.max_participants {
            return Err(JoinError::Full);
        }
        let waiting = ServerMessage::LobbyWaiting {
            meeting: &self.meeting,
        }
        .to_json();
        if outbox.try_send(waiting.into()).is_err() {
            return Err(JoinError::Closed);
        }
        tracing::info!(participant = %participant.id, user_id = participant.user_id, "waiting in the lobby");
        self.lobby.push(Member {
            participant,
            outbox,
        });
        self.tell_hosts_lobby();
        Ok(Admission::Waiting)
    }

    /// Sends every host who is waiting in the lobby now.
    fn tell_hosts_lobby(&self) {
        let lobby: Utf8Bytes = ServerMessage::Lobby {
            waiting: self.lobby.iter().map(|w| &w.participant).collect(),
        }
        .to_json()
        .into();
        for member in self
            .members
            .iter()
            .filter(|m| m.participant.role == Role::Host)
        {
            let _ = member.outbox.try_send(lobby.clone());
        }
    }

    /// A host locks or unlocks the meeting; unlocking lets in everyone
    /// waiting.
    fn lock(&mut self, by: &str, locked: bool, reference: Option<serde_json::Value>) -> Audit {
        let host = self.host(by, reference.as_ref())?;
        if self.locked == locked {
            return None;
        }
        self.locked = locked;
        tracing::info!(by = %by, locked, "meeting lock changed");
        let notice = ServerMessage::MeetingLocked {
            locked,
            by: &host.display_name,
        }
        .to_json();
        self.broadcast(notice.into());
        if !locked {
            let admitted = ServerMessage::Admitted {}.to_json();
            for waiting in self.lobby.drain(..) {
                self.admitted.insert(waiting.participant.user_id);
                let _ = waiting.outbox.try_send(admitted.clone().into());
            }
            self.tell_hosts_lobby();
        }
        let what = if locked { "locked" } else { "unlocked" };
        let line = format!("{} {what} the meeting", host.display_name);
        Some((host, line))
    }

    /// A host lets `target` in from the lobby, or sends them away.
    fn decide(
        &mut self,
        by: &str,
        target: &str,
        admit: bool,
        reference: Option<serde_json::Value>,
    ) -> Audit {
        let host = self.host(by, reference.as_ref())?;
        let Some(index) = self.lobby.iter().position(|w| w.participant.id == target) else {
            let message = "nobody with that id is waiting";
            self.refuse(by, "not_found", message, reference.as_ref());
            return None;
        };
        // Dropping it closes the lobby outbox once the answer is out.
        let waiting = self.lobby.remove(index);
        let name = waiting.participant.display_name.clone();
        let answer = if admit {
            self.admitted.insert(waiting.participant.user_id);
            ServerMessage::Admitted {}.to_json()
        } else {
            ServerMessage::Denied {
                by: Some(&host.display_name),
            }
            .to_json()
        };
        let _ = waiting.outbox.try_send(answer.into());
        self.tell_hosts_lobby();
        tracing::info!(by = %by, participant = %target, admit, "lobby decision");
        let line = if admit {
            format!("{} let {name} in", host.display_name)
        } else {
            format!("{} turned {name} away", host.display_name)
        };
        Some((host, line))
    }

    fn leave(&mut self, participant_id: &str) {
        let Some(index) = self
            .members
            .iter()
            .position(|m| m.participant.id == participant_id)
        else {
            return;
        };
        self.members.remove(index);
        self.held.retain(|(id, _)| id != participant_id);
        self.count.store(self.members.len(), Ordering::Relaxed);
        tracing::info!(participant = %participant_id, "left");
        let left = ServerMessage::UserLeft { participant_id }.to_json();
        self.broadcast(left.into());
    }

    /// The host `by` (else `forbidden`): who they are; `None` after
    /// telling `by` why not.
    fn host(&self, by: &str, reference: Option<&serde_json::Value>) -> Option<PublicUser> {
        let member = self.members.iter().find(|m| m.participant.id == by)?;
        if member.participant.role == Role::Host {
            return Some(public_user(&member.participant));
        }
        let message = "only the meeting's hosts may do that";
        self.refuse(by, "forbidden", message, reference);
        None
    }

    /// Answers `to`'s request with an `error`.
    fn refuse(&self, to: &str, code: &str, message: &str, reference: Option<&serde_json::Value>) {
        if let Some(member) = self.members.iter().find(|m| m.participant.id == to) {
            let error = ServerMessage::Error {
                code,
                message,
                reference,
            }
            .to_json();
            let _ = member.outbox.try_send(error.into());
        }
    }

    /// A host takes `target` out, with every other tab of the same
    /// account, and keeps the account out while the meeting lasts.
    fn remove(&mut self, by: &str, target: &str, reference: Option<serde_json::Value>) -> Audit {
        let host = self.host(by, reference.as_ref())?;
        let Some((user_id, role, name)) = self
            .members
            .iter()
            .find(|m| m.participant.id == target)
            .map(|m| {
                (
                    m.participant.user_id,
                    m.participant.role,
                    m.participant.display_name.clone(),
                )
            })
        else {
            self.refuse(by, "not_found", NOT_IN_MEETING, reference.as_ref());
            return None;
        };
        if role == Role::Host {
            self.refuse(
                by,
                "forbidden",
                "hosts cannot be removed",
                reference.as_ref(),
            );
            return None;
        }
        self.removed.insert(user_id);
        tracing::info!(by = %by, user_id, "removed by a host");
        let notice = ServerMessage::Removed {
            by: &host.display_name,
        }
        .to_json();
        let tabs: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.participant.user_id == user_id)
            .map(|m| {
                let _ = m.outbox.try_send(notice.clone().into());
                m.participant.id.clone()
            })
            .collect();
        // Leaving drops their outboxes: each connection delivers the
        // notice, then closes; the others are told they left.
        for id in tabs {
            self.leave(&id);
        }
        let line = format!("{} removed {name}", host.display_name);
        Some((host, line))
    }

    /// A host turns `target`'s microphone off, or every non-host's: the
    /// SFU stops forwarding it at once (whatever their browser does), the
    /// room sees them muted, and they are told by whom.
    fn mute(
        &mut self,
        by: &str,
        target: Option<&str>,
        reference: Option<serde_json::Value>,
    ) -> Audit {
        let host = self.host(by, reference.as_ref())?;
        let (targets, line): (Vec<String>, String) = match target {
            Some(target) => {
                let Some(name) = self
                    .members
                    .iter()
                    .find(|m| m.participant.id == target)
                    .map(|m| m.participant.display_name.clone())
                else {
                    self.refuse(by, "not_found", NOT_IN_MEETING, reference.as_ref());
                    return None;
                };
                (
                    vec![target.to_string()],
                    format!("{} muted {name}", host.display_name),
                )
            }
            None => (
                self.members
                    .iter()
                    .filter(|m| m.participant.role != Role::Host)
                    .map(|m| m.participant.id.clone())
                    .collect(),
                format!("{} muted everyone", host.display_name),
            ),
        };
        tracing::info!(by = %by, count = targets.len(), "microphones muted by a host");
        let notice: Utf8Bytes = ServerMessage::MutedByHost {
            by: &host.display_name,
        }
        .to_json()
        .into();
        let mut changed = Vec::new();
        for id in targets {
            hold(
                &self.registry.sfu,
                &self.meeting.slug,
                &id,
                Source::Microphone,
                true,
            );
            self.held.insert((id.clone(), Source::Microphone));
            let Some(member) = self.members.iter_mut().find(|m| m.participant.id == id) else {
                continue;
            };
            let _ = member.outbox.try_send(notice.clone());
            if member.participant.media.audio {
                member.participant.media.audio = false;
                changed.push(
                    ServerMessage::MediaState {
                        participant_id: &member.participant.id,
                        media: &member.participant.media,
                    }
                    .to_json(),
                );
            }
        }
        for json in changed {
            self.broadcast(json.into());
        }
        Some((host, line))
    }

    /// A host turns `target`'s camera or shared screen off: the SFU stops
    /// forwarding it at once, the room sees it off, and they are told by
    /// whom. They may turn it on again themselves.
    fn stop_video(
        &mut self,
        by: &str,
        target: &str,
        source: Source,
        reference: Option<serde_json::Value>,
    ) -> Audit {
        let host = self.host(by, reference.as_ref())?;
        let Some(member) = self.members.iter_mut().find(|m| m.participant.id == target) else {
            self.refuse(by, "not_found", NOT_IN_MEETING, reference.as_ref());
            return None;
        };
        tracing::info!(by = %by, target, source = source.as_str(), "video stopped by a host");
        let line = match source {
            Source::Screen => format!(
                "{} stopped {}'s screen share",
                host.display_name, member.participant.display_name
            ),
            _ => format!(
                "{} turned off {}'s camera",
                host.display_name, member.participant.display_name
            ),
        };
        hold(&self.registry.sfu, &self.meeting.slug, target, source, true);
        self.held.insert((target.to_string(), source));
        let notice = ServerMessage::VideoStoppedByHost {
            by: &host.display_name,
            source: source.as_str(),
        }
        .to_json();
        let _ = member.outbox.try_send(notice.into());
        let media = &mut member.participant.media;
        let was_on = match source {
            Source::Screen => std::mem::replace(&mut media.screen, false),
            _ => std::mem::replace(&mut media.video, false),
        };
        if was_on {
            let json = ServerMessage::MediaState {
                participant_id: target,
                media: &member.participant.media,
            }
            .to_json();
            self.broadcast(json.into());
        }
        Some((host, line))
    }

    /// A host makes `target`'s account a co-host of this meeting: stored,
    /// then every tab of it becomes a host and the room is told.
    async fn make_host(&mut self, by: &str, target: &str, reference: Option<serde_json::Value>) {
        let Some(host) = self.host(by, reference.as_ref()) else {
            return;
        };
        let Some((user_id, name)) = self
            .members
            .iter()
            .find(|m| m.participant.id == target)
            .map(|m| (m.participant.user_id, m.participant.display_name.clone()))
        else {
            self.refuse(by, "not_found", NOT_IN_MEETING, reference.as_ref());
            return;
        };
        if let Err(e) = self.db.add_cohost(self.meeting_id, user_id, host.id).await {
            tracing::error!(error = %e, "could not store a co-host");
            let message = "could not save that; try again shortly";
            self.refuse(by, "unavailable", message, reference.as_ref());
            return;
        }
        tracing::info!(by = %by, user_id, "made a co-host");
        let mut changed = Vec::new();
        for member in &mut self.members {
            if member.participant.user_id == user_id && member.participant.role != Role::Host {
                member.participant.role = Role::Host;
                changed.push(
                    ServerMessage::RoleChanged {
                        participant_id: &member.participant.id,
                        role: Role::Host,
                    }
                    .to_json(),
                );
            }
        }
        for json in changed {
            self.broadcast(json.into());
        }
        if !self.lobby.is_empty() {
            self.tell_hosts_lobby();
        }
        let line = format!("{} made {name} a co-host", host.display_name);
        self.audit(Some((host, line))).await;
    }

    /// A host ends the meeting: everyone is told, then every connection
    /// in it closes and the room with them.
    fn end(&mut self, by: &str, reference: Option<serde_json::Value>) -> Audit {
        let host = self.host(by, reference.as_ref())?;
        tracing::info!(by = %by, "meeting ended by a host");
        let notice: Utf8Bytes = ServerMessage::MeetingEnded {
            by: &host.display_name,
        }
        .to_json()
        .into();
        for member in &self.members {
            let _ = member.outbox.try_send(notice.clone());
        }
        self.members.clear();
        self.count.store(0, Ordering::Relaxed);
        self.ended = true;
        let line = format!("{} ended the meeting", host.display_name);
        Some((host, line))
    }

    /// Stores a host action as a system line of the meeting's chat and
    /// shows it to everyone in it (and, through the history, to whoever
    /// joins later).
    async fn audit(&mut self, line: Audit) {
        let Some((host, text)) = line else {
            return;
        };
        match self
            .db
            .insert_system_line(self.meeting_id, host.id, &text)
            .await
        {
            Ok(stored) => {
                let view = ChatView {
                    id: stored.id,
                    user: host,
                    text,
                    sent_at: rfc3339(stored.sent_at),
                    system: true,
                };
                self.record(view);
            }
            Err(e) => tracing::error!(error = %e, "could not store a host action in the chat"),
        }
    }

    /// Keeps a stored chat line in the recent history and shows it to
    /// everyone.
    fn record(&mut self, view: ChatView) {
        let json = ServerMessage::ChatMessage(&view).to_json();
        if self.history.len() == HISTORY_ON_JOIN {
            self.history.pop_front();
        }
        self.history.push_back(view);
        self.broadcast(json.into());
    }

    async fn chat(
        &mut self,
        participant_id: &str,
        text: String,
        reference: Option<serde_json::Value>,
    ) {
        let Some(member) = self
            .members
            .iter()
            .find(|m| m.participant.id == participant_id)
        else {
            return;
        };
        let settings = self.settings;
        let budget = self
            .chat_rates
            .entry(member.participant.user_id)
            .or_insert_with(|| RateLimit::new(settings.chat_burst, settings.chat_per_minute));
        if !budget.take() {
            let message = "you are sending messages too fast; wait a moment";
            self.refuse(participant_id, "rate_limited", message, reference.as_ref());
            return;
        }
        let author = public_user(&member.participant);
        match self.db.insert_chat(self.meeting_id, author.id, &text).await {
            Ok(stored) => {
                let view = ChatView {
                    id: stored.id,
                    user: author,
                    text,
                    sent_at: rfc3339(stored.sent_at),
                    system: false,
                };
                self.record(view);
            }
            Err(e) => {
                tracing::error!(error = %e, participant = %participant_id, "could not store chat message");
                let message = "the message could not be saved; please try again";
                self.refuse(participant_id, "chat_failed", message, reference.as_ref());
            }
        }
    }

    /// Queues `message` for every member. A member whose outbox is full or
    /// closed is removed, and the others are told it left.
    fn broadcast(&mut self, message: Utf8Bytes) {
        let mut gone = Vec::new();
        for member in &self.members {
            match member.outbox.try_send(message.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    tracing::warn!(participant = %member.participant.id, "outbox full; dropping slow participant");
                    gone.push(member.participant.id.clone());
                }
                Err(TrySendError::Closed(_)) => gone.push(member.participant.id.clone()),
            }
        }
        // Dropping the member drops its outbox sender, which closes the
        // connection; `leave` then tells the others.
        for id in gone {
            self.leave(&id);
        }
    }
}

/// Tells the media plane to stop (or go on) forwarding `participant`'s
/// `source` in `room`.
fn hold(sfu: &zync_sfu::Sfu, room: &str, participant: &str, source: Source, held: bool) {
    let Some(id) = zync_sfu::ParticipantId::parse(participant) else {
        return;
    };
    let command = zync_sfu::Command::Hold {
        participant: id,
        source,
        held,
    };
    if let Err(e) = sfu.command_in(room, command) {
        tracing::warn!(error = %e, participant, "could not reach the media plane to hold a track");
    }
}

/// A participant's account as chat shows it.
fn public_user(p: &Participant) -> PublicUser {
    PublicUser {
        id: p.user_id,
        display_name: p.display_name.clone(),
        avatar_url: p.avatar_url.clone(),
    }
}
