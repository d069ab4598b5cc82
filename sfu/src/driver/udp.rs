//! Batched UDP I/O: many datagrams per system call with `recvmmsg`,
//! `sendmmsg` and UDP GSO. The hot path of the SFU (and of the raw relay baseline the
//! load generator compares it with) goes through here.

use crate::core::Outbox;
use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg,
    sendmmsg, sendmsg, setsockopt, sockopt,
};
use nix::sys::time::TimeSpec;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

/// Datagrams per system call.
pub const BATCH: usize = 64;
/// Largest datagram accepted; WebRTC packets stay well under 1500 bytes.
pub const MAX_DATAGRAM: usize = 2048;
/// Socket buffer size asked of the kernel, so bursts are not dropped.
const SOCKET_BUFFER: usize = 4 << 20;

/// Asks for larger kernel socket buffers (best effort: the kernel caps them
/// at `net.core.rmem_max`/`wmem_max`) and for the kernel's receive
/// timestamp on every datagram (what [`Receiver::arrivals`] reports).
pub fn tune_socket(socket: &impl AsFd) {
    if let Err(e) = setsockopt(socket, sockopt::ReceiveTimestampns, &true) {
        tracing::warn!(error = %e, "no receive timestamps: forwarding delay is not measured");
    }
    // As root the *Force variants pass the sysctl caps (which default to
    // ~200 KiB, too small for a burst to a few hundred subscribers).
    if setsockopt(socket, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &SOCKET_BUFFER);
    }
    if setsockopt(socket, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(socket, sockopt::SndBuf, &SOCKET_BUFFER);
    }
}

/// Reusable buffers for batched receives: the message headers and data
/// buffers are allocated once, not on every call (which runs at least once
/// per loop turn, mostly to find the socket empty).
pub struct Receiver {
    buffers: Vec<[u8; MAX_DATAGRAM]>,
    headers: MultiHeaders<SockaddrStorage>,
    /// (buffer index, sender, length) of the last batch.
    received: Vec<(usize, SocketAddr, usize)>,
    /// Kernel receive stamps of the last batch, since the Unix epoch.
    arrivals: Vec<Duration>,
}

impl Default for Receiver {
    fn default() -> Self {
        Self {
            buffers: vec![[0; MAX_DATAGRAM]; BATCH],
            headers: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(TimeSpec))),
            received: Vec::with_capacity(BATCH),
            arrivals: Vec::with_capacity(BATCH),
        }
    }
}

impl Receiver {
    /// Receives up to `limit` (at most [`BATCH`]) datagrams without
    /// blocking and hands each to `deliver`. Returns how many arrived (0
    /// when none were waiting).
    pub fn receive(
        &mut self,
        socket: &impl AsRawFd,
        limit: usize,
        mut deliver: impl FnMut(SocketAddr, &[u8]),
    ) -> std::io::Result<usize> {
        self.received.clear();
        self.arrivals.clear();
        {
            let Self {
                buffers,
                headers,
                received,
                arrivals,
            } = self;
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                .iter_mut()
                .take(limit.max(1))
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            let results = match recvmmsg(
                socket.as_raw_fd(),
                headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(results) => results,
                Err(Errno::EAGAIN | Errno::EINTR) => return Ok(0),
                Err(e) => return Err(e.into()),
            };
            for (i, message) in results.enumerate() {
                if let Some(addr) = message.address.as_ref().and_then(to_socket_addr) {
                    received.push((i, addr, message.bytes));
                }
                let stamps = message.cmsgs().into_iter().flatten();
                arrivals.extend(stamps.filter_map(|cmsg| match cmsg {
                    ControlMessageOwned::ScmTimestampns(t) => {
                        Some(Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
                    }
                    _ => None,
                }));
            }
        }
        for &(i, addr, len) in &self.received {
            // Truncated datagrams (longer than the buffer) are cut at
            // MAX_DATAGRAM; they fail to parse and count as dropped.
            deliver(addr, &self.buffers[i][..len.min(MAX_DATAGRAM)]);
        }
        Ok(self.received.len())
    }

    /// When the datagrams of the last [`Receiver::receive`] reached this
    /// host (the kernel's `SO_TIMESTAMPNS`, since the Unix epoch); empty
    /// when the socket does not stamp.
    pub fn arrivals(&self) -> &[Duration] {
        &self.arrivals
    }
}

/// Most segments one GSO send may carry (the kernel's limit is 64).
const MAX_GSO_SEGMENTS: usize = 64;
/// Most bytes one GSO send may carry.
const MAX_GSO_BYTES: usize = 65_000;

/// Sends datagrams with as few system calls as possible: runs of
/// equal-sized packets to one destination go out as one UDP GSO send
/// (`UDP_SEGMENT`), everything else in `sendmmsg` batches.
pub struct Sender {
    /// Cleared when the kernel refuses GSO; sends fall back to `sendmmsg`.
    gso: bool,
    order: Vec<usize>,
    single: Vec<usize>,
}

impl Default for Sender {
    fn default() -> Self {
        Self {
            gso: true,
            order: Vec::new(),
            single: Vec::new(),
        }
    }
}

/// What one [`Sender::send`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Datagrams the kernel accepted.
    pub datagrams: usize,
    /// System calls made.
    pub syscalls: usize,
    /// Datagrams that went out inside GSO sends.
    pub segmented: usize,
}

