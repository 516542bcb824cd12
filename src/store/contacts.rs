//! Contacts and the addresses they are known by. Tickets upsert their contact by external
//! id (`tickets.rs`); this module reads contacts as a resource, saves changes to them and
//! keeps their addresses, by which intake finds them.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::audit::commit_audited;
use super::database::{Statement, Tx};
use super::{SqlStore, StoreError, StoreResult, unique_violation};
use crate::domain::audit::AuditEntry;
use crate::domain::contact::{ContactQuery, ContactRecord, email_key, phone_key};
use crate::domain::ticket::Contact;

const SELECT_CONTACTS: &str = "SELECT c.id, c.external_id, c.name, c.email, c.phone, c.vip, \
    c.version, c.created_at, c.updated_at FROM contacts c";

const CONTACT_BY_ADDRESS: &str = "SELECT c.id, c.external_id, c.name, c.email, c.phone, \
    c.vip, c.version, c.created_at, c.updated_at FROM contact_identities i \
    JOIN contacts c ON c.id = i.contact_id WHERE i.kind = $1 AND i.value = $2";

/// An address already known stays with its contact.
const REMEMBER_ADDRESS: &str = "INSERT INTO contact_identities \
    (kind, value, contact_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";

const FORGET_ADDRESSES: &str = "DELETE FROM contact_identities WHERE contact_id = $1";

const UPDATE_CONTACT: &str = "UPDATE contacts SET external_id = $2, name = $3, email = $4, \
    phone = $5, vip = $6, updated_at = $7, version = version + 1 \
    WHERE id = $1 AND version = $8";

type ContactRow = (
    Uuid,
    String,
    String,
    String,
    String,
    bool,
    i64,
    DateTime<Utc>,
    DateTime<Utc>,
);

fn record(
    (id, external_id, name, email, phone, vip, version, created_at, updated_at): ContactRow,
) -> ContactRecord {
    ContactRecord {
        contact: Contact {
            id,
            external_id,
            name,
            email,
            phone,
            vip,
        },
        emails: Vec::new(),
        phones: Vec::new(),
        version,
        created_at,
        updated_at,
    }
}

/// Contacts as a resource.
#[async_trait]
pub trait ContactStore: Send + Sync {
    async fn contact(&self, id: Uuid) -> StoreResult<Option<ContactRecord>>;

    /// Contacts matching `query`, oldest first, at most `query.limit`.
    async fn contacts(&self, query: &ContactQuery) -> StoreResult<Vec<ContactRecord>>;

    /// The contact known by this email (any case), else by this phone; empty values
    /// are not looked for.
    async fn contact_by_address(&self, email: &str, phone: &str) -> StoreResult<Option<Contact>>;

    /// Writes a changed contact and its addresses, if it is still at `expected_version`
    /// (else `false`). One of `new_addresses` (kind, value) that another contact holds, or
    /// an external id another contact has, is [`super::StoreError::AlreadyExists`]; an
    /// address the contact showed before and another holds stays the other's.
    async fn save_contact(
        &self,
        contact: &ContactRecord,
        expected_version: i64,
        new_addresses: &[(&str, String)],
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
}

#[async_trait]
impl ContactStore for SqlStore {
    async fn contact(&self, id: Uuid) -> StoreResult<Option<ContactRecord>> {
        let sql = format!("{SELECT_CONTACTS} WHERE c.id = $1");
        let row: Option<ContactRow> = Statement::owned(sql)
            .bind(id)
            .fetch_optional(&self.pools)
            .await?;
        let mut found: Vec<ContactRecord> = row.map(record).into_iter().collect();
        self.attach_addresses(&mut found).await?;
        Ok(found.pop())
    }

    async fn contacts(&self, query: &ContactQuery) -> StoreResult<Vec<ContactRecord>> {
        let mut q = Statement::new(SELECT_CONTACTS);
        q.push(" WHERE 1 = 1");
        if let Some(email) = &query.email {
            q.push(" AND c.id IN (SELECT contact_id FROM contact_identities WHERE kind = 'email' AND value = ")
                .push_bind(email_key(email))
                .push(")");
        }
        if let Some(phone) = &query.phone {
            q.push(" AND c.id IN (SELECT contact_id FROM contact_identities WHERE kind = 'phone' AND value = ")
                .push_bind(phone_key(phone))
                .push(")");
        }
        if let Some(external_id) = &query.external_id {
            q.push(" AND c.external_id = ")
                .push_bind(external_id.clone());
        }
        if let Some(name) = &query.name {
            let escaped = name
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            q.push(" AND lower(c.name) LIKE ")
                .push_bind(format!("%{escaped}%"))
                .push(" ESCAPE '\\'");
        }
        if let Some(after) = query.after {
            q.push(" AND c.id > ").push_bind(after);
        }
        q.push(" ORDER BY c.id LIMIT ").push_bind(query.limit);
        let rows: Vec<ContactRow> = q.fetch_all(&self.pools).await?;
        let mut found: Vec<ContactRecord> = rows.into_iter().map(record).collect();
        self.attach_addresses(&mut found).await?;
        Ok(found)
    }

