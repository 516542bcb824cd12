//! Live fan-out of "the event log moved": wake-ups for watch and delivery streams.
//!
//! A [`Bus`] carries no events, only a generation counter: the log in the database is the
//! truth, and a woken stream reads it from its own cursor. Local commits bump both
//! signals; wake-ups that arrive from other replicas (PostgreSQL `LISTEN`) bump only
//! `any`, so they are not echoed back out.

use tokio::sync::watch;

#[derive(Clone)]
pub struct Bus {
    local: watch::Sender<u64>,
    any: watch::Sender<u64>,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    pub fn new() -> Self {
        Bus {
            local: watch::Sender::new(0),
            any: watch::Sender::new(0),
        }
    }

    /// This process committed something that streams may want to read.
    pub fn publish_local(&self) {
        self.local.send_modify(|g| *g = g.wrapping_add(1));
        self.any.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Another replica committed something.
    pub fn publish_remote(&self) {
        self.any.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Wakes on every commit, local or remote.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.any.subscribe()
    }

    /// Wakes on local commits only: what a cross-replica notifier forwards.
    pub fn subscribe_local(&self) -> watch::Receiver<u64> {
        self.local.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::Bus;

    #[tokio::test]
    async fn remote_wakeups_are_not_forwarded_as_local_ones() {
        let bus = Bus::new();
        let mut any = bus.subscribe();
        let mut local = bus.subscribe_local();
        bus.publish_remote();
        assert!(any.has_changed().unwrap());
        assert!(!local.has_changed().unwrap());
        any.mark_unchanged();
        bus.publish_local();
        assert!(any.has_changed().unwrap());
        assert!(local.has_changed().unwrap());
        local.mark_unchanged();
    }
}
