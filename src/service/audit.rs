//! Reading the audit trail. Entries are written by the services that make the changes,
//! in the same transaction; this is the admins' window onto them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::paging::{self, decode, encode, query_digest};
use super::{ServiceError, ServiceResult};
use crate::domain::audit::{AuditEntry, AuditFilter};
use crate::store::Store;

#[derive(Clone)]
pub struct AuditService {
    store: Arc<dyn Store>,
    /// What one page may hold, in bytes.
    page_bytes: usize,
}

/// Where the next page starts, and the filter it belongs to.
#[derive(Serialize, Deserialize)]
struct AuditPageToken {
    before: Uuid,
    filter: String,
}

impl AuditService {
    pub fn new(store: Arc<dyn Store>, page_bytes: usize) -> Self {
        Self { store, page_bytes }
    }

    /// Entries matching `filter`, newest first.
    pub async fn list(
        &self,
        filter: &str,
        page_size: i32,
        page_token: &str,
    ) -> ServiceResult<(Vec<AuditEntry>, String)> {
        let parsed = AuditFilter::parse(filter)
            .map_err(|err| ServiceError::invalid("filter", err.to_string()))?;
        let limit = paging::page_size(page_size, paging::DEFAULT_PAGE_SIZE)?;
        let digest = query_digest(&[filter]);
        let before = if page_token.is_empty() {
            None
        } else {
            let token: AuditPageToken = decode(page_token)?;
            if token.filter != digest {
                return Err(ServiceError::invalid(
                    "page_token",
                    "belongs to another filter",
                ));
            }
            Some(token.before)
        };
        let mut entries = self.store.audit_entries(&parsed, before, limit + 1).await?;
        // Entries carry whole old and new values: a page ends early within the budget.
        let kept = paging::fitting(&entries, limit, self.page_bytes, |t| t.approximate_size());
        let mut next = String::new();
        if entries.len() > kept {
            entries.truncate(kept);
            if let Some(last) = entries.last() {
                next = encode(&AuditPageToken {
                    before: last.id,
                    filter: digest,
                });
            }
        }
        Ok((entries, next))
    }
}
