//! Cross-replica wake-ups through PostgreSQL `LISTEN`/`NOTIFY`.
//!
//! NOTIFY takes a cluster-wide lock at commit, so it is never sent per write transaction:
//! the notifier sends at most one per tick, after local commits. The listener turns
//! notifications into remote wake-ups and reconnects if its connection drops; streams also
//! poll slowly on their own, so a lost notification only delays them.
//!
//! The payload names the channels that had messages queued (bits of `Channel::ALL`), so
//! a replica wakes only the delivery streams of those channels.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::task::JoinHandle;

use super::StoreResult;
use super::pg_pool::ConnectionPool;
use crate::events::{Bus, all_channels};

const CHANNEL: &str = "ticketd_events";
/// The debounce tick: local commits within one tick share a NOTIFY.
const TICK: Duration = Duration::from_millis(5);

/// Starts the notifier and the listener; abort the handles to stop them.
/// Notifications are sent on the primary's pool; `listener` is a pool of one connection
/// for the listener to keep.
pub(super) fn spawn(pool: ConnectionPool, listener: PgPool, bus: Bus) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(notify_loop(pool, bus.clone())),
        tokio::spawn(listen_loop(listener, bus)),
    ]
}

async fn notify(pool: &ConnectionPool, queued: &str) -> StoreResult<()> {
    let mut lease = pool.get().await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(queued)
        .execute(lease.busy())
        .await?;
    lease.done();
    Ok(())
}

async fn notify_loop(pool: ConnectionPool, bus: Bus) {
    let mut local = bus.subscribe_local();
    while local.changed().await.is_ok() {
        tokio::time::sleep(TICK).await;
        local.mark_unchanged();
        let queued = bus.take_unannounced();
        if let Err(err) = notify(&pool, &queued.to_string()).await {
            // The channels go with the next notification; until then other replicas'
            // delivery streams find the messages on their own slower look.
            bus.restore_unannounced(queued);
            tracing::debug!(error = %err, "notify failed; other replicas will poll");
        }
    }
}

async fn listen_loop(pool: PgPool, bus: Bus) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listen(&pool, &bus).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "event listener disconnected");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn listen(pool: &PgPool, bus: &Bus) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    // Anything committed while we were not listening: let every stream look.
    bus.publish_remote(all_channels());
    loop {
        let notification = listener.recv().await?;
        // An unreadable payload (an older replica's) wakes every channel.
        let queued = notification.payload().parse().unwrap_or(all_channels());
        bus.publish_remote(queued);
    }
}