impl Sender {
    /// Sends everything in `outbox` except what is from `tcp_source` (the
    /// worker's ICE-TCP address: those went over TCP), then empties it
    /// (also on error: what the kernel refused is dropped, as UDP does
    /// under overload).
    pub fn send_outbox(
        &mut self,
        socket: &impl AsRawFd,
        outbox: &mut Outbox,
        tcp_source: Option<SocketAddr>,
    ) -> std::io::Result<Sent> {
        if outbox.is_empty() {
            return Ok(Sent::default());
        }
        let datagrams: Vec<_> = match tcp_source {
            None => outbox.iter().map(|(_, to, bytes)| (to, bytes)).collect(),
            Some(tcp) => outbox
                .iter()
                .filter(|(from, _, _)| *from != tcp)
                .map(|(_, to, bytes)| (to, bytes))
                .collect(),
        };
        let sent = self.send(socket, &datagrams);
        outbox.clear();
        sent
    }

    /// Sends all `datagrams` (destination, bytes).
    pub fn send(
        &mut self,
        socket: &impl AsRawFd,
        datagrams: &[(SocketAddr, &[u8])],
    ) -> std::io::Result<Sent> {
        let mut sent = Sent::default();
        self.single.clear();
        if !self.gso {
            self.single.extend(0..datagrams.len());
        } else {
            // Group by destination, keeping each destination's order.
            self.order.clear();
            self.order.extend(0..datagrams.len());
            self.order.sort_by_key(|&i| datagrams[i].0);
            let mut start = 0;
            while start < self.order.len() {
                let run = gso_run(datagrams, &self.order[start..]);
                if run >= 2 {
                    // Singles waiting for this destination go first: one
                    // stream's datagrams leave in the order given (the
                    // browser NACKs a packet overtaken by the next ones).
                    let to = datagrams[self.order[start]].0;
                    if self.single.last().is_some_and(|&i| datagrams[i].0 == to) {
                        self.send_singles(socket, datagrams, &mut sent)?;
                    }
                    match self.send_segmented(socket, datagrams, start, run) {
                        Ok(()) => {
                            sent.datagrams += run;
                            sent.segmented += run;
                            sent.syscalls += 1;
                        }
                        Err(
                            Errno::EIO | Errno::EINVAL | Errno::EOPNOTSUPP | Errno::ENOPROTOOPT,
                        ) => {
                            tracing::info!("UDP GSO unavailable here; sending without it");
                            self.gso = false;
                            self.single
                                .extend_from_slice(&self.order[start..start + run]);
                        }
                        Err(Errno::EAGAIN | Errno::ENOBUFS) => {}
                        Err(e) => return Err(e.into()),
                    }
                } else {
                    self.single.push(self.order[start]);
                }
                start += run.max(1);
            }
        }
        self.send_singles(socket, datagrams, &mut sent)?;
        Ok(sent)
    }

    /// Sends the datagrams collected in `single`, in their order.
    fn send_singles(
        &mut self,
        socket: &impl AsRawFd,
        datagrams: &[(SocketAddr, &[u8])],
        sent: &mut Sent,
    ) -> std::io::Result<()> {
        if self.single.is_empty() {
            return Ok(());
        }
        let singles: Vec<(SocketAddr, &[u8])> = self.single.iter().map(|&i| datagrams[i]).collect();
        self.single.clear();
        let (n, calls) = send_batched(socket, &singles)?;
        sent.datagrams += n;
        sent.syscalls += calls;
        Ok(())
    }

    fn send_segmented(
        &mut self,
        socket: &impl AsRawFd,
        datagrams: &[(SocketAddr, &[u8])],
        start: usize,
        run: usize,
    ) -> Result<(), Errno> {
        let indices = &self.order[start..start + run];
        // One iovec per segment: the kernel joins them, no copy here.
        let iov: Vec<IoSlice<'_>> = indices
            .iter()
            .map(|&i| IoSlice::new(datagrams[i].1))
            .collect();
        let (destination, first) = datagrams[indices[0]];
        let segment = u16::try_from(first.len()).map_err(|_| Errno::EINVAL)?;
        let address = SockaddrStorage::from(destination);
        let cmsg = [ControlMessage::UdpGsoSegments(&segment)];
        sendmsg(
            socket.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_DONTWAIT,
            Some(&address),
        )
        .map(|_| ())
    }
}

