//! Batched UDP I/O: many datagrams per system call with `recvmmsg` and
//! `sendmmsg`. The hot path of the SFU (and of the raw relay baseline the
//! load generator compares it with) goes through here.

use nix::errno::Errno;
use nix::sys::socket::{
    MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg, setsockopt, sockopt,
};
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};

/// Datagrams per system call.
pub const BATCH: usize = 64;
/// Largest datagram accepted; WebRTC packets stay well under 1500 bytes.
pub const MAX_DATAGRAM: usize = 2048;
/// Socket buffer size asked of the kernel, so bursts are not dropped.
const SOCKET_BUFFER: usize = 4 << 20;

/// Asks for larger kernel socket buffers (best effort: the kernel caps them
/// at `net.core.rmem_max`/`wmem_max`).
pub fn tune_socket(socket: &impl AsFd) {
    let _ = setsockopt(socket, sockopt::RcvBuf, &SOCKET_BUFFER);
    let _ = setsockopt(socket, sockopt::SndBuf, &SOCKET_BUFFER);
}

/// Reusable buffers for batched receives.
pub struct Receiver {
    buffers: Vec<[u8; MAX_DATAGRAM]>,
    received: Vec<(SocketAddr, usize)>,
}

impl Default for Receiver {
    fn default() -> Self {
        Self {
            buffers: vec![[0; MAX_DATAGRAM]; BATCH],
            received: Vec::with_capacity(BATCH),
        }
    }
}

impl Receiver {
    /// Receives up to [`BATCH`] datagrams without blocking and hands each to
    /// `deliver`. Returns how many arrived (0 when none were waiting).
    pub fn receive(
        &mut self,
        socket: &impl AsRawFd,
        mut deliver: impl FnMut(SocketAddr, &[u8]),
    ) -> std::io::Result<usize> {
        self.received.clear();
        {
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
                .buffers
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            let results = match recvmmsg(
                socket.as_raw_fd(),
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(results) => results,
                Err(Errno::EAGAIN | Errno::EINTR) => return Ok(0),
                Err(e) => return Err(e.into()),
            };
            for message in results {
                if let Some(addr) = message.address.as_ref().and_then(to_socket_addr) {
                    self.received.push((addr, message.bytes));
                }
            }
        }
        for (i, (addr, len)) in self.received.iter().enumerate() {
            // Truncated datagrams (longer than the buffer) are cut at
            // MAX_DATAGRAM; they fail to parse and count as dropped.
            deliver(*addr, &self.buffers[i][..(*len).min(MAX_DATAGRAM)]);
        }
        Ok(self.received.len())
    }
}

/// Sends `datagrams` (destination, bytes) in batches. Returns how many the
/// kernel took; the rest were dropped because its buffer was full, as UDP
/// does under overload.
pub fn send_all<'a>(
    socket: &impl AsRawFd,
    datagrams: impl ExactSizeIterator<Item = (SocketAddr, &'a [u8])>,
) -> std::io::Result<usize> {
    let all: Vec<(SocketAddr, &[u8])> = datagrams.collect();
    let mut sent = 0;
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut retries = 0;
    while sent < all.len() {
        let chunk = &all[sent..(sent + BATCH).min(all.len())];
        let slices: Vec<[IoSlice<'_>; 1]> = chunk.iter().map(|(_, d)| [IoSlice::new(d)]).collect();
        let addrs: Vec<Option<SockaddrStorage>> = chunk
            .iter()
            .map(|(a, _)| Some(SockaddrStorage::from(*a)))
            .collect();
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
            Err(Errno::EAGAIN) if retries < 3 => {
                retries += 1;
                std::thread::yield_now();
            }
            Err(Errno::EAGAIN) => break,
            // A destination that cannot be reached must not stop the others.
            Err(Errno::ECONNREFUSED | Errno::EHOSTUNREACH | Errno::ENETUNREACH | Errno::EPERM) => {
                sent += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(sent)
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
