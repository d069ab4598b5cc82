//! A headless participant over the real network: it logs in, joins through
//! the WebSocket, negotiates both peer connections via `signal`, and sends
//! and receives synthetic media over its own UDP sockets on loopback.
//!
//! The media logic is the SFU testkit's [`SimPeer`] (str0m in RTP mode);
//! this module only adds the sockets and the signaling. The load generator
//! runs many of these.

use crate::{Client, WsClient};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use zync_sfu::testkit::sim::Bottleneck;
use zync_sfu::testkit::{MediaShape, SIMULCAST_SHARES, SimPeer};
use zync_sfu::{Command, Event, Kind, OfferedTrack, ParticipantId, SdpAnswer, SdpOffer, Source};

/// What a test can look at while the participant runs.
pub struct Observed {
    /// The media side (what was received, from whom).
    pub peer: SimPeer,
    /// Participant ids announced by `user-joined`.
    pub joined: HashSet<String>,
    /// Participant ids announced by `user-left`.
    pub left: HashSet<String>,
    /// Every server message, in order.
    pub messages: Vec<Value>,
    /// When the WebSocket was opened.
    pub opened_at: Instant,
    /// Set when the task stopped (and why).
    pub stopped: Option<String>,
    /// Datagrams the capped downlink dropped (see [`Receiving::downlink_bps`]).
    pub downlink_dropped: u64,
    /// Messages the test asked to send, sent on the runner's next turn.
    to_send: Vec<Value>,
}

impl Observed {
    /// Packets received from `from`'s `source`.
    pub fn packets_from(&self, from: &str, source: Source) -> u64 {
        let Ok(id) = u64::from_str_radix(from, 16) else {
            return 0;
        };
        self.peer
            .received
            .get(&(ParticipantId(id), source))
            .map_or(0, |r| r.packets)
    }

    /// The `error` messages the server sent.
    pub fn errors(&self) -> Vec<Value> {
        self.messages
            .iter()
            .filter(|m| m["type"] == "error")
            .cloned()
            .collect()
    }

    /// Whether the latest subscribe offer lists a track of `from`.
    pub fn has_tracks_of(&self, from: &str) -> bool {
        self.peer
            .tracks
            .values()
            .any(|t| t.participant.to_string() == from)
    }
}

/// A large tile, in device pixels: a spotlighted camera on a laptop.
pub const LARGE_TILE: (u32, u32) = (1280, 720);
/// A small tile, in device pixels: a thumbnail of a 16-tile page.
pub const SMALL_TILE: (u32, u32) = (320, 180);

/// What a participant shows of the others' cameras, reported the way the
/// web client reports it (`track-view`, docs/protocol.md): the others in
/// the order they joined, the first `large` in [`LARGE_TILE`]s, the next
/// `small` in [`SMALL_TILE`]s, the rest paged out (not visible). A view is
/// sent when a camera appears and whenever its tile changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct View {
    /// Cameras shown large.
    pub large: usize,
    /// Cameras shown small, after the large ones.
    pub small: usize,
}

/// One tile of a [`View`]: shown at a size, or paged out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tile {
    /// On screen, at this size in device pixels.
    Shown(u32, u32),
    /// Paged out.
    Hidden,
}

impl View {
    /// The tile of the camera at `position` among the others' (join order).
    pub fn tile(&self, position: usize) -> Tile {
        if position < self.large {
            Tile::Shown(LARGE_TILE.0, LARGE_TILE.1)
        } else if position < self.large + self.small {
            Tile::Shown(SMALL_TILE.0, SMALL_TILE.1)
        } else {
            Tile::Hidden
        }
    }
}

