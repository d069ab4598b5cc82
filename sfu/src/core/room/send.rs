//! The send path: forwarded packets queued during a datagram batch are
//! written and encrypted one subscriber at a time, within an outbox budget.

use super::Room;
use crate::core::{CoreConfig, Outputs};
use std::time::Instant;

impl Room {
    /// Writes queued packets, one subscriber at a time, until the outbox
    /// holds `budget` bytes (so its memory stays bounded however large the
    /// fan-out): each is written, encrypted and handed to the outbox at once
    /// ([`super::leg::LegRtc::send_now`]); the payload itself is shared,
    /// not copied.
    fn send_queued(&mut self, now: Instant, budget: usize, out: &mut Outputs) {
        if self.sent == self.sending.len() {
            self.sending.clear();
            self.sent = 0;
            std::mem::swap(&mut self.sending, &mut self.queued);
            // Stable: each subscriber's packets keep their order.
            self.sending.sort_by_key(|q| q.subscriber);
        }
        while self.sent < self.sending.len() && out.transmits.bytes() < budget {
            let rest = &self.sending[self.sent..];
            let id = rest[0].subscriber;
            let end = rest
                .iter()
                .position(|q| q.subscriber != id)
                .unwrap_or(rest.len());
            self.sent += end;
            // The next subscriber's first packet, while this one's are
            // written (within a subscriber, each packet fetches the next).
            if let Some(next) = rest.get(end)
                && let Some(p) = self.participants.get(&next.subscriber)
            {
                p.subscribe.prefetch(next.ssrc);
            }
            let Some(subscriber) = self.participants.get_mut(&id) else {
                continue;
            };
            let batch = &rest[..end];
            subscriber.resend_budget.earn(batch.len() as u32);
            for (i, q) in batch.iter().enumerate() {
                if let Some(next) = batch.get(i + 1) {
                    subscriber.subscribe.prefetch(next.ssrc);
                }
                match subscriber
                    .subscribe
                    .send_now(now, q.ssrc, &q.write(), out.transmits)
                {
                    Ok(true) => {
                        out.stats.rtp_out += 1;
                        out.stats.rtp_bytes_out += q.payload.len() as u64;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        self.failed.push((id, e.to_string()));
                        break;
                    }
                }
            }
        }
        if self.sent == self.sending.len() {
            // Done: drop the payload references now, keep the capacity.
            self.sending.clear();
            self.sent = 0;
        }
    }

    /// Whether forwarded packets wait to be sent.
    pub fn has_queued(&self) -> bool {
        !self.queued.is_empty() || self.sent < self.sending.len()
    }

    /// Writes forwarded packets (see [`Queued`]) until the outbox holds
    /// `budget` bytes.
    pub fn flush(&mut self, now: Instant, budget: usize, config: &CoreConfig, out: &mut Outputs) {
        self.send_queued(now, budget, out);
        self.settle(now, config, out);
    }
}
