//! One WebSocket connection: parse, validate and dispatch client messages;
//! deliver what the room queues; ping and time out silent peers.

use super::protocol::{
    CandidateInit, ClientMessage, MediaState, Participant, PcName, Role, ServerMessage,
    SessionDescription, SpeakerOut, TrackLabelIn, TrackOut, VideoSource, parse_client_message,
};
use super::rate::{RateLimit, SocketSlot};
use super::sessions::SessionWatch;
use crate::db::User;
use crate::meetings;
use crate::room::{Admission, JoinError, OUTBOX_CAPACITY, RoomCommand, RoomHandle};
use crate::state::AppState;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::Instrument;
use zync_sfu::{
    Command, Event as MediaEvent, Leg, ParticipantId, PublishOffer, SdpRefused, SfuSession, Source,
    TrackLabel, View, parse_answer,
};

/// The meeting a connection is in.
struct Joined {
    room: RoomHandle,
    participant_id: String,
    outbox: mpsc::Receiver<Utf8Bytes>,
    /// The participant in the media plane; dropping it removes it there.
    media: SfuSession,
    /// A subscribe offer was relayed and its answer has not come back:
    /// only then is an answer parsed.
    awaiting_answer: bool,
}

/// Waiting in the lobby of a locked meeting.
struct Waiting {
    room: RoomHandle,
    participant_id: String,
    /// The room's answer (`admitted` or `denied`), then closed.
    outbox: mpsc::Receiver<Utf8Bytes>,
}

/// When clients should first try to reconnect after `server-restarting`:
/// a restarted `zync` is usually listening again within a second.
const RESTART_RETRY_AFTER: Duration = Duration::from_millis(1000);

/// Why the loop ended.
#[derive(Debug)]
enum End {
    ClientClosed,
    TimedOut,
    Dropped,
    Shutdown,
    LoggedOut,
    /// Too many refused messages: closed so it stops costing work.
    Abusive,
}

struct Connection {
    state: AppState,
    user: User,
    socket: WebSocket,
    joined: Option<Joined>,
    waiting: Option<Waiting>,
    /// Counts against the account's open sockets until dropped.
    _slot: SocketSlot,
    /// Bounds signal and media-state messages (ICE candidates come in bursts).
    control_rate: RateLimit,
    /// `track-view` messages, limited apart from negotiation.
    view_rate: RateLimit,
    /// Ends when the login session that authorized this socket does.
    session_ended: Option<SessionWatch>,
    /// Refused messages a client may send (rate-limited, oversized, invalid
    /// SDP); a client that keeps sending them is disconnected.
    refusals: RateLimit,
    abusive: bool,
}

/// Refused messages a connection may cause at once, and per minute after.
const REFUSAL_BURST: u32 = 20;
const REFUSALS_PER_MINUTE: u32 = 20;
/// Error codes that count as refusals (not, e.g., `room_full`).
const REFUSALS: [&str; 7] = [
    "rate_limited",
    "message_too_large",
    "sdp_too_large",
    "too_many_tracks",
    "invalid_sdp",
    "invalid_signal",
    "no_offer_pending",
];

/// Signal and media-state messages a client may send at once, and per minute.
const CONTROL_BURST: u32 = 200;
const CONTROL_PER_MINUTE: u32 = 1200;
/// `track-view` messages at once (a grid of 100 tiles laid out anew) and
/// per minute (tiles resizing with the window, paging).
const VIEW_BURST: u32 = 400;
const VIEWS_PER_MINUTE: u32 = 2400;
/// Largest displayed size a `track-view` may claim (an 8K screen).
const MAX_VIEW_PIXELS: u32 = 8192;

/// Serves one upgraded connection until it closes.
pub async fn run(
    socket: WebSocket,
    state: AppState,
    user: User,
    session_ended: Option<SessionWatch>,
    slot: SocketSlot,
) {
    let span = tracing::info_span!("ws", user_id = user.id);
    serve_connection(socket, state, user, session_ended, slot)
        .instrument(span)
        .await;
}