/// How a participant receives: what it decrypts, what it shows, and the
/// link it receives over.
#[derive(Debug, Clone, Copy)]
pub struct Receiving {
    /// The epoch media stamps count from (shared by all participants of a
    /// run, for latency).
    pub epoch: Instant,
    /// Decrypt one packet in this many per stream and count the rest from
    /// their headers (see `SimPeer::sample_every`); `None` decrypts all.
    pub sample_every: Option<u64>,
    /// Report what it shows with `track-view`; `None` sends none (every
    /// track arrives at its largest layer).
    pub view: Option<View>,
    /// Receive through a bottleneck of this many bits per second with a
    /// 200 ms queue (the testkit's [`Bottleneck`]): a weak downlink whose
    /// queueing delay and loss the SFU's bandwidth estimate can find.
    pub downlink_bps: Option<u64>,
}

impl Receiving {
    /// Decrypts everything, shows everything large, no cap.
    pub fn at(epoch: Instant) -> Self {
        Self {
            epoch,
            sample_every: None,
            view: None,
            downlink_bps: None,
        }
    }
}

/// A running headless participant.
pub struct TestParticipant {
    /// Its participant id in the meeting.
    pub id: String,
    observed: Arc<Mutex<Observed>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestParticipant {
    /// Opens a WebSocket as `client`, joins `slug`, publishes what `shape`
    /// says, and keeps running until stopped.
    pub async fn join(client: &Client, slug: &str, shape: MediaShape) -> Result<Self> {
        Self::join_at(client, slug, shape, Instant::now()).await
    }

    /// Like [`TestParticipant::join`], with the epoch media stamps count
    /// from (shared by all participants of a run, for latency).
    pub async fn join_at(
        client: &Client,
        slug: &str,
        shape: MediaShape,
        epoch: Instant,
    ) -> Result<Self> {
        Self::join_with(client, slug, shape, Receiving::at(epoch)).await
    }

    /// Like [`TestParticipant::join_at`], receiving as `receiving` says:
    /// load tests decrypt lightly, so the simulated browsers cost less
    /// than the SFU, and may show a page of tiles or cap the downlink.
    pub async fn join_with(
        client: &Client,
        slug: &str,
        shape: MediaShape,
        receiving: Receiving,
    ) -> Result<Self> {
        let opened_at = Instant::now();
        let mut ws = client.ws().await?;
        let welcome = ws.join(slug).await?;
        let id = welcome["self"]["id"]
            .as_str()
            .context("no self id")?
            .to_string();
        let numeric = u64::from_str_radix(&id, 16).context("participant id is not hex")?;
        let publish_socket = UdpSocket::bind("127.0.0.1:0").await?;
        let subscribe_socket = UdpSocket::bind("127.0.0.1:0").await?;
        // Room for bursts (a keyframe to many, GSO runs) while this task waits.
        zync_sfu::driver::udp::tune_socket(&subscribe_socket);
        let mut peer = SimPeer::new(
            ParticipantId(numeric),
            Instant::now(),
            receiving.epoch,
            publish_socket.local_addr()?,
            subscribe_socket.local_addr()?,
            shape,
        );
        peer.sample_every = receiving.sample_every;
        let roster = welcome["participants"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter_map(|p| p["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let observed = Arc::new(Mutex::new(Observed {
            peer,
            joined: HashSet::new(),
            left: HashSet::new(),
            messages: vec![welcome],
            opened_at,
            stopped: None,
            downlink_dropped: 0,
            to_send: Vec::new(),
        }));
        let (stop, stopped) = oneshot::channel();
        let run = Runner {
            ws,
            publish_socket,
            subscribe_socket,
            observed: observed.clone(),
            tiles: receiving.view.map(|view| Tiles {
                view,
                roster,
                sent: HashMap::new(),
            }),
            downlink: receiving.downlink_bps.map(|bps| Downlink {
                link: Bottleneck::new(bps),
                queue: VecDeque::new(),
            }),
        };
        let task = tokio::spawn(run.run(stopped));
        Ok(Self {
            id,
            observed,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Sends `message` on the participant's WebSocket (within ~50 ms; the
    /// runner sends it on its next turn).
    pub fn send(&self, message: Value) {
        self.observe().to_send.push(message);
    }

    /// A look at the current state.
    pub fn observe(&self) -> MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `condition` holds, or fails after `timeout` with `what`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&Observed) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let observed = self.observe();
                if condition(&observed) {
                    return Ok(());
                }
                if let Some(reason) = &observed.stopped {
                    bail!(
                        "participant {} stopped ({reason}) while waiting for {what}",
                        self.id
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("participant {} timed out waiting for {what}", self.id);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Closes the WebSocket politely and stops.
    pub async fn leave(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Disappears without a goodbye: the task is killed, so the WebSocket's
    /// TCP connection drops and the UDP sockets go silent.
    pub fn vanish(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for TestParticipant {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Most datagrams one socket's turn hands the peer before the runner looks
/// at its WebSocket and timers again.
const RECEIVE_BATCH: usize = 64;

struct Runner {
    ws: WsClient,
    publish_socket: UdpSocket,
    subscribe_socket: UdpSocket,
    observed: Arc<Mutex<Observed>>,
    /// What it shows and has told the server (with a [`View`]).
    tiles: Option<Tiles>,
    /// Its capped downlink, if any.
    downlink: Option<Downlink>,
}

/// The tiles a participant with a [`View`] shows, and the views it sent.
struct Tiles {
    view: View,
    /// The others in the meeting, in the order they joined (the welcome's
    /// list, then `user-joined`), as the web client orders its grid.
    roster: Vec<String>,
    /// The latest tile reported per participant whose camera is offered.
    sent: HashMap<String, Tile>,
}

impl Tiles {
    /// The `track-view` messages that tell the server about every change
    /// since the last call, given whose cameras are offered now.
    fn changes(&mut self, cameras: &HashSet<String>) -> Vec<Value> {
        let mut messages = Vec::new();
        let shown = self.roster.iter().filter(|id| cameras.contains(*id));
        for (position, id) in shown.enumerate() {
            let tile = self.view.tile(position);
            if self.sent.get(id) == Some(&tile) {
                continue;
            }
            self.sent.insert(id.clone(), tile);
            let (visible, width, height) = match tile {
                Tile::Shown(w, h) => (true, w, h),
                Tile::Hidden => (false, 0, 0),
            };
            messages.push(json!({
                "type": "track-view", "participant": id, "source": "camera",
                "visible": visible, "width": width, "height": height,
            }));
        }
        self.sent.retain(|id, _| cameras.contains(id));
        messages
    }
}

/// A capped downlink: received datagrams wait in a [`Bottleneck`]'s queue
/// until they would have crossed it, or are dropped when it is full.
struct Downlink {
    link: Bottleneck,
    /// Datagrams on the link, in order: when they come out, from where.
    queue: VecDeque<(Instant, SocketAddr, Vec<u8>)>,
}

impl Runner {
    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        let reason = match self.serve(&mut stopped).await {
            Ok(()) => "stopped".to_string(),
            Err(e) => format!("{e:#}"),
        };
        let mut ws = self.ws;
        if reason == "stopped" {
            let _ = ws.send(json!({"type": "leave-meeting"})).await;
        }
        let _ = ws.close().await;
        self.observed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stopped = Some(reason);
    }

    fn lock(&self) -> MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn serve(&mut self, stopped: &mut oneshot::Receiver<()>) -> Result<()> {
        let offer = self.lock().peer.publish_offer();
        if let Some(offer) = offer {
            self.send_command(offer).await?;
        }
        let mut buf = vec![0u8; 2048];
        let publish_addr = self.publish_socket.local_addr()?;
        let subscribe_addr = self.subscribe_socket.local_addr()?;
        loop {
            self.flush().await?;
            let mut deadline = self.lock().peer.next_timeout();
            if let Some(&(at, _, _)) = self.downlink.as_ref().and_then(|d| d.queue.front()) {
                deadline = deadline.min(at);
            }
            let sleep = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50));
            tokio::select! {
                _ = &mut *stopped => return Ok(()),
                message = self.ws.recv_within(Duration::from_secs(3600)) => {
                    let message = message?;
                    self.on_message(message).await?;
                }
                ready = self.publish_socket.readable() => {
                    ready?;
                    self.receive(&self.publish_socket, publish_addr, &mut buf)?;
                }
                ready = self.subscribe_socket.readable() => {
                    ready?;
                    if self.downlink.is_some() {
                        self.queue_downlink(&mut buf)?;
                    } else {
                        self.receive(&self.subscribe_socket, subscribe_addr, &mut buf)?;
                    }
                }
                _ = tokio::time::sleep(sleep) => {
                    self.lock().peer.handle_timeout(Instant::now());
                }
            }
            self.deliver_downlink(subscribe_addr);
        }
    }

    /// Puts what the subscribe socket holds on the capped downlink.
    fn queue_downlink(&mut self, buf: &mut [u8]) -> Result<()> {
        let Some(downlink) = self.downlink.as_mut() else {
            return Ok(());
        };
        let mut dropped = 0;
        for _ in 0..RECEIVE_BATCH {
            match self.subscribe_socket.try_recv_from(buf) {
                Ok((n, from)) => match downlink.link.admit(Instant::now(), n) {
                    Some(at) => downlink.queue.push_back((at, from, buf[..n].to_vec())),
                    None => dropped += 1,
                },
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        if dropped > 0 {
            self.lock().downlink_dropped += dropped;
        }
        Ok(())
    }

    /// Hands the peer the datagrams that crossed the capped downlink by now.
    fn deliver_downlink(&mut self, to: SocketAddr) {
        let Some(downlink) = self.downlink.as_mut() else {
            return;
        };
        let now = Instant::now();
        if downlink.queue.front().is_none_or(|(at, _, _)| *at > now) {
            return;
        }
        let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((at, from, contents)) = downlink.queue.pop_front() {
            if at > now {
                downlink.queue.push_front((at, from, contents));
                break;
            }
            observed.peer.handle_datagram(now, from, to, &contents);
        }
    }

    /// Hands the peer what `socket` holds, up to [`RECEIVE_BATCH`] datagrams
    /// under one lock: a subscriber in a 25-person meeting receives ~4000
    /// packets/s, and one trip round the `select!` per datagram made the
    /// generator cost more CPU than the server it measures.
    fn receive(&self, socket: &UdpSocket, to: SocketAddr, buf: &mut [u8]) -> Result<()> {
        let mut observed = self.lock();
        for _ in 0..RECEIVE_BATCH {
            match socket.try_recv_from(buf) {
                Ok((n, from)) => observed
                    .peer
                    .handle_datagram(Instant::now(), from, to, &buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn on_message(&mut self, message: Value) -> Result<()> {
        let reply = {
            // The field, not `lock()`: `tiles` is borrowed beside it.
            let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
            match message["type"].as_str() {
                Some("user-joined") => {
                    if let Some(id) = message["participant"]["id"].as_str() {
                        observed.joined.insert(id.to_string());
                        if let Some(tiles) = self.tiles.as_mut() {
                            tiles.roster.push(id.to_string());
                        }
                    }
                    None
                }
                Some("user-left") => {
                    if let Some(id) = message["participant_id"].as_str() {
                        observed.left.insert(id.to_string());
                        if let Some(tiles) = self.tiles.as_mut() {
                            tiles.roster.retain(|p| p != id);
                        }
                    }
                    None
                }
                Some("publisher-layers") => {
                    let active = message["active"]
                        .as_array()
                        .map(|rids| {
                            rids.iter()
                                .filter_map(|r| {
                                    SIMULCAST_SHARES
                                        .iter()
                                        .find(|(rid, _)| Some(*rid) == r.as_str())
                                        .map(|(rid, _)| *rid)
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    match Source::parse(message["source"].as_str().unwrap_or_default()) {
                        Some(source) => observed
                            .peer
                            .on_event(Instant::now(), Event::PublisherLayers { source, active }),
                        None => None,
                    }
                }
                Some("signal") => match signal_to_event(&message) {
                    Some(event) => {
                        if let Event::SubscribeOffer { .. } = &event
                            && let Some(sdp) = message["sdp"]["sdp"].as_str()
                        {
                            observed.peer.note_offer_text(sdp);
                        }
                        observed.peer.on_event(Instant::now(), event)
                    }
                    None => bail!("unexpected signal {message}"),
                },
                _ => None,
            }
        };
        let views = self.view_changes();
        self.lock().messages.push(message);
        if let Some(command) = reply {
            self.send_command(command).await?;
        }
        for view in views {
            self.ws.send(view).await?;
        }
        Ok(())
    }

    /// The `track-view` messages due now that the roster or the offered
    /// cameras changed (none without a [`View`]).
    fn view_changes(&mut self) -> Vec<Value> {
        let Some(tiles) = self.tiles.as_mut() else {
            return Vec::new();
        };
        let observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        let cameras: HashSet<String> = observed
            .peer
            .tracks
            .values()
            .filter(|t| t.source == Source::Camera)
            .map(|t| t.participant.to_string())
            .collect();
        drop(observed);
        tiles.changes(&cameras)
    }

    async fn send_command(&mut self, command: Command) -> Result<()> {
        let message = match command {
            Command::PublishOffer { offer, .. } => {
                let sdp = offer.sdp().to_sdp_string();
                let tracks: Vec<Value> = offer
                    .labels()
                    .iter()
                    .map(|t| json!({"mid": t.mid, "source": t.source.as_str()}))
                    .collect();
                json!({"type": "signal", "pc": "publish", "sdp": {"type": "offer", "sdp": sdp}, "tracks": tracks})
            }
            Command::SubscribeAnswer { answer, .. } => {
                json!({"type": "signal", "pc": "subscribe", "sdp": {"type": "answer", "sdp": answer.to_sdp_string()}})
            }
            other => bail!("the test participant does not send {other:?}"),
        };
        self.ws.send(message).await
    }

    /// Sends queued datagrams from the socket of the connection that made them.
    async fn flush(&mut self) -> Result<()> {
        let (datagrams, publish_addr, messages) = {
            let mut observed = self.lock();
            let publish_addr = observed.peer.addresses()[0];
            (
                observed.peer.take_outgoing().collect::<Vec<_>>(),
                publish_addr,
                std::mem::take(&mut observed.to_send),
            )
        };
        for message in messages {
            self.ws.send(message).await?;
        }
        for d in datagrams {
            let socket = if d.source == publish_addr {
                &self.publish_socket
            } else {
                &self.subscribe_socket
            };
            // Loopback only: the destination is the SFU's advertised address.
            let _ = socket.send_to(&d.contents, d.destination).await;
        }
        Ok(())
    }
}

/// Turns a `signal` message from the server into the SFU event it carries.
fn signal_to_event(message: &Value) -> Option<Event> {
    let sdp = message["sdp"]["sdp"].as_str()?;
    match (message["pc"].as_str()?, message["sdp"]["type"].as_str()?) {
        ("publish", "answer") => Some(Event::PublishAnswer {
            answer: SdpAnswer::from_sdp_string(sdp).ok()?,
        }),
        ("subscribe", "offer") => {
            let tracks = message["tracks"]
                .as_array()?
                .iter()
                .filter_map(|t| {
                    Some(OfferedTrack {
                        mid: t["mid"].as_str()?.to_string(),
                        participant: ParticipantId(
                            u64::from_str_radix(t["participant_id"].as_str()?, 16).ok()?,
                        ),
                        source: Source::parse(t["source"].as_str()?)?,
                        kind: if t["kind"] == "audio" {
                            Kind::Audio
                        } else {
                            Kind::Video
                        },
                    })
                })
                .collect();
            let offer = SdpOffer::from_sdp_string(sdp).ok()?;
            Some(Event::SubscribeOffer { offer, tracks })
        }
        _ => None,
    }
}
