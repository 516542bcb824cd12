//! A short-lived cache for configuration read on every request (routing rules, queues, SLA
//! policies, calendars). Saves through this process clear it at once; changes made through
//! another replica are seen within [`CONFIG_TTL`].

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::store::StoreResult;

/// How long configuration read from the database is reused.
pub const CONFIG_TTL: Duration = Duration::from_secs(1);

pub struct Cached<T> {
    slot: RwLock<Option<(Instant, Arc<T>)>>,
    ttl: Duration,
}

impl<T> Cached<T> {
    pub fn new(ttl: Duration) -> Self {
        Cached {
            slot: RwLock::new(None),
            ttl,
        }
    }

    /// The cached value, or a fresh one from `load`.
    pub async fn get<F, Fut>(&self, load: F) -> StoreResult<Arc<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        if let Ok(slot) = self.slot.read()
            && let Some((at, value)) = slot.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        let value = Arc::new(load().await?);
        if let Ok(mut slot) = self.slot.write() {
            *slot = Some((Instant::now(), value.clone()));
        }
        Ok(value)
    }

    pub fn invalidate(&self) {
        if let Ok(mut slot) = self.slot.write() {
            *slot = None;
        }
    }
}
