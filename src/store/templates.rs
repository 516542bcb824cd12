//! Message templates for automation.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::audit::{delete_audited, save_audited};
use super::database::Statement;
use super::{SqlStore, StoreError, StoreResult};
use crate::domain::audit::AuditEntry;
use crate::domain::template::Template;
use crate::domain::ticket::Channel;

const SELECT_TEMPLATES: &str = "SELECT id, name, channel, subject, body, version, created_at, \
    updated_at FROM templates";

const INSERT_TEMPLATE: &str = "INSERT INTO templates \
    (id, name, channel, subject, body, version, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, 1, $6, $6)";

const UPDATE_TEMPLATE: &str = "UPDATE templates SET name = $2, channel = $3, subject = $4, \
    body = $5, updated_at = $6, version = version + 1 WHERE id = $1 AND version = $7";

const DELETE_TEMPLATE: &str = "DELETE FROM templates WHERE id = $1";

type TemplateRow = (
    Uuid,
    String,
    String,
    String,
    String,
    i64,
    DateTime<Utc>,
    DateTime<Utc>,
);

fn template(
    (id, name, channel, subject, body, version, created_at, updated_at): TemplateRow,
) -> StoreResult<Template> {
    Ok(Template {
        id,
        name,
        channel: Channel::parse(&channel)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown channel {channel:?}")))?,
        subject,
        body,
        version,
        created_at,
        updated_at,
    })
}

/// Templates, saved with an audit entry.
#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// Inserts `template` (`expected_version` None) or updates it if still at that
    /// version; `false` otherwise.
    async fn save_template(
        &self,
        template: &Template,
        expected_version: Option<i64>,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    async fn template(&self, id: Uuid) -> StoreResult<Option<Template>>;
    /// Every template, by name.
    async fn templates(&self) -> StoreResult<Vec<Template>>;
    async fn delete_template(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool>;
}

#[async_trait]
impl TemplateStore for SqlStore {
    async fn save_template(
        &self,
        t: &Template,
        expected_version: Option<i64>,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let query = Statement::new(match expected_version {
            None => INSERT_TEMPLATE,
            Some(_) => UPDATE_TEMPLATE,
        })
        .bind(t.id)
        .bind(&t.name)
        .bind(t.channel.as_str())
        .bind(&t.subject)
        .bind(&t.body)
        .bind(t.updated_at);
        let query = match expected_version {
            None => query,
            Some(version) => query.bind(version),
        };
        save_audited(&self.pools, query, "a template with this name", audit).await
    }

    async fn template(&self, id: Uuid) -> StoreResult<Option<Template>> {
        let sql = format!("{SELECT_TEMPLATES} WHERE id = $1");
        let row: Option<TemplateRow> = Statement::owned(sql)
            .bind(id)
            .fetch_optional(&self.pools)
            .await?;
        row.map(template).transpose()
    }

    async fn templates(&self) -> StoreResult<Vec<Template>> {
        let sql = format!("{SELECT_TEMPLATES} ORDER BY name, id");
        let rows: Vec<TemplateRow> = Statement::owned(sql).fetch_all(&self.pools).await?;
        rows.into_iter().map(template).collect()
    }

    async fn delete_template(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool> {
        delete_audited(&self.pools, DELETE_TEMPLATE, id, audit).await
    }
}
