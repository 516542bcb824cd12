//! Contacts as a resource: read, list by address or name, and change under an etag.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::paging::{self, decode, encode, query_digest};
use super::versioned::{Mask, Versioned, update_versioned};
use super::{ServiceError, ServiceResult};
use crate::clock::Clock;
use crate::domain::audit::AuditEntry;
use crate::domain::contact::{
    ContactQuery, ContactRecord, MAX_ADDRESSES, address_list, email_key, phone_key, with_primary,
};
use crate::domain::event::Actor;
use crate::domain::ticket::{MAX_CONTACT_FIELD_CHARS, looks_like_email};
use crate::domain::validation::Violations;
use crate::store::Store;

/// The paths `UpdateContact` accepts in its `update_mask`.
pub const CONTACT_PATHS: &[&str] = &[
    "external_id",
    "name",
    "email",
    "phone",
    "vip",
    "emails",
    "phones",
];

/// A contact's fields as a caller sends them.
#[derive(Debug, Clone, Default)]
pub struct ContactPatch {
    pub external_id: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub vip: Option<bool>,
    pub emails: Vec<String>,
    pub phones: Vec<String>,
}

/// What `ListContacts` narrows by; empty values do not narrow.
#[derive(Debug, Clone, Default)]
pub struct ContactFilter {
    pub email: String,
    pub phone: String,
    pub external_id: String,
    pub name: String,
}

impl Versioned for ContactRecord {
    fn version(&self) -> i64 {
        self.version
    }
}

#[derive(Serialize, Deserialize)]
struct ContactPageToken {
    after: Uuid,
    query: String,
}

#[derive(Clone)]
pub struct ContactService {
    store: Arc<dyn Store>,
    clock: Clock,
}

impl ContactService {
    pub fn new(store: Arc<dyn Store>, clock: Clock) -> Self {
        Self { store, clock }
    }

