//! The thin I/O driver: worker threads, each owning a UDP socket and the
//! rooms placed on it, and the handle signaling uses to reach them.

mod batch;
mod delay;
mod priority;
mod tcp;
pub mod udp;
mod worker;

use crate::api::{Command, Event, ParticipantId};
use crate::core::{Core, CoreConfig, VideoCodec};
pub use delay::DelaySnapshot;
pub use priority::yield_to_media;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
/// A worker's batching, which the load benchmark's raw relay copies.
pub use worker::{ESTIMATE_BUCKETS, ESTIMATE_METRIC, MAX_BATCHES_PER_TURN};
use worker::{Worker, WorkerLoad, WorkerMessage};

/// Events one participant may have queued before it is considered stuck.
const EVENT_QUEUE: usize = 64;
/// Messages a worker may have queued before signaling is told it is busy.
const WORKER_QUEUE: usize = 4096;

/// How the SFU is set up.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Address the worker sockets bind to.
    pub bind_ip: IpAddr,
    /// Address put in ICE candidates (the public IP behind 1:1 NAT);
    /// `None` advertises `bind_ip`.
    pub public_ip: Option<IpAddr>,
    /// Lowest UDP port a worker may take.
    pub port_min: u16,
    /// Highest UDP port a worker may take.
    pub port_max: u16,
    /// ICE-TCP: the TCP ports (lowest, highest) the workers take, one
    /// each; `None` turns ICE-TCP off. (0, 0) takes any free port.
    pub tcp_ports: Option<(u16, u16)>,
    /// Worker threads (each with one socket).
    pub workers: usize,
    /// The video codec every room uses.
    pub codec: VideoCodec,
    /// A connected participant silent this long is removed.
    pub media_timeout: Duration,
    /// A participant whose media has not connected this long after joining
    /// is removed.
    pub join_media_timeout: Duration,
    /// Estimate each subscriber's downlink and fit its layers to it.
    pub bandwidth_estimation: bool,
    /// The highest simulcast layer forwarded (0 `q`, 1 `h`, 2 `f`).
    pub max_video_layer: u8,
}

/// Why the SFU could not start or accept a participant.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    /// No port in the range could be bound.
    #[error("no free {protocol} port in {min}-{max} on {ip}: {reason}")]
    NoPort {
        /// "UDP" or "TCP".
        protocol: &'static str,
        /// Bind address.
        ip: IpAddr,
        /// Range start.
        min: u16,
        /// Range end.
        max: u16,
        /// Last error seen.
        reason: String,
    },
    /// `bind_ip` is a wildcard and no `public_ip` says what to advertise.
    #[error("sfu.bind_ip is {0}; set sfu.public_ip to the address browsers can reach")]
    NoAdvertisedAddress(IpAddr),
    /// Setting up a worker failed.
    #[error("starting a media worker: {0}")]
    Io(#[from] std::io::Error),
    /// The worker is gone (shutting down).
    #[error("the media plane is shutting down")]
    Stopped,
    /// The worker's queue is full; try again.
    #[error("the media plane is overloaded")]
    Busy,
    /// A participant's connections could not be set up.
    #[error("setting up the media connections: {0}")]
    Setup(String),
}

struct WorkerHandle {
    /// The worker's core settings (its candidate), to build joiners'
    /// connections off the worker.
    config: CoreConfig,
    messages: SyncSender<WorkerMessage>,
    waker: Arc<mio::Waker>,
    load: Arc<WorkerLoad>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl WorkerHandle {
    /// Queues a message without blocking (signaling runs on async threads).
    fn send(&self, message: WorkerMessage) -> Result<(), SfuError> {
        self.messages.try_send(message).map_err(|e| match e {
            TrySendError::Full(_) => SfuError::Busy,
            TrySendError::Disconnected(_) => SfuError::Stopped,
        })?;
        self.waker.wake().map_err(SfuError::Io)
    }
}

/// What the media plane carries ([`Sfu::load`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaLoad {
    /// Participants on all workers.
    pub participants: u64,
    /// RTP packets forwarded since start, all workers.
    pub rtp_out_total: u64,
}

/// Which worker holds each room, and how many participants it has there.
#[derive(Default)]
struct Placement {
    rooms: HashMap<String, (usize, usize)>,
}

struct Inner {
    workers: Vec<WorkerHandle>,
    placement: Mutex<Placement>,
}

