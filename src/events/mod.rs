//! Live fan-out of "the event log moved": wake-ups for watch and delivery streams.
//!
//! A [`Bus`] carries no events, only generation counters: the log in the database is the
//! truth, and a woken stream reads it from its own cursor. Local commits bump both
//! signals; wake-ups that arrive from other replicas (PostgreSQL `LISTEN`) bump only
//! `any`, so they are not echoed back out.
//!
//! Delivery streams listen to their channel's signal alone: a commit that queues an SMS
//! wakes the SMS subscribers and nobody else, and a commit that queues nothing wakes no
//! delivery stream at all.

mod tailer;

pub use tailer::{
    Ended, Follower, Interest, Log, LogError, NotHeld, Subscription, TailState, Tailer,
    TailerFailed, TailerSettings,
};

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::watch;

use crate::domain::ticket::Channel;

#[derive(Clone)]
pub struct Bus {
    local: watch::Sender<u64>,
    any: watch::Sender<u64>,
    /// One signal per channel, in the order of `Channel::ALL`.
    queued: Arc<[watch::Sender<u64>]>,
    /// Channels queued to by local commits and not yet announced to other replicas.
    unannounced: Arc<AtomicU32>,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

fn bit(channel: Channel) -> u32 {
    let index = Channel::ALL.iter().position(|c| *c == channel).unwrap_or(0);
    1 << index
}

/// The channels named by a set of bits.
pub fn channels_of(bits: u32) -> impl Iterator<Item = Channel> {
    Channel::ALL
        .iter()
        .copied()
        .filter(move |c| bits & bit(*c) != 0)
}

/// The bits naming every channel.
pub fn all_channels() -> u32 {
    Channel::ALL.iter().fold(0, |bits, c| bits | bit(*c))
}

impl Bus {
    pub fn new() -> Self {
        Bus {
            local: watch::Sender::new(0),
            any: watch::Sender::new(0),
            queued: Channel::ALL.iter().map(|_| watch::Sender::new(0)).collect(),
            unannounced: Arc::new(AtomicU32::new(0)),
        }
    }

    /// This process committed something that streams may want to read.
    pub fn publish_local(&self) {
        self.local.send_modify(|g| *g = g.wrapping_add(1));
        self.any.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// This process committed something that made messages of `channels` claimable
    /// (queued, or handed back); with no channels, the same as `publish_local`.
    pub fn publish_queued(&self, channels: impl IntoIterator<Item = Channel>) {
        let bits = channels.into_iter().fold(0, |bits, c| bits | bit(c));
        if bits != 0 {
            self.unannounced.fetch_or(bits, Ordering::AcqRel);
            self.wake_channels(bits);
        }
        self.publish_local();
    }

    /// Another replica committed something; `queued` names the channels it queued to.
    pub fn publish_remote(&self, queued: u32) {
        self.wake_channels(queued);
        self.any.send_modify(|g| *g = g.wrapping_add(1));
    }

    fn wake_channels(&self, bits: u32) {
        for (index, channel) in Channel::ALL.iter().enumerate() {
            if bits & bit(*channel) != 0 {
                self.queued[index].send_modify(|g| *g = g.wrapping_add(1));
            }
        }
    }

    /// Takes the channels queued to locally since the last call: what a cross-replica
    /// notifier announces.
    pub fn take_unannounced(&self) -> u32 {
        self.unannounced.swap(0, Ordering::AcqRel)
    }

    /// Puts back channels a notifier failed to announce, to go with its next try.
    pub fn restore_unannounced(&self, bits: u32) {
        self.unannounced.fetch_or(bits, Ordering::AcqRel);
    }

    /// Wakes on every commit, local or remote.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.any.subscribe()
    }

    /// Wakes when messages of `channel` may have become claimable.
    pub fn subscribe_queued(&self, channel: Channel) -> watch::Receiver<u64> {
        let index = Channel::ALL.iter().position(|c| *c == channel).unwrap_or(0);
        self.queued[index].subscribe()
    }

    /// Wakes on local commits only: what a cross-replica notifier forwards.
    pub fn subscribe_local(&self) -> watch::Receiver<u64> {
        self.local.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::{Bus, all_channels, channels_of};
    use crate::domain::ticket::Channel;

    #[tokio::test]
    async fn remote_wakeups_are_not_forwarded_as_local_ones() {
        let bus = Bus::new();
        let mut any = bus.subscribe();
        let mut local = bus.subscribe_local();
        bus.publish_remote(0);
        assert!(any.has_changed().unwrap());
        assert!(!local.has_changed().unwrap());
        any.mark_unchanged();
        bus.publish_local();
        assert!(any.has_changed().unwrap());
        assert!(local.has_changed().unwrap());
        local.mark_unchanged();
    }

    #[tokio::test]
    async fn queueing_wakes_only_the_channel_queued_to() {
        let bus = Bus::new();
        let mut sms = bus.subscribe_queued(Channel::Sms);
        let email = bus.subscribe_queued(Channel::Email);
        bus.publish_local();
        assert!(!sms.has_changed().unwrap() && !email.has_changed().unwrap());
        bus.publish_queued([Channel::Sms]);
        assert!(sms.has_changed().unwrap());
        assert!(!email.has_changed().unwrap());
        sms.mark_unchanged();
        assert_eq!(
            channels_of(bus.take_unannounced()).collect::<Vec<_>>(),
            [Channel::Sms]
        );
        assert_eq!(bus.take_unannounced(), 0);
        bus.publish_remote(all_channels());
        assert!(sms.has_changed().unwrap() && email.has_changed().unwrap());
        assert_eq!(channels_of(all_channels()).count(), Channel::ALL.len());
    }
}
