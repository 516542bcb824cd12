//! Routing use cases: administering agents, queues and rules; applying rules to new
//! tickets; assigning automatically within a queue; manual assignment and tier escalation.
//!
//! Automatic assignment is optimistic: the strategy picks from the members' current loads,
//! and the commit re-checks the chosen agent's capacity under a lock on the agent's row
//! ([`AssignmentGuard`]). A lost race re-reads and decides again, so capacity holds with
//! any number of replicas assigning at once.

use std::sync::Arc;

use tracing::instrument;
use uuid::Uuid;

use super::cache::{CONFIG_TTL, Cached};
use super::sla::Writer;
use super::{MAX_ATTEMPTS, ServiceError, ServiceResult, back_off};
use crate::clock::Clock;
use crate::domain::audit::AuditEntry;
use crate::domain::auth::{Principal, Role};
use crate::domain::event::{Actor, EventKind, EventPayload, NewEvent, Visibility};
use crate::domain::routing::{
    Agent, Availability, Needs, Queue, RoutingRule, Strategy, TOP_TIER, TicketFacts, choose,
    first_match, raised,
};
use crate::domain::ticket::{self, Status, Ticket};
use crate::domain::validation::Violations;
use crate::store::{
    AssignmentGuard, Changeset, Store, StoreError, TicketDraft, TicketKey, TicketUpdate,
};

const MAX_NAME_CHARS: usize = 200;
const MAX_SKILLS: usize = 50;
/// Waiting tickets looked at per drain of a queue.
const DRAIN_BATCH: i64 = 200;

/// What rules decided for a new ticket, recorded with its first routing event.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub rule: Option<String>,
}

/// Where AssignTicket sends a ticket.
#[derive(Debug, Clone, Copy)]
pub enum AssignTarget {
    Agent(Uuid),
    Queue(Uuid),
    Auto,
}

#[derive(Clone)]
pub struct RoutingService {
    store: Arc<dyn Store>,
    clock: Clock,
    writer: Writer,
    rules: Arc<Cached<Vec<RoutingRule>>>,
    queues: Arc<Cached<Vec<Queue>>>,
}

fn is_active(status: Status) -> bool {
    matches!(status, Status::Open | Status::InProgress)
}

fn validate_skills(field: &str, skills: &[String], v: &mut Violations) -> Vec<String> {
    ticket::normalize_tags(field, skills, v)
        .into_iter()
        .take(MAX_SKILLS)
        .collect()
}

impl RoutingService {
    pub fn new(store: Arc<dyn Store>, writer: Writer, clock: Clock) -> Self {
        Self {
            store,
            clock,
            writer,
            rules: Arc::new(Cached::new(CONFIG_TTL)),
            queues: Arc::new(Cached::new(CONFIG_TTL)),
        }
    }

    async fn cached_rules(&self) -> ServiceResult<Arc<Vec<RoutingRule>>> {
        Ok(self.rules.get(|| self.store.rules()).await?)
    }

