//! The load a node publishes in the registry: meetings, participants,
//! CPU and forwarded packets, as rates over the time between two samples.

use crate::room::Registry;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// A node's load at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// Live meetings.
    pub meetings: u64,
    /// Participants in the media plane.
    pub participants: u64,
    /// The process's CPU since the previous sample, in % of one core.
    pub cpu_percent: f64,
    /// RTP packets forwarded per second since the previous sample.
    pub forwarded_packets_per_second: f64,
}

/// Samples this process's load; rates cover the time since the last call.
pub struct LoadSampler {
    rooms: Registry,
    sfu: zync_sfu::Sfu,
    last: Option<(Instant, Duration, u64)>,
}

impl LoadSampler {
    /// A sampler over this process's rooms and media plane.
    pub fn new(rooms: Registry, sfu: zync_sfu::Sfu) -> Self {
        Self {
            rooms,
            sfu,
            last: None,
        }
    }

    /// The load now (rates are zero on the first call).
    pub fn sample(&mut self) -> NodeLoad {
        let now = Instant::now();
        let cpu = process_cpu().unwrap_or_default();
        let media = self.sfu.load();
        let mut load = NodeLoad {
            meetings: self.rooms.room_count() as u64,
            participants: media.participants,
            ..NodeLoad::default()
        };
        if let Some((at, cpu_before, out_before)) = self.last {
            let elapsed = now.duration_since(at).as_secs_f64();
            if elapsed > 0.0 {
                load.cpu_percent =
                    round1(cpu.saturating_sub(cpu_before).as_secs_f64() / elapsed * 100.0);
                load.forwarded_packets_per_second =
                    round1(media.rtp_out_total.saturating_sub(out_before) as f64 / elapsed);
            }
        }
        self.last = Some((now, cpu, media.rtp_out_total));
        load
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// User plus system CPU time of this process so far (Linux `/proc`; `None`
/// elsewhere).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may
    // hold spaces; utime and stime are the line's 14th and 15th.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    // In clock ticks: 100 a second on every Linux Zync runs on.
    Some(Duration::from_millis((user + system) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_some_cpu() {
        let mut spin = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            spin = spin.wrapping_add(1);
        }
        assert!(spin > 0);
        assert!(process_cpu().is_some_and(|cpu| cpu > Duration::ZERO));
    }
}
