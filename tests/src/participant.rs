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
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use zync_sfu::testkit::{MediaShape, SimPeer};
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

    /// Whether the latest subscribe offer lists a track of `from`.
    pub fn has_tracks_of(&self, from: &str) -> bool {
        self.peer
            .tracks
            .values()
            .any(|t| t.participant.to_string() == from)
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
        Self::join_with(client, slug, shape, epoch, None).await
    }

    /// Like [`TestParticipant::join_at`], receiving lightly: incoming RTP
    /// is counted from its headers and only one packet in `sample_every`
    /// per stream is decrypted (see `SimPeer::sample_every`). Load tests
    /// use this so the simulated browsers cost less than the SFU.
    pub async fn join_with(
        client: &Client,
        slug: &str,
        shape: MediaShape,
        epoch: Instant,
        sample_every: Option<u64>,
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
            epoch,
            publish_socket.local_addr()?,
            subscribe_socket.local_addr()?,
            shape,
        );
        peer.sample_every = sample_every;
        let observed = Arc::new(Mutex::new(Observed {
            peer,
            joined: HashSet::new(),
            left: HashSet::new(),
            messages: vec![welcome],
            opened_at,
            stopped: None,
            to_send: Vec::new(),
        }));
        let (stop, stopped) = oneshot::channel();
        let run = Runner {
            ws,
            publish_socket,
            subscribe_socket,
            observed: observed.clone(),
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
            let deadline = self.lock().peer.next_timeout();
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
                    self.receive(&self.subscribe_socket, subscribe_addr, &mut buf)?;
                }
                _ = tokio::time::sleep(sleep) => {
                    self.lock().peer.handle_timeout(Instant::now());
                }
            }
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
            let mut observed = self.lock();
            match message["type"].as_str() {
                Some("user-joined") => {
                    if let Some(id) = message["participant"]["id"].as_str() {
                        observed.joined.insert(id.to_string());
                    }
                    None
                }
                Some("user-left") => {
                    if let Some(id) = message["participant_id"].as_str() {
                        observed.left.insert(id.to_string());
                    }
                    None
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
        self.lock().messages.push(message);
        if let Some(command) = reply {
            self.send_command(command).await?;
        }
        Ok(())
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
