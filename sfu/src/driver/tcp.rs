//! ICE over TCP for one worker (RFC 6544 passive candidates): browsers
//! whose network blocks UDP connect to the worker's TCP port and send the
//! same STUN, DTLS and SRTP packets as over UDP, each framed with a 16-bit
//! length (RFC 4571). The worker hands every frame to the core as if it
//! were a datagram, and sends the core's packets for a TCP peer back
//! through its connection.
//!
//! A TCP connection must never stall the worker: sockets are non-blocking,
//! each connection's unsent bytes are bounded ([`WRITE_BUFFER`]), and a
//! packet that does not fit is dropped and counted, as a full UDP socket
//! buffer drops datagrams. Connections are bounded in number and closed
//! when idle, when they send a frame no WebRTC packet could be, or when
//! the peer closes.

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Tokens from here on are TCP connections (below: the worker's own).
pub const FIRST_CONNECTION: usize = 16;
/// Most connections one worker holds (each browser uses one per peer
/// connection, and tries one per candidate pair while checking).
pub const MAX_CONNECTIONS: usize = 1024;
/// Unsent bytes one connection may hold: about 0.7 s of a 3 Mbit/s
/// subscriber. Beyond it packets are dropped (and counted).
pub const WRITE_BUFFER: usize = 256 * 1024;
/// Largest frame accepted: no STUN, DTLS or SRTP packet of ours is bigger;
/// a longer one means the peer is not speaking RFC 4571.
pub const MAX_FRAME: usize = 2048;
/// A connection that received nothing for this long is closed (media
/// flows many times a second; ICE checks every few seconds).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection whose peer has not passed an ICE check (a STUN request
/// with a valid MESSAGE-INTEGRITY) this long after connecting is closed,
/// so that strangers cannot hold the connection slots.
pub const UNVERIFIED_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from one connection per readiness event before the others
/// get a turn; the rest is read on the next turn.
const READ_BUDGET: usize = 256 * 1024;

/// What the TCP side did, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TcpStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections refused because [`MAX_CONNECTIONS`] were open.
    pub refused: u64,
    /// Packets dropped because a connection's write buffer was full.
    pub dropped_full: u64,
    /// Packets for a TCP peer with no open connection.
    pub dropped_no_connection: u64,
    /// Connections closed for a frame longer than [`MAX_FRAME`].
    pub bad_frames: u64,
}

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    /// Bytes received, not yet a whole frame.
    read: Vec<u8>,
    /// Framed bytes to send; `written` of them are sent already.
    write: Vec<u8>,
    written: usize,
    opened: Instant,
    last_heard: Instant,
}

/// The worker's ICE-TCP listener and its connections.
pub struct IceTcp {
    listener: TcpListener,
    /// The advertised address of the listener: the source of every packet
    /// the core wants sent over TCP.
    candidate: SocketAddr,
    listener_token: Token,
    connections: HashMap<Token, Connection>,
    by_peer: HashMap<SocketAddr, Token>,
    next_token: usize,
    /// Connections with bytes still to send, or to read after their budget.
    pending_write: Vec<Token>,
    pending_read: Vec<Token>,
    stats: TcpStats,
}

impl IceTcp {
    /// Starts polling `listener` (advertised as `candidate`) with `token`.
    pub fn new(
        mut listener: TcpListener,
        candidate: SocketAddr,
        listener_token: Token,
        registry: &Registry,
    ) -> std::io::Result<Self> {
        registry.register(&mut listener, listener_token, Interest::READABLE)?;
        Ok(Self {
            listener,
            candidate,
            listener_token,
            connections: HashMap::new(),
            by_peer: HashMap::new(),
            next_token: FIRST_CONNECTION,
            pending_write: Vec::new(),
            pending_read: Vec::new(),
            stats: TcpStats::default(),
        })
    }

    /// The advertised address packets over TCP are sent from.
    pub fn candidate(&self) -> SocketAddr {
        self.candidate
    }

