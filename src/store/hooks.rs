//! Inbound hooks, each creation and deletion with its audit entry.

use async_trait::async_trait;
use uuid::Uuid;

use super::audit::{delete_audited, save_audited};
use super::database::Statement;
use super::{SqlStore, StoreError, StoreResult};
use crate::domain::audit::AuditEntry;
use crate::domain::hook::{HookAction, InboundHook};

#[async_trait]
pub trait HookStore {
    async fn insert_inbound_hook(&self, hook: &InboundHook, audit: &AuditEntry) -> StoreResult<()>;
    async fn inbound_hook(&self, id: Uuid) -> StoreResult<Option<InboundHook>>;
    /// Every hook, oldest first (there are few).
    async fn inbound_hooks(&self) -> StoreResult<Vec<InboundHook>>;
    /// `false` if there was none.
    async fn delete_inbound_hook(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool>;
}

type Row = (
    Uuid,
    String,
    String,
    String,
    String,
    chrono::DateTime<chrono::Utc>,
);

const COLUMNS: &str = "id, name, action, source, secret, created_at";

fn hook(row: Row) -> StoreResult<InboundHook> {
    let (id, name, action, source, secret, created_at) = row;
    Ok(InboundHook {
        id,
        name,
        action: HookAction::parse(&action)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown hook action {action:?}")))?,
        source,
        secret,
        created_at,
    })
}

#[async_trait]
impl HookStore for SqlStore {
    async fn insert_inbound_hook(&self, hook: &InboundHook, audit: &AuditEntry) -> StoreResult<()> {
        let statement = Statement::new(
            "INSERT INTO inbound_hooks (id, name, action, source, secret, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(hook.id)
        .bind(&hook.name)
        .bind(hook.action.as_str())
        .bind(&hook.source)
        .bind(&hook.secret)
        .bind(hook.created_at);
        save_audited(
            &self.pools,
            statement,
            "an inbound hook with this id",
            audit,
        )
        .await?;
        Ok(())
    }

    async fn inbound_hook(&self, id: Uuid) -> StoreResult<Option<InboundHook>> {
        let row: Option<Row> =
            Statement::owned(format!("SELECT {COLUMNS} FROM inbound_hooks WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pools)
                .await?;
        row.map(hook).transpose()
    }

    async fn inbound_hooks(&self) -> StoreResult<Vec<InboundHook>> {
        let rows: Vec<Row> = Statement::owned(format!(
            "SELECT {COLUMNS} FROM inbound_hooks ORDER BY created_at, id LIMIT 1000"
        ))
        .fetch_all(&self.pools)
        .await?;
        rows.into_iter().map(hook).collect()
    }

    async fn delete_inbound_hook(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool> {
        delete_audited(
            &self.pools,
            "DELETE FROM inbound_hooks WHERE id = $1",
            id,
            audit,
        )
        .await
    }
}