/// Handle to the running media plane. Cheap to clone.
#[derive(Clone)]
pub struct Sfu {
    inner: Arc<Inner>,
}

impl Sfu {
    /// Binds one socket per worker and starts the threads.
    pub fn start(config: SfuConfig) -> Result<Self, SfuError> {
        let advertised = match config.public_ip {
            Some(ip) => ip,
            None if config.bind_ip.is_unspecified() => {
                return Err(SfuError::NoAdvertisedAddress(config.bind_ip));
            }
            None => config.bind_ip,
        };
        let mut workers = Vec::new();
        let mut next_port = config.port_min;
        let mut next_tcp_port = 0;
        // One DTLS certificate for every connection of the process.
        let mut core_config = CoreConfig::new(SocketAddr::new(advertised, 0));
        core_config.codec = config.codec;
        core_config.media_timeout = config.media_timeout;
        core_config.join_media_timeout = config.join_media_timeout;
        core_config.bandwidth_estimation = config.bandwidth_estimation;
        core_config.max_video_layer = config.max_video_layer;
        for index in 0..config.workers.max(1) {
            let (socket, port) = bind_in_range(config.bind_ip, next_port, config.port_max)
                .map_err(|reason| SfuError::NoPort {
                    protocol: "UDP",
                    ip: config.bind_ip,
                    min: config.port_min,
                    max: config.port_max,
                    reason,
                })?;
            if config.port_min != 0 {
                next_port = port.saturating_add(1);
            }
            socket.set_nonblocking(true)?;
            udp::tune_socket(&socket);
            let socket = mio::net::UdpSocket::from_std(socket);
            let candidate = SocketAddr::new(advertised, port);
            let poll = mio::Poll::new()?;
            let waker = Worker::waker(&poll)?;
            let tcp = match config.tcp_ports {
                None => None,
                Some((min, max)) => {
                    let (listener, tcp_port) =
                        tcp::bind_in_range(config.bind_ip, next_tcp_port.max(min), max, port)
                            .map_err(|reason| SfuError::NoPort {
                                protocol: "TCP",
                                ip: config.bind_ip,
                                min,
                                max,
                                reason,
                            })?;
                    if min != 0 {
                        next_tcp_port = tcp_port.saturating_add(1);
                    }
                    listener.set_nonblocking(true)?;
                    let address = SocketAddr::new(advertised, tcp_port);
                    let listener = mio::net::TcpListener::from_std(listener);
                    Some(tcp::IceTcp::new(
                        listener,
                        address,
                        worker::TCP_LISTENER,
                        poll.registry(),
                    )?)
                }
            };
            let (messages, receiver) = std::sync::mpsc::sync_channel(WORKER_QUEUE);
            let load = Arc::new(WorkerLoad::default());
            let worker_config = CoreConfig {
                candidate,
                tcp_candidate: tcp.as_ref().map(tcp::IceTcp::candidate),
                ..core_config.clone()
            };
            let worker = Worker {
                index,
                core: Core::new(worker_config.clone()),
                socket,
                tcp,
                poll,
                messages: receiver,
                load: load.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("zync-sfu-{index}"))
                .spawn(move || worker.run())?;
            match worker_config.tcp_candidate {
                Some(tcp) => {
                    tracing::info!(worker = index, %candidate, %tcp, "media worker listening (UDP, and ICE-TCP)")
                }
                None => tracing::info!(worker = index, %candidate, "media worker listening"),
            }
            workers.push(WorkerHandle {
                config: worker_config,
                messages,
                waker,
                load,
                thread: Mutex::new(Some(thread)),
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                workers,
                placement: Mutex::default(),
            }),
        })
    }

    /// Puts a participant into `room` on the room's worker (placing the room
    /// on the least-loaded worker if it is new). Events for it arrive on the
    /// returned session.
    pub fn join(&self, room: &str, participant: ParticipantId) -> Result<SfuSession, SfuError> {
        let worker = {
            let mut placement = self
                .inner
                .placement
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let least_loaded = || {
                (0..self.inner.workers.len())
                    .min_by_key(|i| {
                        self.inner.workers[*i]
                            .load
                            .participants
                            .load(Ordering::Relaxed)
                    })
                    .unwrap_or(0)
            };
            let entry = placement
                .rooms
                .entry(room.to_string())
                .or_insert_with(|| (least_loaded(), 0));
            entry.1 += 1;
            entry.0
        };
        let (sink, events) = tokio::sync::mpsc::channel(EVENT_QUEUE);
        let session = SfuSession {
            participant,
            room: room.to_string(),
            worker,
            inner: self.inner.clone(),
            events,
        };
        let handle = &self.inner.workers[worker];
        // Built here, on the joiner's task, not on the worker that forwards
        // the room's media.
        let connections = handle
            .config
            .connections(std::time::Instant::now(), participant)
            .map_err(|e| SfuError::Setup(e.to_string()))?;
        handle.send(WorkerMessage::Register(participant, sink))?;
        handle.send(WorkerMessage::Join(room.to_string(), Box::new(connections)))?;
        Ok(session)
    }

    /// Sends a command about a participant of `room` to the worker that
    /// holds the room, from outside that participant's session (a host
    /// acting on someone else). Nothing happens if the room is not here.
    pub fn command_in(&self, room: &str, command: Command) -> Result<(), SfuError> {
        let worker = self
            .inner
            .placement
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rooms
            .get(room)
            .map(|(worker, _)| *worker);
        match worker {
            Some(worker) => self.inner.workers[worker].send(WorkerMessage::Command(command)),
            None => Ok(()),
        }
    }

    /// Participants in the media plane now, and RTP packets forwarded
    /// since start (as of the workers' last once-a-second export).
    pub fn load(&self) -> MediaLoad {
        let mut load = MediaLoad::default();
        for worker in &self.inner.workers {
            load.participants += worker.load.participants.load(Ordering::Relaxed);
            load.rtp_out_total += worker.load.rtp_out.load(Ordering::Relaxed);
        }
        load
    }

    /// Appends the media plane's histograms to a Prometheus text
    /// exposition: `zync_sfu_forward_delay_seconds` per worker, how long
    /// received datagrams waited in the SFU (see [`DelaySnapshot`]).
    pub fn render_metrics(&self, out: &mut String) {
        const NAME: &str = "zync_sfu_forward_delay_seconds";
        out.push_str(&format!(
            "# HELP {NAME} Time from a datagram's arrival at the host to the last send of the batch that forwarded it.\n# TYPE {NAME} histogram\n"
        ));
        for (index, worker) in self.inner.workers.iter().enumerate() {
            let labels = format!("worker=\"{index}\"");
            worker
                .load
                .forward_delay
                .snapshot()
                .render(NAME, &labels, out);
        }
    }

    /// Stops every worker and waits for the threads.
    pub fn shutdown(&self) {
        for worker in &self.inner.workers {
            let _ = worker.send(WorkerMessage::Shutdown);
        }
        for worker in &self.inner.workers {
            let thread = worker
                .thread
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(thread) = thread {
                let _ = thread.join();
            }
        }
    }
}