    async fn cached_queues(&self) -> ServiceResult<Arc<Vec<Queue>>> {
        Ok(self.queues.get(|| self.store.queues()).await?)
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

    /// Creates a queue (`id` None) or replaces its fields.
    pub async fn save_queue(
        &self,
        actor: &Actor,
        id: Option<Uuid>,
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
        let (queue, before) = match id {
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
            Some(id) => {
                let current = self.queue(id).await?;
                (
                    Queue {
                        name: name.trim().to_owned(),
                        tier,
                        strategy: strategy.unwrap_or(current.strategy),
                        updated_at: at,
                        ..current.clone()
                    },
                    Some(current),
                )
            }
        };
        let expected = before.as_ref().map(|b| b.version);
        let audit = AuditEntry::saved(actor.clone(), before.as_ref(), &queue, at);
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
        self.drain_for_agent(agent.id).await?;
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
        for attempt in 0..MAX_ATTEMPTS {
            back_off(attempt).await;
            let current = self.agent(agent_id).await?;
            let next = Agent {
                availability,
                ..current.clone()
            };
            match self
                .save_agent(&principal.actor(), next, Some(&current))
                .await
            {
                Err(ServiceError::Contended(_)) => continue,
                other => return other,
            }
        }
        Err(ServiceError::Contended(format!(
            "agent {agent_id} kept changing"
        )))
    }

    pub async fn delete_agent(&self, actor: &Actor, id: Uuid) -> ServiceResult<()> {
        let agent = self.agent(id).await?;
        let audit = AuditEntry::deleted(actor.clone(), &agent, self.clock.now());
        if self.store.delete_agent(id, &audit).await? {
            Ok(())
        } else {
            Err(ServiceError::FailedPrecondition(format!(
                "agent {id} still holds open tickets; reassign them first"
            )))
        }
    }

    // ---- rules --------------------------------------------------------------------------

    pub async fn rules(&self) -> ServiceResult<Vec<RoutingRule>> {
        Ok(self.store.rules().await?)
    }

    pub async fn save_rule(
        &self,
        actor: &Actor,
        mut rule: RoutingRule,
        insert: bool,
    ) -> ServiceResult<RoutingRule> {
        let mut v = Violations::new();
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
        // (read from the database, not the cache: the rule may be brand new elsewhere)
        let before = if insert {
            None
        } else {
            let found = self
                .store
                .rules()
                .await?
                .into_iter()
                .find(|r| r.id == rule.id);
            Some(found.ok_or_else(|| ServiceError::NotFound(format!("routing rule {}", rule.id)))?)
        };
        rule.updated_at = self.clock.now();
        if let Some(before) = &before {
            rule.created_at = before.created_at;
        } else {
            rule.created_at = rule.updated_at;
        }
        let audit = AuditEntry::saved(actor.clone(), before.as_ref(), &rule, rule.updated_at);
        if !self.store.save_rule(&rule, insert, &audit).await? {
            return Err(ServiceError::NotFound(format!("routing rule {}", rule.id)));
        }
        self.rules.invalidate();
        Ok(rule)
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

    // ---- routing ------------------------------------------------------------------------

    /// Applies the first matching rule to a ticket about to be created. A queue or
    /// assignee the caller named explicitly is kept.
    pub async fn plan(
        &self,
        draft: &mut TicketDraft,
        escalation_source: Option<&str>,
        explicit_queue: bool,
    ) -> ServiceResult<Plan> {
        let rules = self.cached_rules().await?;
        // The stored VIP flag counts when the caller does not say; read only if a rule asks.
        let contact_vip = match draft.contact.vip {
            Some(vip) => vip,
            None if rules.iter().any(|r| r.conditions.contact_vip.is_some()) => self
                .store
                .contact_vip(&draft.contact.external_id)
                .await?
                .unwrap_or(false),
            None => false,
        };
        let facts = TicketFacts {
            ticket_type: Some(draft.ticket_type),
            priority: Some(draft.priority),
            channel: draft.channel,
            tags: &draft.tags,
            contact_vip,
            custom_fields: Some(&draft.custom_fields),
            escalation_source,
        };
        let Some(rule) = first_match(&rules, &facts).cloned() else {
            return self.place(draft).await.map(|()| Plan::default());
        };
        let actions = &rule.actions;
        if let (Some(queue_id), false) = (actions.queue_id, explicit_queue) {
            draft.queue_id = Some(queue_id);
        }
        if let Some(priority) = actions.set_priority {
            draft.priority = priority;
        }
        if actions.raise_priority {
            draft.priority = raised(draft.priority);
        }
        for tag in &actions.add_tags {
            if !draft.tags.contains(tag) {
                draft.tags.push(tag.clone());
            }
        }
        draft.tags.sort();
        draft.required_skills = actions.required_skills.clone();
        draft.vip_handlers_only = actions.vip_handlers_only;
        self.place(draft).await?;
        Ok(Plan {
            rule: Some(rule.name),
        })
    }

    /// A ticket in a queue takes the queue's tier.
    async fn place(&self, draft: &mut TicketDraft) -> ServiceResult<()> {
        if let Some(queue_id) = draft.queue_id {
            draft.tier = self.queue(queue_id).await?.tier;
        }
        Ok(())
    }

    /// Assigns an unassigned active ticket within its queue, if its queue assigns
    /// automatically and someone can take it. With `record_waiting`, a decision that
    /// leaves the ticket waiting is recorded too (done once, when the ticket arrives).
    #[instrument(skip_all, fields(ticket_id = %ticket_id))]
    pub async fn route(
        &self,
        ticket_id: Uuid,
        plan: &Plan,
        record_waiting: bool,
    ) -> ServiceResult<Ticket> {
        for attempt in 0..MAX_ATTEMPTS {
            back_off(attempt).await;
            let ticket = self.ticket(ticket_id).await?;
            let Some(queue_id) = ticket.queue_id else {
                return Ok(ticket);
            };
            if ticket.assignee_id.is_some() || !is_active(ticket.status) {
                return Ok(ticket);
            }
            let queue = self.queue(queue_id).await?;
            let candidates = self.store.candidates(queue_id).await?;
            let needs = Needs {
                tier: ticket.tier,
                required_skills: ticket.required_skills.clone(),
                vip_handlers_only: ticket.vip_handlers_only,
            };
            let decision = choose(queue.strategy, &candidates, &needs);
            if decision.chosen.is_none() && !record_waiting {
                return Ok(ticket);
            }
            let at = self.clock.now();
            let mut next = ticket.clone();
            next.assignee_id = decision.chosen;
            next.updated_at = at;
            let event = NewEvent::about(
                &next,
                EventKind::Assigned,
                Actor::system("routing"),
                Visibility::Internal,
                EventPayload::Routed {
                    queue_id: Some(queue_id),
                    strategy: queue.strategy.as_str().to_owned(),
                    assignee_id: decision.chosen,
                    reason: decision.reason.clone(),
                    considered: decision.considered.clone(),
                    rule: plan.rule.clone(),
                },
                at,
            );
            let changes = Changeset {
                guard: decision.chosen.map(|agent_id| AssignmentGuard {
                    agent_id,
                    ticket_id,
                    queue_id,
                    at,
                }),
                updates: vec![TicketUpdate::fields_only(next, ticket.version)],
                events: vec![event],
                ..Changeset::default()
            };
            match self.writer.commit(changes).await {
                Ok(mut committed) => {
                    if let Some(agent) = decision.chosen {
                        tracing::info!(agent_id = %agent, strategy = %queue.strategy, "ticket assigned");
                    }
                    return committed
                        .tickets
                        .pop()
                        .ok_or_else(|| ServiceError::NotFound(format!("ticket {ticket_id}")));
                }
                Err(StoreError::Conflict(_) | StoreError::AgentUnavailable(_)) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(ServiceError::Contended(format!(
            "ticket {ticket_id} could not be routed; retry"
        )))
    }

    async fn ticket(&self, id: Uuid) -> ServiceResult<Ticket> {
        self.store
            .ticket(TicketKey::Id(id))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("ticket {id}")))
    }

    /// Hands waiting tickets of a queue to members with room, most urgent first, then
    /// oldest. Returns how many were assigned.
    pub async fn drain(&self, queue_id: Uuid) -> ServiceResult<usize> {
        let waiting = self.store.waiting_tickets(queue_id, DRAIN_BATCH).await?;
        let mut assigned = 0;
        for ticket_id in waiting {
            let routed = self.route(ticket_id, &Plan::default(), false).await?;
            if routed.assignee_id.is_some() {
                assigned += 1;
            } else if self
                .store
                .candidates(queue_id)
                .await?
                .iter()
                .all(|c| c.availability != Availability::Online || c.load >= i64::from(c.capacity))
            {
                // Nobody has room: the rest waits too.
                break;
            }
        }
        Ok(assigned)
    }

    /// Drains every queue the agent belongs to (after it freed capacity or came online).
    pub async fn drain_for_agent(&self, agent_id: Uuid) -> ServiceResult<()> {
        if let Some(agent) = self.store.agent(agent_id).await? {
            for queue_id in agent.queue_ids {
                self.drain(queue_id).await?;
            }
        }
        Ok(())
    }

    /// Follows up a committed change of a ticket: a ticket that became unassigned and
    /// active is routed; an agent whose load fell gets waiting work.
    /// Returns the ticket as routing left it (`after` itself when routing did not touch it).
    pub async fn after_change(&self, before: &Ticket, after: Ticket) -> Ticket {
        let committed = after.clone();
        let result = async {
            let latest = if after.assignee_id.is_none()
                && is_active(after.status)
                && after.queue_id.is_some()
            {
                self.route(after.id, &Plan::default(), false).await?
            } else {
                after
            };
            if let Some(agent) = before.assignee_id {
                let freed = latest.assignee_id != Some(agent)
                    || (is_active(before.status) && !is_active(latest.status));
                if freed {
                    self.drain_for_agent(agent).await?;
                }
            }
            Ok::<Ticket, ServiceError>(latest)
        }
        .await;
        match result {
            Ok(latest) => latest,
            Err(err) => {
                tracing::warn!(ticket_id = %committed.id, error = %err, "routing after a change failed; the ticket waits for the next drain");
                // The change itself is committed: report it.
                committed
            }
        }
    }

    /// Manual assignment: to an agent (capacity is the person's call), to a queue (routed
    /// there), or back to automatic assignment within its queue.
    pub async fn assign(
        &self,
        principal: &Principal,
        ticket_id: Uuid,
        target: AssignTarget,
    ) -> ServiceResult<Ticket> {
        let queue = match target {
            AssignTarget::Queue(id) => Some(self.queue(id).await?),
            _ => None,
        };
        if let AssignTarget::Agent(id) = target {
            self.agent(id).await?;
        }
        for attempt in 0..MAX_ATTEMPTS {
            back_off(attempt).await;
            let ticket = self.ticket(ticket_id).await?;
            ensure_open(&ticket)?;
            let at = self.clock.now();
            let mut next = ticket.clone();
            next.updated_at = at;
            let reason = match target {
                AssignTarget::Agent(agent) => {
                    next.assignee_id = Some(agent);
                    format!("assigned manually by {}", principal.key_name)
                }
                AssignTarget::Queue(_) => {
                    let q = queue
                        .as_ref()
                        .ok_or_else(|| ServiceError::NotFound("queue".into()))?;
                    next.queue_id = Some(q.id);
                    next.tier = q.tier;
                    next.assignee_id = None;
                    format!("moved to queue {} by {}", q.name, principal.key_name)
                }
                AssignTarget::Auto => {
                    if next.queue_id.is_none() {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "ticket #{} has no queue to assign it from",
                            ticket.number
                        )));
                    }
                    next.assignee_id = None;
                    format!("returned to automatic assignment by {}", principal.key_name)
                }
            };
            let event = NewEvent::about(
                &next,
                EventKind::Assigned,
                principal.actor(),
                Visibility::Internal,
                EventPayload::Routed {
                    queue_id: next.queue_id,
                    strategy: Strategy::Manual.as_str().to_owned(),
                    assignee_id: next.assignee_id,
                    reason,
                    considered: Vec::new(),
                    rule: None,
                },
                at,
            );
            match self.commit_one(&ticket, next, event).await {
                Ok(after) => return Ok(self.after_change(&ticket, after).await),
                Err(ServiceError::Contended(_)) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(ServiceError::Contended(format!(
            "ticket {ticket_id} kept changing; retry"
        )))
    }

    /// Moves a ticket up to `target_tier` (default: the next), into `queue_id` or the
    /// first queue serving that tier, and routes it there.
    pub async fn escalate_tier(
        &self,
        principal: &Principal,
        ticket_id: Uuid,
        target_tier: Option<i32>,
        queue_id: Option<Uuid>,
        reason: &str,
    ) -> ServiceResult<Ticket> {
        let mut v = Violations::new();
        v.text("reason", reason, false, 2_048);
        if let Some(tier) = target_tier
            && !(1..=TOP_TIER).contains(&tier)
        {
            v.add("target_tier", format!("must be between 1 and {TOP_TIER}"));
        }
        v.finish()?;
        for attempt in 0..MAX_ATTEMPTS {
            back_off(attempt).await;
            let ticket = self.ticket(ticket_id).await?;
            ensure_open(&ticket)?;
            let to = target_tier.unwrap_or(ticket.tier + 1);
            if to > TOP_TIER {
                return Err(ServiceError::FailedPrecondition(format!(
                    "ticket #{} is at the top tier ({TOP_TIER})",
                    ticket.number
                )));
            }
            if to <= ticket.tier {
                return Err(ServiceError::FailedPrecondition(format!(
                    "ticket #{} is already at tier {}",
                    ticket.number, ticket.tier
                )));
            }
            let queues = self.store.queues().await?;
            let queue = match queue_id {
                Some(id) => queues
                    .iter()
                    .find(|q| q.id == id)
                    .ok_or_else(|| ServiceError::NotFound(format!("queue {id}")))?,
                None => queues.iter().find(|q| q.tier == to).ok_or_else(|| {
                    ServiceError::FailedPrecondition(format!("no queue serves tier {to}"))
                })?,
            };
            if queue.tier != to {
                return Err(ServiceError::FailedPrecondition(format!(
                    "queue {} serves tier {}, not {to}",
                    queue.name, queue.tier
                )));
            }
            let at = self.clock.now();
            let mut next = ticket.clone();
            next.tier = to;
            next.queue_id = Some(queue.id);
            next.assignee_id = None;
            next.updated_at = at;
            let event = NewEvent::about(
                &next,
                EventKind::TierEscalated,
                principal.actor(),
                Visibility::Internal,
                EventPayload::TierEscalated {
                    from_tier: ticket.tier,
                    to_tier: to,
                    queue_id: queue.id,
                    reason: reason.to_owned(),
                },
                at,
            );
            match self.commit_one(&ticket, next, event).await {
                Ok(after) => return Ok(self.after_change(&ticket, after).await),
                Err(ServiceError::Contended(_)) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(ServiceError::Contended(format!(
            "ticket {ticket_id} kept changing; retry"
        )))
    }

    async fn commit_one(
        &self,
        current: &Ticket,
        next: Ticket,
        event: NewEvent,
    ) -> ServiceResult<Ticket> {
        let changes = Changeset {
            updates: vec![TicketUpdate::fields_only(next, current.version)],
            events: vec![event],
            ..Changeset::default()
        };
        match self.writer.commit(changes).await {
            Ok(mut committed) => committed
                .tickets
                .pop()
                .ok_or_else(|| ServiceError::NotFound(format!("ticket {}", current.id))),
            Err(StoreError::Conflict(_)) => Err(ServiceError::Contended("ticket changed".into())),
            Err(other) => Err(other.into()),
        }
    }
}

fn ensure_open(ticket: &Ticket) -> ServiceResult<()> {
    if ticket.status.is_final() {
        return Err(ServiceError::FailedPrecondition(format!(
            "ticket #{} is {}",
            ticket.number, ticket.status
        )));
    }
    Ok(())
}
