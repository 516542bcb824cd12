//! Open streams: how many each key and the server may hold, and the end of a key's
//! streams when the key is revoked.
//!
//! A stream does not check its own key. Each key with open streams has one signal its
//! streams wait on: a revocation through this server raises it at once, and one task per
//! server (`ApiKeyService::check_stream_keys`) raises it for keys revoked through another
//! replica. An idle stream so costs nothing while it waits, however many are open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use uuid::Uuid;

use crate::service::{ServiceError, ServiceResult};

/// How many streams may be open at once.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimitSettings {
    pub per_key: usize,
    pub total: usize,
}

/// One key's open streams.
struct KeyStreams {
    open: usize,
    /// Turns true once the key is revoked; every stream of the key waits on it.
    revoked: watch::Sender<bool>,
}

/// Open streams per key and in all.
pub(super) struct StreamLimits {
    settings: StreamLimitSettings,
    open: Mutex<HashMap<Uuid, KeyStreams>>,
}

impl StreamLimits {
    pub(super) fn new(settings: StreamLimitSettings) -> Self {
        Self {
            settings,
            open: Mutex::default(),
        }
    }

    /// Admits one more stream for `key_id` and hands back its key's revocation signal.
    pub(super) fn admit(&self, key_id: Uuid) -> ServiceResult<watch::Receiver<bool>> {
        // The counts stay consistent even if a holder panicked: every change is one step.
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = open.values().map(|k| k.open).sum();
        if total >= self.settings.total {
            return Err(ServiceError::ResourceExhausted(format!(
                "the server has its limit of {} open streams; retry later",
                self.settings.total
            )));
        }
        let mine = open.entry(key_id).or_insert_with(|| KeyStreams {
            open: 0,
            revoked: watch::Sender::new(false),
        });
        if mine.open >= self.settings.per_key {
            return Err(ServiceError::ResourceExhausted(format!(
                "this key has its limit of {} open streams; close one first",
                self.settings.per_key
            )));
        }
        mine.open += 1;
        Ok(mine.revoked.subscribe())
    }

    fn release(&self, key_id: Uuid) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mine) = open.get_mut(&key_id) {
            mine.open = mine.open.saturating_sub(1);
            if mine.open == 0 {
                open.remove(&key_id);
            }
        }
    }

    /// Ends every open stream of `key_id`.
    pub(super) fn revoke(&self, key_id: Uuid) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mine) = open.get(&key_id) {
            mine.revoked.send_replace(true);
        }
    }

    /// The keys with open streams.
    pub(super) fn keys(&self) -> Vec<Uuid> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.keys().copied().collect()
    }
}

/// One open stream's claim on its key's stream allowance.
pub struct StreamPermit {
    pub(super) limits: Arc<StreamLimits>,
    pub(super) key_id: Uuid,
    pub(super) revoked: watch::Receiver<bool>,
}

impl StreamPermit {
    /// Resolves once the stream's key is revoked: at once through this server, within
    /// the key cache's lifetime (and a check) through another replica.
    pub async fn revoked(&self) {
        let mut revoked = self.revoked.clone();
        if revoked.wait_for(|revoked| *revoked).await.is_err() {
            // The signal lives as long as any permit of the key: not reached.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        self.limits.release(self.key_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_key: usize, total: usize) -> StreamLimits {
        StreamLimits::new(StreamLimitSettings { per_key, total })
    }

    #[test]
    fn a_revocation_reaches_every_stream_of_its_key_and_only_those() {
        let limits = limits(10, 10);
        let (key, other) = (Uuid::now_v7(), Uuid::now_v7());
        let first = limits.admit(key).unwrap();
        let second = limits.admit(key).unwrap();
        let others = limits.admit(other).unwrap();
        limits.revoke(key);
        assert!(*first.borrow() && *second.borrow());
        assert!(!*others.borrow());
        // A stream admitted while the key's streams are still open starts revoked.
        assert!(*limits.admit(key).unwrap().borrow());
    }

    #[test]
    fn limits_hold_per_key_and_in_all_and_released_streams_give_their_place_back() {
        let limits = limits(2, 3);
        let (key, other) = (Uuid::now_v7(), Uuid::now_v7());
        limits.admit(key).unwrap();
        limits.admit(key).unwrap();
        assert!(matches!(
            limits.admit(key),
            Err(ServiceError::ResourceExhausted(_))
        ));
        limits.admit(other).unwrap();
        assert!(matches!(
            limits.admit(other),
            Err(ServiceError::ResourceExhausted(_))
        ));
        limits.release(key);
        limits.admit(other).unwrap();
        limits.release(key);
        limits.release(other);
        limits.release(other);
        // Every stream of the keys gone: nothing is kept for them.
        assert!(limits.keys().is_empty());
    }
}
