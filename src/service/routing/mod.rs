//! Routing use cases: administering agents, queues and rules; applying rules to new
//! tickets; assigning automatically within a queue; manual assignment and tier escalation.
//!
//! Automatic assignment is optimistic: the strategy picks from the members' current loads,
//! and the commit re-checks the chosen agent's capacity under a lock on the agent's row
//! ([`AssignmentGuard`]). A lost race re-reads and decides again, so capacity holds with
//! any number of replicas assigning at once.

mod admin;

pub use admin::{AGENT_PATHS, AgentPatch, QUEUE_PATHS, QueuePatch};

use std::sync::Arc;

use tracing::instrument;
use uuid::Uuid;

use super::cache::{CONFIG_TTL, Cached};
use super::sla::Writer;
use super::{ServiceError, ServiceResult, retry_contended};
use crate::clock::Clock;
use crate::domain::auth::Principal;
use crate::domain::event::{Actor, EventKind, EventPayload, NewEvent, Visibility};
use crate::domain::notification;
use crate::domain::routing::{
    Availability, Needs, Queue, RoutingRule, Strategy, TOP_TIER, TicketFacts, choose, first_match,
    raised,
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
        retry_contended(ServiceError::Contended(format!(
            "ticket {ticket_id} could not be routed; retry"
        )), || async move {
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
            let notice = notification::assigned(&next, &Actor::system("routing"), at);
            let changes = Changeset {
                guard: decision.chosen.map(|agent_id| AssignmentGuard {
                    agent_id,
                    ticket_id,
                    queue_id,
                    at,
                }),
                updates: vec![TicketUpdate::fields_only(next, ticket.version)],
                events: std::iter::once(event).chain(notice).collect(),
                ..Changeset::default()
            };
            match self.writer.commit(changes).await {
                Ok(mut committed) => {
                    if let Some(agent) = decision.chosen {
                        tracing::info!(agent_id = %agent, strategy = %queue.strategy, "ticket assigned");
                    }
                    committed
                        .tickets
                        .pop()
                        .ok_or_else(|| ServiceError::NotFound(format!("ticket {ticket_id}")))
                }
                // A concurrent change or a full agent is Contended: decide again.
                Err(other) => Err(other.into()),
            }
        })
        .await
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
        let queue = &queue;
        retry_contended(
            ServiceError::Contended(format!("ticket {ticket_id} kept changing; retry")),
            || async move {
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
                let notice = (next.assignee_id != ticket.assignee_id)
                    .then(|| notification::assigned(&next, &principal.actor(), at))
                    .flatten();
                let events = std::iter::once(event).chain(notice).collect();
                let after = self.commit_one(&ticket, next, events).await?;
                Ok(self.after_change(&ticket, after).await)
            },
        )
        .await
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
        retry_contended(
            ServiceError::Contended(format!("ticket {ticket_id} kept changing; retry")),
            || async move {
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
                let after = self.commit_one(&ticket, next, vec![event]).await?;
                Ok(self.after_change(&ticket, after).await)
            },
        )
        .await
    }

    async fn commit_one(
        &self,
        current: &Ticket,
        next: Ticket,
        events: Vec<NewEvent>,
    ) -> ServiceResult<Ticket> {
        let changes = Changeset {
            updates: vec![TicketUpdate::fields_only(next, current.version)],
            events,
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
