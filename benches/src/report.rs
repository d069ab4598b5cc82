//! The figures of a run, as a table and as JSON.

use crate::plan::Plan;
use serde::Serialize;

/// Percentiles of a distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Samples.
    pub samples: usize,
}

impl Percentiles {
    /// From samples in microseconds.
    pub fn from_micros(mut samples: Vec<u64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at =
            |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        Self {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            samples: samples.len(),
        }
    }
}

/// What one forwarder (the SFU, or the raw relay) did in the measured window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Side {
    /// `sfu` or `relay`.
    pub forwarder: String,
    /// Participants that joined.
    pub joined: usize,
    /// Length of the measured window, seconds.
    pub seconds: f64,
    /// Packets per second the forwarder sent (its own count).
    pub forwarded_pps: f64,
    /// Packets per second the subscribers received.
    pub received_pps: f64,
    /// Bits per second the subscribers received (on the wire).
    pub received_bps: f64,
    /// Forwarder CPU time per forwarded packet, µs.
    pub cpu_us_per_packet: f64,
    /// Forwarder CPU use, % of one core.
    pub cpu_percent: f64,
    /// Forwarder peak resident memory, MiB.
    pub peak_rss_mib: f64,
    /// Forwarder memory added per participant, KiB.
    pub memory_per_participant_kib: f64,
    /// Load generator CPU time per packet it received, µs.
    pub generator_cpu_us_per_packet: f64,
    /// Load generator CPU use, % of one core.
    pub generator_cpu_percent: f64,
    /// Mean loss over subscribers, %.
    pub loss_mean_percent: f64,
    /// Worst subscriber's loss, %.
    pub loss_max_percent: f64,
    /// Publisher → subscriber latency.
    pub latency_ms: Percentiles,
    /// WebSocket open → first remote packet.
    pub join_ms: Percentiles,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was run.
    pub plan: Plan,
    /// Where (CPU model and cores).
    pub machine: String,
    /// When (UTC, RFC 3339).
    pub date: String,
    /// Through Zync's SFU.
    pub sfu: Option<Side>,
    /// Through the raw UDP relay.
    pub baseline: Option<Side>,
    /// SFU CPU per forwarded packet ÷ the relay's.
    pub cpu_ratio_sfu_to_baseline: Option<f64>,
    /// Every round's CPU figures, in the order run (`--rounds`); `sfu` and
    /// `baseline` above are the round with the median ratio.
    pub rounds: Vec<Round>,
}

/// One round's CPU per forwarded packet, for either forwarder that ran.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Round {
    /// Zync's SFU, µs.
    pub sfu_cpu_us_per_packet: Option<f64>,
    /// The raw relay, µs.
    pub relay_cpu_us_per_packet: Option<f64>,
    /// SFU ÷ relay.
    pub ratio: Option<f64>,
}

impl Round {
    /// The figures of one SFU run and one relay run.
    pub fn of(sfu: Option<&Side>, relay: Option<&Side>) -> Self {
        let sfu = sfu.map(|s| s.cpu_us_per_packet);
        let relay = relay.map(|s| s.cpu_us_per_packet);
        let ratio = match (sfu, relay) {
            (Some(s), Some(r)) if r > 0.0 => Some(s / r),
            _ => None,
        };
        Self {
            sfu_cpu_us_per_packet: sfu,
            relay_cpu_us_per_packet: relay,
            ratio,
        }
    }

