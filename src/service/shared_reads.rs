//! Coalesces identical log reads of concurrent watch streams.
//!
//! Watchers that follow the live end of the log sit at the same cursor, and a commit
//! wakes them all at once: without coalescing, each would send the same query. Here the
//! first one to ask reads, and every watcher that asks for the same position while that
//! read is in flight shares its result. Events are immutable, so a shared result is as good
//! as a private one; a watcher that read just before a commit looks again after it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::domain::event::Event;
use crate::store::{Store, StoreResult};

/// (after, ticket, the subscription start the reader jumps to once caught up): a read is
/// shared only by streams whose subscriptions began at the same point, so it started
/// after each of them subscribed.
type Key = (i64, Option<Uuid>, i64);
type Read = Arc<OnceCell<Arc<Vec<Arc<Event>>>>>;

#[derive(Default)]
pub struct SharedReads {
    in_flight: Mutex<HashMap<Key, Read>>,
}

impl SharedReads {
    /// Up to `limit` events after `after`, up to `from` (of one ticket, if given).
    pub async fn events_until(
        &self,
        store: &dyn Store,
        after: i64,
        ticket: Option<Uuid>,
        limit: i64,
        from: i64,
    ) -> StoreResult<Arc<Vec<Arc<Event>>>> {
        let key = (after, ticket, from);
        let cell = match self.in_flight.lock() {
            Ok(mut map) => map.entry(key).or_default().clone(),
            Err(_) => Read::default(),
        };
        cell.get_or_try_init(|| async {
            let events = store.events_until(after, from, ticket, limit).await;
            // Later readers start a fresh query: they may want newer commits.
            if let Ok(mut map) = self.in_flight.lock() {
                map.remove(&key);
            }
            events.map(|events| Arc::new(events.into_iter().map(Arc::new).collect()))
        })
        .await
        .cloned()
    }
}
