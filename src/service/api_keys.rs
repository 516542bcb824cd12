//! API keys: authentication of every call, and the admin use cases that manage keys.
//!
//! A secret is `tkd_` followed by 43 base64url characters (256 bits, 244 of them random).
//! Only its SHA-256 is stored: with that much entropy a salted slow hash adds nothing,
//! and a lookup by hash is one indexed read.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::paging::{self, decode, encode};
use super::{ServiceError, ServiceResult};
use crate::clock::Clock;
use crate::domain::audit::{AuditAction, AuditEntry};
use crate::domain::auth::{Principal, Role};
use crate::domain::conversation::MAX_NAME_CHARS;
use crate::domain::event::Actor;
use crate::domain::ticket::Channel;
use crate::domain::validation::Violations;
use crate::store::{ApiKeyRecord, Store};

mod streams;
use streams::StreamLimits;
pub use streams::{StreamLimitSettings, StreamPermit};

const SECRET_PREFIX: &str = "tkd_";
const MAX_KEY_NAME_CHARS: usize = 100;
/// Most conversation sources one bot key may be limited to.
const MAX_KEY_SOURCES: usize = 20;
const DEFAULT_KEY_PAGE: i64 = 100;

#[derive(Serialize, Deserialize)]
struct KeyPageToken {
    at: i64,
    id: Uuid,
}

