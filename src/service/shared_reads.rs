//! Coalesces identical log reads of concurrent watch streams.
//!
//! Streams that subscribed at the same moment (a reconnecting crowd, say) catch up from the
//! same cursor to the same point: the first one to ask reads, and every stream that asks
//! for the same range while that read is in flight shares its result. Events are
//! immutable, so a shared result is as good as a private one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::domain::consistency::Lsn;
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
    /// Up to `limit` events after `after`, up to `until` (of one ticket, if given); where
    /// the read may go with `replayed`, as the store's `events_until` says.
    pub async fn events_until(
        &self,
        store: &dyn Store,
        after: i64,
        until: i64,
        ticket: Option<Uuid>,
        limit: i64,
        replayed: Option<Lsn>,
    ) -> StoreResult<Arc<Vec<Arc<Event>>>> {
        let key = (after, ticket, until);
        let cell = match self.in_flight.lock() {
            Ok(mut map) => map.entry(key).or_default().clone(),
            Err(_) => Read::default(),
        };
        cell.get_or_try_init(|| async {
            let events = store
                .events_until(after, until, ticket, limit, replayed)
                .await;
            // Done: the map holds only reads in flight.
            if let Ok(mut map) = self.in_flight.lock() {
                map.remove(&key);
            }
            events.map(|events| Arc::new(events.into_iter().map(Arc::new).collect()))
        })
        .await
        .cloned()
    }
}
