//! One worker thread: a UDP socket (and an ICE-TCP listener), the rooms
//! placed on it (a [`Core`]), and a loop that feeds the core datagrams,
//! commands and time.

use super::batch::BatchSize;
use super::delay::{DelayHistogram, DelayMeter};
use super::tcp::{IceTcp, TcpStats};
use super::udp;
use crate::api::{Command, Event, ParticipantId};
use crate::core::{Core, CoreStats, Participant};
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc::error::TrySendError;

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
/// The ICE-TCP listener; its connections take tokens from
/// [`super::tcp::FIRST_CONNECTION`] on.
pub const TCP_LISTENER: Token = Token(2);
/// The loop wakes at least this often (metrics, shutdown checks).
const MAX_SLEEP: Duration = Duration::from_millis(250);
/// How often counters are published to the metrics recorder.
const METRICS_EVERY: Duration = Duration::from_secs(1);
/// Receive batches handled before timers and sends get a turn.
pub const MAX_BATCHES_PER_TURN: usize = 16;

/// The histogram of subscribers' downlink estimates, bits/s, sampled once
/// per subscriber at each metrics export.
pub const ESTIMATE_METRIC: &str = "zync_sfu_subscriber_estimate_bps";
/// Its bucket bounds, bits/s: around the layers' bitrates (150 kbit/s,
/// 500 kbit/s and 1.5 Mbit/s) and what rooms of them add up to.
pub const ESTIMATE_BUCKETS: [f64; 10] = [
    150e3, 300e3, 500e3, 1e6, 1.5e6, 2.5e6, 5e6, 10e6, 20e6, 50e6,
];
/// Longest a turn spends on commands (joins, offers, answers: one answer
/// of a large room takes ~0.3 ms, and a burst of joins queues dozens)
/// before it forwards again; the rest wait for the next turn.
const COMMAND_BUDGET: Duration = Duration::from_millis(2);
/// Bytes of encrypted packets the outbox holds before they are sent (a
/// batch of 64 datagrams to a room of 25 is ~1.8 MB otherwise).
const OUTBOX_BYTES: usize = 256 * 1024;

/// A message to a worker.
pub enum WorkerMessage {
    /// Route this participant's events to `events`.
    Register(ParticipantId, tokio::sync::mpsc::Sender<Event>),
    /// A command for the core.
    Command(Command),
    /// A participant whose connections signaling built, to join `room`.
    Join(String, Box<Participant>),
    /// Stop the thread.
    Shutdown,
}

/// Figures a worker shares with the rest of the process.
#[derive(Debug, Default)]
pub struct WorkerLoad {
    /// Participants on this worker.
    pub participants: AtomicU64,
    /// Nanoseconds spent working (not waiting) in the loop.
    pub busy_nanos: AtomicU64,
    /// Of those, nanoseconds spent on commands (joins, offers, answers).
    pub negotiation_nanos: AtomicU64,
    /// How long received datagrams waited in the SFU.
    pub forward_delay: DelayHistogram,
    /// RTP packets forwarded since start (updated with the metrics, once
    /// a second).
    pub rtp_out: AtomicU64,
}

/// The worker's state, owned by its thread.
pub struct Worker {
    pub(super) index: usize,
    pub(super) core: Core,
    pub(super) socket: mio::net::UdpSocket,
    /// ICE-TCP, when on (registered with `poll` already).
    pub(super) tcp: Option<IceTcp>,
    pub(super) poll: Poll,
    pub(super) messages: Receiver<WorkerMessage>,
    pub(super) load: Arc<WorkerLoad>,
}

impl Worker {
    /// Creates the poller and the waker signaling uses to interrupt it.
    pub fn waker(poll: &Poll) -> std::io::Result<Arc<Waker>> {
        Ok(Arc::new(Waker::new(poll.registry(), WAKER)?))
    }

