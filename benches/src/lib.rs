//! `zync-load`: how many people fit on this box, and how close Zync's
//! forwarding is to what the hardware allows.
//!
//! A run starts `zync` on loopback (or targets a running one), signs up
//! users, and has rooms of simulated participants (str0m peers, see
//! `zync_sfu::testkit`) join over the WebSocket, negotiate via `signal`,
//! and send and receive media over UDP for a bounded time, while some
//! leave and rejoin (churn) or many join at once (a join storm). At the end
//! it checks that everyone receives everyone and that subscribe offers stay
//! bounded, and fails if not. The same packet pattern can go through a raw
//! UDP relay (the baseline) for a CPU-per-packet comparison measured in the
//! same run.

pub mod crowd;
pub mod delay;
pub mod lag;
pub mod plan;
pub mod procstat;
pub mod relay;
pub mod report;
pub mod sfu_run;
