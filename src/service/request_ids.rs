//! Request ids: a caller that retries a create or a send with the same `request_id` and
//! the same body gets the first result back instead of a second ticket, reply or message.
//!
//! An id belongs to the key that sent it (another key's identical id is another request)
//! and is remembered for a window (24 hours by default); after that it may be used again
//! and the stored claim is purged.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::auth::Principal;
use crate::store::{IdempotencyClaim, Store};

/// Hands out claims for request ids, scoped to the calling key, and forgets them once
/// their window has passed.
#[derive(Clone)]
pub struct RequestIds {
    store: Arc<dyn Store>,
    window: TimeDelta,
    clock: Clock,
}

impl RequestIds {
    pub fn new(store: Arc<dyn Store>, window: Duration, clock: Clock) -> Self {
        Self {
            store,
            clock,
            window: TimeDelta::from_std(window).unwrap_or(TimeDelta::hours(24)),
        }
    }

    /// Deletes the claims whose window has passed (a claim past its window is taken
    /// over anyway; this only keeps the table small).
    pub async fn purge_expired(&self) {
        match self
            .store
            .purge_request_ids(self.clock.now() - self.window)
            .await
        {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "expired request ids purged"),
            Err(err) => tracing::warn!(error = %err, "request ids not purged"),
        }
    }

    /// A claim on `request_id` for `operation` by the calling key, or `None` when the
    /// caller sent no request id. `resource_id` is what this request will make, returned
    /// to its retries.
    pub fn claim(
        &self,
        operation: &str,
        principal: &Principal,
        request_id: &str,
        body: Fingerprint,
        resource_id: Uuid,
    ) -> Option<IdempotencyClaim> {
        if request_id.is_empty() {
            return None;
        }
        let at = self.clock.now();
        Some(IdempotencyClaim {
            scope: format!("{operation}/{}", principal.key_id),
            request_id: request_id.to_owned(),
            fingerprint: body.finish(),
            resource_id,
            at,
            expired_before: at - self.window,
        })
    }
}

/// A digest of a request's body, fed part by part in a fixed order. Each part is
/// length-prefixed, so moving bytes from one field to the next changes the digest.
#[derive(Clone, Default)]
pub struct Fingerprint(Sha256);

impl Fingerprint {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn part(mut self, bytes: impl AsRef<[u8]>) -> Self {
        let bytes = bytes.as_ref();
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// Lower-case hex: plain text that both databases store as it is.
    pub fn finish(self) -> String {
        crate::domain::hex(&self.0.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_hex_and_tell_parts_apart() {
        let ab_c = Fingerprint::new().part("ab").part("c").finish();
        let a_bc = Fingerprint::new().part("a").part("bc").finish();
        assert_ne!(ab_c, a_bc);
        assert_eq!(ab_c, Fingerprint::new().part("ab").part("c").finish());
        assert_eq!(ab_c.len(), 64);
        assert!(ab_c.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