    /// The index of the median round: by ratio when both forwarders ran,
    /// else by whichever CPU figure there is (the lower middle of an even
    /// count).
    pub fn median(rounds: &[Round]) -> usize {
        let key = |r: &Round| {
            r.ratio
                .or(r.sfu_cpu_us_per_packet)
                .or(r.relay_cpu_us_per_packet)
                .unwrap_or(0.0)
        };
        let mut order: Vec<usize> = (0..rounds.len()).collect();
        order.sort_by(|&a, &b| key(&rounds[a]).total_cmp(&key(&rounds[b])));
        order
            .get(rounds.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(0)
    }
}

impl Report {
    /// The table people read.
    pub fn table(&self) -> String {
        let mut out = format!(
            "zync-load: {} ({} room(s) x {} participants, {} publishing; video {}, {} kbit/s) on {}\n",
            self.plan.name,
            self.plan.rooms,
            self.plan.participants,
            self.plan.publishers,
            if self.plan.video { "on" } else { "off" },
            self.plan.video_bitrate / 1000,
            self.machine
        );
        let sides: Vec<&Side> = [self.sfu.as_ref(), self.baseline.as_ref()]
            .into_iter()
            .flatten()
            .collect();
        let row = |label: &str, f: &dyn Fn(&Side) -> String| {
            let mut line = format!("{label:<34}");
            for side in &sides {
                line.push_str(&format!("{:>16}", f(side)));
            }
            line.push('\n');
            line
        };
        out.push_str(&row("", &|s| s.forwarder.clone()));
        out.push_str(&row("participants joined", &|s| s.joined.to_string()));
        out.push_str(&row("forwarded packets/s (server)", &|s| {
            format!("{:.0}", s.forwarded_pps)
        }));
        out.push_str(&row("received packets/s (subscribers)", &|s| {
            format!("{:.0}", s.received_pps)
        }));
        out.push_str(&row("received Mbit/s (subscribers)", &|s| {
            format!("{:.1}", s.received_bps / 1e6)
        }));
        out.push_str(&row("CPU us per forwarded packet", &|s| {
            format!("{:.2}", s.cpu_us_per_packet)
        }));
        out.push_str(&row("CPU % of one core", &|s| {
            format!("{:.0}", s.cpu_percent)
        }));
        out.push_str(&row("peak RSS MiB", &|s| format!("{:.1}", s.peak_rss_mib)));
        out.push_str(&row("memory per participant KiB", &|s| {
            format!("{:.0}", s.memory_per_participant_kib)
        }));
        out.push_str(&row("loss mean / max %", &|s| {
            format!("{:.2}/{:.2}", s.loss_mean_percent, s.loss_max_percent)
        }));
        out.push_str(&row("latency p50/p95/p99 ms", &|s| {
            format!(
                "{:.1}/{:.1}/{:.1}",
                s.latency_ms.p50, s.latency_ms.p95, s.latency_ms.p99
            )
        }));
        out.push_str(&row("join p50/p95 ms", &|s| {
            format!("{:.0}/{:.0}", s.join_ms.p50, s.join_ms.p95)
        }));
        out.push_str(&row("generator CPU us per packet", &|s| {
            format!("{:.2}", s.generator_cpu_us_per_packet)
        }));
        out.push_str(&row("generator CPU % of one core", &|s| {
            format!("{:.0}", s.generator_cpu_percent)
        }));
        if self.rounds.len() > 1 {
            let figure =
                |v: Option<f64>, unit: &str| v.map_or("-".into(), |v| format!("{v:.2}{unit}"));
            out.push_str(
                "rounds (CPU us per forwarded packet, sfu / relay = ratio); the table is the median:\n",
            );
            for (i, r) in self.rounds.iter().enumerate() {
                out.push_str(&format!(
                    "  {}: {} / {} = {}\n",
                    i + 1,
                    figure(r.sfu_cpu_us_per_packet, ""),
                    figure(r.relay_cpu_us_per_packet, ""),
                    figure(r.ratio, "x"),
                ));
            }
        }
        if let Some(ratio) = self.cpu_ratio_sfu_to_baseline {
            out.push_str(&format!(
                "SFU / relay CPU per forwarded packet: {ratio:.2}x\n"
            ));
        }
        out
    }
}

/// "CPU model (N cores)" from /proc/cpuinfo.
pub fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU", str::trim)
        .to_string();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model} ({cores} cores)")
}

/// Now, as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (h, m, s) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}
