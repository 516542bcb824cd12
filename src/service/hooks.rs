//! Inbound hooks: made and listed by admins, and the signature check of what they receive.

use std::sync::Arc;

use uuid::Uuid;

use super::{ServiceError, ServiceResult};
use crate::clock::Clock;
use crate::domain::audit::AuditEntry;
use crate::domain::auth::Principal;
use crate::domain::hook::{self, HookAction, InboundHook};
use crate::domain::validation::Violations;
use crate::store::Store;

/// The most inbound hooks one installation keeps.
pub const MAX_HOOKS: usize = 1000;
const MAX_NAME_CHARS: usize = 200;

#[derive(Clone)]
pub struct HookService {
    store: Arc<dyn Store>,
    clock: Clock,
}

impl HookService {
    pub fn new(store: Arc<dyn Store>, clock: Clock) -> Self {
        Self { store, clock }
    }

    /// Makes a hook with a fresh secret (the only time the secret leaves the server).
    pub async fn create(
        &self,
        principal: &Principal,
        name: &str,
        action: Option<HookAction>,
        source: &str,
    ) -> ServiceResult<InboundHook> {
        let mut v = Violations::new();
        v.line("inbound_hook.name", name, true, MAX_NAME_CHARS);
        v.line("inbound_hook.source", source, false, 100);
        if action.is_none() {
            v.add("inbound_hook.action", "is required");
        }
        v.finish()?;
        if self.store.inbound_hooks().await?.len() >= MAX_HOOKS {
            return Err(ServiceError::ResourceExhausted(format!(
                "there are {MAX_HOOKS} inbound hooks; delete unused ones first"
            )));
        }
        let hook = InboundHook {
            id: Uuid::now_v7(),
            name: name.trim().to_owned(),
            action: action.unwrap_or(HookAction::CreateTicket),
            source: if source.trim().is_empty() {
                "hook".to_owned()
            } else {
                source.trim().to_owned()
            },
            secret: hook::new_secret(),
            created_at: self.clock.now(),
        };
        let audit = AuditEntry::saved(principal.actor(), None, &hook, hook.created_at);
        self.store.insert_inbound_hook(&hook, &audit).await?;
        Ok(hook)
    }

    pub async fn list(&self) -> ServiceResult<Vec<InboundHook>> {
        Ok(self.store.inbound_hooks().await?)
    }

    pub async fn delete(&self, principal: &Principal, id: Uuid) -> ServiceResult<()> {
        let hook = self
            .store
            .inbound_hook(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("inbound hook {id}")))?;
        let audit = AuditEntry::deleted(principal.actor(), &hook, self.clock.now());
        if self.store.delete_inbound_hook(id, &audit).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!("inbound hook {id}")))
        }
    }

    /// The hook a signed request is for, if its signature holds.
    pub async fn verify(
        &self,
        id: Uuid,
        webhook_id: Option<&str>,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> ServiceResult<InboundHook> {
        let hook = self
            .store
            .inbound_hook(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("inbound hook {id}")))?;
        hook::verify(
            &hook.secret,
            webhook_id,
            timestamp,
            signature,
            body,
            self.clock.now(),
        )
        .map_err(|e| ServiceError::Unauthenticated(e.to_string()))?;
        Ok(hook)
    }
}