    /// Counters so far.
    pub fn stats(&self) -> TcpStats {
        self.stats
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Whether a connection still has bytes to read without a new event.
    pub fn has_pending_reads(&self) -> bool {
        !self.pending_read.is_empty()
    }

    /// Handles a readiness event for `token`, handing each whole frame
    /// received to `deliver(peer, frame)`. Returns false for tokens that are
    /// not this listener's.
    pub fn ready(
        &mut self,
        token: Token,
        registry: &Registry,
        now: Instant,
        deliver: &mut impl FnMut(SocketAddr, &[u8]),
    ) -> bool {
        if token == self.listener_token {
            self.accept(registry, now);
            return true;
        }
        if !self.connections.contains_key(&token) {
            return token.0 >= FIRST_CONNECTION;
        }
        self.read(token, registry, now, deliver);
        self.write(token, registry);
        true
    }

    /// Reads from connections that had more than their budget last time.
    pub fn read_pending(
        &mut self,
        registry: &Registry,
        now: Instant,
        deliver: &mut impl FnMut(SocketAddr, &[u8]),
    ) {
        for token in std::mem::take(&mut self.pending_read) {
            self.read(token, registry, now, deliver);
        }
    }

    fn accept(&mut self, registry: &Registry, now: Instant) {
        loop {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, say: the next event retries.
                    tracing::warn!(error = %e, "accepting an ICE-TCP connection failed");
                    return;
                }
            };
            if self.connections.len() >= MAX_CONNECTIONS || self.by_peer.contains_key(&peer) {
                self.stats.refused += 1;
                continue; // Dropping the stream closes it.
            }
            let _ = stream.set_nodelay(true);
            let token = Token(self.next_token);
            self.next_token = self.next_token.wrapping_add(1).max(FIRST_CONNECTION);
            if let Err(e) =
                registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            {
                tracing::warn!(error = %e, "cannot poll an ICE-TCP connection");
                continue;
            }
            self.stats.accepted += 1;
            self.by_peer.insert(peer, token);
            self.connections.insert(
                token,
                Connection {
                    stream,
                    peer,
                    read: Vec::new(),
                    write: Vec::new(),
                    written: 0,
                    opened: now,
                    last_heard: now,
                },
            );
        }
    }

    fn read(
        &mut self,
        token: Token,
        registry: &Registry,
        now: Instant,
        deliver: &mut impl FnMut(SocketAddr, &[u8]),
    ) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        let mut buf = [0u8; 16 * 1024];
        let mut budget = READ_BUDGET;
        let mut close = false;
        while budget > 0 {
            match connection.stream.read(&mut buf) {
                Ok(0) => {
                    close = true;
                    break;
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    connection.last_heard = now;
                    connection.read.extend_from_slice(&buf[..n]);
                    match deliver_frames(&mut connection.read, connection.peer, deliver) {
                        Ok(()) => {}
                        Err(()) => {
                            self.stats.bad_frames += 1;
                            close = true;
                            break;
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    close = true;
                    break;
                }
            }
        }
        if close {
            self.close(token, registry);
        } else if budget == 0 && !self.pending_read.contains(&token) {
            self.pending_read.push(token);
        }
    }

    /// Queues `packet` for `peer`'s connection (framed); dropped and counted
    /// when there is none or its buffer is full. [`IceTcp::flush`] sends.
    pub fn send(&mut self, peer: SocketAddr, packet: &[u8]) {
        let Some(&token) = self.by_peer.get(&peer) else {
            self.stats.dropped_no_connection += 1;
            return;
        };
        let Some(connection) = self.connections.get_mut(&token) else {
            self.stats.dropped_no_connection += 1;
            return;
        };
        let Ok(length) = u16::try_from(packet.len()) else {
            return;
        };
        if connection.write.len() - connection.written + 2 + packet.len() > WRITE_BUFFER {
            self.stats.dropped_full += 1;
            return;
        }
        if connection.written == connection.write.len() {
            connection.write.clear();
            connection.written = 0;
            self.pending_write.push(token);
        }
        connection.write.extend_from_slice(&length.to_be_bytes());
        connection.write.extend_from_slice(packet);
    }

    /// Writes what the connections have queued, as far as their sockets
    /// take it without blocking (the rest on their next writable event).
    pub fn flush(&mut self, registry: &Registry) {
        for token in std::mem::take(&mut self.pending_write) {
            self.write(token, registry);
        }
    }

    fn write(&mut self, token: Token, registry: &Registry) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        while connection.written < connection.write.len() {
            match connection
                .stream
                .write(&connection.write[connection.written..])
            {
                Ok(0) => break,
                Ok(n) => connection.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return self.close(token, registry),
            }
        }
        if connection.written == connection.write.len() {
            connection.write.clear();
            connection.written = 0;
        } else if connection.written > WRITE_BUFFER / 2 {
            // Keep the buffer from creeping: drop what is sent.
            connection.write.drain(..connection.written);
            connection.written = 0;
        }
    }

    /// Closes connections idle for longer than [`IDLE_TIMEOUT`], and those
    /// whose peer `verified` does not know [`UNVERIFIED_TIMEOUT`] after
    /// they opened.
    pub fn close_idle(
        &mut self,
        registry: &Registry,
        now: Instant,
        verified: impl Fn(SocketAddr) -> bool,
    ) {
        let idle: Vec<Token> = self
            .connections
            .iter()
            .filter(|(_, c)| {
                now.saturating_duration_since(c.last_heard) > IDLE_TIMEOUT
                    || (now.saturating_duration_since(c.opened) > UNVERIFIED_TIMEOUT
                        && !verified(c.peer))
            })
            .map(|(token, _)| *token)
            .collect();
        for token in idle {
            self.close(token, registry);
        }
    }

    fn close(&mut self, token: Token, registry: &Registry) {
        if let Some(mut connection) = self.connections.remove(&token) {
            let _ = registry.deregister(&mut connection.stream);
            self.by_peer.remove(&connection.peer);
        }
        self.pending_read.retain(|t| *t != token);
        self.pending_write.retain(|t| *t != token);
    }
}

