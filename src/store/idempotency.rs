//! Request ids: a retried create or send finds the claim of its first attempt.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::database::{Statement, Tx};
use super::{IdempotencyClaim, SqlStore, StoreError, StoreResult};

/// Claims a request id, or takes over a claim that has expired (older than `$6`).
const CLAIM_REQUEST_ID: &str = "INSERT INTO idempotency_keys \
    (scope, request_id, fingerprint, resource_id, created_at) VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (scope, request_id) DO UPDATE SET fingerprint = excluded.fingerprint, \
    resource_id = excluded.resource_id, created_at = excluded.created_at \
    WHERE idempotency_keys.created_at < $6";

const LIVE_REQUEST_ID: &str = "SELECT fingerprint, resource_id \
    FROM idempotency_keys WHERE scope = $1 AND request_id = $2 AND created_at >= $3";

const PURGE_REQUEST_IDS: &str = "DELETE FROM idempotency_keys WHERE created_at < $1";

/// Idempotency claims.
#[async_trait]
pub trait RequestIdStore: Send + Sync {
    /// What a live claim on the request id made, if one exists: `Some(resource)` for
    /// the same body, [`StoreError::IdempotencyMismatch`] for another.
    async fn claimed_request(&self, claim: &IdempotencyClaim) -> StoreResult<Option<Uuid>>;

    /// Forgets request ids claimed before `before`; returns how many.
    async fn purge_request_ids(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}

#[async_trait]
impl RequestIdStore for SqlStore {
    async fn claimed_request(&self, claim: &IdempotencyClaim) -> StoreResult<Option<Uuid>> {
        let row: Option<(String, Uuid)> = Statement::new(LIVE_REQUEST_ID)
            .bind(&claim.scope)
            .bind(&claim.request_id)
            .bind(claim.expired_before)
            .fetch_optional(&self.pools)
            .await?;
        claim.replay_of(row)
    }

    async fn purge_request_ids(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        Ok(Statement::new(PURGE_REQUEST_IDS)
            .bind(before)
            .execute(&self.pools)
            .await?)
    }
}

/// Writes a changeset inside `tx`. Events about `new_ticket` get its number and
/// contact. Returns what was written; the caller commits.
/// Claims `claim`'s request id in `tx`. `Some(resource)` when a live claim holds
/// it already, for the same body; an error for a different body.
pub(super) async fn claim_request_id(
    tx: &mut Tx,
    claim: &IdempotencyClaim,
) -> StoreResult<Option<Uuid>> {
    let claimed = Statement::new(CLAIM_REQUEST_ID)
        .bind(&claim.scope)
        .bind(&claim.request_id)
        .bind(&claim.fingerprint)
        .bind(claim.resource_id)
        .bind(claim.at)
        .bind(claim.expired_before)
        .execute(&mut *tx)
        .await?;
    if claimed > 0 {
        return Ok(None);
    }
    // Not claimed, so a live claim holds the id (an expired one would have been
    // taken over by the statement above).
    let held: Option<(String, Uuid)> = Statement::new(LIVE_REQUEST_ID)
        .bind(&claim.scope)
        .bind(&claim.request_id)
        .bind(claim.expired_before)
        .fetch_optional(&mut *tx)
        .await?;
    let replayed = claim.replay_of(held)?.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "request id {:?} is neither claimable nor held",
            claim.request_id
        ))
    })?;
    // The retry answers for the first request's write: it gets a consistency token too.
    super::replicas::note_write();
    Ok(Some(replayed))
}
