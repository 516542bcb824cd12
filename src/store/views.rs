//! Saved views.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::audit::{delete_audited, save_audited};
use super::database::{Statement, json};
use super::{SqlStore, StoreResult};
use crate::domain::audit::AuditEntry;
use crate::domain::view::View;

const SELECT_VIEWS: &str = "SELECT id, name, filter, order_by, columns, owner_agent_id, \
    version, created_at, updated_at FROM views";

const INSERT_VIEW: &str = "INSERT INTO views (id, name, filter, order_by, columns, \
    owner_agent_id, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7)";

const UPDATE_VIEW: &str = "UPDATE views SET name = $2, filter = $3, order_by = $4, \
    columns = $5, owner_agent_id = $6, updated_at = $7, version = version + 1 \
    WHERE id = $1 AND version = $8";

const DELETE_VIEW: &str = "DELETE FROM views WHERE id = $1";

#[derive(sqlx::FromRow)]
struct ViewRow {
    id: Uuid,
    name: String,
    filter: String,
    order_by: String,
    columns: Json<Vec<String>>,
    owner_agent_id: Option<Uuid>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ViewRow> for View {
    fn from(row: ViewRow) -> Self {
        View {
            id: row.id,
            name: row.name,
            filter: row.filter,
            order_by: row.order_by,
            columns: row.columns.0,
            owner_agent_id: row.owner_agent_id,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[async_trait]
pub trait ViewStore: Send + Sync {
    /// Inserts `view` (`expected_version` None) or updates it if still at that version;
    /// `false` otherwise.
    async fn save_view(
        &self,
        view: &View,
        expected_version: Option<i64>,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    async fn view(&self, id: Uuid) -> StoreResult<Option<View>>;
    /// The shared views and those of `owner` (every view when `None`), by name.
    async fn views(&self, owner: Option<Uuid>) -> StoreResult<Vec<View>>;
    async fn delete_view(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool>;
}

#[async_trait]
impl ViewStore for SqlStore {
    async fn save_view(
        &self,
        v: &View,
        expected_version: Option<i64>,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let query = Statement::new(match expected_version {
            None => INSERT_VIEW,
            Some(_) => UPDATE_VIEW,
        })
        .bind(v.id)
        .bind(&v.name)
        .bind(&v.filter)
        .bind(&v.order_by)
        .bind(json(&v.columns)?)
        .bind(v.owner_agent_id)
        .bind(v.updated_at);
        let query = match expected_version {
            None => query,
            Some(version) => query.bind(version),
        };
        save_audited(&self.pools, query, "a view with this id", audit).await
    }

    async fn view(&self, id: Uuid) -> StoreResult<Option<View>> {
        let row: Option<ViewRow> = Statement::owned(format!("{SELECT_VIEWS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pools)
            .await?;
        Ok(row.map(View::from))
    }

    async fn views(&self, owner: Option<Uuid>) -> StoreResult<Vec<View>> {
        let rows: Vec<ViewRow> = match owner {
            Some(agent) => Statement::owned(format!(
                "{SELECT_VIEWS} WHERE owner_agent_id IS NULL OR owner_agent_id = $1 \
                 ORDER BY name, id"
            ))
            .bind(agent),
            None => Statement::owned(format!("{SELECT_VIEWS} ORDER BY name, id")),
        }
        .fetch_all(&self.pools)
        .await?;
        Ok(rows.into_iter().map(View::from).collect())
    }

    async fn delete_view(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool> {
        delete_audited(&self.pools, DELETE_VIEW, id, audit).await
    }
}
