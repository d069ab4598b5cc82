//! Datagrams and ICE-TCP frames reaching a media worker during a call:
//! from a participant's own address (after STUN, DTLS and SRTP are set
//! up: the demultiplexing and every parser behind it) or from anywhere
//! else. Nothing may panic; a participant may at worst lose its own
//! connection.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the sender and the transport.
    let Some((&pick, contents)) = data.split_first() else {
        return;
    };
    common::with_call(|sim| {
        let [publish, subscribe] = sim.peers[usize::from(pick & 1)].addresses();
        let source = match (pick >> 1) & 3 {
            0 => publish,
            1 => subscribe,
            _ => SocketAddr::from(([203, 0, 113, 9], 40_000)),
        };
        if pick & 0x10 == 0 {
            sim.core.handle_datagram(sim.now, source, contents);
        } else {
            sim.core.handle_tcp_frame(sim.now, source, contents);
        }
    });
});
