//! SQL shared by both backends, and [`impl_store!`], which implements [`super::Store`]
//! once for each of them.
//!
//! Both drivers accept `$N` placeholders and the statements below use only syntax both
//! understand (`ON CONFLICT`, `RETURNING`, row-value comparisons, recursive CTEs), so the
//! only per-backend pieces are the pool types, how a ticket number is drawn, and the
//! migrations. The macro is instantiated in `postgres.rs` and `sqlite.rs`.

/// The columns of a ticket row joined with its contact; see `rows::TicketRow`.
macro_rules! select_tickets {
    () => {
        "SELECT t.id, t.number, t.subject, t.description, t.status, t.priority, \
         t.ticket_type, t.tags, t.custom_fields, t.assignee_id, t.queue_id, t.merged_into_id, \
         t.version, t.time_spent_seconds, t.created_at, t.updated_at, t.contact_id, \
         c.external_id AS contact_external_id, c.name AS contact_name, \
         c.email AS contact_email, c.phone AS contact_phone, c.vip AS contact_vip \
         FROM tickets t JOIN contacts c ON c.id = t.contact_id"
    };
}

pub(super) const SELECT_TICKETS: &str = select_tickets!();
pub(super) const TICKET_BY_ID: &str = concat!(select_tickets!(), " WHERE t.id = $1");
pub(super) const TICKET_BY_NUMBER: &str = concat!(select_tickets!(), " WHERE t.number = $1");

/// Empty strings and a NULL `vip` keep what is stored: a caller that knows only the
/// external id must not erase the name and email another caller supplied.
pub(super) const UPSERT_CONTACT: &str = "INSERT INTO contacts \
    (id, external_id, name, email, phone, vip, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, COALESCE($6, FALSE), $7, $7) \
    ON CONFLICT (external_id) DO UPDATE SET \
    name = CASE WHEN excluded.name = '' THEN contacts.name ELSE excluded.name END, \
    email = CASE WHEN excluded.email = '' THEN contacts.email ELSE excluded.email END, \
    phone = CASE WHEN excluded.phone = '' THEN contacts.phone ELSE excluded.phone END, \
    vip = CASE WHEN $6 IS NULL THEN contacts.vip ELSE excluded.vip END, \
    updated_at = excluded.updated_at \
    RETURNING id";

pub(super) const CLAIM_REQUEST_ID: &str = "INSERT INTO idempotency_keys \
    (scope, request_id, fingerprint, resource_id, created_at) VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (scope, request_id) DO NOTHING";

pub(super) const CLAIMED_REQUEST_ID: &str = "SELECT fingerprint, resource_id \
    FROM idempotency_keys WHERE scope = $1 AND request_id = $2";

pub(super) const INSERT_TAG: &str = "INSERT INTO ticket_tags (ticket_id, tag) VALUES ($1, $2)";

pub(super) const DELETE_TAGS: &str = "DELETE FROM ticket_tags WHERE ticket_id = $1";

pub(super) const UPDATE_TICKET: &str = "UPDATE tickets SET subject = $2, description = $3, \
    status = $4, priority = $5, priority_rank = $6, ticket_type = $7, tags = $8, \
    custom_fields = $9, contact_id = $10, assignee_id = $11, queue_id = $12, \
    merged_into_id = $13, time_spent_seconds = $14, updated_at = $15, version = version + 1 \
    WHERE id = $1 AND version = $16";

pub(super) const INSERT_EVENT: &str = "INSERT INTO ticket_events (id, ticket_id, ticket_number, \
    event_type, actor_kind, actor_id, actor_name, visibility, payload, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING seq";

pub(super) const INSERT_TIME_ENTRY: &str = "INSERT INTO time_entries \
    (id, ticket_id, agent_id, seconds, note, created_at) VALUES ($1, $2, $3, $4, $5, $6)";

pub(super) const INSERT_ATTACHMENT: &str = "INSERT INTO attachments \
    (id, ticket_id, event_id, name, content_type, size_bytes, content, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// A ticket's events and those of every ticket merged into it, at any depth.
pub(super) const ACTIVITY: &str = "WITH RECURSIVE family (id) AS ( \
      SELECT id FROM tickets WHERE id = $1 \
      UNION SELECT t.id FROM tickets t JOIN family f ON t.merged_into_id = f.id) \
    SELECT seq, id, ticket_id, ticket_number, event_type, actor_kind, actor_id, actor_name, \
    visibility, payload, created_at FROM ticket_events \
    WHERE ticket_id IN (SELECT id FROM family) AND seq > $2 \
    AND ($3 OR visibility = 'public') ORDER BY seq LIMIT $4";

const API_KEY_COLUMNS: &str =
    "id, name, role, agent_id, prefix, secret_hash, created_at, revoked_at";

