//! Open streams: how many each key and the server may hold, and the end of a key's
//! streams when the key is revoked.
//!
//! A stream does not check its own key. One task per server looks, every
//! [`STREAM_KEY_CHECK`], at each key that has streams open (through the key cache, so a
//! revocation on another replica is seen within the cache's lifetime), and tells that
//! key's streams at once through one signal; a revocation through this server tells them
//! straight away. An idle stream so costs nothing while it waits, however many are open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use super::KeyStatus;
use crate::service::{ServiceError, ServiceResult};

/// How often the keys of open streams are checked.
const STREAM_KEY_CHECK: Duration = Duration::from_secs(1);

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
    /// Whether the task that checks the keys of open streams runs.
    checking: std::sync::Once,
}

impl StreamLimits {
    pub(super) fn new(settings: StreamLimitSettings) -> Self {
        Self {
            settings,
            open: Mutex::default(),
            checking: std::sync::Once::new(),
        }
    }

    /// Admits one more stream for `key_id` and hands back its key's revocation signal;
    /// starts the key check on the first admission.
    pub(super) fn admit(
        self: &Arc<Self>,
        key_id: Uuid,
        status: &KeyStatus,
    ) -> ServiceResult<watch::Receiver<bool>> {
        self.checking.call_once(|| {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(check_keys(Arc::downgrade(self), status.clone()));
            }
        });
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

    fn keys(&self) -> Vec<Uuid> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.keys().copied().collect()
    }
}

/// Checks the keys of open streams until the limits are gone (the server stopped).
async fn check_keys(limits: Weak<StreamLimits>, status: KeyStatus) {
    loop {
        tokio::time::sleep(STREAM_KEY_CHECK).await;
        let Some(keys) = limits.upgrade().map(|l| l.keys()) else {
            return;
        };
        for key in keys {
            if !status.is_active(key).await
                && let Some(limits) = limits.upgrade()
            {
                limits.revoke(key);
            }
        }
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