async fn serve_connection(
    socket: WebSocket,
    state: AppState,
    user: User,
    session_ended: Option<SessionWatch>,
    slot: SocketSlot,
) {
    let control_rate = RateLimit::new(CONTROL_BURST, CONTROL_PER_MINUTE);
    let mut connection = Connection {
        state,
        user,
        socket,
        joined: None,
        waiting: None,
        _slot: slot,
        control_rate,
        view_rate: RateLimit::new(VIEW_BURST, VIEWS_PER_MINUTE),
        session_ended,
        refusals: RateLimit::new(REFUSAL_BURST, REFUSALS_PER_MINUTE),
        abusive: false,
    };
    let end = connection.serve().await;
    tracing::debug!(?end, "connection ended");
    connection.leave().await;
    if matches!(end, End::Shutdown) {
        // The client reconnects after this (to the restarted process) and
        // rejoins its meeting, instead of backing off as after a network
        // failure.
        let notice = serde_json::json!({
            "type": "server-restarting",
            "retry_after_ms": RESTART_RETRY_AFTER.as_millis() as u64,
        });
        let _ = connection
            .socket
            .send(Message::Text(notice.to_string().into()))
            .await;
    }
    if matches!(
        end,
        End::Shutdown | End::Dropped | End::LoggedOut | End::Abusive
    ) {
        let (code, reason) = match end {
            End::Shutdown => (close_code::RESTART, "server restarting"),
            End::LoggedOut => (close_code::POLICY, "logged out"),
            End::Abusive => (close_code::POLICY, "too many refused messages"),
            _ => (close_code::POLICY, "too slow to keep up"),
        };
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = connection.socket.send(Message::Close(Some(frame))).await;
    }
}

/// Something for the client from its meeting.
enum FromMeeting {
    /// A message the room queued (`None`: the room dropped us).
    Room(Option<Utf8Bytes>),
    /// An event from the media plane (`None`: it stopped).
    Media(Option<MediaEvent>),
}

/// The next thing from the room or the media plane; never if not in one.
async fn next_from_meeting(joined: &mut Option<Joined>) -> FromMeeting {
    match joined {
        Some(j) => tokio::select! {
            message = j.outbox.recv() => FromMeeting::Room(message),
            event = j.media.next_event() => FromMeeting::Media(event),
        },
        None => std::future::pending().await,
    }
}

/// The next message from the lobby we wait in (`None`: the room let go of
/// us); never if not waiting.
async fn next_from_lobby(waiting: &mut Option<Waiting>) -> Option<Utf8Bytes> {
    match waiting {
        Some(w) => w.outbox.recv().await,
        None => std::future::pending().await,
    }
}

/// Completes once the socket's login session has ended; never without one.
async fn session_ended(watch: &mut Option<SessionWatch>) {
    match watch {
        Some(watch) => watch.ended().await,
        None => std::future::pending().await,
    }
}

/// Completes once the server starts shutting down.
async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

