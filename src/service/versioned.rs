//! Updates of administered resources (agents, queues, routing rules, calendars, SLA
//! policies): read, check the caller's etag, apply the fields the mask names, save only if
//! nobody saved in between.

use std::future::Future;

use crate::domain::calendar::BusinessCalendar;
use crate::domain::routing::{Agent, Queue, RoutingRule};
use crate::domain::sla::SlaPolicy;
use crate::service::{ServiceError, ServiceResult, retry_contended};

/// A resource whose every saved change raises its version; the version is its etag.
pub trait Versioned {
    fn version(&self) -> i64;
}

macro_rules! versioned {
    ($($type:ty),*) => {
        $(impl Versioned for $type {
            fn version(&self) -> i64 {
                self.version
            }
        })*
    };
}

versioned!(Agent, Queue, RoutingRule, BusinessCalendar, SlaPolicy);

/// Which fields an update changes: those `mask` names, or every one of `allowed` when the
/// mask is empty (the whole resource is replaced, as before masks existed).
#[derive(Debug)]
pub struct Mask(Vec<String>);

impl Mask {
    /// Checks the paths against `allowed`; `INVALID_ARGUMENT` names the unknown ones.
    pub fn new(paths: Vec<String>, allowed: &[&str]) -> ServiceResult<Self> {
        if !paths.is_empty() {
            crate::domain::validation::check_update_mask(&paths, allowed)?;
        }
        Ok(Mask(paths))
    }

    /// Like [`Mask::new`], but an empty mask is refused: the resource has fields a caller
    /// cannot be expected to resend.
    pub fn required(paths: Vec<String>, allowed: &[&str]) -> ServiceResult<Self> {
        crate::domain::validation::check_update_mask(&paths, allowed)?;
        Ok(Mask(paths))
    }

    pub fn names(&self, path: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| p == path)
    }
}

/// Copies each field the mask names from `$patch` to `$next`, where the field and its
/// mask path share a name.
macro_rules! copy_masked {
    ($mask:expr, $next:expr, $patch:expr, [$($field:ident),* $(,)?]) => {
        $(
            if $mask.names(stringify!($field)) {
                $next.$field = $patch.$field.clone();
            }
        )*
    };
}
pub(crate) use copy_masked;

/// `ABORTED` when the caller's etag (if it sent one) is not `version`.
pub(crate) fn ensure_etag(etag: Option<&str>, version: i64) -> ServiceResult<()> {
    match etag {
        Some(given) if given != version.to_string() => Err(stale_etag(given, version)),
        _ => Ok(()),
    }
}

fn stale_etag(given: &str, version: i64) -> ServiceError {
    ServiceError::StaleEtag {
        given: given.to_owned(),
        current: version.to_string(),
    }
}

/// Reads the resource with `read`, checks `etag` against it and hands it to `save`, which
/// applies the change and saves it on condition that the version is still the one read
/// (else [`ServiceError::Contended`]). Without an etag a concurrent save is re-read and the
/// change applied again; with one, the caller learns that its etag went stale.
pub(crate) async fn update_versioned<T, ReadFut, SaveFut>(
    what: &str,
    etag: Option<&str>,
    read: impl Fn() -> ReadFut,
    save: impl Fn(T) -> SaveFut,
) -> ServiceResult<T>
where
    T: Versioned,
    ReadFut: Future<Output = ServiceResult<T>>,
    SaveFut: Future<Output = ServiceResult<T>>,
{
    let (read, save) = (&read, &save);
    retry_contended(
        ServiceError::Contended(format!("{what} kept changing")),
        || async move {
            let current = read().await?;
            ensure_etag(etag, current.version())?;
            match (save(current).await, etag) {
                (Err(ServiceError::Contended(_)), Some(given)) => {
                    Err(stale_etag(given, read().await?.version()))
                }
                (other, _) => other,
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_mask_names_every_field_and_a_given_one_only_its_paths() {
        let all = Mask::new(vec![], &["name", "tier"]).unwrap();
        assert!(all.names("name") && all.names("tier"));
        let some = Mask::new(vec!["tier".into()], &["name", "tier"]).unwrap();
        assert!(some.names("tier") && !some.names("name"));
        let err = Mask::new(vec!["colour".into()], &["name", "tier"]).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        assert!(Mask::required(vec![], &["name"]).is_err());
    }

    #[test]
    fn an_etag_must_match_the_version_when_given() {
        assert!(ensure_etag(None, 3).is_ok());
        assert!(ensure_etag(Some("3"), 3).is_ok());
        assert!(matches!(
            ensure_etag(Some("2"), 3),
            Err(ServiceError::StaleEtag { .. })
        ));
    }
}
