//! The audit log of administrative changes, written in the transaction of the change.

use async_trait::async_trait;
use uuid::Uuid;

use super::database::{Pools, Statement, Tx, json};
use super::rows::{self, AuditRow};
use super::{SqlStore, StoreResult, unique_violation};
use crate::domain::audit::{AuditEntry, AuditFilter};

const SELECT_AUDIT: &str = "SELECT id, actor_kind, actor_id, actor_name, action, \
    resource, resource_id, changes, created_at FROM audit_log";

const INSERT_AUDIT: &str = "INSERT INTO audit_log \
    (id, actor_kind, actor_id, actor_name, action, resource, resource_id, changes, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Appends an audit entry inside the transaction of the change it records.
async fn insert_audit(tx: &mut Tx, entry: &AuditEntry) -> StoreResult<()> {
    tx.execute(
        Statement::new(INSERT_AUDIT)
            .bind(entry.id)
            .bind(entry.actor.kind.as_str())
            .bind(entry.actor.id)
            .bind(&entry.actor.name)
            .bind(entry.action.as_str())
            .bind(entry.resource.as_str())
            .bind(entry.resource_id)
            .bind(json(&entry.changes)?)
            .bind(entry.created_at),
    )
    .await?;
    Ok(())
}

/// Ends an administrative write's transaction: with its audit entry when the write
/// `done`, rolled back when it changed nothing. Returns `done`.
pub(super) async fn commit_audited(
    mut tx: Tx,
    done: bool,
    audit: &AuditEntry,
) -> StoreResult<bool> {
    if done {
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(done)
}

/// Runs an administrative insert or version-conditional update with its audit entry;
/// `false` when it wrote no row (a stale version), and then nothing is recorded. A unique
/// key taken is [`StoreError::AlreadyExists`] naming `what`.
pub(super) async fn save_audited(
    pools: &Pools,
    statement: Statement<'_>,
    what: &'static str,
    audit: &AuditEntry,
) -> StoreResult<bool> {
    let mut tx = pools.begin().await?;
    let done = statement
        .execute(&mut tx)
        .await
        .map_err(|e| unique_violation(e, what))?;
    commit_audited(tx, done == 1, audit).await
}

/// Deletes the row `sql` names by `id` (`$1`), with its audit entry; `false` when nothing
/// was deleted (no such row, or one still in use), and then nothing is recorded.
pub(super) async fn delete_audited(
    pools: &Pools,
    sql: &'static str,
    id: Uuid,
    audit: &AuditEntry,
) -> StoreResult<bool> {
    let mut tx = pools.begin().await?;
    let deleted = Statement::new(sql).bind(id).execute(&mut tx).await?;
    commit_audited(tx, deleted == 1, audit).await
}

/// Audit entries.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Audit entries matching `filter`, newest first, older than `before` if given.
    async fn audit_entries(
        &self,
        filter: &AuditFilter,
        before: Option<Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<AuditEntry>>;
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn audit_entries(
        &self,
        filter: &AuditFilter,
        before: Option<Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<AuditEntry>> {
        let mut q = Statement::new(SELECT_AUDIT);
        q.push(" WHERE 1 = 1");
        if let Some(resource) = filter.resource {
            q.push(" AND resource = ").push_bind(resource.as_str());
        }
        if let Some(id) = filter.resource_id {
            q.push(" AND resource_id = ").push_bind(id);
        }
        if let Some(action) = filter.action {
            q.push(" AND action = ").push_bind(action.as_str());
        }
        if let Some(id) = filter.actor_id {
            q.push(" AND actor_id = ").push_bind(id);
        }
        if let Some(since) = filter.since {
            q.push(" AND created_at >= ").push_bind(since);
        }
        if let Some(until) = filter.until {
            q.push(" AND created_at < ").push_bind(until);
        }
        if let Some(before) = before {
            q.push(" AND id < ").push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        let rows: Vec<AuditRow> = q.fetch_all(self.pools.routed()).await?;
        rows::convert_all(rows)
    }
}
