//! API keys: authentication of every call, and the admin use cases that manage keys.
//!
//! A secret is `tkd_` followed by 43 base64url characters (256 bits, 244 of them random).
//! Only its SHA-256 is stored: with that much entropy a salted slow hash adds nothing,
//! and a lookup by hash is one indexed read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::paging::{self, decode, encode};
use super::{ServiceError, ServiceResult, now};
use crate::domain::auth::{Principal, Role};
use crate::domain::ticket::Channel;
use crate::domain::validation::Violations;
use crate::store::{ApiKeyRecord, Store};

const SECRET_PREFIX: &str = "tkd_";
const MAX_KEY_NAME_CHARS: usize = 100;
const DEFAULT_KEY_PAGE: i64 = 100;

#[derive(Serialize, Deserialize)]
struct KeyPageToken {
    at: i64,
    id: Uuid,
}

/// How long an authenticated key is trusted without asking the database again. A key
/// revoked through this process stops at once; through another replica, within this time.
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Most keys remembered at once.
const KEY_CACHE_SIZE: usize = 10_000;

type KeyCache = HashMap<Vec<u8>, (Instant, Principal)>;

#[derive(Clone)]
pub struct ApiKeyService {
    store: Arc<dyn Store>,
    /// Principals of recently seen secrets, by secret hash.
    cache: Arc<Mutex<KeyCache>>,
}

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A fresh secret from the operating system's CSPRNG (through UUIDv4).
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn prefix_of(secret: &str) -> String {
    secret.chars().take(SECRET_PREFIX.len() + 6).collect()
}

impl ApiKeyService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            cache: Arc::default(),
        }
    }

    /// Resolves a bearer secret to its principal. Unknown and revoked keys look alike
    /// to the caller.
    pub async fn authenticate(&self, secret: &str) -> ServiceResult<Principal> {
        let digest = hash(secret);
        if let Ok(cache) = self.cache.lock()
            && let Some((at, principal)) = cache.get(&digest)
            && at.elapsed() < KEY_CACHE_TTL
        {
            return Ok(principal.clone());
        }
        let record = self.store.api_key_by_hash(&digest).await?;
        match record {
            Some(key) if key.revoked_at.is_none() => {
                let principal = Principal {
                    key_id: key.id,
                    key_name: key.name,
                    role: key.role,
                    agent_id: key.agent_id,
                    channels: key.channels,
                };
                if let Ok(mut cache) = self.cache.lock() {
                    if cache.len() >= KEY_CACHE_SIZE {
                        cache.clear();
                    }
                    cache.insert(digest, (Instant::now(), principal.clone()));
                }
                Ok(principal)
            }
            _ => Err(ServiceError::Unauthenticated(
                "unknown or revoked API key".into(),
            )),
        }
    }

    /// Creates a key and returns it with its secret, which is never shown again.
    pub async fn create(
        &self,
        name: &str,
        role: Option<Role>,
        agent_id: Option<Uuid>,
        channels: Vec<Channel>,
    ) -> ServiceResult<(ApiKeyRecord, String)> {
        let mut v = Violations::new();
        v.text("name", name, true, MAX_KEY_NAME_CHARS);
        if role.is_none() {
            v.add("role", "is required");
        }
        if agent_id.is_some() && role != Some(Role::Agent) {
            v.add("agent_id", "only agent keys can be bound to an agent");
        }
        if !channels.is_empty() && role != Some(Role::Gateway) {
            v.add("channels", "only gateway keys can be limited to channels");
        }
        v.finish()?;
        let mut channels = channels;
        channels.sort();
        channels.dedup();
        let secret = new_secret();
        let record = self
            .insert(
                name.trim(),
                role.unwrap_or(Role::Agent),
                agent_id,
                channels,
                &secret,
            )
            .await?;
        tracing::info!(key_id = %record.id, role = %record.role, "api key created");
        Ok((record, secret))
    }

    async fn insert(
        &self,
        name: &str,
        role: Role,
        agent_id: Option<Uuid>,
        channels: Vec<Channel>,
        secret: &str,
    ) -> ServiceResult<ApiKeyRecord> {
        let record = ApiKeyRecord {
            id: Uuid::now_v7(),
            name: name.to_owned(),
            role,
            agent_id,
            channels,
            prefix: prefix_of(secret),
            secret_hash: hash(secret),
            created_at: now(),
            revoked_at: None,
        };
        if !self.store.insert_api_key(&record).await? {
            // Only a configured bootstrap secret can collide: another replica stored it.
            tracing::debug!("api key already present");
        }
        Ok(record)
    }

    /// Drops a key from the authentication cache.
    fn forget(&self, id: Uuid) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, (_, principal)| principal.key_id != id);
        }
    }

    pub async fn revoke(&self, id: Uuid) -> ServiceResult<ApiKeyRecord> {
        self.forget(id);
        let record = self
            .store
            .revoke_api_key(id, now())
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("api key {id}")))?;
        // Again after the write: a lookup racing with the revocation may have cached the key.
        self.forget(id);
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
    pub async fn bootstrap(&self, configured: Option<&str>) -> ServiceResult<Option<String>> {
        if let Some(secret) = configured {
            if self.store.api_key_by_hash(&hash(secret)).await?.is_none() {
                self.insert("bootstrap", Role::Admin, None, Vec::new(), secret)
                    .await?;
            }
            return Ok(None);
        }
        if self.store.has_active_admin_key().await? {
            return Ok(None);
        }
        let secret = new_secret();
        self.insert("bootstrap", Role::Admin, None, Vec::new(), &secret)
            .await?;
        Ok(Some(secret))
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
