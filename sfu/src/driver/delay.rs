//! How long datagrams wait inside the SFU: from the kernel's receive
//! timestamp (`SO_TIMESTAMPNS`, taken when the datagram reached the host's
//! network stack, so time spent queued in the socket while the worker was
//! busy counts) to when the packets it caused (its forwarded copies) have
//! all been handed to the kernel: the end of its receive batch. One sample per
//! received datagram, kept in a fixed-bucket histogram that `/metrics`
//! shows as `zync_sfu_forward_delay_seconds`.
//!
//! This is the SFU's own share of media latency, measured where it
//! happens: a load generator on the same machine cannot tell its own
//! lateness from the server's, this can.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Upper bounds of the histogram's buckets, µs (a last, open bucket
/// catches the rest). Dense around the 20 ms that rooms are held to.
const BUCKET_BOUNDS_MICROS: [u64; 16] = [
    250, 500, 1_000, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 20_000, 30_000, 50_000, 75_000,
    100_000, 250_000, 1_000_000,
];
/// Buckets including the open one.
const BUCKETS: usize = BUCKET_BOUNDS_MICROS.len() + 1;

/// A worker's histogram as the rest of the process reads it.
#[derive(Debug, Default)]
pub struct DelayHistogram {
    /// Samples per bucket (not cumulative); the last is the open bucket.
    buckets: [AtomicU64; BUCKETS],
    /// Sum of all samples, ns.
    sum_nanos: AtomicU64,
}

/// A copy of a [`DelayHistogram`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DelaySnapshot {
    /// Samples per bucket, as [`DelayHistogram`] keeps them.
    pub buckets: [u64; BUCKETS],
    /// Sum of all samples, ns.
    pub sum_nanos: u64,
}

impl DelayHistogram {
    /// Reads the counters.
    pub fn snapshot(&self) -> DelaySnapshot {
        DelaySnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

impl DelaySnapshot {
    /// Samples in total.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Prometheus text-format lines of a histogram `name` with `labels`
    /// (already formatted, e.g. `worker="0"`).
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        use std::fmt::Write;
        let mut cumulative = 0;
        for (i, count) in self.buckets.iter().enumerate() {
            cumulative += count;
            let le = match BUCKET_BOUNDS_MICROS.get(i) {
                Some(micros) => format!("{}", *micros as f64 / 1e6),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_nanos as f64 / 1e9
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// The worker's side: counts kept locally per turn, published to the
/// shared histogram once per turn.
#[derive(Debug, Default)]
pub struct DelayMeter {
    /// Counts not yet published.
    counts: [u64; BUCKETS],
    sum_nanos: u64,
}

impl DelayMeter {
    /// Datagrams that arrived at `arrivals` (kernel stamps since the Unix
    /// epoch) have been handled, and all they caused sent, by `now`.
    pub fn forwarded(&mut self, arrivals: &[Duration], now: SystemTime) {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        for arrival in arrivals {
            // The wall clock may step back between the two readings; such a
            // sample counts as no wait rather than as a huge one.
            let waited = now.saturating_sub(*arrival);
            let micros = waited.as_micros() as u64;
            let bucket = BUCKET_BOUNDS_MICROS.partition_point(|bound| *bound < micros);
            self.counts[bucket] += 1;
            self.sum_nanos = self.sum_nanos.saturating_add(waited.as_nanos() as u64);
        }
    }

    /// Adds what was counted since the last call to `shared`.
    pub fn publish(&mut self, shared: &DelayHistogram) {
        for (count, bucket) in self.counts.iter_mut().zip(&shared.buckets) {
            if *count > 0 {
                bucket.fetch_add(*count, Ordering::Relaxed);
                *count = 0;
            }
        }
        if self.sum_nanos > 0 {
            shared
                .sum_nanos
                .fetch_add(self.sum_nanos, Ordering::Relaxed);
            self.sum_nanos = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(micros: u64) -> Duration {
        Duration::from_micros(1_700_000_000_000_000 + micros)
    }

    #[test]
    fn samples_land_in_the_bucket_whose_bound_is_not_below_them() {
        let shared = DelayHistogram::default();
        let mut meter = DelayMeter::default();
        // Waiting 20 ms (bucket le=0.02), 1 µs and nothing (le=0.00025).
        meter.forwarded(&[at(0), at(19_999), at(20_000)], UNIX_EPOCH + at(20_000));
        meter.forwarded(&[at(0)], UNIX_EPOCH + at(2_000_000)); // the open bucket
        assert_eq!(
            shared.snapshot().count(),
            0,
            "nothing shown before publishing"
        );
        meter.publish(&shared);

        let snapshot = shared.snapshot();
        assert_eq!(snapshot.count(), 4);
        assert_eq!(snapshot.buckets[0], 2);
        let twenty_ms = BUCKET_BOUNDS_MICROS
            .iter()
            .position(|b| *b == 20_000)
            .expect("a 20 ms bound");
        assert_eq!(snapshot.buckets[twenty_ms], 1);
        assert_eq!(snapshot.buckets[BUCKETS - 1], 1);
        assert_eq!(snapshot.sum_nanos, 2_020_001_000);
    }

    #[test]
    fn a_clock_that_steps_back_gives_no_wait() {
        let shared = DelayHistogram::default();
        let mut meter = DelayMeter::default();
        meter.forwarded(&[at(5_000)], UNIX_EPOCH + at(0));
        meter.publish(&shared);
        assert_eq!(shared.snapshot().buckets[0], 1);
    }

    #[test]
    fn renders_a_cumulative_prometheus_histogram() {
        let shared = DelayHistogram::default();
        let mut meter = DelayMeter::default();
        meter.forwarded(&[at(0), at(0)], UNIX_EPOCH + at(4_000));
        meter.publish(&shared);
        let mut text = String::new();
        shared.snapshot().render("d", "worker=\"0\"", &mut text);
        assert!(
            text.contains("d_bucket{worker=\"0\",le=\"0.003\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("d_bucket{worker=\"0\",le=\"0.005\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("d_bucket{worker=\"0\",le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("d_count{worker=\"0\"} 2\n"), "{text}");
        assert!(text.contains("d_sum{worker=\"0\"} 0.008\n"), "{text}");
    }
}
