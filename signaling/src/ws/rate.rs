//! Token buckets: per connection (chat, control messages) and per user
//! (negotiation, which costs SDP parsing however many sockets it comes
//! from).

use dashmap::DashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A token bucket: `capacity` at once, refilled at `per_minute`.
#[derive(Debug)]
pub struct RateLimit {
    tokens: f64,
    capacity: f64,
    per_sec: f64,
    last: Instant,
}

impl RateLimit {
    /// A full bucket.
    pub fn new(capacity: u32, per_minute: u32) -> Self {
        let capacity = f64::from(capacity);
        Self {
            tokens: capacity,
            capacity,
            per_sec: f64::from(per_minute) / 60.0,
            last: Instant::now(),
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Publish offers a user may send at once, over all its connections, and
/// per minute afterwards. A browser offers when it joins and when it starts
/// or stops sharing its screen; muting does not renegotiate. Someone
/// leaving and rejoining ten times in half a minute must still get through.
const OFFER_BURST: u32 = 30;
const OFFERS_PER_MINUTE: u32 = 120;

/// Per-user buckets shared by all of a user's connections. Cheap to clone.
/// (One small entry per user who ever negotiated, for the process's life.)
#[derive(Clone, Default)]
pub struct UserLimits {
    offers: Arc<DashMap<i64, Arc<Mutex<RateLimit>>>>,
    sockets: Arc<DashMap<i64, usize>>,
}

impl UserLimits {
    /// Counts one more open socket of `user`, unless it has `max` already.
    pub fn open_socket(&self, user: i64, max: usize) -> Option<SocketSlot> {
        let mut open = self.sockets.entry(user).or_insert(0);
        if *open >= max {
            return None;
        }
        *open += 1;
        Some(SocketSlot {
            user,
            sockets: self.sockets.clone(),
        })
    }

    /// Takes one publish offer from `user`'s budget.
    pub fn take_offer(&self, user: i64) -> bool {
        let bucket = self
            .offers
            .entry(user)
            .or_insert_with(|| Arc::new(Mutex::new(RateLimit::new(OFFER_BURST, OFFERS_PER_MINUTE))))
            .clone();
        let mut bucket = bucket.lock().unwrap_or_else(|e| e.into_inner());
        bucket.take()
    }
}

/// One open socket of a user; counted until dropped.
pub struct SocketSlot {
    user: i64,
    sockets: Arc<DashMap<i64, usize>>,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        if let Some(mut open) = self.sockets.get_mut(&self.user) {
            *open = open.saturating_sub(1);
        }
        self.sockets.remove_if(&self.user, |_, open| *open == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_connections_share_one_offer_budget() {
        let limits = UserLimits::default();
        let other = limits.clone();
        let taken = (0..40)
            .filter(|i| {
                // Alternating between two "connections" of user 1.
                if i % 2 == 0 {
                    limits.take_offer(1)
                } else {
                    other.take_offer(1)
                }
            })
            .count();
        assert_eq!(taken, OFFER_BURST as usize);
        assert!(limits.take_offer(2), "another user has a budget of its own");
    }

    #[test]
    fn sockets_are_counted_until_dropped() {
        let limits = UserLimits::default();
        let first = limits.open_socket(7, 2);
        let second = limits.open_socket(7, 2);
        assert!(first.is_some() && second.is_some());
        assert!(limits.open_socket(7, 2).is_none(), "a third is refused");
        drop(first);
        let third = limits.open_socket(7, 2);
        assert!(third.is_some(), "a closed socket frees its place");
        drop((second, third));
        assert!(
            limits.sockets.is_empty(),
            "nothing is kept for users with no socket"
        );
    }
}
