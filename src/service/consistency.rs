//! Read-your-writes across standbys: a request runs as one session of the store, whose
//! routed reads see at least the position the caller sent, and a request that committed
//! a write is answered with the position after it.

use std::future::Future;
use std::sync::Arc;

use crate::domain::consistency::Lsn;
use crate::store::{self, Standbys, Store};

/// The consistency of one process's reads: which standbys serve them, if any.
#[derive(Clone)]
pub struct ReadConsistency {
    standbys: Option<Arc<Standbys>>,
}

impl ReadConsistency {
    pub fn of(store: &dyn Store) -> Self {
        Self {
            standbys: store.standbys(),
        }
    }

    /// A primary WAL position past every commit visible there now, for a read that may
    /// go to any standby that has replayed that far; `None` without standbys, or when
    /// the primary cannot say (the read then stays on the primary).
    pub async fn committed(&self) -> Option<Lsn> {
        let standbys = self.standbys.as_ref()?;
        match standbys.committed_position().await {
            Ok(position) => Some(position),
            Err(err) => {
                tracing::debug!(error = %err, "no primary position; reading on the primary");
                None
            }
        }
    }

    /// Runs `request` with its reads seeing at least `after`; returns its output and,
    /// when it committed a write and standbys serve reads, the token of that write.
    /// Without standbys every read is on the primary and no token is needed.
    pub async fn serve<F: Future>(
        &self,
        after: Option<Lsn>,
        request: F,
    ) -> (F::Output, Option<Lsn>) {
        let (output, wrote) = store::session(after, request).await;
        let token = match (wrote, &self.standbys) {
            (true, Some(standbys)) => match standbys.committed_position().await {
                Ok(token) => Some(token),
                // The write is done; only its token is missing, so later reads go
                // wherever tokenless reads go.
                Err(err) => {
                    tracing::warn!(error = %err, "no consistency token for a write");
                    None
                }
            },
            _ => None,
        };
        (output, token)
    }
}
