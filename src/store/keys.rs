//! API keys: stored by the hash of their secret, never the secret itself.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::audit::commit_audited;
use super::database::{Statement, Tx, json};
use super::rows::{self, ApiKeyRow};
use super::{ApiKeyRecord, SqlStore, StoreResult};
use crate::domain::audit::AuditEntry;

const API_KEY_COLUMNS: &str =
    "id, name, role, agent_id, channels, sources, prefix, secret_hash, created_at, revoked_at";

/// A secret already stored is left alone, so replicas that start together with the same
/// bootstrap key do not trip over each other.
const INSERT_API_KEY: &str = "INSERT INTO api_keys \
    (id, name, role, agent_id, prefix, secret_hash, created_at, revoked_at, channels, sources) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (secret_hash) DO NOTHING";

/// Most ids [`KeyStore::active_api_keys`] looks up in one statement.
const MAX_KEYS_PER_LOOKUP: usize = 500;

/// Followed by the list of ids.
const SELECT_ACTIVE_KEYS_AMONG: &str =
    "SELECT id FROM api_keys WHERE revoked_at IS NULL AND id IN ";

const HAS_ACTIVE_ADMIN_KEY: &str =
    "SELECT COUNT(*) FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL";

/// API keys.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The secret signing `name`'s tokens; `fresh` becomes it if there is none yet
    /// (replicas starting together agree on whichever was stored first).
    async fn signing_key(&self, name: &str, fresh: &[u8]) -> StoreResult<Vec<u8>>;

    /// Stores a key; `false` if its secret is stored already.
    async fn insert_api_key(&self, key: &ApiKeyRecord, audit: &AuditEntry) -> StoreResult<bool>;

    /// Stores `key` if no active admin key exists, atomically across replicas; `false`
    /// if one does.
    async fn insert_first_admin_key(
        &self,
        key: &ApiKeyRecord,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;

    async fn api_key_by_hash(&self, secret_hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>>;

    async fn api_key_by_id(&self, id: Uuid) -> StoreResult<Option<ApiKeyRecord>>;

    /// Which of `ids` are keys that exist and are not revoked, in no particular order:
    /// one statement per 500 ids (`MAX_KEYS_PER_LOOKUP`).
    async fn active_api_keys(&self, ids: &[Uuid]) -> StoreResult<Vec<Uuid>>;

    /// Newest first; `before` continues after the last key of the previous page.
    async fn list_api_keys(
        &self,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> StoreResult<Vec<ApiKeyRecord>>;

    /// Marks a key revoked (idempotent); `None` if there is no such key.
    async fn revoke_api_key(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> StoreResult<Option<ApiKeyRecord>>;

    async fn has_active_admin_key(&self) -> StoreResult<bool>;
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn signing_key(&self, name: &str, fresh: &[u8]) -> StoreResult<Vec<u8>> {
        self.pools
            .write(
                Statement::new(
                    "INSERT INTO signing_keys (name, secret) VALUES ($1, $2) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(fresh),
            )
            .await?;
        let (secret,): (Vec<u8>,) =
            Statement::new("SELECT secret FROM signing_keys WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pools)
                .await?;
        Ok(secret)
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord, audit: &AuditEntry) -> StoreResult<bool> {
        let mut tx = self.pools.begin().await?;
        let inserted = insert_key(&mut tx, key).await?;
        commit_audited(tx, inserted, audit).await
    }

    async fn insert_first_admin_key(
        &self,
        key: &ApiKeyRecord,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let mut tx = self.pools.begin().await?;
        // Held to the end of the transaction: concurrent bootstraps take turns.
        Statement::new(tx.dialect().lock_api_keys())
            .execute(&mut tx)
            .await?;
        let (admins,): (i64,) = Statement::new(HAS_ACTIVE_ADMIN_KEY)
            .fetch_one(&mut tx)
            .await?;
        if admins > 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let inserted = insert_key(&mut tx, key).await?;
        commit_audited(tx, inserted, audit).await
    }

    async fn api_key_by_hash(&self, secret_hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>> {
        let row: Option<ApiKeyRow> = Statement::owned(select_key_by_hash())
            .bind(secret_hash)
            .fetch_optional(&self.pools)
            .await?;
        row.map(ApiKeyRecord::try_from).transpose()
    }

    async fn api_key_by_id(&self, id: Uuid) -> StoreResult<Option<ApiKeyRecord>> {
        let row: Option<ApiKeyRow> = Statement::owned(select_key_by_id())
            .bind(id)
            .fetch_optional(&self.pools)
            .await?;
        row.map(ApiKeyRecord::try_from).transpose()
    }

    async fn active_api_keys(&self, ids: &[Uuid]) -> StoreResult<Vec<Uuid>> {
        let mut active = Vec::new();
        for chunk in ids.chunks(MAX_KEYS_PER_LOOKUP) {
            let mut statement = Statement::new(SELECT_ACTIVE_KEYS_AMONG);
            statement.push_list(chunk.iter().copied());
            let rows: Vec<(Uuid,)> = statement.fetch_all(&self.pools).await?;
            active.extend(rows.into_iter().map(|(id,)| id));
        }
        Ok(active)
    }

    async fn list_api_keys(
        &self,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows: Vec<ApiKeyRow> = match before {
            None => {
                Statement::owned(select_keys_first_page())
                    .bind(limit)
                    .fetch_all(&self.pools)
                    .await?
            }
            Some((created_at, id)) => {
                Statement::owned(select_keys_next_page())
                    .bind(limit)
                    .bind(created_at)
                    .bind(id)
                    .fetch_all(&self.pools)
                    .await?
            }
        };
        rows::convert_all(rows)
    }

    async fn revoke_api_key(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        let mut tx = self.pools.begin().await?;
        let row: Option<ApiKeyRow> = Statement::owned(revoke_key_returning())
            .bind(id)
            .bind(at)
            .fetch_optional(&mut tx)
            .await?;
        let record = row.map(ApiKeyRecord::try_from).transpose()?;
        // Revoking a revoked key changes nothing, and records nothing.
        let revoked_now = record.as_ref().is_some_and(|k| k.revoked_at == Some(at));
        let _: bool = commit_audited(tx, revoked_now, audit).await?;
        Ok(record)
    }

    async fn has_active_admin_key(&self) -> StoreResult<bool> {
        let (count,): (i64,) = Statement::new(HAS_ACTIVE_ADMIN_KEY)
            .fetch_one(&self.pools)
            .await?;
        Ok(count > 0)
    }
}

fn select_key_by_id() -> String {
    format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1")
}

fn select_key_by_hash() -> String {
    format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE secret_hash = $1")
}

fn select_keys_first_page() -> String {
    format!("SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, id DESC LIMIT $1")
}

fn select_keys_next_page() -> String {
    format!(
        "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE (created_at, id) < ($2, $3) \
         ORDER BY created_at DESC, id DESC LIMIT $1"
    )
}

fn revoke_key_returning() -> String {
    format!(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 \
         RETURNING {API_KEY_COLUMNS}"
    )
}

/// Inserts `key` in `tx`; `false` if its secret is stored already.
async fn insert_key(tx: &mut Tx, key: &ApiKeyRecord) -> StoreResult<bool> {
    let inserted = Statement::new(INSERT_API_KEY)
        .bind(key.id)
        .bind(&key.name)
        .bind(key.role.as_str())
        .bind(key.agent_id)
        .bind(&key.prefix)
        .bind(&key.secret_hash)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .bind(json(
            &key.channels.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        )?)
        .bind(json(&key.sources)?)
        .execute(&mut *tx)
        .await?;
    Ok(inserted == 1)
}
