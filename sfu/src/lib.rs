//! Zync's media plane: a selective forwarding unit over str0m.
//!
//! - [`core`] is sans-IO: rooms and participants (two str0m `Rtc`s each, in
//!   RTP mode), driven by commands, datagrams and time.
//! - [`driver`] runs cores on worker threads, each with its own UDP socket
//!   and batched system calls.
//! - [`api`] is what signaling sends in and gets out.

pub mod api;
pub mod core;
pub mod driver;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use api::{
    Command, Event, Kind, Leg, OfferedTrack, ParticipantId, PublishOffer, SdpAnswer, SdpOffer,
    SdpRefused, Source, TrackLabel, View, parse_answer,
};
pub use core::VideoCodec;
pub use driver::{MediaLoad, Sfu, SfuConfig, SfuError, SfuSession, yield_to_media};