/// Hands every whole RFC 4571 frame at the start of `buffer` to `deliver`
/// and keeps the incomplete rest. `Err` for a frame no packet of ours can
/// be (empty or longer than [`MAX_FRAME`]).
fn deliver_frames(
    buffer: &mut Vec<u8>,
    peer: SocketAddr,
    deliver: &mut impl FnMut(SocketAddr, &[u8]),
) -> Result<(), ()> {
    let mut start = 0;
    while buffer.len() - start >= 2 {
        let length = usize::from(u16::from_be_bytes([buffer[start], buffer[start + 1]]));
        if length == 0 || length > MAX_FRAME {
            return Err(());
        }
        let Some(frame) = buffer.get(start + 2..start + 2 + length) else {
            break;
        };
        deliver(peer, frame);
        start += 2 + length;
    }
    buffer.drain(..start);
    Ok(())
}

/// Binds a TCP listener on `ip` at the first free port of `min..=max`
/// (any free port when `min` is 0) other than `avoid` (the worker's UDP
/// port, so that packets' source ports tell the transports apart).
pub fn bind_in_range(
    ip: std::net::IpAddr,
    min: u16,
    max: u16,
    avoid: u16,
) -> Result<(std::net::TcpListener, u16), String> {
    let mut last = String::from("empty range");
    if min == 0 {
        for _ in 0..16 {
            let listener =
                std::net::TcpListener::bind(SocketAddr::new(ip, 0)).map_err(|e| e.to_string())?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            if port != avoid {
                return Ok((listener, port));
            }
        }
        return Err(format!("the system keeps giving port {avoid}"));
    }
    for port in min..=max {
        if port == avoid {
            continue;
        }
        match std::net::TcpListener::bind(SocketAddr::new(ip, port)) {
            Ok(listener) => return Ok((listener, port)),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5000))
    }

    #[test]
    fn frames_split_across_reads_are_delivered_whole() {
        let mut buffer = Vec::new();
        let mut got: Vec<Vec<u8>> = Vec::new();
        let stream = [0u8, 3, 1, 2, 3, 0, 2, 9, 9, 0, 4, 7];
        for byte in stream {
            buffer.push(byte);
            deliver_frames(&mut buffer, peer(), &mut |_, f| got.push(f.to_vec())).expect("valid");
        }
        assert_eq!(got, vec![vec![1, 2, 3], vec![9, 9]]);
        assert_eq!(buffer, vec![0, 4, 7], "the partial frame waits");
    }

    /// A listener on loopback with its poll, and a client connected to it.
    fn connected() -> (IceTcp, mio::Poll, std::net::TcpStream, SocketAddr) {
        let poll = mio::Poll::new().expect("poll");
        let (listener, port) = bind_in_range([127, 0, 0, 1].into(), 0, 0, 0).expect("listener");
        listener.set_nonblocking(true).expect("nonblocking");
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let tcp = IceTcp::new(
            TcpListener::from_std(listener),
            address,
            Token(2),
            poll.registry(),
        )
        .expect("ice-tcp");
        let client = std::net::TcpStream::connect(address).expect("connect");
        let peer = client.local_addr().expect("addr");
        (tcp, poll, client, peer)
    }

    /// Polls for up to a second, delivering frames to `got`.
    fn turn(tcp: &mut IceTcp, poll: &mut mio::Poll, got: &mut Vec<Vec<u8>>) {
        let mut events = mio::Events::with_capacity(16);
        poll.poll(&mut events, Some(Duration::from_secs(1)))
            .expect("poll");
        let now = Instant::now();
        let mut deliver = |_: SocketAddr, frame: &[u8]| got.push(frame.to_vec());
        for event in events.iter() {
            tcp.ready(event.token(), poll.registry(), now, &mut deliver);
        }
    }

    #[test]
    fn frames_arrive_and_answers_go_back_framed() {
        let (mut tcp, mut poll, mut client, peer) = connected();
        let mut got = Vec::new();
        while tcp.connection_count() == 0 {
            turn(&mut tcp, &mut poll, &mut got);
        }
        client.write_all(&[0, 2, 7, 7, 0, 1, 5]).expect("write");
        while got.len() < 2 {
            turn(&mut tcp, &mut poll, &mut got);
        }
        assert_eq!(got, vec![vec![7, 7], vec![5]]);
        tcp.send(peer, &[1, 2, 3]);
        tcp.flush(poll.registry());
        let mut answer = [0u8; 5];
        client.read_exact(&mut answer).expect("read");
        assert_eq!(answer, [0, 3, 1, 2, 3]);
    }

    #[test]
    fn a_peer_that_stops_reading_loses_packets_instead_of_stalling_the_worker() {
        let (mut tcp, mut poll, client, peer) = connected();
        let mut got = Vec::new();
        while tcp.connection_count() == 0 {
            turn(&mut tcp, &mut poll, &mut got);
        }
        // 20 MB at a peer that reads nothing: the kernel's buffers fill,
        // then ours (bounded), then packets are dropped. No call blocks.
        let packet = [0u8; 1200];
        let started = Instant::now();
        for _ in 0..16_000 {
            tcp.send(peer, &packet);
            tcp.flush(poll.registry());
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "sending blocked"
        );
        let stats = tcp.stats();
        assert!(stats.dropped_full > 10_000, "{stats:?}");
        let queued = tcp
            .connections
            .values()
            .map(|c| c.write.len() - c.written)
            .sum::<usize>();
        assert!(queued <= WRITE_BUFFER, "{queued} bytes queued");
        drop(client);
    }

    #[test]
    fn a_peer_not_speaking_rfc_4571_is_disconnected() {
        let (mut tcp, mut poll, mut client, _) = connected();
        let mut got = Vec::new();
        while tcp.connection_count() == 0 {
            turn(&mut tcp, &mut poll, &mut got);
        }
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let deadline = Instant::now() + Duration::from_secs(5);
        while tcp.connection_count() > 0 && Instant::now() < deadline {
            turn(&mut tcp, &mut poll, &mut got);
        }
        assert_eq!(tcp.connection_count(), 0);
        assert_eq!(tcp.stats().bad_frames, 1);
        assert!(got.is_empty());
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut buf = [0u8; 16];
        assert_eq!(
            client.read(&mut buf).unwrap_or(0),
            0,
            "closed by the server"
        );
    }

    #[test]
    fn connections_that_never_pass_an_ice_check_are_closed() {
        let (mut tcp, mut poll, _client, peer) = connected();
        let mut got = Vec::new();
        while tcp.connection_count() == 0 {
            turn(&mut tcp, &mut poll, &mut got);
        }
        let later = Instant::now() + UNVERIFIED_TIMEOUT + Duration::from_secs(1);
        tcp.close_idle(poll.registry(), later, |p| p == peer);
        assert_eq!(tcp.connection_count(), 1, "a verified peer stays");
        tcp.close_idle(poll.registry(), later, |_| false);
        assert_eq!(tcp.connection_count(), 0, "a stranger goes");
    }

    #[test]
    fn a_frame_no_packet_can_be_is_refused() {
        for bad in [[0u8, 0], [0x08, 0x01], [0xff, 0xff]] {
            let mut buffer = bad.to_vec();
            assert!(deliver_frames(&mut buffer, peer(), &mut |_, _| {}).is_err());
        }
    }
}
