//! A bounded pool for CPU-heavy work (argon2, image decoding).
//!
//! The work runs on tokio's blocking threads so the async threads stay
//! responsive, and a semaphore caps how many jobs run at once so a burst of
//! logins or uploads cannot take every core. Jobs that wait too long for a
//! slot are refused instead of piling up.

use crate::error::ApiError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a job may wait for a free slot before the request is refused.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(15);

/// Cheap to clone; all clones share the slots.
#[derive(Clone, Debug)]
pub struct CpuPool {
    slots: Arc<Semaphore>,
}

impl CpuPool {
    /// A pool running at most `slots` jobs at once.
    pub fn new(slots: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
        }
    }

    /// A pool with one slot per core.
    pub fn per_core() -> Self {
        Self::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
    }

    /// Runs `job` on a blocking thread once a slot is free.
    pub async fn run<T, F>(&self, job: F) -> Result<T, ApiError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = tokio::time::timeout(QUEUE_TIMEOUT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| ApiError::Busy)?
            .map_err(|_| ApiError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("blocking job failed: {e}")))
    }
}