    pub async fn get(&self, id: Uuid) -> ServiceResult<ContactRecord> {
        self.store
            .contact(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("contact {id}")))
    }

    /// Contacts matching `filter`, oldest first, a page at a time.
    pub async fn list(
        &self,
        filter: ContactFilter,
        page_size: i32,
        page_token: &str,
    ) -> ServiceResult<(Vec<ContactRecord>, String)> {
        let mut v = Violations::new();
        for (field, value) in [
            ("email", &filter.email),
            ("phone", &filter.phone),
            ("external_id", &filter.external_id),
            ("name", &filter.name),
        ] {
            v.line(field, value, false, MAX_CONTACT_FIELD_CHARS);
        }
        v.finish()?;
        let limit = paging::page_size(page_size, paging::DEFAULT_PAGE_SIZE)?;
        let digest = query_digest(&[
            &filter.email,
            &filter.phone,
            &filter.external_id,
            &filter.name,
        ]);
        let after = if page_token.is_empty() {
            None
        } else {
            let token: ContactPageToken = decode(page_token)?;
            if token.query != digest {
                return Err(ServiceError::invalid(
                    "page_token",
                    "belongs to another filter",
                ));
            }
            Some(token.after)
        };
        let given = |s: String| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let query = ContactQuery {
            email: given(filter.email),
            phone: given(filter.phone),
            external_id: given(filter.external_id),
            name: given(filter.name),
            after,
            limit: limit + 1,
        };
        let mut contacts = self.store.contacts(&query).await?;
        let mut next = String::new();
        if contacts.len() as i64 > limit {
            contacts.truncate(limit as usize);
            if let Some(last) = contacts.last() {
                next = encode(&ContactPageToken {
                    after: last.contact.id,
                    query: digest,
                });
            }
        }
        Ok((contacts, next))
    }

    /// Changes the fields `mask` names (all of them when it is empty), under the caller's
    /// etag if it sent one. Naming `email` or `phone` makes that address the primary
    /// (the former primary stays among the addresses); naming `emails` or `phones`
    /// replaces the list (the primary stays primary if listed, else the first is).
    pub async fn update(
        &self,
        actor: &Actor,
        id: Uuid,
        patch: ContactPatch,
        mask: Vec<String>,
        etag: Option<String>,
    ) -> ServiceResult<ContactRecord> {
        let mask = Mask::new(mask, CONTACT_PATHS)?;
        let (mask, patch) = (&mask, &patch);
        update_versioned(
            &format!("contact {id}"),
            etag.as_deref(),
            || self.get(id),
            |current| async move {
                let next = self.apply(&current, patch, mask)?;
                let audit =
                    AuditEntry::saved(actor.clone(), Some(&current), &next, next.updated_at);
                if audit.changes_nothing() {
                    return Ok(current);
                }
                // Only addresses new to the contact must be free; one it already shows
                // stays, even where an older contact holds it too.
                let new_addresses: Vec<(&str, String)> = next
                    .emails
                    .iter()
                    .filter(|e| !current.emails.contains(e))
                    .map(|e| ("email", e.clone()))
                    .chain(
                        next.phones
                            .iter()
                            .filter(|p| !current.phones.contains(p))
                            .map(|p| ("phone", p.clone())),
                    )
                    .collect();
                if self
                    .store
                    .save_contact(&next, current.version, &new_addresses, &audit)
                    .await?
                {
                    Ok(ContactRecord {
                        version: current.version + 1,
                        ..next
                    })
                } else {
                    Err(ServiceError::Contended(format!(
                        "contact {id} changed concurrently"
                    )))
                }
            },
        )
        .await
    }

    fn apply(
        &self,
        current: &ContactRecord,
        patch: &ContactPatch,
        mask: &Mask,
    ) -> ServiceResult<ContactRecord> {
        let mut v = Violations::new();
        let mut next = current.clone();
        let c = &mut next.contact;
        if mask.names("external_id") {
            c.external_id = patch.external_id.trim().to_owned();
            v.line(
                "contact.external_id",
                &c.external_id,
                true,
                MAX_CONTACT_FIELD_CHARS,
            );
        }
        if mask.names("name") {
            c.name = patch.name.trim().to_owned();
            v.line("contact.name", &c.name, false, MAX_CONTACT_FIELD_CHARS);
        }
        if mask.names("vip") {
            c.vip = patch.vip.unwrap_or(false);
        }
        let (email, emails) = addresses(
            (&c.email, &current.emails),
            mask.names("email").then_some(&patch.email),
            mask.names("emails").then_some(&patch.emails),
            ("contact.email", "contact.emails"),
            true,
            &mut v,
        );
        let (phone, phones) = addresses(
            (&c.phone, &current.phones),
            mask.names("phone").then_some(&patch.phone),
            mask.names("phones").then_some(&patch.phones),
            ("contact.phone", "contact.phones"),
            false,
            &mut v,
        );
        v.finish()?;
        c.email = email;
        c.phone = phone;
        next.emails = emails;
        next.phones = phones;
        next.updated_at = self.clock.now();
        Ok(next)
    }
}

/// A contact's primary address and list after a change to either. Clearing the primary
/// forgets that address; the next one listed becomes primary.
fn addresses(
    (primary, all): (&str, &[String]),
    new_primary: Option<&String>,
    new_list: Option<&Vec<String>>,
    (field, list_field): (&str, &str),
    email: bool,
    v: &mut Violations,
) -> (String, Vec<String>) {
    let key = |a: &str| if email { email_key(a) } else { phone_key(a) };
    let mut list = all.to_vec();
    let mut primary = key(primary);
    if new_primary.is_none() && new_list.is_none() {
        return (primary, list);
    }
    if let Some(given) = new_list {
        list = address_list(list_field, given, email, v);
        if !list.contains(&primary) {
            primary = list.first().cloned().unwrap_or_default();
        }
    }
    if let Some(given) = new_primary {
        let given = key(given);
        v.line(field, &given, false, MAX_CONTACT_FIELD_CHARS);
        if email && !given.is_empty() && !looks_like_email(&given) {
            v.add(field, "must be an email address");
        }
        if given.is_empty() {
            list.retain(|a| *a != primary);
            primary = list.first().cloned().unwrap_or_default();
        } else {
            primary = given;
        }
    }
    let list = with_primary(&primary, &list);
    if list.len() > MAX_ADDRESSES {
        v.add(
            list_field,
            format!("must hold at most {MAX_ADDRESSES} addresses"),
        );
    }
    (primary, list)
}
