//! Which WebSockets belong to which login session, so that ending a session
//! (logging out) closes its sockets too: an open socket must not outlive
//! the session that authorized it.

use dashmap::DashMap;
use std::sync::Arc;
use tokio::sync::watch;

/// Open WebSockets per session id. Cheap to clone.
#[derive(Clone, Default)]
pub struct SessionSockets {
    by_session: Arc<DashMap<String, watch::Sender<bool>>>,
}

impl SessionSockets {
    /// Registers a socket of `session`; the watch ends when the session does.
    pub fn watch(&self, session: &str) -> SessionWatch {
        let ended = self
            .by_session
            .entry(session.to_string())
            .or_insert_with(|| watch::channel(false).0)
            .subscribe();
        SessionWatch {
            ended,
            session: session.to_string(),
            registry: self.clone(),
        }
    }

    /// Closes every socket of `session`.
    pub fn end(&self, session: &str) {
        if let Some((_, sender)) = self.by_session.remove(session) {
            let _ = sender.send(true);
        }
    }

    /// Sessions with sockets open (for tests).
    pub fn len(&self) -> usize {
        self.by_session.len()
    }

    /// Whether no session has a socket open.
    pub fn is_empty(&self) -> bool {
        self.by_session.is_empty()
    }
}

/// One socket's link to its session; forgets the session when its last
/// socket is gone.
pub struct SessionWatch {
    ended: watch::Receiver<bool>,
    session: String,
    registry: SessionSockets,
}

impl SessionWatch {
    /// Completes once the session has ended.
    pub async fn ended(&mut self) {
        let _ = self.ended.wait_for(|ended| *ended).await;
    }
}

impl Drop for SessionWatch {
    fn drop(&mut self) {
        // This receiver still counts until it is dropped: the last one sees 1.
        self.registry
            .by_session
            .remove_if(&self.session, |_, sender| sender.receiver_count() <= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ending_a_session_ends_its_watches_only() {
        let sockets = SessionSockets::default();
        let mut a1 = sockets.watch("a");
        let mut a2 = sockets.watch("a");
        let mut b = sockets.watch("b");
        sockets.end("a");
        a1.ended().await;
        a2.ended().await;
        let pending = tokio::time::timeout(std::time::Duration::from_millis(20), b.ended()).await;
        assert!(pending.is_err(), "another session's sockets stay open");
        drop((a1, a2));
        assert_eq!(sockets.len(), 1);
        drop(b);
        assert!(sockets.is_empty(), "closed sockets leave nothing behind");
    }
}