impl Connection {
    async fn serve(&mut self) -> End {
        let ws = &self.state.config.websocket;
        let ping_every = Duration::from_millis(ws.ping_interval_ms.into());
        let idle_timeout = Duration::from_millis(ws.idle_timeout_ms.into());
        let mut ping = tokio::time::interval(ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = self.state.shutdown.clone();
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                frame = self.socket.recv() => {
                    let Some(Ok(frame)) = frame else { return End::ClientClosed };
                    last_heard = Instant::now();
                    match frame {
                        Message::Text(text) => {
                            self.on_text(&text).await;
                            if self.abusive {
                                tracing::warn!(user_id = self.user.id, "closing a connection that keeps sending refused messages");
                                return End::Abusive;
                            }
                        }
                        Message::Binary(_) => {
                            self.send_error("binary_not_supported", "send JSON text messages", None).await;
                        }
                        Message::Close(_) => return End::ClientClosed,
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
                from_meeting = next_from_meeting(&mut self.joined) => match from_meeting {
                    FromMeeting::Room(None) => return End::Dropped,
                    FromMeeting::Room(Some(json)) => {
                        if self.socket.send(Message::Text(json)).await.is_err() {
                            return End::ClientClosed;
                        }
                    }
                    FromMeeting::Media(event) => self.on_media_event(event).await,
                },
                from_lobby = next_from_lobby(&mut self.waiting) => match from_lobby {
                    // The room has answered, and let go of us.
                    None => self.waiting = None,
                    Some(json) => {
                        if self.socket.send(Message::Text(json)).await.is_err() {
                            return End::ClientClosed;
                        }
                    }
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() > idle_timeout {
                        return End::TimedOut;
                    }
                    if self.socket.send(Message::Ping(Default::default())).await.is_err() {
                        return End::ClientClosed;
                    }
                }
                () = stopped(&mut shutdown) => return End::Shutdown,
                () = session_ended(&mut self.session_ended) => return End::LoggedOut,
            }
        }
    }

    async fn on_text(&mut self, text: &str) {
        match parse_client_message(text, &self.state.config.limits) {
            Ok(message) => self.dispatch(message).await,
            Err(refused) => {
                self.send_error(refused.code, &refused.message, refused.reference.as_ref())
                    .await;
            }
        }
    }

    async fn dispatch(&mut self, message: ClientMessage) {
        match message {
            ClientMessage::JoinMeeting { slug, reference } => self.join(&slug, reference).await,
            ClientMessage::LeaveMeeting { reference } => {
                if self.joined.is_none() && self.waiting.is_none() {
                    return self.not_joined(reference).await;
                }
                self.leave().await;
            }
            ClientMessage::ChatMessage { text, reference } => self.chat(text, reference).await,
            ClientMessage::Signal {
                pc,
                sdp,
                candidate,
                tracks,
                reference,
            } => {
                self.signal(pc, sdp, candidate, tracks, reference).await;
            }
            ClientMessage::TrackView {
                participant,
                source,
                visible,
                width,
                height,
                reference,
            } => {
                let view = View {
                    visible,
                    width: width.min(MAX_VIEW_PIXELS),
                    height: height.min(MAX_VIEW_PIXELS),
                };
                self.track_view(&participant, &source, view, reference)
                    .await;
            }
            ClientMessage::IceRestart { reference } => self.restart_ice(reference).await,
            ClientMessage::RemoveParticipant {
                participant_id,
                reference,
            } => {
                self.send_to_room(reference, |by, reference| RoomCommand::Remove {
                    by,
                    target: participant_id,
                    reference,
                })
                .await;
            }
            ClientMessage::MuteParticipant {
                participant_id,
                reference,
            } => {
                self.send_to_room(reference, |by, reference| RoomCommand::Mute {
                    by,
                    target: Some(participant_id),
                    reference,
                })
                .await;
            }
            ClientMessage::MuteAll { reference } => {
                self.send_to_room(reference, |by, reference| RoomCommand::Mute {
                    by,
                    target: None,
                    reference,
                })
                .await;
            }
            ClientMessage::StopVideo {
                participant_id,
                source,
                reference,
            } => {
                let source = match source {
                    VideoSource::Camera => zync_sfu::Source::Camera,
                    VideoSource::Screen => zync_sfu::Source::Screen,
                };
                self.send_to_room(reference, |by, reference| RoomCommand::StopVideo {
                    by,
                    target: participant_id,
                    source,
                    reference,
                })
                .await;
            }
            ClientMessage::MakeHost {
                participant_id,
                reference,
            } => {
                self.send_to_room(reference, |by, reference| RoomCommand::MakeHost {
                    by,
                    target: participant_id,
                    reference,
                })
                .await;
            }
            ClientMessage::LockMeeting { locked, reference } => {
                self.send_to_room(reference, |by, reference| RoomCommand::Lock {
                    by,
                    locked,
                    reference,
                })
                .await;
            }
            ClientMessage::Admit {
                participant_id,
                reference,
            } => {
                self.send_to_room(reference, |by, reference| RoomCommand::Decide {
                    by,
                    target: participant_id,
                    admit: true,
                    reference,
                })
                .await;
            }
            ClientMessage::Deny {
                participant_id,
                reference,
            } => {
                self.send_to_room(reference, |by, reference| RoomCommand::Decide {
                    by,
                    target: participant_id,
                    admit: false,
                    reference,
                })
                .await;
            }
            ClientMessage::EndMeeting { reference } => {
                self.send_to_room(reference, |by, reference| RoomCommand::End {
                    by,
                    reference,
                })
                .await;
            }
            ClientMessage::MediaState {
                audio,
                video,
                screen,
                reference,
            } => {
                let media = MediaState {
                    audio,
                    video,
                    screen,
                };
                self.send_to_room(reference, |participant_id, _| RoomCommand::MediaState {
                    participant_id,
                    media,
                })
                .await;
            }
        }
    }

    /// Sends the room a command about us (a `media-state` or a host
    /// action), built from our participant id and the request's `ref`,
    /// once [`Connection::admit_control`] lets it through.
    async fn send_to_room(
        &mut self,
        reference: Option<Value>,
        command: impl FnOnce(String, Option<Value>) -> RoomCommand,
    ) {
        let Some(joined) = self.admit_control(&reference).await else {
            return;
        };
        let command = command(joined.participant_id.clone(), reference);
        joined.room.send(command).await;
    }

    /// Admits a `signal`, `media-state` or host message: the connection must be
    /// in a meeting and within the control rate. Otherwise the client gets
    /// the error and `None` comes back.
    async fn admit_control(&mut self, reference: &Option<Value>) -> Option<&Joined> {
        if self.joined.is_none() {
            self.not_joined(reference.clone()).await;
            return None;
        }
        if !self.control_rate.take() {
            let message = "too many signal, media-state or host messages; slow down";
            self.send_error("rate_limited", message, reference.as_ref())
                .await;
            return None;
        }
        self.joined.as_ref()
    }

    /// Asks the media plane for a subscribe offer that restarts ICE. It
    /// costs an offer, so it comes out of the account's offer budget.
    async fn restart_ice(&mut self, reference: Option<Value>) {
        if !self.take_offer(&reference).await {
            return;
        }
        let Some(joined) = self.admit_control(&reference).await else {
            return;
        };
        let command = Command::RestartIce {
            participant: joined.media.participant(),
        };
        self.send_to_media(command, &reference).await;
    }

    /// Takes one offer from the account's budget (all its sockets share
    /// it); `false`, with a `rate_limited` error sent, when it is spent.
    /// Only a joined socket spends: an unjoined one gets `not_joined`.
    async fn take_offer(&mut self, reference: &Option<Value>) -> bool {
        if self.joined.is_none() || self.state.user_limits.take_offer(self.user.id) {
            return true;
        }
        let message = "too many offers from this account; slow down";
        self.send_error("rate_limited", message, reference.as_ref())
            .await;
        false
    }

    /// Hands `command` to this participant's media plane; `false`, with an
    /// `unavailable` error sent, when its worker cannot take it now.
    async fn send_to_media(&mut self, command: Command, reference: &Option<Value>) -> bool {
        let Some(Err(e)) = self.joined.as_ref().map(|j| j.media.send(command)) else {
            return true;
        };
        let message = format!("{e}; try again shortly");
        self.send_error("unavailable", &message, reference.as_ref())
            .await;
        false
    }

    /// Tells the media plane what this participant shows of someone's
    /// video track.
    async fn track_view(
        &mut self,
        publisher: &str,
        source: &str,
        view: View,
        reference: Option<Value>,
    ) {
        let Some(publisher) = ParticipantId::parse(publisher) else {
            let message = format!("{publisher:?} is not a participant id");
            return self
                .send_error("invalid_message", &message, reference.as_ref())
                .await;
        };
        let Some(source) = Source::parse(source).filter(|s| s.is_video()) else {
            let message = format!("unknown video source {source:?}; use camera or screen");
            return self
                .send_error("invalid_message", &message, reference.as_ref())
                .await;
        };
        let Some(joined) = self.admit_view(&reference).await else {
            return;
        };
        let command = Command::TrackView {
            participant: joined.media.participant(),
            publisher,
            source,
            view,
        };
        self.send_to_media(command, &reference).await;
    }

    /// Admits a `track-view` message: in a meeting and within its own rate
    /// (a client resizing a grid sends one per tile at once).
    async fn admit_view(&mut self, reference: &Option<Value>) -> Option<&Joined> {
        if self.joined.is_none() {
            self.not_joined(reference.clone()).await;
            return None;
        }
        if !self.view_rate.take() {
            let message = "too many track-view messages; send at most one per tile per change";
            self.send_error("rate_limited", message, reference.as_ref())
                .await;
            return None;
        }
        self.joined.as_ref()
    }

    /// Passes one negotiation message to the media plane.
    async fn signal(
        &mut self,
        pc: PcName,
        sdp: Option<SessionDescription>,
        candidate: Option<CandidateInit>,
        tracks: Option<Vec<TrackLabelIn>>,
        reference: Option<Value>,
    ) {
        let max_sdp = self.state.config.limits.max_sdp_bytes as usize;
        if let Some(sdp) = &sdp
            && sdp.sdp.len() > max_sdp
        {
            let message = format!(
                "the SDP has {} bytes; limits.max_sdp_bytes is {max_sdp}",
                sdp.sdp.len()
            );
            return self
                .send_error("sdp_too_large", &message, reference.as_ref())
                .await;
        }
        let offering = pc == PcName::Publish && sdp.as_ref().is_some_and(|s| s.kind == "offer");
        let answering = pc == PcName::Subscribe && sdp.as_ref().is_some_and(|s| s.kind == "answer");
        // Parsing SDP is the costly part of a message: publish offers come
        // out of one budget per user (however many sockets it opens), and
        // answers are parsed only when an offer awaits one.
        if offering && !self.take_offer(&reference).await {
            return;
        }
        if answering && self.joined.as_ref().is_some_and(|j| !j.awaiting_answer) {
            let message = "an answer arrived but no subscribe offer is outstanding";
            return self
                .send_error("no_offer_pending", message, reference.as_ref())
                .await;
        }
        let Some(joined) = self.admit_control(&reference).await else {
            return;
        };
        let participant = joined.media.participant();
        let command = match (pc, sdp, candidate) {
            (PcName::Publish, Some(sdp), None) if sdp.kind == "offer" => {
                let mut labels = Vec::new();
                for label in tracks.unwrap_or_default() {
                    let Some(source) = Source::parse(&label.source) else {
                        let message = format!(
                            "unknown track source {:?}; use camera, microphone, screen or screen-audio",
                            label.source
                        );
                        return self
                            .send_error("invalid_signal", &message, reference.as_ref())
                            .await;
                    };
                    labels.push(TrackLabel {
                        mid: label.mid,
                        source,
                    });
                }
                // Checked and parsed here, on this connection's task, not
                // on the media worker that forwards everyone's packets.
                match PublishOffer::parse(&sdp.sdp, labels) {
                    Ok(offer) => Command::PublishOffer { participant, offer },
                    Err(e) => return self.refuse_sdp(e, reference).await,
                }
            }
            (PcName::Subscribe, Some(sdp), None) if sdp.kind == "answer" => {
                match parse_answer(&sdp.sdp) {
                    Ok(answer) => Command::SubscribeAnswer {
                        participant,
                        answer,
                    },
                    Err(e) => return self.refuse_sdp(e, reference).await,
                }
            }
            (pc, None, Some(candidate)) => {
                let line = candidate.line().trim();
                if line.is_empty() {
                    // End of candidates: nothing to do for an ICE-lite server.
                    return;
                }
                let leg = match pc {
                    PcName::Publish => Leg::Publish,
                    PcName::Subscribe => Leg::Subscribe,
                };
                Command::Candidate {
                    participant,
                    leg,
                    candidate: line.to_string(),
                }
            }
            _ => {
                let message =
                    "send an offer on \"publish\", an answer on \"subscribe\", or one candidate";
                return self
                    .send_error("invalid_signal", message, reference.as_ref())
                    .await;
            }
        };
        if !self.send_to_media(command, &reference).await {
            return;
        }
        if answering && let Some(joined) = self.joined.as_mut() {
            joined.awaiting_answer = false;
        }
    }

    /// Answers a refused SDP with its error.
    async fn refuse_sdp(&mut self, refused: SdpRefused, reference: Option<Value>) {
        self.send_error(refused.code(), &refused.to_string(), reference.as_ref())
            .await;
    }

    /// Relays what the media plane says about this participant.
    async fn on_media_event(&mut self, event: Option<MediaEvent>) {
        let message = match event {
            Some(MediaEvent::PublishAnswer { answer }) => ServerMessage::Signal {
                pc: PcName::Publish,
                sdp: SessionDescription {
                    kind: "answer".into(),
                    sdp: answer.to_sdp_string(),
                },
                tracks: None,
            }
            .to_json(),
            Some(MediaEvent::SubscribeOffer { offer, tracks }) => {
                if let Some(joined) = self.joined.as_mut() {
                    joined.awaiting_answer = true;
                }
                let tracks = tracks
                    .into_iter()
                    .map(|t| TrackOut {
                        mid: t.mid,
                        participant_id: t.participant.to_string(),
                        source: t.source.as_str(),
                        kind: t.kind.as_str(),
                    })
                    .collect();
                ServerMessage::Signal {
                    pc: PcName::Subscribe,
                    sdp: SessionDescription {
                        kind: "offer".into(),
                        sdp: offer.to_sdp_string(),
                    },
                    tracks: Some(tracks),
                }
                .to_json()
            }
            Some(MediaEvent::PublisherLayers { source, active }) => {
                ServerMessage::PublisherLayers {
                    source: source.as_str(),
                    active,
                }
                .to_json()
            }
            Some(MediaEvent::ActiveSpeakers { speakers }) => ServerMessage::ActiveSpeakers {
                speakers: speakers
                    .into_iter()
                    .map(|(id, level)| SpeakerOut {
                        participant_id: id.to_string(),
                        level,
                    })
                    .collect(),
            }
            .to_json(),
            Some(MediaEvent::Error { code, message }) => {
                return self.send_error(code, &message, None).await;
            }
            Some(MediaEvent::Failed { reason }) => {
                tracing::warn!(reason, "media connection failed; leaving the meeting");
                self.leave().await;
                let message =
                    format!("the media connection failed ({reason}); join again to retry");
                return self.send_error("media_failed", &message, None).await;
            }
            None => {
                self.leave().await;
                return self
                    .send_error("media_failed", "the media server stopped", None)
                    .await;
            }
        };
        let _ = self.socket.send(Message::Text(message.into())).await;
    }

    async fn join(&mut self, slug: &str, reference: Option<Value>) {
        if self.joined.is_some() {
            let message = "already in a meeting; send leave-meeting first";
            return self
                .send_error("already_joined", message, reference.as_ref())
                .await;
        }
        // Joining again from the lobby (after `admitted`), or elsewhere.
        self.leave().await;
        let meeting = match meetings::find(&self.state, slug).await {
            Ok(m) => m,
            Err(crate::error::ApiError::NotFound(_)) => {
                let message = "no meeting has that link";
                return self
                    .send_error("meeting_not_found", message, reference.as_ref())
                    .await;
            }
            Err(e) => {
                tracing::error!(error = %e, "meeting lookup failed");
                return self
                    .send_error("unavailable", "try again shortly", reference.as_ref())
                    .await;
            }
        };
        let role = match role_in(&self.state.db, self.user.id, &meeting).await {
            Ok(role) => role,
            Err(e) => {
                tracing::error!(error = %e, "co-host lookup failed");
                return self
                    .send_error("unavailable", "try again shortly", reference.as_ref())
                    .await;
            }
        };
        let media_id = ParticipantId(rand::random());
        let participant = Participant {
            id: media_id.to_string(),
            user_id: self.user.id,
            display_name: self.user.display_name.clone(),
            avatar_url: self.user.avatar_url(),
            media: MediaState::default(),
            role,
        };
        let participant_id = participant.id.clone();
        let (outbox, receiver) = mpsc::channel(OUTBOX_CAPACITY);
        // Media first: when the room announces the newcomer, its media
        // connections already exist.
        let media = match self.state.sfu.join(&meeting.slug, media_id) {
            Ok(media) => media,
            Err(e) => {
                tracing::error!(error = %e, "media plane refused a participant");
                let message = "the media server is unavailable";
                return self
                    .send_error("unavailable", message, reference.as_ref())
                    .await;
            }
        };
        match self.state.rooms.join(&meeting, participant, outbox).await {
            Ok((room, Admission::Waiting)) => {
                // No media until a host lets us in: `media` is dropped here,
                // and the client joins again once `admitted`.
                let mut receiver = receiver;
                if let Ok(waiting) = receiver.try_recv() {
                    let _ = self.socket.send(Message::Text(waiting)).await;
                }
                self.waiting = Some(Waiting {
                    room,
                    participant_id,
                    outbox: receiver,
                });
            }
            Ok((room, Admission::Joined)) => {
                // The room queued `existing-users` before answering; send it
                // now, so it is the first message after the join even if the
                // media plane already has an offer waiting.
                let mut receiver = receiver;
                if let Ok(welcome) = receiver.try_recv() {
                    let _ = self.socket.send(Message::Text(welcome)).await;
                }
                self.joined = Some(Joined {
                    room,
                    participant_id,
                    outbox: receiver,
                    media,
                    awaiting_answer: false,
                });
                let db = self.state.db.clone();
                let (meeting_id, user_id) = (meeting.id, self.user.id);
                tokio::spawn(async move {
                    if let Err(e) = db.record_join(meeting_id, user_id).await {
                        tracing::error!(error = %e, "could not record the join");
                    }
                });
            }
            Err(JoinError::Full) => {
                let message = format!(
                    "the meeting is full ({} participants)",
                    self.state.config.limits.max_room_participants
                );
                self.send_error("room_full", &message, reference.as_ref())
                    .await;
            }
            Err(JoinError::TooManyTabs) => {
                let message = format!(
                    "you are in this meeting {} times already; leave in another tab first",
                    self.state.config.limits.max_participants_per_user
                );
                self.send_error("too_many_tabs", &message, reference.as_ref())
                    .await;
            }
            Err(JoinError::Closed) => {
                self.send_error("unavailable", "try again shortly", reference.as_ref())
                    .await;
            }
            Err(JoinError::Removed) => {
                let message = "a host removed you from this meeting";
                self.send_error("removed", message, reference.as_ref())
                    .await;
            }
        }
    }

    async fn chat(&mut self, text: String, reference: Option<Value>) {
        let Some(joined) = &self.joined else {
            return self.not_joined(reference).await;
        };
        let max = self.state.config.limits.max_chat_chars as usize;
        if text.trim().is_empty() {
            return self
                .send_error("invalid_message", "chat text is empty", reference.as_ref())
                .await;
        }
        if text.chars().count() > max {
            let message = format!("chat messages are limited to {max} characters");
            return self
                .send_error("chat_too_long", &message, reference.as_ref())
                .await;
        }
        let command = RoomCommand::Chat {
            participant_id: joined.participant_id.clone(),
            text,
            reference,
        };
        if !joined.room.send(command).await {
            self.joined = None;
        }
    }

    /// Leaves the current meeting, if any.
    async fn leave(&mut self) {
        if let Some(waiting) = self.waiting.take() {
            let command = RoomCommand::LeaveLobby {
                participant_id: waiting.participant_id,
            };
            waiting.room.send(command).await;
        }
        if let Some(joined) = self.joined.take() {
            let command = RoomCommand::Leave {
                participant_id: joined.participant_id,
            };
            joined.room.send(command).await;
        }
    }

    async fn not_joined(&mut self, reference: Option<Value>) {
        let message = "send join-meeting first";
        self.send_error("not_joined", message, reference.as_ref())
            .await;
    }

    async fn send_error(&mut self, code: &str, message: &str, reference: Option<&Value>) {
        tracing::debug!(code, message, "refused a client message");
        if REFUSALS.contains(&code) && !self.refusals.take() {
            self.abusive = true;
        }
        let json = ServerMessage::Error {
            code,
            message,
            reference,
        }
        .to_json();
        let _ = self.socket.send(Message::Text(json.into())).await;
    }
}

/// `user_id`'s role in `meeting`: its creator and the co-hosts a host named
/// are hosts.
async fn role_in(
    db: &crate::db::Database,
    user_id: i64,
    meeting: &crate::db::Meeting,
) -> sqlx::Result<Role> {
    let host = meeting.created_by == user_id || db.is_cohost(meeting.id, user_id).await?;
    Ok(if host { Role::Host } else { Role::Participant })
}
