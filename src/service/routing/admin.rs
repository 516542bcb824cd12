//! Routing administration: queues, agents and routing rules, saved with an audit entry
//! and cached for the routing decisions in the parent module.

use uuid::Uuid;

use super::{MAX_NAME_CHARS, RoutingService, validate_skills};
use crate::domain::audit::AuditEntry;
use crate::domain::auth::{Principal, Role};
use crate::domain::event::Actor;
use crate::domain::routing::{Agent, Availability, Queue, RoutingRule, Strategy, TOP_TIER};
use crate::domain::ticket;
use crate::domain::validation::Violations;
use crate::service::versioned::{Mask, copy_masked, update_versioned};
use crate::service::{ServiceError, ServiceResult, retry_contended};

/// An agent's fields as a caller sends them, for [`RoutingService::create_agent`] and
/// [`RoutingService::update_agent`].
#[derive(Debug, Clone, Default)]
pub struct AgentPatch {
    pub name: String,
    pub email: String,
    pub skills: Vec<String>,
    /// 0 means tier 1 on create.
    pub tier: i32,
    pub capacity: i32,
    /// `None` when unspecified: OFFLINE on create, an error when an update names it.
    pub availability: Option<Availability>,
    pub queue_ids: Vec<Uuid>,
    pub vip_handler: bool,
}

/// A queue's fields as a caller sends them, for [`RoutingService::update_queue`].
#[derive(Debug, Clone, Default)]
pub struct QueuePatch {
    pub name: String,
    /// 0 means tier 1.
    pub tier: i32,
    pub strategy: Option<Strategy>,
}

/// The paths `UpdateQueue` accepts in its `update_mask`.
pub const QUEUE_PATHS: &[&str] = &["name", "tier", "strategy"];

/// The paths `UpdateRoutingRule` accepts in its `update_mask`.
pub const RULE_PATHS: &[&str] = &["name", "position", "enabled", "conditions", "actions"];

/// The paths `UpdateAgent` accepts in its `update_mask`.
pub const AGENT_PATHS: &[&str] = &[
    "name",
    "email",
    "skills",
    "tier",
    "capacity",
    "availability",
    "queue_ids",
    "vip_handler",
];

impl RoutingService {
    /// Creates an agent: a new id, version 1, stamped now.
    pub async fn create_agent(&self, actor: &Actor, patch: AgentPatch) -> ServiceResult<Agent> {
        let at = self.clock.now();
        let agent = Agent {
            id: Uuid::now_v7(),
            name: patch.name.trim().to_owned(),
            email: patch.email.trim().to_owned(),
            skills: patch.skills,
            tier: if patch.tier == 0 { 1 } else { patch.tier },
            capacity: patch.capacity,
            availability: patch.availability.unwrap_or(Availability::Offline),
            queue_ids: patch.queue_ids,
            vip_handler: patch.vip_handler,
            version: 1,
            created_at: at,
            updated_at: at,
        };
        self.save_agent(actor, agent, None).await
    }

    /// Changes the fields `mask` names. With an `etag`, only if the agent is still at that
    /// version (else [`ServiceError::StaleEtag`]); without one, a concurrent change is
    /// re-read and the mask applied again.
    pub async fn update_agent(
        &self,
        actor: &Actor,
        id: Uuid,
        patch: AgentPatch,
        mask: Vec<String>,
        etag: Option<String>,
    ) -> ServiceResult<Agent> {
        let mask = Mask::required(mask, AGENT_PATHS)?;
        if mask.names("availability") && patch.availability.is_none() {
            return Err(ServiceError::invalid(
                "agent.availability",
                "must be set when named in update_mask",
            ));
        }
        let (mask, patch) = (&mask, &patch);
        update_versioned(
            &format!("agent {id}"),
            etag.as_deref(),
            || self.agent(id),
            |current| async move {
                let mut next = current.clone();
                let set = |path| mask.names(path);
                if set("name") {
                    next.name = patch.name.trim().to_owned();
                }
                if set("email") {
                    next.email = patch.email.trim().to_owned();
                }
                copy_masked!(
                    mask,
                    next,
                    patch,
                    [skills, tier, capacity, queue_ids, vip_handler]
                );
                if let (true, Some(availability)) = (set("availability"), patch.availability) {
                    next.availability = availability;
                }
                self.save_agent(actor, next, Some(&current)).await
            },
        )
        .await
    }
    // ---- queues -------------------------------------------------------------------------

