//! The datagrams a core wants sent, in one reusable byte arena.
//!
//! Forwarding appends each encrypted packet straight into the arena, so a
//! forwarded packet costs no allocation of its own; str0m's other output
//! (RTCP, STUN, DTLS, resends) arrives as owned [`Transmit`]s and is copied
//! in. The driver sends the whole outbox, then clears it (the capacity
//! stays for the next turn).

use std::net::SocketAddr;
use std::ops::Range;
use str0m::net::Transmit;

/// One datagram: where from, where to, and its bytes in the arena.
#[derive(Debug, Clone)]
struct Entry {
    source: SocketAddr,
    destination: SocketAddr,
    bytes: Range<usize>,
}

/// Datagrams to send, oldest first.
#[derive(Debug, Default)]
pub struct Outbox {
    arena: Vec<u8>,
    entries: Vec<Entry>,
}

impl Outbox {
    /// Adds a datagram str0m produced.
    pub fn push(&mut self, transmit: &Transmit) {
        let start = self.arena.len();
        self.arena.extend_from_slice(&transmit.contents);
        self.entries.push(Entry {
            source: transmit.source,
            destination: transmit.destination,
            bytes: start..self.arena.len(),
        });
    }

    /// Lets `write` append one datagram to the arena; it returns the
    /// (source, destination) to send it with, or `None` to add nothing
    /// (anything it appended is dropped). Returns whether a datagram was added.
    pub fn push_with(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> Option<(SocketAddr, SocketAddr)>,
    ) -> bool {
        let start = self.arena.len();
        match write(&mut self.arena) {
            Some((source, destination)) if self.arena.len() > start => {
                self.entries.push(Entry {
                    source,
                    destination,
                    bytes: start..self.arena.len(),
                });
                true
            }
            _ => {
                self.arena.truncate(start);
                false
            }
        }
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> usize {
        self.arena.len()
    }

    /// Datagrams waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The datagrams as (source, destination, bytes), oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, SocketAddr, &[u8])> {
        self.entries
            .iter()
            .map(|e| (e.source, e.destination, &self.arena[e.bytes.clone()]))
    }

    /// Forgets every datagram (after they were sent).
    pub fn clear(&mut self) {
        self.arena.clear();
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::net::Protocol;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn keeps_order_and_drops_refused_writes() {
        let mut outbox = Outbox::default();
        let transmit = Transmit {
            proto: Protocol::Udp,
            source: addr(1),
            destination: addr(2),
            contents: vec![1, 2, 3].into(),
        };
        outbox.push(&transmit);
        assert!(outbox.push_with(|buf| {
            buf.extend_from_slice(&[4, 5]);
            Some((addr(1), addr(3)))
        }));
        assert!(!outbox.push_with(|buf| {
            buf.extend_from_slice(&[9, 9, 9]);
            None
        }));
        let all: Vec<_> = outbox.iter().collect();
        assert_eq!(
            all,
            vec![
                (addr(1), addr(2), &[1u8, 2, 3][..]),
                (addr(1), addr(3), &[4u8, 5][..])
            ]
        );
        outbox.clear();
        assert!(outbox.is_empty());
    }
}
