//! Opaque page tokens: base64url JSON naming where the next page starts, bound to the
//! query that produced it so a token cannot be replayed against another filter.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use super::{ServiceError, ServiceResult};

pub(crate) const DEFAULT_PAGE_SIZE: i64 = 50;
pub(crate) const MAX_PAGE_SIZE: i64 = 500;

/// Checks `page_size` (0 means the default).
pub(crate) fn page_size(requested: i32, default: i64) -> ServiceResult<i64> {
    match i64::from(requested) {
        0 => Ok(default),
        n if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
        _ => Err(ServiceError::invalid(
            "page_size",
            format!("must be between 0 and {MAX_PAGE_SIZE}"),
        )),
    }
}

/// How many of `items` (at most `limit`) fit in a page of `budget` bytes, by `size`;
/// always at least one, so a page never comes back empty while items remain.
pub(crate) fn fitting<T>(
    items: &[T],
    limit: i64,
    budget: usize,
    size: impl Fn(&T) -> usize,
) -> usize {
    let mut kept = 0;
    let mut bytes = 0;
    for item in items.iter().take(usize::try_from(limit).unwrap_or(0)) {
        bytes += size(item);
        if kept > 0 && bytes > budget {
            break;
        }
        kept += 1;
    }
    kept
}

/// A short digest of the query a token belongs to.
pub(crate) fn query_digest(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    let digest = hash.finalize();
    crate::domain::hex(&digest[..8])
}

pub(crate) fn encode<T: Serialize>(token: &T) -> String {
    // Serialising plain structs of numbers and strings cannot fail.
    let json = serde_json::to_vec(token).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

pub(crate) fn decode<T: DeserializeOwned>(token: &str) -> ServiceResult<T> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| ServiceError::invalid("page_token", "is not a token this server issued"))
}

#[cfg(test)]
mod budget_tests {
    use super::fitting;

    #[test]
    fn a_page_ends_within_its_budget_and_is_never_empty() {
        let sizes = [40, 40, 40, 40];
        assert_eq!(fitting(&sizes, 10, 100, |s| *s), 2);
        assert_eq!(fitting(&sizes, 3, 1_000, |s| *s), 3, "the limit holds");
        assert_eq!(
            fitting(&[500], 10, 100, |s| *s),
            1,
            "one oversized item still comes"
        );
        assert_eq!(fitting::<usize>(&[], 10, 100, |s| *s), 0);
    }
}