    pub async fn queues(&self) -> ServiceResult<Vec<Queue>> {
        Ok(self.store.queues().await?)
    }

    /// A queue by id; `NOT_FOUND` if there is none.
    pub async fn queue(&self, id: Uuid) -> ServiceResult<Queue> {
        self.cached_queues()
            .await?
            .iter()
            .find(|q| q.id == id)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("queue {id}")))
    }

    /// Checks that the agent and queue a request names exist: `NOT_FOUND` otherwise, so
    /// a ticket never waits on someone or somewhere that is not there.
    pub async fn ensure_targets(
        &self,
        assignee_id: Option<Uuid>,
        queue_id: Option<Uuid>,
    ) -> ServiceResult<()> {
        if let Some(queue_id) = queue_id {
            self.queue(queue_id).await?;
        }
        if let Some(agent_id) = assignee_id {
            self.agent(agent_id).await?;
        }
        Ok(())
    }

    /// Changes the fields `mask` names (all of them when it is empty). With an `etag`, only
    /// if the queue is still at that version (else [`ServiceError::StaleEtag`]); without
    /// one, a concurrent change is re-read and the mask applied again.
    pub async fn update_queue(
        &self,
        actor: &Actor,
        id: Uuid,
        patch: QueuePatch,
        mask: Vec<String>,
        etag: Option<String>,
    ) -> ServiceResult<Queue> {
        let mask = Mask::new(mask, QUEUE_PATHS)?;
        let (mask, patch) = (&mask, &patch);
        update_versioned(
            &format!("queue {id}"),
            etag.as_deref(),
            // From the database, not the cache: the etag is checked against this read.
            || self.queue_from_store(id),
            |current| async move {
                let name = if mask.names("name") {
                    patch.name.clone()
                } else {
                    current.name.clone()
                };
                let tier = match (mask.names("tier"), patch.tier) {
                    (false, _) => current.tier,
                    (true, 0) => 1,
                    (true, tier) => tier,
                };
                let strategy = if mask.names("strategy") {
                    patch.strategy
                } else {
                    Some(current.strategy)
                };
                self.save_queue(actor, Some(current), &name, tier, strategy)
                    .await
            },
        )
        .await
    }

    async fn queue_from_store(&self, id: Uuid) -> ServiceResult<Queue> {
        self.store
            .queues()
            .await?
            .into_iter()
            .find(|q| q.id == id)
            .ok_or_else(|| ServiceError::NotFound(format!("queue {id}")))
    }

    /// Creates a queue (`current` None) or replaces the fields of `current` as read, if it
    /// is still at that version (else [`ServiceError::Contended`]).
    pub async fn save_queue(
        &self,
        actor: &Actor,
        current: Option<Queue>,
        name: &str,
        tier: i32,
        strategy: Option<Strategy>,
    ) -> ServiceResult<Queue> {
        let mut v = Violations::new();
        v.line("name", name, true, MAX_NAME_CHARS);
        if !(1..=TOP_TIER).contains(&tier) {
            v.add("tier", format!("must be between 1 and {TOP_TIER}"));
        }
        if strategy.is_none() {
            v.add("strategy", "is required");
        }
        v.finish()?;
        let at = self.clock.now();
        let (queue, before) = match current {
            None => (
                Queue {
                    id: Uuid::now_v7(),
                    name: name.trim().to_owned(),
                    tier,
                    strategy: strategy.unwrap_or(Strategy::Manual),
                    version: 1,
                    created_at: at,
                    updated_at: at,
                },
                None,
            ),
            Some(current) => (
                Queue {
                    name: name.trim().to_owned(),
                    tier,
                    strategy: strategy.unwrap_or(current.strategy),
                    updated_at: at,
                    ..current.clone()
                },
                Some(current),
            ),
        };
        let expected = before.as_ref().map(|b| b.version);
        let audit = AuditEntry::saved(actor.clone(), before.as_ref(), &queue, at);
        if audit.changes_nothing()
            && let Some(before) = before
        {
            return Ok(before);
        }
        let saved = self.store.save_queue(&queue, expected, &audit).await;
        self.queues.invalidate();
        if !saved? {
            return Err(ServiceError::Contended(format!(
                "queue {} changed concurrently",
                queue.id
            )));
        }
        let saved = self.queue(queue.id).await?;
        if expected.is_some() {
            self.drain(saved.id).await?;
        }
        Ok(saved)
    }

    pub async fn delete_queue(&self, actor: &Actor, id: Uuid) -> ServiceResult<()> {
        let queue = self.queue(id).await?;
        self.queues.invalidate();
        let audit = AuditEntry::deleted(actor.clone(), &queue, self.clock.now());
        if self.store.delete_queue(id, &audit).await? {
            Ok(())
        } else {
            Err(ServiceError::FailedPrecondition(format!(
                "queue {id} still has tickets; move them first"
            )))
        }
    }

    // ---- agents -------------------------------------------------------------------------

    pub async fn agents(&self) -> ServiceResult<Vec<Agent>> {
        Ok(self.store.agents().await?)
    }

    pub async fn agent(&self, id: Uuid) -> ServiceResult<Agent> {
        self.store
            .agent(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("agent {id}")))
    }

    /// Creates an agent (`current` None) or saves a changed one; then lets its queues
    /// hand it waiting work.
    pub async fn save_agent(
        &self,
        actor: &Actor,
        mut agent: Agent,
        current: Option<&Agent>,
    ) -> ServiceResult<Agent> {
        let mut v = Violations::new();
        v.line("agent.name", &agent.name, true, MAX_NAME_CHARS);
        v.line("agent.email", &agent.email, false, MAX_NAME_CHARS);
        if !(1..=TOP_TIER).contains(&agent.tier) {
            v.add("agent.tier", format!("must be between 1 and {TOP_TIER}"));
        }
        if agent.capacity < 0 || agent.capacity > 10_000 {
            v.add("agent.capacity", "must be between 0 and 10000");
        }
        agent.skills = validate_skills("agent.skills", &agent.skills, &mut v);
        agent.queue_ids.sort();
        agent.queue_ids.dedup();
        v.finish()?;
        let queues = self.store.queues().await?;
        for id in &agent.queue_ids {
            if !queues.iter().any(|q| q.id == *id) {
                return Err(ServiceError::NotFound(format!("queue {id}")));
            }
        }
        agent.updated_at = self.clock.now();
        if current.is_none() {
            agent.created_at = agent.updated_at;
        }
        let audit = AuditEntry::saved(actor.clone(), current, &agent, agent.updated_at);
        if audit.changes_nothing()
            && let Some(current) = current
        {
            return Ok(current.clone());
        }
        if !self
            .store
            .save_agent(&agent, current.map(|c| c.version), &audit)
            .await?
        {
            return Err(ServiceError::Contended(format!(
                "agent {} changed concurrently",
                agent.id
            )));
        }
        // The agent is saved: a queue that cannot hand it work right now (a busy ticket,
        // a database hiccup) does not make the save fail, or a retry save it twice.
        if let Err(err) = self.drain_for_agent(agent.id).await {
            tracing::warn!(agent_id = %agent.id, error = %err, "queues not drained after an agent change");
        }
        self.agent(agent.id).await
    }

    /// Admins set anyone's availability; an agent key sets its own agent's.
    pub async fn set_availability(
        &self,
        principal: &Principal,
        agent_id: Uuid,
        availability: Availability,
    ) -> ServiceResult<Agent> {
        if principal.role != Role::Admin && principal.agent_id != Some(agent_id) {
            return Err(ServiceError::PermissionDenied(
                "agents may set only their own availability".into(),
            ));
        }
        retry_contended(
            ServiceError::Contended(format!("agent {agent_id} kept changing")),
            || async move {
                let current = self.agent(agent_id).await?;
                let next = Agent {
                    availability,
                    ..current.clone()
                };
                self.save_agent(&principal.actor(), next, Some(&current))
                    .await
            },
        )
        .await
    }

    pub async fn delete_agent(&self, actor: &Actor, id: Uuid) -> ServiceResult<()> {
        let agent = self.agent(id).await?;
        let audit = AuditEntry::deleted(actor.clone(), &agent, self.clock.now());
        if self.store.delete_agent(id, &audit).await? {
            Ok(())
        } else {
            Err(ServiceError::FailedPrecondition(format!(
                "agent {id} still holds open tickets or API keys; reassign the tickets and \
                 revoke the keys first"
            )))
        }
    }

    // ---- rules --------------------------------------------------------------------------

    pub async fn rules(&self) -> ServiceResult<Vec<RoutingRule>> {
        Ok(self.store.rules().await?)
    }

    /// Creates a routing rule: a new id, version 1, stamped now.
    pub async fn create_rule(
        &self,
        actor: &Actor,
        rule: RoutingRule,
    ) -> ServiceResult<RoutingRule> {
        let at = self.clock.now();
        let rule = RoutingRule {
            id: Uuid::now_v7(),
            version: 1,
            created_at: at,
            updated_at: at,
            ..rule
        };
        self.save_rule(actor, rule, None).await
    }

    /// Changes the fields `mask` names (all of them when it is empty), under the caller's
    /// etag if it sent one.
    pub async fn update_rule(
        &self,
        actor: &Actor,
        id: Uuid,
        patch: RoutingRule,
        mask: Vec<String>,
        etag: Option<String>,
    ) -> ServiceResult<RoutingRule> {
        let mask = Mask::new(mask, RULE_PATHS)?;
        let (mask, patch) = (&mask, &patch);
        update_versioned(
            &format!("routing rule {id}"),
            etag.as_deref(),
            || self.rule_from_store(id),
            |current| async move {
                let mut next = current.clone();
                copy_masked!(
                    mask,
                    next,
                    patch,
                    [name, position, enabled, conditions, actions]
                );
                next.updated_at = self.clock.now();
                self.save_rule(actor, next, Some(&current)).await
            },
        )
        .await
    }

    /// A rule as stored now (not cached), or `NOT_FOUND`.
    async fn rule_from_store(&self, id: Uuid) -> ServiceResult<RoutingRule> {
        self.store
            .rules()
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| ServiceError::NotFound(format!("routing rule {id}")))
    }

    /// Checks and saves a new rule (`current` None) or a changed one, if `current` is still
    /// the stored version (else [`ServiceError::Contended`]).
    async fn save_rule(
        &self,
        actor: &Actor,
        mut rule: RoutingRule,
        current: Option<&RoutingRule>,
    ) -> ServiceResult<RoutingRule> {
        let mut v = Violations::new();
        rule.name = rule.name.trim().to_owned();
        v.line("rule.name", &rule.name, true, MAX_NAME_CHARS);
        rule.actions.add_tags =
            ticket::normalize_tags("rule.actions.add_tags", &rule.actions.add_tags, &mut v);
        rule.actions.required_skills = validate_skills(
            "rule.actions.required_skills",
            &rule.actions.required_skills,
            &mut v,
        );
        rule.conditions.any_tags = ticket::normalize_tags(
            "rule.conditions.any_tags",
            &rule.conditions.any_tags,
            &mut v,
        );
        v.finish()?;
        if let Some(queue_id) = rule.actions.queue_id {
            self.queue(queue_id).await?;
        }
        let audit = AuditEntry::saved(actor.clone(), current, &rule, rule.updated_at);
        if audit.changes_nothing()
            && let Some(current) = current
        {
            return Ok(current.clone());
        }
        let expected = current.map(|c| c.version);
        let saved = self.store.save_rule(&rule, expected, &audit).await?;
        self.rules.invalidate();
        if !saved {
            return Err(ServiceError::Contended(format!(
                "routing rule {} changed concurrently",
                rule.id
            )));
        }
        self.rule_from_store(rule.id).await
    }

    pub async fn delete_rule(&self, actor: &Actor, id: Uuid) -> ServiceResult<()> {
        self.rules.invalidate();
        let rule = self
            .store
            .rules()
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| ServiceError::NotFound(format!("routing rule {id}")))?;
        let audit = AuditEntry::deleted(actor.clone(), &rule, self.clock.now());
        if self.store.delete_rule(id, &audit).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!("routing rule {id}")))
        }
    }
}