/// How long a key's lookup is trusted without asking the database again. A key revoked
/// through this process stops at once; through another replica, within this time. An
/// unknown secret is remembered as unknown for as long, so a flood of bad tokens does
/// not become a flood of queries.
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Most secrets remembered at once, known or unknown.
const KEY_CACHE_SIZE: u64 = 10_000;
/// How often the keys of open streams are checked for a revocation through another
/// replica.
const STREAM_KEY_CHECK: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct ApiKeyService {
    store: Arc<dyn Store>,
    /// Principals of recently seen secrets by secret hash; `None` for unknown ones.
    by_secret: Cache<Vec<u8>, Option<Principal>>,
    /// Whether the keys of open streams are still valid.
    status: KeyStatus,
    streams: Arc<StreamLimits>,
    clock: Clock,
}

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A fresh secret from the operating system's CSPRNG (through UUIDv4).
fn new_secret() -> String {
    let bytes: [u8; 32] = crate::domain::random_bytes();
    format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn prefix_of(secret: &str) -> String {
    secret.chars().take(SECRET_PREFIX.len() + 6).collect()
}

impl ApiKeyService {
    pub fn new(store: Arc<dyn Store>, stream_limits: StreamLimitSettings, clock: Clock) -> Self {
        Self {
            store: store.clone(),
            clock,
            by_secret: Cache::builder()
                .max_capacity(KEY_CACHE_SIZE)
                .time_to_live(KEY_CACHE_TTL)
                .support_invalidation_closures()
                .build(),
            status: KeyStatus {
                store,
                active: Cache::builder()
                    .max_capacity(KEY_CACHE_SIZE)
                    .time_to_live(KEY_CACHE_TTL)
                    .build(),
            },
            streams: Arc::new(StreamLimits::new(stream_limits)),
        }
    }

    /// Resolves a bearer secret to its principal. Unknown and revoked keys look alike
    /// to the caller.
    pub async fn authenticate(&self, secret: &str) -> ServiceResult<Principal> {
        let digest = hash(secret);
        let principal = match self.by_secret.get(&digest) {
            Some(cached) => cached,
            None => {
                let principal = self
                    .store
                    .api_key_by_hash(&digest)
                    .await?
                    .filter(|key| key.revoked_at.is_none())
                    .map(|key| Principal {
                        key_id: key.id,
                        key_name: key.name,
                        role: key.role,
                        agent_id: key.agent_id,
                        channels: key.channels,
                        sources: key.sources,
                    });
                self.by_secret.insert(digest, principal.clone());
                principal
            }
        };
        principal.ok_or_else(|| ServiceError::Unauthenticated("unknown or revoked API key".into()))
    }

    /// Admits one more open stream for the caller, within the per-key and total limits.
    /// The permit ends the stream's claim when dropped; [`StreamPermit::revoked`]
    /// resolves once the key is revoked.
    pub fn open_stream(&self, principal: &Principal) -> ServiceResult<StreamPermit> {
        let revoked = self.streams.admit(principal.key_id)?;
        Ok(StreamPermit {
            limits: self.streams.clone(),
            key_id: principal.key_id,
            revoked,
        })
    }

    /// Ends the open streams of keys revoked through another replica: every
    /// [`STREAM_KEY_CHECK`] it looks at the keys with open streams in the key cache (so
    /// within [`KEY_CACHE_TTL`] of the revocation) and looks up the ones the cache does
    /// not hold together. Runs until aborted.
    pub async fn check_stream_keys(self) {
        loop {
            tokio::time::sleep(STREAM_KEY_CHECK).await;
            for key in self.status.inactive(self.streams.keys()).await {
                self.streams.revoke(key);
            }
        }
    }

    /// Creates a key and returns it with its secret, which is never shown again.
    pub async fn create(
        &self,
        actor: &Actor,
        name: &str,
        role: Option<Role>,
        agent_id: Option<Uuid>,
        channels: Vec<Channel>,
        sources: Vec<String>,
    ) -> ServiceResult<(ApiKeyRecord, String)> {
        let mut v = Violations::new();
        v.line("name", name, true, MAX_KEY_NAME_CHARS);
        if role.is_none() {
            v.add("role", "is required");
        }
        if agent_id.is_some() && role != Some(Role::Agent) {
            v.add("agent_id", "only agent keys can be bound to an agent");
        }
        if !channels.is_empty() && role != Some(Role::Gateway) {
            v.add("channels", "only gateway keys can be limited to channels");
        }
        if !sources.is_empty() && role != Some(Role::Bot) {
            v.add("sources", "only bot keys can be limited to sources");
        }
        if sources.len() > MAX_KEY_SOURCES {
            v.add(
                "sources",
                format!("must hold at most {MAX_KEY_SOURCES} sources"),
            );
        } else {
            for (i, source) in sources.iter().enumerate() {
                v.line(&format!("sources[{i}]"), source, true, MAX_NAME_CHARS);
            }
        }
        v.finish()?;
        if let Some(id) = agent_id
            && self.store.agent(id).await?.is_none()
        {
            return Err(ServiceError::invalid("agent_id", format!("no agent {id}")));
        }
        let mut channels = channels;
        channels.sort();
        channels.dedup();
        let mut sources: Vec<String> = sources.iter().map(|s| s.trim().to_owned()).collect();
        sources.sort();
        sources.dedup();
        let secret = new_secret();
        let record = ApiKeyRecord {
            channels,
            sources,
            ..new_key(
                name.trim(),
                role.unwrap_or(Role::Agent),
                agent_id,
                &secret,
                self.clock.now(),
            )
        };
        let audit = AuditEntry::saved(actor.clone(), None, &record, record.created_at);
        if !self.store.insert_api_key(&record, &audit).await? {
            // A fresh 256-bit secret cannot collide; a stored one was generated twice.
            return Err(ServiceError::Contended(
                "a new key's secret collided; retry".into(),
            ));
        }
        tracing::info!(key_id = %record.id, role = %record.role, "api key created");
        Ok((record, secret))
    }

    /// Drops a key from the caches.
    fn forget(&self, id: Uuid) {
        self.status.active.invalidate(&id);
        // Only possible with `support_invalidation_closures`, which the cache has.
        let _ = self.by_secret.invalidate_entries_if(move |_, principal| {
            principal.as_ref().is_some_and(|p| p.key_id == id)
        });
    }

    pub async fn revoke(&self, actor: &Actor, id: Uuid) -> ServiceResult<ApiKeyRecord> {
        self.forget(id);
        let before = self
            .store
            .api_key_by_id(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("api key {id}")))?;
        let at = self.clock.now();
        let after = ApiKeyRecord {
            revoked_at: before.revoked_at.or(Some(at)),
            ..before.clone()
        };
        let audit = AuditEntry::of(
            actor.clone(),
            AuditAction::Revoke,
            Some(&before),
            Some(&after),
            at,
        );
        let record = self
            .store
            .revoke_api_key(id, at, &audit)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("api key {id}")))?;
        // Again after the write: a lookup racing with the revocation may have cached the key.
        self.forget(id);
        // Known revoked from here on: a stream check that read the key before the write
        // cannot put it back as active (it only fills an empty entry).
        self.status.active.insert(id, false);
        self.streams.revoke(id);
        tracing::info!(key_id = %id, "api key revoked");
        Ok(record)
    }

    pub async fn list(
        &self,
        page_size: i32,
        page_token: &str,
    ) -> ServiceResult<(Vec<ApiKeyRecord>, String)> {
        let limit = paging::page_size(page_size, DEFAULT_KEY_PAGE)?;
        let before = if page_token.is_empty() {
            None
        } else {
            let token: KeyPageToken = decode(page_token)?;
            let at = DateTime::<Utc>::from_timestamp_micros(token.at).ok_or_else(|| {
                ServiceError::invalid("page_token", "is not a token this server issued")
            })?;
            Some((at, token.id))
        };
        let mut keys = self.store.list_api_keys(before, limit + 1).await?;
        let next = if keys.len() as i64 > limit {
            keys.truncate(limit as usize);
            keys.last().map(|k| {
                encode(&KeyPageToken {
                    at: k.created_at.timestamp_micros(),
                    id: k.id,
                })
            })
        } else {
            None
        };
        Ok((keys, next.unwrap_or_default()))
    }

    /// Makes sure an administrator can get in. With `configured`, that secret becomes an
    /// admin key unless it already is one. Without it, and with no active admin key at
    /// all, a random admin key is created and its secret returned, to be shown once.
    ///
    /// Replicas starting together on an empty database make one key between them: the
    /// check and the insert hold the store's key lock. With `may_generate` false (JSON
    /// logs, which collectors keep), no secret is generated and a warning says how to
    /// configure one.
    pub async fn bootstrap(
        &self,
        configured: Option<&str>,
        may_generate: bool,
    ) -> ServiceResult<Option<String>> {
        let system = Actor::system(BOOTSTRAP_NAME);
        if let Some(secret) = configured {
            if self.store.api_key_by_hash(&hash(secret)).await?.is_none() {
                let record = new_key(BOOTSTRAP_NAME, Role::Admin, None, secret, self.clock.now());
                let audit = AuditEntry::saved(system, None, &record, record.created_at);
                // `false`: another replica stored the same secret first.
                self.store.insert_api_key(&record, &audit).await?;
            }
            return Ok(None);
        }
        if self.store.has_active_admin_key().await? {
            return Ok(None);
        }
        if !may_generate {
            tracing::warn!(
                "no admin API key exists and none is configured; set TICKETD_BOOTSTRAP_KEY \
                 (a generated one is not printed into JSON logs)"
            );
            return Ok(None);
        }
        let secret = new_secret();
        let record = new_key(BOOTSTRAP_NAME, Role::Admin, None, &secret, self.clock.now());
        let audit = AuditEntry::saved(system, None, &record, record.created_at);
        let created = self.store.insert_first_admin_key(&record, &audit).await?;
        Ok(created.then_some(secret))
    }
}