    /// Runs until told to stop or until every sender is gone.
    pub fn run(mut self) {
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut self.socket, SOCKET, Interest::READABLE)
        {
            tracing::error!(worker = self.index, error = %e, "cannot poll the media socket");
            return;
        }
        // Room for a readiness event of every busy ICE-TCP connection.
        let mut events = Events::with_capacity(256);
        let mut receiver = udp::Receiver::default();
        let mut sender = udp::Sender::default();
        let mut delay = DelayMeter::default();
        let mut batch_size = BatchSize::default();
        let mut sinks: HashMap<ParticipantId, tokio::sync::mpsc::Sender<Event>> = HashMap::new();
        let mut exported = CoreStats::default();
        let mut exported_tcp = TcpStats::default();
        let mut last_export = Instant::now();
        let worker = self.index.to_string();
        let mut commands_left = false;
        loop {
            let tcp_reads_left = self.tcp.as_ref().is_some_and(IceTcp::has_pending_reads);
            let sleep = match self.core.next_timeout() {
                // The waker fired for them already: do not wait for it again.
                _ if commands_left || tcp_reads_left => Duration::ZERO,
                Some(t) => t.saturating_duration_since(Instant::now()).min(MAX_SLEEP),
                None => MAX_SLEEP,
            };
            if let Err(e) = self.poll.poll(&mut events, Some(sleep))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                tracing::error!(worker = self.index, error = %e, "poll failed");
                return;
            }
            let started = Instant::now();

            // Commands first: a join must exist before its first STUN
            // packet. At most COMMAND_BUDGET of them, so that negotiation
            // never holds up forwarding for long.
            commands_left = false;
            loop {
                if started.elapsed() >= COMMAND_BUDGET {
                    commands_left = true;
                    break;
                }
                match self.messages.try_recv() {
                    Ok(WorkerMessage::Register(id, sink)) => {
                        sinks.insert(id, sink);
                    }
                    Ok(WorkerMessage::Join(room, participant)) => {
                        self.negotiate(|core, now| core.join_prepared(now, room, *participant));
                    }
                    Ok(WorkerMessage::Command(command)) => {
                        if let Command::Leave { participant } = &command {
                            sinks.remove(participant);
                        }
                        self.negotiate(|core, now| core.handle_command(now, command));
                    }
                    Ok(WorkerMessage::Shutdown) | Err(TryRecvError::Disconnected) => return,
                    Err(TryRecvError::Empty) => break,
                }
            }

            self.handle_tcp(&events, &mut sender);

            for _ in 0..MAX_BATCHES_PER_TURN {
                let now = Instant::now();
                let core = &mut self.core;
                let before = core.stats();
                match receiver.receive(&self.socket, batch_size.next(), |source, data| {
                    core.handle_datagram(now, source, data)
                }) {
                    Ok(0) => break,
                    // Encrypted per batch (each subscriber's packets
                    // together) and sent in outboxes of OUTBOX_BYTES, which
                    // bounds the memory, and all of it before the next
                    // batch, which bounds the delay to one batch.
                    Ok(_) => {
                        self.flush(&mut sender);
                        delay.forwarded(receiver.arrivals(), SystemTime::now());
                        let after = self.core.stats();
                        batch_size
                            .observe(after.rtp_in - before.rtp_in, after.rtp_out - before.rtp_out);
                    }
                    Err(e) => {
                        tracing::warn!(worker = self.index, error = %e, "receive failed");
                        break;
                    }
                }
            }

            self.core.handle_timeout(Instant::now());
            self.flush(&mut sender);
            while let Some((id, event)) = self.core.poll_event() {
                let failed = matches!(event, Event::Failed { .. });
                if let Some(sink) = sinks.get(&id) {
                    match sink.try_send(event) {
                        Ok(()) => {}
                        // Speaker reports are only of the moment: one
                        // that does not fit is dropped, not a reason to
                        // drop the participant.
                        Err(TrySendError::Full(Event::ActiveSpeakers { .. })) => {}
                        Err(TrySendError::Full(_)) => {
                            // Signaling is not keeping up with this
                            // participant; its negotiation is now broken.
                            tracing::warn!(worker = self.index, participant = %id, "event queue full; removing participant");
                            self.core
                                .handle_command(Instant::now(), Command::Leave { participant: id });
                            sinks.remove(&id);
                        }
                        Err(TrySendError::Closed(_)) => {
                            self.core
                                .handle_command(Instant::now(), Command::Leave { participant: id });
                            sinks.remove(&id);
                        }
                    }
                }
                if failed {
                    sinks.remove(&id);
                }
            }
            self.flush(&mut sender);
            delay.publish(&self.load.forward_delay);

