//! Contacts as a resource: the customer with every address they are known by. One email
//! and one phone are primary (the ones replies go to); any of them finds the contact
//! when a message comes in.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ticket::{Contact, MAX_CONTACT_FIELD_CHARS, looks_like_email};
use super::validation::Violations;

/// Most addresses of one kind a contact may have.
pub const MAX_ADDRESSES: usize = 20;

/// A contact as `ContactService` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRecord {
    pub contact: Contact,
    /// Every email address, the primary first; lower case.
    pub emails: Vec<String>,
    /// Every phone number, the primary first.
    pub phones: Vec<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which contacts `ListContacts` returns: every condition set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactQuery {
    /// Any of the contact's addresses, in any case.
    pub email: Option<String>,
    pub phone: Option<String>,
    pub external_id: Option<String>,
    /// Part of the name, in any case.
    pub name: Option<String>,
    /// Contacts after this id (ids grow with creation).
    pub after: Option<Uuid>,
    pub limit: i64,
}

/// How an email address is compared and kept among a contact's addresses.
pub fn email_key(address: &str) -> String {
    address.trim().to_lowercase()
}

/// How a phone number is compared: as given, without surrounding space.
pub fn phone_key(number: &str) -> String {
    number.trim().to_owned()
}

/// Checks a list of addresses and returns them as kept: trimmed (emails lower-cased),
/// without repeats, in the order given.
pub fn address_list(
    field: &str,
    addresses: &[String],
    email: bool,
    v: &mut Violations,
) -> Vec<String> {
    if addresses.len() > MAX_ADDRESSES {
        v.add(
            field,
            format!("must hold at most {MAX_ADDRESSES} addresses"),
        );
        return Vec::new();
    }
    let mut kept: Vec<String> = Vec::new();
    for (i, address) in addresses.iter().enumerate() {
        let key = if email {
            email_key(address)
        } else {
            phone_key(address)
        };
        let at = format!("{field}[{i}]");
        v.line(&at, &key, true, MAX_CONTACT_FIELD_CHARS);
        if email && !key.is_empty() && !looks_like_email(&key) {
            v.add(at, "must be an email address");
        } else if !key.is_empty() && !kept.contains(&key) {
            kept.push(key);
        }
    }
    kept
}

/// The addresses after a change: `primary` first (added if new), then the others of
/// `all`. An empty primary leaves the first address as the primary.
pub fn with_primary(primary: &str, all: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(all.len() + 1);
    if !primary.is_empty() {
        out.push(primary.to_owned());
    }
    for address in all {
        if !out.contains(address) {
            out.push(address.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists_are_trimmed_deduplicated_and_checked() {
        let mut v = Violations::new();
        let kept = address_list(
            "contact.emails",
            &[
                " Ada@Example.com".into(),
                "ada@example.com".into(),
                "grace@example.com".into(),
            ],
            true,
            &mut v,
        );
        assert!(v.finish().is_ok());
        assert_eq!(kept, vec!["ada@example.com", "grace@example.com"]);

        let mut v = Violations::new();
        address_list("contact.emails", &["nope".into()], true, &mut v);
        let err = v.finish().unwrap_err();
        assert_eq!(err[0].field, "contact.emails[0]");
    }

    #[test]
    fn the_primary_comes_first_and_is_added_if_new() {
        let all = vec!["a@x.org".to_owned(), "b@x.org".to_owned()];
        assert_eq!(with_primary("b@x.org", &all), vec!["b@x.org", "a@x.org"]);
        assert_eq!(
            with_primary("c@x.org", &all),
            vec!["c@x.org", "a@x.org", "b@x.org"]
        );
        assert_eq!(with_primary("", &all), all);
    }
}
