//! The SFU's own forwarding delay, read from its `/metrics` histogram
//! `zync_sfu_forward_delay_seconds`: how long each received datagram waited
//! between reaching the host (the kernel's receive timestamp) and the end of
//! the worker turn that forwarded it. Unlike the latency the generator
//! measures, this leaves out the generator's own lateness, which on a
//! shared machine can be the larger part.

use serde::Serialize;

/// The histogram's name in `/metrics`.
const NAME: &str = "zync_sfu_forward_delay_seconds_bucket{";

/// Cumulative counts per upper bound (seconds; the last is +∞), summed
/// over workers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DelayCounts(Vec<(f64, f64)>);

/// Percentiles of the forwarding delay. Each is the upper bound of the
/// histogram bucket the percentile falls in ("at most"); `None` when it
/// falls in the open bucket above the largest bound.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DelayFigures {
    /// Median, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// 99.9th percentile, ms.
    pub p999_ms: Option<f64>,
    /// Datagrams measured.
    pub samples: u64,
}

impl DelayCounts {
    /// The histogram in a Prometheus text exposition; `None` if absent.
    pub fn parse(text: &str) -> Option<Self> {
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for line in text.lines().filter(|l| l.starts_with(NAME)) {
            let Some((labels, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let le = labels
                .split("le=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .and_then(|le| match le {
                    "+Inf" => Some(f64::INFINITY),
                    le => le.parse::<f64>().ok(),
                });
            let (Some(le), Ok(value)) = (le, value.parse::<f64>()) else {
                continue;
            };
            match buckets.iter_mut().find(|(bound, _)| *bound == le) {
                Some((_, count)) => *count += value,
                None => buckets.push((le, value)),
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        (!buckets.is_empty()).then_some(Self(buckets))
    }

    /// What was counted between `earlier` and this reading.
    pub fn since(&self, earlier: &DelayCounts) -> DelayCounts {
        DelayCounts(
            self.0
                .iter()
                .map(|(le, count)| {
                    let before = earlier
                        .0
                        .iter()
                        .find(|(b, _)| b == le)
                        .map_or(0.0, |(_, c)| *c);
                    (*le, (count - before).max(0.0))
                })
                .collect(),
        )
    }

    /// Percentiles of the counted samples; `None` when there are none.
    pub fn figures(&self) -> Option<DelayFigures> {
        let total = self.0.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let at = |q: f64| {
            let bound = self.0.iter().find(|(_, c)| *c >= q * total)?.0;
            bound.is_finite().then_some(bound * 1e3)
        };
        Some(DelayFigures {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            samples: total as u64,
        })
    }
}

impl DelayFigures {
    /// "≤ p50 / p99 / p99.9 ms" for the table.
    pub fn describe(&self) -> String {
        let one = |v: Option<f64>| v.map_or("> max".to_string(), |v| format!("{v}"));
        format!(
            "≤ {} / {} / {} ({} datagrams)",
            one(self.p50_ms),
            one(self.p99_ms),
            one(self.p999_ms),
            self.samples
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE zync_sfu_forward_delay_seconds histogram
zync_sfu_forward_delay_seconds_bucket{worker=\"0\",le=\"0.001\"} 90
zync_sfu_forward_delay_seconds_bucket{worker=\"0\",le=\"0.02\"} 99
zync_sfu_forward_delay_seconds_bucket{worker=\"0\",le=\"+Inf\"} 100
zync_sfu_forward_delay_seconds_bucket{worker=\"1\",le=\"0.001\"} 900
zync_sfu_forward_delay_seconds_bucket{worker=\"1\",le=\"0.02\"} 900
zync_sfu_forward_delay_seconds_bucket{worker=\"1\",le=\"+Inf\"} 900
zync_sfu_forward_delay_seconds_sum{worker=\"0\"} 1.5
zync_sfu_rtp_packets_in_total{worker=\"0\"} 7
";

    #[test]
    fn sums_workers_and_reads_bucket_bounds() {
        let counts = DelayCounts::parse(TEXT).expect("the histogram");
        assert_eq!(
            counts.0,
            vec![(0.001, 990.0), (0.02, 999.0), (f64::INFINITY, 1000.0)]
        );
        let figures = counts.figures().expect("samples");
        assert_eq!(figures.samples, 1000);
        assert_eq!(figures.p50_ms, Some(1.0));
        assert_eq!(figures.p99_ms, Some(1.0));
        assert_eq!(figures.p999_ms, Some(20.0));
    }

    #[test]
    fn a_window_is_the_difference_of_two_readings() {
        let before = DelayCounts::parse(TEXT).expect("the histogram");
        let later = DelayCounts(vec![
            (0.001, 990.0),
            (0.02, 1_000.0),
            (f64::INFINITY, 1_010.0),
        ]);
        let window = later.since(&before);
        let figures = window.figures().expect("samples");
        assert_eq!(figures.samples, 10);
        assert_eq!(figures.p50_ms, None, "most of the window was past 20 ms");
        assert!(DelayCounts::parse("nothing here").is_none());
        assert!(before.since(&before).figures().is_none());
    }
}