/// How many datagrams from the start of `order` can share one GSO send:
/// same destination, all the size of the first except a shorter last one.
fn gso_run(datagrams: &[(SocketAddr, &[u8])], order: &[usize]) -> usize {
    let (destination, first) = datagrams[order[0]];
    let size = first.len();
    let mut total = 0;
    let mut n = 0;
    for &i in order.iter().take(MAX_GSO_SEGMENTS) {
        let (to, bytes) = datagrams[i];
        if to != destination
            || bytes.len() > size
            || total + bytes.len() > MAX_GSO_BYTES
            || size == 0
        {
            break;
        }
        total += bytes.len();
        n += 1;
        if bytes.len() < size {
            break; // A shorter segment can only be the last.
        }
    }
    n
}

/// Sends `datagrams` in `sendmmsg` batches. Returns (datagrams the kernel
/// took, system calls); the rest were dropped because its buffer was full,
/// as UDP does under overload.
pub fn send_batched(
    socket: &impl AsRawFd,
    all: &[(SocketAddr, &[u8])],
) -> std::io::Result<(usize, usize)> {
    let mut sent = 0;
    let mut calls = 0;
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut retries = 0;
    while sent < all.len() {
        let chunk = &all[sent..(sent + BATCH).min(all.len())];
        let slices: Vec<[IoSlice<'_>; 1]> = chunk.iter().map(|(_, d)| [IoSlice::new(d)]).collect();
        let addrs: Vec<Option<SockaddrStorage>> = chunk
            .iter()
            .map(|(a, _)| Some(SockaddrStorage::from(*a)))
            .collect();
        calls += 1;
        match sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            &slices,
            &addrs,
            [],
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(results) => {
                let n = results.count();
                if n == 0 {
                    break;
                }
                sent += n;
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN | Errno::ENOBUFS) if retries < 3 => {
                retries += 1;
                std::thread::yield_now();
            }
            Err(Errno::EAGAIN | Errno::ENOBUFS) => break,
            // A destination that cannot be reached must not stop the others.
            Err(Errno::ECONNREFUSED | Errno::EHOSTUNREACH | Errno::ENETUNREACH | Errno::EPERM) => {
                sent += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((sent, calls))
}

fn to_socket_addr(storage: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = storage.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::new(v4.ip(), v4.port())));
    }
    let v6 = storage.as_sockaddr_in6()?;
    Some(SocketAddr::V6(SocketAddrV6::new(
        v6.ip(),
        v6.port(),
        v6.flowinfo(),
        v6.scope_id(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    #[test]
    fn a_datagram_between_two_runs_keeps_its_place() {
        // Browsers' packets of one frame differ in size by a byte or so:
        // here a run of two (1000, 900), a single (899), then a run of
        // three. Sending the single after every run reordered the stream.
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
        receiver
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let to = receiver.local_addr().expect("addr");
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let sizes = [1000, 900, 899, 1000, 1000, 400, 1000];
        let payloads: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| vec![i as u8; n])
            .collect();
        let datagrams: Vec<(SocketAddr, &[u8])> = payloads.iter().map(|p| (to, &p[..])).collect();
        let sent = Sender::default().send(&socket, &datagrams).expect("send");
        assert_eq!(sent.datagrams, sizes.len());
        let mut buf = [0u8; 2048];
        let order: Vec<u8> = (0..sizes.len())
            .map(|_| {
                let n = receiver.recv(&mut buf).expect("datagram");
                buf[..n][0]
            })
            .collect();
        assert_eq!(order, [0, 1, 2, 3, 4, 5, 6], "sent in the order given");
    }

    #[test]
    fn gso_runs_and_singles_all_arrive_in_order() {
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
        receiver
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let other = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = receiver.local_addr().expect("addr");
        let elsewhere = other.local_addr().expect("addr");
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let payloads: Vec<Vec<u8>> = (0..6u8)
            .map(|i| vec![i; if i == 5 { 300 } else { 1000 }])
            .collect();
        let odd = [9u8; 50];
        let mut datagrams: Vec<(SocketAddr, &[u8])> =
            payloads.iter().map(|p| (to, &p[..])).collect();
        datagrams.insert(2, (elsewhere, &odd[..]));
        let mut sender = Sender::default();
        let sent = sender.send(&socket, &datagrams).expect("send");
        assert_eq!(sent.datagrams, 7);
        let mut buf = [0u8; 2048];
        for expected in &payloads {
            let n = receiver.recv(&mut buf).expect("datagram");
            assert_eq!(&buf[..n], &expected[..], "separate datagrams, in order");
        }
        let n = other.recv(&mut buf).expect("datagram");
        assert_eq!(&buf[..n], &odd[..]);
        // Where the kernel supports GSO, the run went out as one send.
        if sender.gso {
            assert_eq!(sent.segmented, 6);
            assert_eq!(sent.syscalls, 2);
        }
    }
}