/// The name of the admin key made at start-up.
const BOOTSTRAP_NAME: &str = "bootstrap";

/// A key for `secret`, unscoped, created now.
fn new_key(
    name: &str,
    role: Role,
    agent_id: Option<Uuid>,
    secret: &str,
    created_at: DateTime<Utc>,
) -> ApiKeyRecord {
    ApiKeyRecord {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        role,
        agent_id,
        channels: Vec::new(),
        sources: Vec::new(),
        prefix: prefix_of(secret),
        secret_hash: hash(secret),
        created_at,
        revoked_at: None,
    }
}

/// Whether keys are still valid (not revoked), as of at most [`KEY_CACHE_TTL`] ago.
#[derive(Clone)]
struct KeyStatus {
    store: Arc<dyn Store>,
    active: Cache<Uuid, bool>,
}

impl KeyStatus {
    /// Which of `keys` are revoked or gone: from the cache where it knows, the rest
    /// looked up together. A database error counts as active: a passing outage must not
    /// end every stream.
    async fn inactive(&self, keys: Vec<Uuid>) -> Vec<Uuid> {
        let mut inactive = Vec::new();
        let mut unknown = Vec::new();
        for key in keys {
            match self.active.get(&key) {
                Some(true) => {}
                Some(false) => inactive.push(key),
                None => unknown.push(key),
            }
        }
        if unknown.is_empty() {
            return inactive;
        }
        match self.store.active_api_keys(&unknown).await {
            Ok(active) => {
                let active: HashSet<Uuid> = active.into_iter().collect();
                for key in unknown {
                    // What was cached meanwhile (a revocation through this server) wins.
                    let cached = self.active.entry(key).or_insert(active.contains(&key));
                    if !cached.into_value() {
                        inactive.push(key);
                    }
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot check the keys of open streams; keeping them");
            }
        }
        inactive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_distinct_and_prefixed() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX));
        assert_eq!(a.len(), SECRET_PREFIX.len() + 43);
        assert_eq!(prefix_of(&a).len(), SECRET_PREFIX.len() + 6);
    }
}
