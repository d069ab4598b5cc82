//! A bounded pool for CPU-heavy work (argon2, image decoding).
//!
//! The work runs on a fixed set of threads, one per core, so the async
//! threads stay responsive and a burst of logins or uploads cannot take
//! more than the cores. Fixed threads also bound memory: argon2 allocates
//! 19 MiB per hash, and the allocator keeps freed memory per thread, so
//! tokio's elastic blocking pool (up to hundreds of threads) would hold on
//! to hundreds of megabytes after a burst. Jobs beyond the queue's
//! capacity are refused instead of piling up.

use crate::error::ApiError;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Jobs that may wait for a free thread before requests are refused.
const QUEUE: usize = 256;

type Job = Box<dyn FnOnce() + Send>;

/// Cheap to clone; all clones share the threads.
#[derive(Clone, Debug)]
pub struct CpuPool {
    jobs: SyncSender<Job>,
}

impl CpuPool {
    /// A pool of `threads` worker threads.
    pub fn new(threads: usize) -> Self {
        let (jobs, queue) = sync_channel::<Job>(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("zync-cpu-{i}"))
                .spawn(move || work(&queue));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a CPU worker thread");
            }
        }
        Self { jobs }
    }

    /// A pool with one thread per core.
    pub fn per_core() -> Self {
        Self::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
    }

    /// Runs `job` on a pool thread and returns its result.
    pub async fn run<T, F>(&self, job: F) -> Result<T, ApiError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(job());
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ApiError::Busy),
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::Internal(anyhow::anyhow!("the CPU pool stopped")));
            }
        }
        result
            .await
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("a CPU job panicked")))
    }
}

/// Takes jobs until the pool is dropped. A panicking job is contained: its
/// caller gets an error and the thread carries on.
fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let queue = queue.lock().unwrap_or_else(|e| e.into_inner());
            match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}
