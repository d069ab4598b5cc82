//! How late the load generator's runtime wakes a task. Latency is measured
//! inside the generator (send stamp to receive), so a generator too busy to
//! run its participants on time adds to it; this probe tells that delay
//! apart from the forwarder's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How often the probe asks to be woken.
const PERIOD: Duration = Duration::from_millis(5);

/// A task that sleeps [`PERIOD`] again and again and records how late it
/// woke, µs.
pub struct LagProbe {
    samples: Arc<Mutex<Vec<u64>>>,
    task: JoinHandle<()>,
}

impl LagProbe {
    /// Starts probing until `until` (at most one sample per period).
    pub fn start(until: Instant) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let record = samples.clone();
        let task = tokio::spawn(async move {
            while Instant::now() < until {
                let due = Instant::now() + PERIOD;
                tokio::time::sleep_until(due.into()).await;
                let late = Instant::now().saturating_duration_since(due);
                record
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(late.as_micros() as u64);
            }
        });
        Self { samples, task }
    }

    /// Samples so far (a mark for [`LagProbe::between`]).
    pub fn mark(&self) -> usize {
        self.lock().len()
    }

    /// Samples from mark `from` to mark `to` (or now), µs.
    pub fn between(&self, from: usize, to: Option<usize>) -> Vec<u64> {
        let samples = self.lock();
        let to = to.unwrap_or(samples.len()).min(samples.len());
        samples.get(from.min(to)..to).unwrap_or(&[]).to_vec()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for LagProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}