            self.load
                .participants
                .store(self.core.participant_count() as u64, Ordering::Relaxed);
            self.load
                .busy_nanos
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            if last_export.elapsed() >= METRICS_EVERY {
                last_export = Instant::now();
                exported = self.export_metrics(&worker, exported);
                if let Some(tcp) = &mut self.tcp {
                    let core = &self.core;
                    tcp.close_idle(self.poll.registry(), last_export, |peer| {
                        core.routes_tcp_peer(peer)
                    });
                    exported_tcp = export_tcp_metrics(&worker, tcp, exported_tcp);
                }
            }
        }
    }

    /// Runs a command (negotiation work) on the core, counting its time.
    fn negotiate(&mut self, command: impl FnOnce(&mut Core, Instant)) {
        let at = Instant::now();
        command(&mut self.core, at);
        self.load
            .negotiation_nanos
            .fetch_add(at.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Sends everything the core produced, writing the forwarded packets
    /// still queued in outbox-sized parts (writing a whole queue at once
    /// grew the outbox to megabytes after a stall).
    fn flush(&mut self, sender: &mut udp::Sender) {
        self.send_full_outboxes(sender);
        self.send_outbox(sender);
    }

    /// Writes queued forwarded packets, sending the outbox each time it
    /// holds [`OUTBOX_BYTES`]; what is left under that waits in it.
    fn send_full_outboxes(&mut self, sender: &mut udp::Sender) {
        while self.core.flush_some(OUTBOX_BYTES) {
            self.send_outbox(sender);
        }
    }

    /// Hands the core what ICE-TCP connections received (frames left over
    /// from earlier turns first), and sends what it answers.
    fn handle_tcp(&mut self, events: &Events, sender: &mut udp::Sender) {
        let Some(tcp) = &mut self.tcp else {
            return;
        };
        let now = Instant::now();
        let core = &mut self.core;
        let registry = self.poll.registry();
        let mut deliver = |peer, frame: &[u8]| core.handle_tcp_frame(now, peer, frame);
        let mut any = tcp.has_pending_reads();
        tcp.read_pending(registry, now, &mut deliver);
        for event in events.iter() {
            any |= tcp.ready(event.token(), registry, now, &mut deliver);
        }
        if any {
            self.flush(sender);
        }
    }

    /// Sends the datagrams in the core's outbox: those from the ICE-TCP
    /// address through their TCP connections, the rest over UDP.
    fn send_outbox(&mut self, sender: &mut udp::Sender) {
        let tcp_source = self.tcp.as_mut().map(|tcp| {
            let source = tcp.candidate();
            // Without connections nothing can go out over TCP (and what
            // the core addressed there must not go out over UDP either).
            if tcp.connection_count() > 0 {
                for (from, to, bytes) in self.core.outbox().iter() {
                    if from == source {
                        tcp.send(to, bytes);
                    }
                }
                tcp.flush(self.poll.registry());
            }
            source
        });
        if let Err(e) = sender.send_outbox(&self.socket, self.core.outbox(), tcp_source) {
            tracing::warn!(worker = self.index, error = %e, "send failed");
        }
    }

    fn export_metrics(&self, worker: &str, previous: CoreStats) -> CoreStats {
        let now = self.core.stats();
        self.load.rtp_out.store(now.rtp_out, Ordering::Relaxed);
        let labels = [("worker", worker.to_string())];
        let counter = |name: &'static str, value: u64, before: u64| {
            metrics::counter!(name, &labels).increment(value.saturating_sub(before));
        };
        counter("zync_sfu_rtp_packets_in_total", now.rtp_in, previous.rtp_in);
        counter(
            "zync_sfu_layer_switch_keyframe_requests_total",
            now.layer_switch_keyframes,
            previous.layer_switch_keyframes,
        );
        counter(
            "zync_sfu_dynacast_changes_total",
            now.dynacast_changes,
            previous.dynacast_changes,
        );
        for (layer, (now, before)) in now
            .video_out_by_layer
            .iter()
            .zip(previous.video_out_by_layer)
            .enumerate()
        {
            let labels = [("worker", worker.to_string()), ("layer", layer.to_string())];
            metrics::counter!("zync_sfu_video_packets_out_total", &labels)
                .increment(now.saturating_sub(before));
        }
        counter(
            "zync_sfu_rtp_bytes_in_total",
            now.rtp_bytes_in,
            previous.rtp_bytes_in,
        );
        counter(
            "zync_sfu_rtp_packets_out_total",
            now.rtp_out,
            previous.rtp_out,
        );
        counter(
            "zync_sfu_rtp_bytes_out_total",
            now.rtp_bytes_out,
            previous.rtp_bytes_out,
        );
        counter(
            "zync_sfu_datagrams_dropped_total",
            now.dropped_datagrams,
            previous.dropped_datagrams,
        );
        counter(
            "zync_sfu_keyframe_requests_total",
            now.keyframe_requests,
            previous.keyframe_requests,
        );
        counter(
            "zync_sfu_keyframe_requests_throttled_total",
            now.keyframe_requests_throttled,
            previous.keyframe_requests_throttled,
        );
        counter("zync_sfu_nacks_total", now.nacks, previous.nacks);
        counter(
            "zync_sfu_resends_not_received_total",
            now.resends_not_received,
            previous.resends_not_received,
        );
        counter(
            "zync_sfu_resends_over_budget_total",
            now.resends_over_budget,
            previous.resends_over_budget,
        );
        counter("zync_sfu_rtp_resent_total", now.resends, previous.resends);
        counter(
            "zync_sfu_resends_missed_total",
            now.resends_missed,
            previous.resends_missed,
        );
        // One sample per subscriber per export: over time, how many
        // subscriber-seconds were spent at which estimate.
        let estimates = metrics::histogram!(ESTIMATE_METRIC, &labels);
        for bps in self.core.downlink_estimates() {
            estimates.record(bps as f64);
        }
        metrics::gauge!("zync_sfu_rooms", &labels).set(self.core.room_count() as f64);
        metrics::gauge!("zync_sfu_participants", &labels).set(self.core.participant_count() as f64);
        metrics::gauge!("zync_sfu_published_tracks", &labels).set(self.core.track_count() as f64);
        metrics::gauge!("zync_sfu_forwarded_tracks", &labels)
            .set(self.core.forwarded_track_count() as f64);
        metrics::gauge!("zync_sfu_paused_tracks", &labels)
            .set(self.core.paused_track_count() as f64);
        metrics::gauge!("zync_sfu_worker_busy_seconds", &labels)
            .set(self.load.busy_nanos.load(Ordering::Relaxed) as f64 / 1e9);
        metrics::gauge!("zync_sfu_worker_negotiation_seconds", &labels)
            .set(self.load.negotiation_nanos.load(Ordering::Relaxed) as f64 / 1e9);
        now
    }
}

/// Publishes the ICE-TCP counters that grew since `previous`.
fn export_tcp_metrics(worker: &str, tcp: &IceTcp, previous: TcpStats) -> TcpStats {
    let now = tcp.stats();
    let labels = [("worker", worker.to_string())];
    let counter = |name: &'static str, value: u64, before: u64| {
        metrics::counter!(name, &labels).increment(value.saturating_sub(before));
    };
    counter(
        "zync_sfu_tcp_connections_accepted_total",
        now.accepted,
        previous.accepted,
    );
    counter(
        "zync_sfu_tcp_connections_refused_total",
        now.refused,
        previous.refused,
    );
    counter(
        "zync_sfu_tcp_packets_dropped_total",
        now.dropped_full + now.dropped_no_connection,
        previous.dropped_full + previous.dropped_no_connection,
    );
    counter(
        "zync_sfu_tcp_bad_frames_total",
        now.bad_frames,
        previous.bad_frames,
    );
    metrics::gauge!("zync_sfu_tcp_connections", &labels).set(tcp.connection_count() as f64);
    now
}
