//! The figures of a run, as a table and as JSON.

use crate::crowd::Convergence;
use crate::delay::DelayFigures;
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
///
/// Every per-packet figure divides by the packets the subscribers counted,
/// read at the same instants as the `/proc` CPU samples, so CPU and packets
/// cover the same window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Side {
    /// `sfu` or `relay`.
    pub forwarder: String,
    /// Participants present at the end.
    pub joined: usize,
    /// Length of the measured window, seconds (what the rates divide by).
    pub seconds: f64,
    /// Packets per second the subscribers received (RTP; counted from
    /// their headers).
    pub forwarded_pps: f64,
    /// Packets per second by the forwarder's own count (the SFU's
    /// `/metrics`, the relay's report), a cross-check: it is updated once a
    /// second, so its window may be off by up to a second at each end.
    pub forwarder_count_pps: Option<f64>,
    /// Bits per second the subscribers received (on the wire).
    pub received_bps: f64,
    /// Forwarder CPU time per forwarded packet, µs.
    pub cpu_us_per_packet: f64,
    /// Forwarder CPU use, % of one core.
    pub cpu_percent: f64,
    /// Forwarder peak resident memory, MiB.
    pub peak_rss_mib: f64,
    /// Forwarder memory added per participant present at the end, KiB,
    /// taken after the window's last second (steady state).
    pub memory_per_participant_kib: f64,
    /// Load generator CPU time per packet it received, µs.
    pub generator_cpu_us_per_packet: f64,
    /// Load generator CPU use, % of one core.
    pub generator_cpu_percent: f64,
    /// How late the generator's runtime woke a task that asked every 5 ms
    /// (latency is measured inside the generator: this is its share).
    pub generator_lag_ms: Option<Percentiles>,
    /// Mean loss over subscribers, %.
    pub loss_mean_percent: f64,
    /// Worst subscriber's loss, %.
    pub loss_max_percent: f64,
    /// Publisher → subscriber latency, as the generator measures it (its
    /// own lateness included).
    pub latency_ms: Percentiles,
    /// How long received datagrams waited inside the SFU (its
    /// `/metrics` histogram; SFU only).
    pub forward_delay: Option<DelayFigures>,
    /// WebSocket open → first remote packet.
    pub join_ms: Percentiles,
    /// The largest subscribe offer any participant received (SFU only).
    pub largest_sdp: Option<SdpSize>,
    /// The final check that everyone receives everyone (SFU only).
    pub delivery: Option<Delivery>,
    /// Layers, views and estimates (SFU runs of adapting plans).
    pub adaptation: Option<Adaptation>,
    /// Leave/rejoin cycles done (churn runs).
    pub churn_cycles: Option<usize>,
    /// The existing participants' latency around a join storm.
    pub storm: Option<StormFigures>,
    /// Checks that failed; any makes the tool exit with an error.
    pub failures: Vec<String>,
}

/// Size of a subscribe offer.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SdpSize {
    /// SDP bytes.
    pub bytes: usize,
    /// m-lines.
    pub m_lines: usize,
    /// The most m-lines allowed (see `Plan::sdp_m_line_bound`).
    pub m_line_bound: usize,
}

/// The final delivery check: over its window, every subscriber got new,
/// correctly labelled payloads of every stream every other participant in
/// its room sends.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Delivery {
    /// How far back the check looked, seconds.
    pub window_seconds: f64,
    /// (subscriber, publisher, source) triples checked.
    pub pairs: usize,
    /// Of those, how many received nothing new.
    pub failed: usize,
    /// Of those that did, cameras not at the layer the view needs.
    pub wrong_layer: usize,
    /// (subscriber, camera) pairs the subscriber does not show.
    pub hidden: usize,
    /// Of those, how many received packets anyway.
    pub hidden_receiving: usize,
}

/// What adaptation (simulcast, views, bandwidth estimation) did to the
/// forwarded streams, from the SFU's `/metrics` over the window.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Adaptation {
    /// Packets/s the same room would forward without adaptation: every
    /// subscriber receiving every camera's top layer (from the plan).
    pub unadapted_pps: f64,
    /// `unadapted_pps` ÷ the packets/s the subscribers received.
    pub reduction: f64,
    /// Shares of the forwarded video packets of layers `q`, `h`, `f`.
    pub layer_shares: [f64; 3],
    /// Tracks paused for some subscriber at the end (not fitting its
    /// estimate).
    pub paused_tracks: f64,
    /// Keyframes asked of publishers to switch subscribers' layers, in
    /// the window.
    pub switch_keyframes: f64,
    /// The capped subscribers (the worst of them).
    pub capped: Option<Convergence>,
}

