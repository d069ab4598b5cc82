//! Login throttling: failed attempts counted per username and per client IP
//! in a fixed window. Nothing awaits while the lock is held, so a std mutex
//! is right here.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Past this many tracked keys, expired windows are swept on insert, which
/// keeps memory bounded under a spray of random usernames.
const SWEEP_THRESHOLD: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

#[derive(Debug)]
struct Counter<K> {
    max: u32,
    windows: Mutex<HashMap<K, Window>>,
}

impl<K: Hash + Eq> Counter<K> {
    fn new(max: u32) -> Self {
        Self {
            max,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds until `key` may try again, if it is locked out.
    fn locked_for(&self, key: &K, window: Duration, now: Instant) -> Option<u64> {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let w = windows.get(key)?;
        let elapsed = now.duration_since(w.started);
        (w.failures >= self.max && elapsed < window).then(|| (window - elapsed).as_secs().max(1))
    }

    fn fail(&self, key: K, window: Duration, now: Instant) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= SWEEP_THRESHOLD {
            windows.retain(|_, w| now.duration_since(w.started) < window);
        }
        let w = windows.entry(key).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.duration_since(w.started) >= window {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    fn clear(&self, key: &K) {
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Counts failed logins and says when to refuse further attempts.
#[derive(Debug)]
pub struct LoginThrottle {
    window: Duration,
    by_username: Counter<String>,
    by_ip: Counter<IpAddr>,
}

impl LoginThrottle {
    /// Allows `per_username` and `per_ip` failures within `window`.
    pub fn new(per_username: u32, per_ip: u32, window: Duration) -> Self {
        Self {
            window,
            by_username: Counter::new(per_username),
            by_ip: Counter::new(per_ip),
        }
    }

    /// Seconds to wait if this username or IP has failed too often.
    pub fn check(&self, username: &str, ip: IpAddr) -> Option<u64> {
        let now = Instant::now();
        let key = username.to_lowercase();
        let a = self.by_username.locked_for(&key, self.window, now);
        let b = self.by_ip.locked_for(&ip, self.window, now);
        a.max(b)
    }

    /// Records a failed attempt.
    pub fn failed(&self, username: &str, ip: IpAddr) {
        let now = Instant::now();
        self.by_username
            .fail(username.to_lowercase(), self.window, now);
        self.by_ip.fail(ip, self.window, now);
    }

    /// A successful login clears the username's count (not the IP's: one
    /// good account must not unlock guessing at others).
    pub fn succeeded(&self, username: &str) {
        self.by_username.clear(&username.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_and_unlocks_after_window() {
        let t = LoginThrottle::new(3, 100, Duration::from_millis(200));
        let ip: IpAddr = [127, 0, 0, 1].into();
        for _ in 0..3 {
            assert_eq!(t.check("Alice", ip), None);
            t.failed("alice", ip);
        }
        assert!(t.check("ALICE", ip).is_some(), "case-insensitive");
        assert_eq!(t.check("bob", ip), None, "other users unaffected");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.check("alice", ip), None);
    }

    #[test]
    fn ip_limit_spans_usernames() {
        let t = LoginThrottle::new(100, 2, Duration::from_secs(60));
        let ip: IpAddr = [10, 0, 0, 1].into();
        t.failed("a", ip);
        t.failed("b", ip);
        assert!(t.check("c", ip).is_some());
        assert_eq!(t.check("c", [10, 0, 0, 2].into()), None);
    }
}
