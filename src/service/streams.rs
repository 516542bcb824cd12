//! Plumbing shared by server streams: a bounded channel from a producer task to the
//! client, a final status delivered after the buffered items, a gauge of open streams,
//! and the wait for "something may have changed".

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

/// Why a stream ended other than by the client going away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// The server is shutting down; resume after `cursor` elsewhere.
    ShuttingDown { cursor: i64 },
    /// The client read too slowly; resume after `cursor`.
    FellBehind { cursor: i64 },
    /// The database failed; resume after `cursor`.
    Unavailable { cursor: i64 },
}

/// Counts open streams per kind, for metrics and for tests that check nothing leaks.
#[derive(Debug, Default)]
pub struct StreamGauge {
    watch: AtomicI64,
    delivery: AtomicI64,
}

#[derive(Debug, Clone, Copy)]
pub enum StreamKind {
    Watch,
    Delivery,
}

impl StreamGauge {
    fn counter(&self, kind: StreamKind) -> &AtomicI64 {
        match kind {
            StreamKind::Watch => &self.watch,
            StreamKind::Delivery => &self.delivery,
        }
    }

    pub fn open(&self, kind: StreamKind) -> i64 {
        self.counter(kind).load(Ordering::SeqCst)
    }
}

/// Holds one count of a stream kind for as long as it lives.
pub(crate) struct GaugeGuard {
    gauge: Arc<StreamGauge>,
    kind: StreamKind,
}

impl StreamKind {
    fn label(self) -> &'static str {
        match self {
            StreamKind::Watch => "watch",
            StreamKind::Delivery => "delivery",
        }
    }
}

impl GaugeGuard {
    pub(crate) fn new(gauge: Arc<StreamGauge>, kind: StreamKind) -> Self {
        gauge.counter(kind).fetch_add(1, Ordering::SeqCst);
        metrics::gauge!("ticketd_open_streams", "kind" => kind.label()).increment(1.0);
        GaugeGuard { gauge, kind }
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.gauge.counter(self.kind).fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("ticketd_open_streams", "kind" => self.kind.label()).decrement(1.0);
    }
}

/// The receiving half handed to the transport: items, then possibly a final status.
pub struct StreamOutput<T> {
    pub items: mpsc::Receiver<T>,
    pub end: oneshot::Receiver<StreamEnd>,
}

/// The producing half, owned by the producer task.
pub(crate) struct StreamSender<T> {
    items: mpsc::Sender<T>,
    end: std::sync::Mutex<Option<oneshot::Sender<StreamEnd>>>,
    /// How long a send may wait on a full buffer before the client counts as behind.
    stall: Duration,
}

pub(crate) fn channel<T>(buffer: usize, stall: Duration) -> (StreamSender<T>, StreamOutput<T>) {
    let (items_tx, items_rx) = mpsc::channel(buffer);
    let (end_tx, end_rx) = oneshot::channel();
    (
        StreamSender {
            items: items_tx,
            end: std::sync::Mutex::new(Some(end_tx)),
            stall,
        },
        StreamOutput {
            items: items_rx,
            end: end_rx,
        },
    )
}

/// What happened to an item handed to [`StreamSender::send`].
pub(crate) enum Sent {
    Ok,
    /// The client is gone.
    Closed,
    /// The buffer stayed full for the whole stall period.
    Stalled,
}

impl<T> StreamSender<T> {
    pub(crate) async fn send(&self, item: T) -> Sent {
        // Room in the buffer is the common case: no timer for it.
        let item = match self.items.try_send(item) {
            Ok(()) => return Sent::Ok,
            Err(mpsc::error::TrySendError::Closed(_)) => return Sent::Closed,
            Err(mpsc::error::TrySendError::Full(item)) => item,
        };
        match tokio::time::timeout(self.stall, self.items.send(item)).await {
            Ok(Ok(())) => Sent::Ok,
            Ok(Err(_)) => Sent::Closed,
            Err(_) => Sent::Stalled,
        }
    }

    /// Ends the stream with a status that the client reads after the buffered items.
    pub(crate) fn finish(&self, end: StreamEnd) {
        let taken = self.end.lock().map(|mut slot| slot.take());
        if let Ok(Some(tx)) = taken {
            let _ = tx.send(end);
        }
    }

    pub(crate) async fn closed(&self) {
        self.items.closed().await
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.items.is_closed()
    }
}

/// Why a producer stopped waiting.
pub(crate) enum Wake {
    /// Something was committed, or the poll interval passed: read again.
    Look,
    ShuttingDown,
    ClientGone,
}

/// Waits for a commit (local or from another replica), the fallback poll, the `alarm`,
/// shutdown or the client leaving, whichever comes first.
pub(crate) async fn wait<T, C>(
    commits: &mut watch::Receiver<C>,
    shutdown: &mut watch::Receiver<bool>,
    sender: &StreamSender<T>,
    poll: Duration,
    alarm: impl Future<Output = ()>,
) -> Wake {
    if *shutdown.borrow() {
        return Wake::ShuttingDown;
    }
    tokio::select! {
        changed = commits.changed() => {
            if changed.is_err() {
                // The bus is gone with the store: keep polling.
                tokio::time::sleep(poll).await;
            }
            Wake::Look
        }
        _ = tokio::time::sleep(poll) => Wake::Look,
        () = alarm => Wake::Look,
        _ = shutdown.changed() => Wake::ShuttingDown,
        _ = sender.closed() => Wake::ClientGone,
    }
}