/// One participant's link to the media plane. Dropping it removes the
/// participant (and its tracks) from the room.
pub struct SfuSession {
    participant: ParticipantId,
    room: String,
    worker: usize,
    inner: Arc<Inner>,
    events: tokio::sync::mpsc::Receiver<Event>,
}

impl SfuSession {
    /// The participant.
    pub fn participant(&self) -> ParticipantId {
        self.participant
    }

    /// Sends a command about this participant to its worker.
    pub fn send(&self, command: Command) -> Result<(), SfuError> {
        self.inner.workers[self.worker].send(WorkerMessage::Command(command))
    }

    /// The next event for this participant; `None` once the worker stopped.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }
}

impl Drop for SfuSession {
    fn drop(&mut self) {
        let _ = self.send(Command::Leave {
            participant: self.participant,
        });
        let mut placement = self
            .inner
            .placement
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = placement.rooms.get_mut(&self.room) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                placement.rooms.remove(&self.room);
            }
        }
    }
}

/// Binds the first free port in `first..=last`.
fn bind_in_range(ip: IpAddr, first: u16, last: u16) -> Result<(UdpSocket, u16), String> {
    let mut last_error = String::from("the range is empty");
    for port in first..=last {
        match UdpSocket::bind((ip, port)) {
            // Port 0 (tests) lets the system choose; report what it chose.
            Ok(socket) => {
                let port = socket.local_addr().map_err(|e| e.to_string())?.port();
                return Ok((socket, port));
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(last_error)
}