/// A secret already stored is left alone, so replicas that start together with the same
/// bootstrap key do not trip over each other.
pub(super) const INSERT_API_KEY: &str = "INSERT INTO api_keys \
    (id, name, role, agent_id, prefix, secret_hash, created_at, revoked_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (secret_hash) DO NOTHING";

pub(super) fn api_key_by_hash() -> String {
    format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE secret_hash = $1")
}

pub(super) fn api_keys_first_page() -> String {
    format!("SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, id DESC LIMIT $1")
}

pub(super) fn api_keys_next_page() -> String {
    format!(
        "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE (created_at, id) < ($2, $3) \
         ORDER BY created_at DESC, id DESC LIMIT $1"
    )
}

pub(super) fn revoke_api_key() -> String {
    format!(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 \
         RETURNING {API_KEY_COLUMNS}"
    )
}

pub(super) const HAS_ACTIVE_ADMIN_KEY: &str =
    "SELECT COUNT(*) FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL";

/// Implements `Store` for a struct with `reader` and `writer` pools of database `$db`.
/// `$next_number` is the SQL expression that draws the next ticket number.
macro_rules! impl_store {
    ($store:ty, $db:ty, next_number = $next_number:expr, migrator = $migrator:expr) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            #[tracing::instrument(skip_all)]
            async fn migrate(&self) -> $crate::store::StoreResult<()> {
                $migrator.run(&self.writer).await?;
                Ok(())
            }

            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.reader).await?;
                Ok(())
            }

            #[tracing::instrument(skip_all, fields(ticket_id = %draft.id))]
            async fn create_ticket(
                &self,
                draft: $crate::store::TicketDraft,
                events: Vec<$crate::domain::event::NewEvent>,
                claim: Option<$crate::store::IdempotencyClaim>,
            ) -> $crate::store::StoreResult<$crate::store::CreateOutcome> {
                use $crate::store::sql::*;
                let mut tx = self.writer.begin().await?;
                if let Some(claim) = &claim {
                    let claimed = sqlx::query(CLAIM_REQUEST_ID)
                        .bind(claim.scope)
                        .bind(&claim.request_id)
                        .bind(&claim.fingerprint)
                        .bind(draft.id)
                        .bind(draft.created_at)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if claimed == 0 {
                        let (fingerprint, ticket_id): (String, uuid::Uuid) =
                            sqlx::query_as(CLAIMED_REQUEST_ID)
                                .bind(claim.scope)
                                .bind(&claim.request_id)
                                .fetch_one(&mut *tx)
                                .await?;
                        tx.rollback().await?;
                        if fingerprint != claim.fingerprint {
                            return Err($crate::store::StoreError::IdempotencyMismatch(
                                claim.request_id.clone(),
                            ));
                        }
                        let ticket = self
                            .ticket($crate::store::TicketKey::Id(ticket_id))
                            .await?
                            .ok_or_else(|| {
                                $crate::store::StoreError::Corrupt(format!(
                                    "request id {:?} names missing ticket {ticket_id}",
                                    claim.request_id
                                ))
                            })?;
                        return Ok($crate::store::CreateOutcome::Replayed(ticket));
                    }
                }
                let contact_id =
                    upsert_contact(&mut tx, &draft.contact, draft.created_at).await?;
                let insert = format!(
                    "INSERT INTO tickets (id, number, subject, description, status, priority, \
                     priority_rank, ticket_type, tags, custom_fields, contact_id, assignee_id, \
                     queue_id, version, time_spent_seconds, created_at, updated_at) VALUES \
                     ($1, {}, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, 0, $13, $13) \
                     RETURNING number",
                    $next_number
                );
                let (number,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(insert))
                    .bind(draft.id)
                    .bind(&draft.subject)
                    .bind(&draft.description)
                    .bind(draft.status.as_str())
                    .bind(draft.priority.as_str())
                    .bind(draft.priority.rank())
                    .bind(draft.ticket_type.as_str())
                    .bind(sqlx::types::Json(&draft.tags))
                    .bind(sqlx::types::Json(&draft.custom_fields))
                    .bind(contact_id)
                    .bind(draft.assignee_id)
                    .bind(draft.queue_id)
                    .bind(draft.created_at)
                    .fetch_one(&mut *tx)
                    .await?;
                for tag in &draft.tags {
                    sqlx::query(INSERT_TAG)
                        .bind(draft.id)
                        .bind(tag)
                        .execute(&mut *tx)
                        .await?;
                }
                let mut stored = Vec::with_capacity(events.len());
                for mut event in events {
                    if event.ticket_id == draft.id {
                        event.ticket_number = number;
                    }
                    stored.push(insert_event(&mut tx, event).await?);
                }
                let ticket = ticket_in(&mut tx, draft.id).await?;
                tx.commit().await?;
                Ok($crate::store::CreateOutcome::Created {
                    ticket,
                    events: stored,
                })
            }

            async fn ticket(
                &self,
                key: $crate::store::TicketKey,
            ) -> $crate::store::StoreResult<Option<$crate::domain::ticket::Ticket>> {
                use $crate::store::sql::*;
                let row: Option<$crate::store::rows::TicketRow> = match key {
                    $crate::store::TicketKey::Id(id) => {
                        sqlx::query_as(TICKET_BY_ID)
                            .bind(id)
                            .fetch_optional(&self.reader)
                            .await?
                    }
                    $crate::store::TicketKey::Number(n) => {
                        sqlx::query_as(TICKET_BY_NUMBER)
                            .bind(n)
                            .fetch_optional(&self.reader)
                            .await?
                    }
                };
                row.map($crate::domain::ticket::Ticket::try_from).transpose()
            }

            #[tracing::instrument(skip_all)]
            async fn list_tickets(
                &self,
                query: &$crate::store::TicketQuery,
            ) -> $crate::store::StoreResult<Vec<$crate::domain::ticket::Ticket>> {
                use $crate::store::ticket_query::{render, Param};
                let (sql, params) = render(query);
                let mut q = sqlx::query_as::<_, $crate::store::rows::TicketRow>(
                    sqlx::AssertSqlSafe(sql),
                );
                for param in params {
                    q = match param {
                        Param::Text(s) => q.bind(s),
                        Param::Int(i) => q.bind(i),
                        Param::Uuid(u) => q.bind(u),
                        Param::Time(t) => q.bind(t),
                    };
                }
                $crate::store::rows::convert_all(q.fetch_all(&self.reader).await?)
            }

            #[tracing::instrument(skip_all, fields(updates = changes.updates.len(), events = changes.events.len()))]
            async fn commit(
                &self,
                changes: $crate::store::Changeset,
            ) -> $crate::store::StoreResult<$crate::store::Committed> {
                use $crate::store::sql::*;
                let mut tx = self.writer.begin().await?;
                for update in &changes.updates {
                    let t = &update.ticket;
                    let contact_id = match &update.contact {
                        Some(contact) => upsert_contact(&mut tx, contact, t.updated_at).await?,
                        None => t.contact.id,
                    };
                    let updated = sqlx::query(UPDATE_TICKET)
                        .bind(t.id)
                        .bind(&t.subject)
                        .bind(&t.description)
                        .bind(t.status.as_str())
                        .bind(t.priority.as_str())
                        .bind(t.priority.rank())
                        .bind(t.ticket_type.as_str())
                        .bind(sqlx::types::Json(&t.tags))
                        .bind(sqlx::types::Json(&t.custom_fields))
                        .bind(contact_id)
                        .bind(t.assignee_id)
                        .bind(t.queue_id)
                        .bind(t.merged_into_id)
                        .bind(t.time_spent_seconds)
                        .bind(t.updated_at)
                        .bind(update.expected_version)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if updated == 0 {
                        return Err($crate::store::StoreError::Conflict(t.id));
                    }
                    if update.tags_changed {
                        sqlx::query(DELETE_TAGS).bind(t.id).execute(&mut *tx).await?;
                        for tag in &t.tags {
                            sqlx::query(INSERT_TAG)
                                .bind(t.id)
                                .bind(tag)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                }
                for entry in &changes.time_entries {
                    sqlx::query(INSERT_TIME_ENTRY)
                        .bind(entry.id)
                        .bind(entry.ticket_id)
                        .bind(entry.agent_id)
                        .bind(entry.seconds)
                        .bind(&entry.note)
                        .bind(entry.created_at)
                        .execute(&mut *tx)
                        .await?;
                }
                let mut events = Vec::with_capacity(changes.events.len());
                for event in changes.events {
                    events.push(insert_event(&mut tx, event).await?);
                }
                // Attachments reference their reply event, so they follow the events.
                for file in &changes.attachments {
                    sqlx::query(INSERT_ATTACHMENT)
                        .bind(file.id)
                        .bind(file.ticket_id)
                        .bind(file.event_id)
                        .bind(&file.name)
                        .bind(&file.content_type)
                        .bind(file.content.len() as i64)
                        .bind(&file.content)
                        .bind(file.created_at)
                        .execute(&mut *tx)
                        .await?;
                }
                let mut tickets = Vec::with_capacity(changes.updates.len());
                for update in &changes.updates {
                    tickets.push(ticket_in(&mut tx, update.ticket.id).await?);
                }
                tx.commit().await?;
                Ok($crate::store::Committed { tickets, events })
            }

            async fn activity(
                &self,
                ticket_id: uuid::Uuid,
                after_cursor: i64,
                include_internal: bool,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::domain::event::Event>> {
                let rows: Vec<$crate::store::rows::EventRow> =
                    sqlx::query_as($crate::store::sql::ACTIVITY)
                        .bind(ticket_id)
                        .bind(after_cursor)
                        .bind(include_internal)
                        .bind(limit)
                        .fetch_all(&self.reader)
                        .await?;
                $crate::store::rows::convert_all(rows)
            }

            async fn insert_api_key(
                &self,
                key: &$crate::store::ApiKeyRecord,
            ) -> $crate::store::StoreResult<bool> {
                let inserted = sqlx::query($crate::store::sql::INSERT_API_KEY)
                    .bind(key.id)
                    .bind(&key.name)
                    .bind(key.role.as_str())
                    .bind(key.agent_id)
                    .bind(&key.prefix)
                    .bind(&key.secret_hash)
                    .bind(key.created_at)
                    .bind(key.revoked_at)
                    .execute(&self.writer)
                    .await?
                    .rows_affected();
                Ok(inserted == 1)
            }

            async fn api_key_by_hash(
                &self,
                secret_hash: &[u8],
            ) -> $crate::store::StoreResult<Option<$crate::store::ApiKeyRecord>> {
                let row: Option<$crate::store::rows::ApiKeyRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe($crate::store::sql::api_key_by_hash()))
                        .bind(secret_hash)
                        .fetch_optional(&self.reader)
                        .await?;
                row.map($crate::store::ApiKeyRecord::try_from).transpose()
            }

            async fn list_api_keys(
                &self,
                before: Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::ApiKeyRecord>> {
                use $crate::store::sql::*;
                let rows: Vec<$crate::store::rows::ApiKeyRow> = match before {
                    None => {
                        sqlx::query_as(sqlx::AssertSqlSafe(api_keys_first_page()))
                            .bind(limit)
                            .fetch_all(&self.reader)
                            .await?
                    }
                    Some((created_at, id)) => {
                        sqlx::query_as(sqlx::AssertSqlSafe(api_keys_next_page()))
                            .bind(limit)
                            .bind(created_at)
                            .bind(id)
                            .fetch_all(&self.reader)
                            .await?
                    }
                };
                $crate::store::rows::convert_all(rows)
            }

            async fn revoke_api_key(
                &self,
                id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<$crate::store::ApiKeyRecord>> {
                let row: Option<$crate::store::rows::ApiKeyRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe($crate::store::sql::revoke_api_key()))
                        .bind(id)
                        .bind(at)
                        .fetch_optional(&self.writer)
                        .await?;
                row.map($crate::store::ApiKeyRecord::try_from).transpose()
            }

            async fn has_active_admin_key(&self) -> $crate::store::StoreResult<bool> {
                let (count,): (i64,) =
                    sqlx::query_as($crate::store::sql::HAS_ACTIVE_ADMIN_KEY)
                        .fetch_one(&self.reader)
                        .await?;
                Ok(count > 0)
            }
        }

        async fn upsert_contact(
            tx: &mut sqlx::Transaction<'static, $db>,
            contact: &$crate::domain::ticket::ContactInput,
            at: chrono::DateTime<chrono::Utc>,
        ) -> $crate::store::StoreResult<uuid::Uuid> {
            let (id,): (uuid::Uuid,) = sqlx::query_as($crate::store::sql::UPSERT_CONTACT)
                .bind(uuid::Uuid::now_v7())
                .bind(&contact.external_id)
                .bind(&contact.name)
                .bind(&contact.email)
                .bind(&contact.phone)
                .bind(contact.vip)
                .bind(at)
                .fetch_one(&mut **tx)
                .await?;
            Ok(id)
        }

        async fn insert_event(
            tx: &mut sqlx::Transaction<'static, $db>,
            event: $crate::domain::event::NewEvent,
        ) -> $crate::store::StoreResult<$crate::domain::event::Event> {
            let (cursor,): (i64,) = sqlx::query_as($crate::store::sql::INSERT_EVENT)
                .bind(event.id)
                .bind(event.ticket_id)
                .bind(event.ticket_number)
                .bind(event.kind.as_str())
                .bind(event.actor.kind.as_str())
                .bind(event.actor.id)
                .bind(&event.actor.name)
                .bind(event.visibility.as_str())
                .bind(sqlx::types::Json(&event.payload))
                .bind(event.created_at)
                .fetch_one(&mut **tx)
                .await?;
            Ok($crate::domain::event::Event { cursor, event })
        }

        async fn ticket_in(
            tx: &mut sqlx::Transaction<'static, $db>,
            id: uuid::Uuid,
        ) -> $crate::store::StoreResult<$crate::domain::ticket::Ticket> {
            let row: $crate::store::rows::TicketRow =
                sqlx::query_as($crate::store::sql::TICKET_BY_ID)
                    .bind(id)
                    .fetch_one(&mut **tx)
                    .await?;
            $crate::domain::ticket::Ticket::try_from(row)
        }
    };
}
pub(super) use impl_store;