    async fn contact_by_address(&self, email: &str, phone: &str) -> StoreResult<Option<Contact>> {
        for (kind, value) in [("email", email_key(email)), ("phone", phone_key(phone))] {
            if value.is_empty() {
                continue;
            }
            let row: Option<ContactRow> = Statement::new(CONTACT_BY_ADDRESS)
                .bind(kind)
                .bind(value)
                .fetch_optional(&self.pools)
                .await?;
            if let Some(row) = row {
                return Ok(Some(record(row).contact));
            }
        }
        Ok(None)
    }

    async fn save_contact(
        &self,
        contact: &ContactRecord,
        expected_version: i64,
        new_addresses: &[(&str, String)],
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let c = &contact.contact;
        let mut tx = self.pools.begin().await?;
        let saved = Statement::new(UPDATE_CONTACT)
            .bind(c.id)
            .bind(&c.external_id)
            .bind(&c.name)
            .bind(&c.email)
            .bind(&c.phone)
            .bind(c.vip)
            .bind(contact.updated_at)
            .bind(expected_version)
            .execute(&mut tx)
            .await
            .map_err(|e| unique_violation(e, "a contact with this external_id"))?;
        if saved == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        Statement::new(FORGET_ADDRESSES)
            .bind(c.id)
            .execute(&mut tx)
            .await?;
        let addresses = contact
            .emails
            .iter()
            .map(|e| ("email", e))
            .chain(contact.phones.iter().map(|p| ("phone", p)));
        for (kind, value) in addresses {
            let taken = Statement::new(REMEMBER_ADDRESS)
                .bind(kind)
                .bind(value.as_str())
                .bind(c.id)
                .bind(contact.updated_at)
                .execute(&mut tx)
                .await?
                == 0;
            if taken && new_addresses.iter().any(|(k, v)| *k == kind && v == value) {
                tx.rollback().await?;
                return Err(StoreError::AlreadyExists("an address of another contact"));
            }
        }
        commit_audited(tx, true, audit).await
    }
}

impl SqlStore {
    async fn attach_addresses(&self, contacts: &mut [ContactRecord]) -> StoreResult<()> {
        if contacts.is_empty() {
            return Ok(());
        }
        let mut q = Statement::new(
            "SELECT contact_id, kind, value FROM contact_identities WHERE contact_id IN ",
        );
        q.push_list(contacts.iter().map(|c| c.contact.id));
        q.push(" ORDER BY created_at, value");
        let rows: Vec<(Uuid, String, String)> = q.fetch_all(&self.pools).await?;
        let mut by_contact: HashMap<Uuid, Vec<(String, String)>> = HashMap::new();
        for (id, kind, value) in rows {
            by_contact.entry(id).or_default().push((kind, value));
        }
        for record in contacts {
            let known = by_contact.remove(&record.contact.id).unwrap_or_default();
            let of = |kind: &str, primary: String| {
                let mut list: Vec<String> = Vec::new();
                if !primary.is_empty() {
                    list.push(primary);
                }
                for (k, value) in &known {
                    if k == kind && !list.contains(value) {
                        list.push(value.clone());
                    }
                }
                list
            };
            record.emails = of("email", email_key(&record.contact.email));
            record.phones = of("phone", phone_key(&record.contact.phone));
        }
        Ok(())
    }
}

/// Makes a contact's primary addresses findable (they may be new to it); an address
/// another contact already has stays with that contact.
pub(super) async fn remember_addresses(
    tx: &mut Tx,
    contact: &Contact,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    for (kind, value) in [
        ("email", email_key(&contact.email)),
        ("phone", phone_key(&contact.phone)),
    ] {
        if value.is_empty() {
            continue;
        }
        let remember = Statement::new(REMEMBER_ADDRESS)
            .bind(kind)
            .bind(value)
            .bind(contact.id)
            .bind(at);
        tx.defer(remember).await?;
    }
    Ok(())
}
