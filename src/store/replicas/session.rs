//! The request a store call serves, as far as reads on standbys care: the position its
//! reads must see, whether it wrote, and where its routed reads went.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::domain::consistency::Lsn;

/// What the store knows of the caller's request it is serving.
struct Session {
    /// Reads must see at least this position.
    after: Option<Lsn>,
    /// The request committed a write (or replayed one by its request id).
    wrote: AtomicBool,
    /// Where the request's routed reads go once the first has gone somewhere, so that
    /// they all see one database at one moment or later: [`UNPINNED`], [`ON_PRIMARY`],
    /// or a standby's index.
    pinned: AtomicUsize,
}

pub(super) const UNPINNED: usize = usize::MAX;
pub(super) const ON_PRIMARY: usize = usize::MAX - 1;

tokio::task_local! {
    static SESSION: Session;
}

/// Runs `request` as one caller's request whose reads must see at least `after`;
/// returns its output and whether it committed a write on the primary.
pub async fn session<F: Future>(after: Option<Lsn>, request: F) -> (F::Output, bool) {
    let session = Session {
        after,
        wrote: AtomicBool::new(false),
        pinned: AtomicUsize::new(UNPINNED),
    };
    SESSION
        .scope(session, async {
            let output = request.await;
            let wrote = SESSION.with(|s| s.wrote.load(Ordering::Relaxed));
            (output, wrote)
        })
        .await
}

/// Marks the current request (if any) as having written.
pub(in crate::store) fn note_write() {
    let _ = SESSION.try_with(|s| s.wrote.store(true, Ordering::Relaxed));
}

pub(super) fn read_after() -> Option<Lsn> {
    SESSION.try_with(|s| s.after).ok().flatten()
}

/// Where the request's earlier routed reads went (`UNPINNED` outside a request); a
/// request that wrote reads on the primary.
pub(super) fn pinned() -> usize {
    SESSION
        .try_with(|s| {
            if s.wrote.load(Ordering::Relaxed) {
                ON_PRIMARY
            } else {
                s.pinned.load(Ordering::Relaxed)
            }
        })
        .unwrap_or(UNPINNED)
}

pub(super) fn pin(to: usize) {
    let _ = SESSION.try_with(|s| s.pinned.store(to, Ordering::Relaxed));
}