/// The existing participants' media latency before and during a join storm.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StormFigures {
    /// Participants that joined in the storm.
    pub joiners: usize,
    /// From the first join until every joiner received media, seconds.
    pub window_seconds: f64,
    /// Existing → existing latency in the steady time before.
    pub before_ms: Percentiles,
    /// Existing → existing latency during the storm.
    pub during_ms: Percentiles,
    /// The generator's wake-up lateness before the storm.
    pub generator_lag_before_ms: Percentiles,
    /// The generator's wake-up lateness during the storm.
    pub generator_lag_during_ms: Percentiles,
    /// The SFU's own forwarding delay from the window's start to the storm.
    pub forward_delay_before: Option<DelayFigures>,
    /// The SFU's own forwarding delay during the storm (its p99 is held to
    /// the limit).
    pub forward_delay_during: Option<DelayFigures>,
    /// The SFU's forwarding delay p99 during the storm must not exceed this.
    pub p99_limit_ms: f64,
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
    /// Failed checks of every round (`round N sfu: ...`); any makes the
    /// tool exit with an error after printing the report.
    pub failures: Vec<String>,
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
        let mut out = self.heading();
        let sides: Vec<&Side> = [self.sfu.as_ref(), self.baseline.as_ref()]
            .into_iter()
            .flatten()
            .collect();
        for (label, figure) in ROWS {
            out.push_str(&format!("{label:<40}"));
            for side in &sides {
                out.push_str(&format!("{:>22}", figure(side)));
            }
            out.push('\n');
        }
        out.push_str(&self.rounds_table());
        if let Some(ratio) = self.cpu_ratio_sfu_to_baseline {
            out.push_str(&format!(
                "SFU / relay CPU per forwarded packet: {ratio:.2}x\n"
            ));
        }
        for failure in &self.failures {
            out.push_str(&format!("FAILED: {failure}\n"));
        }
        out
    }

    /// What ran, where, and for how long.
    fn heading(&self) -> String {
        let p = &self.plan;
        let watchers = p.participants - p.publishers;
        let mut out = format!(
            "zync-load: {} ({} room(s) x {} participants, {} publishing, {} {}; audio {}/s, video {}, {} kbit/s at {} fps; duration {:.1} s) on {}\n",
            p.name,
            p.rooms,
            p.participants,
            p.publishers,
            watchers,
            if p.watchers_muted_mic {
                "watching with muted microphones"
            } else {
                "watching"
            },
            p.audio_rate,
            if p.video { "on" } else { "off" },
            p.video_bitrate / 1000,
            p.fps,
            p.duration.as_secs_f64(),
            self.machine
        );
        if let Some(c) = p.churn {
            out.push_str(&format!(
                "churn: {} leave/rejoin cycles, then {:.0} s settle\n",
                c.cycles,
                c.settle.as_secs_f64()
            ));
        }
        if let Some(s) = p.storm {
            out.push_str(&format!(
                "join storm: {} more join at {}/s, {:.0} s into the window\n",
                s.joiners,
                s.rate,
                s.after.as_secs_f64()
            ));
        }
        if p.simulcast {
            out.push_str(
                "cameras in simulcast (q/h/f at 10/33/100 % of the bitrate), following dynacast\n",
            );
        }
        if p.screen {
            out.push_str(
                "publishers also share a screen (1 Mbit/s at 10 fps), shown by everyone\n",
            );
        }
        if let Some(t) = p.targets {
            out.push_str(&format!(
                "targets: loss under {} %, latency p95 under {} ms\n",
                t.loss_percent, t.latency_p95_ms
            ));
        }
        if let Some(n) = p.open_mics {
            out.push_str(&format!(
                "{n} microphone(s) open per room, the others muted\n"
            ));
        }
        if let Some(v) = p.view {
            out.push_str(&format!(
                "every subscriber shows {} camera(s) large and {} small, the rest paged out\n",
                v.large, v.small
            ));
        }
        if let Some(c) = p.capped {
            out.push_str(&format!(
                "{} subscriber(s) per room on a {} kbit/s downlink (200 ms queue), to converge within {:.0} s; bandwidth estimation {}\n",
                c.subscribers,
                c.bits_per_second / 1000,
                c.converge_within.as_secs_f64(),
                if p.bandwidth_estimation { "on" } else { "off" },
            ));
        }
        out.push_str(&format!(
            "expected forwarded packets/s with everyone in: {:.0}\n",
            p.expected_forward_rate()
        ));
        out
    }

    /// Every round's CPU figures, when there was more than one.
    fn rounds_table(&self) -> String {
        if self.rounds.len() < 2 {
            return String::new();
        }
        let figure = |v: Option<f64>, unit: &str| v.map_or("-".into(), |v| format!("{v:.2}{unit}"));
        let mut out = String::from(
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
        out
    }
}

