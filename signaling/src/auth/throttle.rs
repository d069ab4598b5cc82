//! Login throttling: failed attempts counted per (username, client IP) and
//! per client IP in a fixed window, so that whoever guesses at an account
//! locks out only their own address, never the account's owner; and per
//! username over all addresses, which does not refuse but slows every
//! attempt at that account down (guessing from many addresses gets slow,
//! the owner still gets in). Nothing awaits while the lock is held, so a
//! std mutex is right here.

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

    /// Failures of `key` in its current window.
    fn failures(&self, key: &K, window: Duration, now: Instant) -> u32 {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows
            .get(key)
            .filter(|w| now.duration_since(w.started) < window)
            .map_or(0, |w| w.failures)
    }

    fn clear(&self, key: &K) {
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The first delay once a username has more failures (from all addresses)
/// than one address may make; it doubles with each further failure...
const SLOWDOWN_START: Duration = Duration::from_millis(250);
/// ...up to this.
const SLOWDOWN_MAX: Duration = Duration::from_secs(4);

/// Counts failed logins and says when to refuse or slow further attempts.
#[derive(Debug)]
pub struct LoginThrottle {
    window: Duration,
    per_username: u32,
    by_username_and_ip: Counter<(String, IpAddr)>,
    by_ip: Counter<IpAddr>,
    /// Failures per username from every address; never refuses.
    by_username: Counter<String>,
}

impl LoginThrottle {
    /// Allows `per_username` failures per (username, address) and `per_ip`
    /// per address within `window`.
    pub fn new(per_username: u32, per_ip: u32, window: Duration) -> Self {
        Self {
            window,
            per_username,
            by_username_and_ip: Counter::new(per_username),
            by_ip: Counter::new(per_ip),
            by_username: Counter::new(u32::MAX),
        }
    }

    /// Seconds to wait if this address has failed too often, at this
    /// username or overall.
    pub fn check(&self, username: &str, ip: IpAddr) -> Option<u64> {
        let now = Instant::now();
        let key = (username.to_lowercase(), ip);
        let a = self.by_username_and_ip.locked_for(&key, self.window, now);
        let b = self.by_ip.locked_for(&ip, self.window, now);
        a.max(b)
    }

    /// How long to hold an attempt at `username` before checking it: zero
    /// until the username has more failures than one address may make,
    /// then doubling per failure up to a few seconds.
    pub fn slowdown(&self, username: &str) -> Duration {
        let failures =
            self.by_username
                .failures(&username.to_lowercase(), self.window, Instant::now());
        let over = failures.saturating_sub(self.per_username);
        if over == 0 {
            return Duration::ZERO;
        }
        SLOWDOWN_START
            .saturating_mul(1 << (over - 1).min(16))
            .min(SLOWDOWN_MAX)
    }

    /// Records a failed attempt.
    pub fn failed(&self, username: &str, ip: IpAddr) {
        let now = Instant::now();
        let username = username.to_lowercase();
        self.by_username_and_ip
            .fail((username.clone(), ip), self.window, now);
        self.by_username.fail(username, self.window, now);
        self.by_ip.fail(ip, self.window, now);
    }

    /// A successful login clears the username's counts from that address
    /// (not the address's overall count: one good account must not unlock
    /// guessing at others; nor other addresses' counts at this username).
    pub fn succeeded(&self, username: &str, ip: IpAddr) {
        self.by_username_and_ip
            .clear(&(username.to_lowercase(), ip));
    }
}

/// At most so many events (registrations, new meetings) per client address
/// per window.
#[derive(Debug)]
pub struct AddressQuota {
    window: Duration,
    counter: Counter<IpAddr>,
}

impl AddressQuota {
    /// `max` events per address per `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            window,
            counter: Counter::new(max),
        }
    }

    /// Counts an event from `ip`; `Err(seconds to wait)` when over quota.
    pub fn take(&self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        if let Some(wait) = self.counter.locked_for(&ip, self.window, now) {
            return Err(wait);
        }
        self.counter.fail(ip, self.window, now);
        Ok(())
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
        let owner: IpAddr = [192, 0, 2, 7].into();
        assert_eq!(
            t.check("alice", owner),
            None,
            "the owner's address is not locked out"
        );
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.check("alice", ip), None);
    }

    #[test]
    fn failures_from_many_addresses_slow_down_an_account_without_refusing() {
        let t = LoginThrottle::new(2, 100, Duration::from_secs(60));
        for n in 0..2 {
            t.failed("alice", IpAddr::from([10, 0, 0, n]));
        }
        assert_eq!(t.slowdown("alice"), Duration::ZERO);
        t.failed("alice", IpAddr::from([10, 0, 0, 2]));
        assert_eq!(t.slowdown("Alice"), SLOWDOWN_START);
        t.failed("alice", IpAddr::from([10, 0, 0, 3]));
        assert_eq!(t.slowdown("alice"), SLOWDOWN_START * 2);
        for n in 4..40 {
            t.failed("alice", IpAddr::from([10, 0, 0, n]));
        }
        assert_eq!(t.slowdown("alice"), SLOWDOWN_MAX);
        assert_eq!(t.check("alice", IpAddr::from([192, 0, 2, 1])), None);
        assert_eq!(t.slowdown("bob"), Duration::ZERO);
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

    #[test]
    fn an_address_quota_counts_per_address() {
        let q = AddressQuota::new(2, Duration::from_secs(3600));
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        assert_eq!(q.take(a), Ok(()));
        assert_eq!(q.take(a), Ok(()));
        assert!(q.take(a).is_err());
        assert_eq!(q.take(b), Ok(()));
    }
}