/// A row of the table: its label and how to show a side's figure.
type Row = (&'static str, fn(&Side) -> String);

/// The table's rows, in order.
const ROWS: &[Row] = &[
    ("", |s| s.forwarder.clone()),
    ("participants at the end", |s| s.joined.to_string()),
    ("measured window s", |s| format!("{:.1}", s.seconds)),
    ("forwarded packets/s (subscribers)", |s| {
        format!("{:.0}", s.forwarded_pps)
    }),
    ("  cross-check: forwarder's own count", |s| {
        optional(s.forwarder_count_pps, |v| format!("{v:.0}"))
    }),
    ("received Mbit/s (subscribers)", |s| {
        format!("{:.1}", s.received_bps / 1e6)
    }),
    ("CPU us per forwarded packet", |s| {
        format!("{:.2}", s.cpu_us_per_packet)
    }),
    ("CPU % of one core", |s| format!("{:.0}", s.cpu_percent)),
    ("peak RSS MiB", |s| format!("{:.1}", s.peak_rss_mib)),
    ("memory per participant KiB (at end)", |s| {
        format!("{:.0}", s.memory_per_participant_kib)
    }),
    ("loss mean / max %", |s| {
        format!("{:.2}/{:.2}", s.loss_mean_percent, s.loss_max_percent)
    }),
    ("latency p50/p95/p99 ms", |s| percentiles(&s.latency_ms)),
    ("SFU forwarding delay p50/p99/p99.9 ms", |s| {
        optional(s.forward_delay, |d| d.describe())
    }),
    ("join p50/p95 ms", |s| {
        format!("{:.0}/{:.0}", s.join_ms.p50, s.join_ms.p95)
    }),
    ("largest subscribe SDP bytes/m-lines", |s| {
        s.largest_sdp.map_or("-".into(), |l| {
            format!("{}/{} (<={})", l.bytes, l.m_lines, l.m_line_bound)
        })
    }),
    ("delivery: pairs receiving/checked", |s| {
        s.delivery.map_or("-".into(), |d| {
            format!(
                "{}/{} in {:.1}s",
                d.pairs - d.failed,
                d.pairs,
                d.window_seconds
            )
        })
    }),
    ("delivery: wrong layer / hidden receiving", |s| {
        s.delivery.map_or("-".into(), |d| {
            format!("{} / {} of {}", d.wrong_layer, d.hidden_receiving, d.hidden)
        })
    }),
    ("adaptation: packets/s unadapted (x less)", |s| {
        optional(s.adaptation, |a| {
            format!("{:.0} ({:.1}x)", a.unadapted_pps, a.reduction)
        })
    }),
    ("adaptation: video layers q/h/f %", |s| {
        optional(s.adaptation, |a| {
            let [q, h, f] = a.layer_shares.map(|v| v * 100.0);
            format!("{q:.0}/{h:.0}/{f:.0}")
        })
    }),
    ("adaptation: paused tracks, switch keyframes", |s| {
        optional(s.adaptation, |a| {
            format!("{:.0}, {:.0}", a.paused_tracks, a.switch_keyframes)
        })
    }),
    ("capped: converged s / audio loss %", |s| {
        optional(s.adaptation.and_then(|a| a.capped), |c| {
            format!("{:.1} / {:.2}", c.seconds, c.audio_loss_percent)
        })
    }),
    ("churn cycles done", |s| {
        optional(s.churn_cycles, |c| c.to_string())
    }),
    ("storm: existing p50/p95/p99 before", |s| {
        s.storm.map_or("-".into(), |t| percentiles(&t.before_ms))
    }),
    ("storm: existing p50/p95/p99 during", |s| {
        s.storm.map_or("-".into(), |t| {
            format!("{} in {:.1}s", percentiles(&t.during_ms), t.window_seconds)
        })
    }),
    ("storm: SFU forwarding delay before, ms", |s| {
        s.storm
            .and_then(|t| t.forward_delay_before)
            .map_or("-".into(), |d| d.describe())
    }),
    ("storm: SFU forwarding delay during, ms", |s| {
        s.storm
            .and_then(|t| t.forward_delay_during)
            .map_or("-".into(), |d| d.describe())
    }),
    ("storm: generator lag before", |s| {
        s.storm
            .map_or("-".into(), |t| percentiles(&t.generator_lag_before_ms))
    }),
    ("storm: generator lag during", |s| {
        s.storm
            .map_or("-".into(), |t| percentiles(&t.generator_lag_during_ms))
    }),
    ("generator CPU us per packet", |s| {
        format!("{:.2}", s.generator_cpu_us_per_packet)
    }),
    ("generator CPU % of one core", |s| {
        format!("{:.0}", s.generator_cpu_percent)
    }),
    ("generator lag p50/p95/p99 ms", |s| {
        optional(s.generator_lag_ms, |p| percentiles(&p))
    }),
];

/// `-` for a figure that was not measured.
fn optional<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or("-".into(), show)
}

/// p50/p95/p99, ms.
fn percentiles(p: &Percentiles) -> String {
    format!("{:.1}/{:.1}/{:.1}", p.p50, p.p95, p.p99)
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
