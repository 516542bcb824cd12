//! What a workflow's actions do to a ticket: planned in order on one new state of the
//! ticket, with the entries and messages they add, and a line saying what each did. The
//! runner writes the plan; `TestWorkflow` only shows it.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::runner::WorkflowRunner;
use super::ticket_context;
use crate::domain::delivery::{OutboundKind, OutboundMessage};
use crate::domain::event::{Actor, EventKind, EventPayload, FieldChange, NewEvent, Visibility};
use crate::domain::notification;
use crate::domain::routing::Strategy;
use crate::domain::template;
use crate::domain::ticket::{MAX_TAGS, Ticket};
use crate::domain::workflow::{Action, AssignTo, Workflow};
use crate::service::tickets::outbound_message;
use crate::service::{ServiceError, ServiceResult};

/// A run's actions, planned on the ticket.
pub(super) struct Planned {
    pub next: Ticket,
    pub events: Vec<NewEvent>,
    pub outbound: Vec<OutboundMessage>,
    pub described: Vec<String>,
}

fn change(field: &str, old: &str, new: &str) -> FieldChange {
    FieldChange {
        field: field.to_owned(),
        old: old.to_owned(),
        new: new.to_owned(),
    }
}

impl WorkflowRunner {
    /// Plans every action on the ticket in order: field changes accumulate on one new
    /// state, entries are built against it. An action that cannot apply (a template since
    /// deleted, a top-tier ticket to escalate) is skipped and says why.
    pub(super) async fn plan(
        &self,
        workflow: &Workflow,
        ticket: &Ticket,
        at: DateTime<Utc>,
    ) -> ServiceResult<Planned> {
        let actor = Actor::workflow(workflow.id, &workflow.name);
        let mut next = ticket.clone();
        next.updated_at = at;
        let mut fields: Vec<FieldChange> = Vec::new();
        let mut routed: Option<String> = None;
        let mut tier: Option<(i32, Uuid, String)> = None;
        let mut notes: Vec<(EventKind, Visibility, EventPayload)> = Vec::new();
        let mut outbound = Vec::new();
        let mut described = Vec::new();
        let final_ticket = ticket.status.is_final();
        for action in &workflow.actions {
            let changes_fields = !matches!(
                action,
                Action::AddNote { .. } | Action::Notify { .. } | Action::SendMessage { .. }
            );
            if changes_fields && final_ticket {
                described.push(format!(
                    "skipped: ticket #{} is {}",
                    ticket.number, ticket.status
                ));
                continue;
            }
            let said = match action {
                Action::SetPriority { priority } => {
                    if next.priority == *priority {
                        format!("priority already {priority}")
                    } else {
                        fields.push(change(
                            "priority",
                            next.priority.as_str(),
                            priority.as_str(),
                        ));
                        let said = format!("priority {} → {priority}", next.priority);
                        next.priority = *priority;
                        said
                    }
                }
                Action::SetStatus { status: to } => {
                    if next.status == *to {
                        format!("status already {to}")
                    } else if !next.status.can_become(*to) {
                        format!("skipped: status cannot go from {} to {to}", next.status)
                    } else {
                        let said = format!("status {} → {to}", next.status);
                        next.status = *to;
                        said
                    }
                }
                Action::AddTags { tags } | Action::RemoveTags { tags } => {
                    let adding = matches!(action, Action::AddTags { .. });
                    let mut set: BTreeSet<String> = next.tags.iter().cloned().collect();
                    for tag in tags {
                        if adding {
                            set.insert(tag.clone());
                        } else {
                            set.remove(tag);
                        }
                    }
                    let verb = if adding { "added" } else { "removed" };
                    if set.len() > MAX_TAGS {
                        format!("skipped: the ticket would hold more than {MAX_TAGS} tags")
                    } else {
                        let after: Vec<String> = set.into_iter().collect();
                        if after == next.tags {
                            format!("tags unchanged ({verb} {})", tags.join(", "))
                        } else {
                            next.tags = after;
                            format!("{verb} tags {}", tags.join(", "))
                        }
                    }
                }
                Action::SetCustomField { key, value } => {
                    let old = next.custom_fields.get(key).cloned().unwrap_or_default();
                    if old == *value {
                        format!("custom field {key} already {value:?}")
                    } else {
                        fields.push(change(&format!("custom_fields.{key}"), &old, value));
                        if value.is_empty() {
                            next.custom_fields.remove(key);
                        } else {
                            next.custom_fields.insert(key.clone(), value.clone());
                        }
                        format!("custom field {key} = {value:?}")
                    }
                }
                Action::Assign { to } => self.plan_assign(&mut next, to, &mut routed).await?,
                Action::EscalateTier { reason } => {
                    self.plan_escalation(&mut next, reason, &mut tier).await?
                }
                Action::AddNote { template_id } => match self.render(*template_id, &next).await? {
                    Ok((_, body, name)) => {
                        notes.push((
                            EventKind::NoteAdded,
                            Visibility::Internal,
                            EventPayload::Note { body },
                        ));
                        format!("added a note from template {name:?}")
                    }
                    Err(why) => format!("skipped note: {why}"),
                },
                Action::SendMessage {
                    template_id,
                    channel,
                } => {
                    let channel = channel.or(next.channel);
                    match (
                        channel,
                        ticket.status == crate::domain::ticket::Status::Merged,
                    ) {
                        (_, true) => "skipped message: the ticket is merged".to_owned(),
                        (None, _) => "skipped message: the ticket has no channel".to_owned(),
                        (Some(channel), _) => match self.render(*template_id, &next).await? {
                            Err(why) => format!("skipped message: {why}"),
                            Ok((subject, body, name)) => {
                                let conversation =
                                    self.store.conversation_of_ticket(ticket.id).await?;
                                let event_id = Uuid::now_v7();
                                match outbound_message(
                                    &next,
                                    channel,
                                    conversation.as_ref(),
                                    event_id,
                                    (body.clone(), Vec::new()),
                                    OutboundKind::AutoResponse,
                                    at,
                                ) {
                                    Ok(mut message) => {
                                        if !subject.is_empty() {
                                            message.subject = subject;
                                        }
                                        notes.push((
                                            EventKind::ReplyAdded,
                                            Visibility::Public,
                                            EventPayload::Reply {
                                                body,
                                                channel: channel.as_str().to_owned(),
                                                attachments: Vec::new(),
                                                message_id: Some(message.id),
                                            },
                                        ));
                                        // The entry's id is the one the message names.
                                        outbound.push((event_id, message));
                                        format!("queued a {channel} message from template {name:?}")
                                    }
                                    Err(e) => format!("skipped message: {e}"),
                                }
                            }
                        },
                    }
                }
                Action::Notify {
                    agent_ids,
                    queue_id,
                    assignee,
                } => {
                    let mut recipients: BTreeSet<Uuid> = agent_ids.iter().copied().collect();
                    if let Some(queue_id) = queue_id {
                        for agent in self.routing.agents().await? {
                            if agent.queue_ids.contains(queue_id) {
                                recipients.insert(agent.id);
                            }
                        }
                    }
                    if *assignee && let Some(agent) = next.assignee_id {
                        recipients.insert(agent);
                    }
                    if recipients.is_empty() {
                        "nobody to notify".to_owned()
                    } else {
                        let count = recipients.len();
                        notes.push((
                            EventKind::Notification,
                            Visibility::Internal,
                            EventPayload::Notification {
                                reason: "workflow".into(),
                                recipients: recipients.into_iter().collect(),
                                text: format!(
                                    "{}: ticket #{} {}",
                                    workflow.name, next.number, next.subject
                                ),
                            },
                        ));
                        format!("notified {count} agent(s)")
                    }
                }
            };
            described.push(said);
        }
        let mut events = Vec::new();
        let about = |kind, visibility, payload| {
            NewEvent::about(&next, kind, actor.clone(), visibility, payload, at)
        };
        if next.status != ticket.status {
            let status = change("status", ticket.status.as_str(), next.status.as_str());
            events.push(about(
                EventKind::StatusChanged,
                Visibility::Internal,
                EventPayload::FieldsChanged {
                    changes: vec![status],
                },
            ));
        }
        if next.tags != ticket.tags {
            fields.push(change("tags", &ticket.tags.join(","), &next.tags.join(",")));
        }
        if let Some((to_tier, queue_id, reason)) = tier {
            events.push(about(
                EventKind::TierEscalated,
                Visibility::Internal,
                EventPayload::TierEscalated {
                    from_tier: ticket.tier,
                    to_tier,
                    queue_id,
                    reason,
                },
            ));
        } else if let Some(reason) = routed {
            events.push(about(
                EventKind::Assigned,
                Visibility::Internal,
                EventPayload::Routed {
                    queue_id: next.queue_id,
                    strategy: Strategy::Manual.as_str().to_owned(),
                    assignee_id: next.assignee_id,
                    reason,
                    considered: Vec::new(),
                    rule: None,
                },
            ));
        }
        if !fields.is_empty() {
            events.push(about(
                EventKind::TicketUpdated,
                Visibility::Internal,
                EventPayload::FieldsChanged { changes: fields },
            ));
        }
        if next.assignee_id != ticket.assignee_id {
            events.extend(notification::assigned(&next, &actor, at));
        }
        let mut messages = Vec::new();
        let mut pending = outbound.into_iter();
        for (kind, visibility, payload) in notes {
            let mut event = about(kind, visibility, payload);
            if kind == EventKind::ReplyAdded
                && let Some((event_id, message)) = pending.next()
            {
                event.id = event_id;
                messages.push(message);
            }
            events.push(event);
        }
        Ok(Planned {
            next,
            events,
            outbound: messages,
            described,
        })
    }

    async fn plan_assign(
        &self,
        next: &mut Ticket,
        to: &AssignTo,
        routed: &mut Option<String>,
    ) -> ServiceResult<String> {
        let said = match to {
            AssignTo::Agent(id) => match self.routing.agent(*id).await {
                Ok(agent) if next.assignee_id == Some(agent.id) => {
                    return Ok(format!("already assigned to {}", agent.name));
                }
                Ok(agent) => {
                    next.assignee_id = Some(agent.id);
                    format!("assigned to {}", agent.name)
                }
                Err(ServiceError::NotFound(what)) => {
                    return Ok(format!("skipped: {what} no longer exists"));
                }
                Err(other) => return Err(other),
            },
            AssignTo::Queue(id) => match self.routing.queue(*id).await {
                Ok(queue) if next.queue_id == Some(queue.id) => {
                    return Ok(format!("already in queue {}", queue.name));
                }
                Ok(queue) => {
                    next.queue_id = Some(queue.id);
                    next.tier = queue.tier;
                    next.assignee_id = None;
                    format!("moved to queue {}", queue.name)
                }
                Err(ServiceError::NotFound(what)) => {
                    return Ok(format!("skipped: {what} no longer exists"));
                }
                Err(other) => return Err(other),
            },
            AssignTo::Auto => {
                if next.queue_id.is_none() {
                    return Ok("skipped: the ticket has no queue to assign it from".into());
                }
                if next.assignee_id.is_none() {
                    return Ok("already waiting for automatic assignment".into());
                }
                next.assignee_id = None;
                "returned to automatic assignment".into()
            }
        };
        *routed = Some(format!("{said} by a workflow"));
        Ok(said)
    }

    async fn plan_escalation(
        &self,
        next: &mut Ticket,
        reason: &str,
        tier: &mut Option<(i32, Uuid, String)>,
    ) -> ServiceResult<String> {
        let to = next.tier + 1;
        let queues = self.routing.queues().await?;
        let Some(queue) = queues.iter().find(|q| q.tier == to) else {
            return Ok(format!("skipped: no queue serves tier {to}"));
        };
        next.tier = to;
        next.queue_id = Some(queue.id);
        next.assignee_id = None;
        *tier = Some((to, queue.id, reason.to_owned()));
        Ok(format!("escalated to tier {to} (queue {})", queue.name))
    }

    /// A saved template rendered for the ticket: `(subject, body, name)`, or why not.
    async fn render(
        &self,
        template_id: Uuid,
        ticket: &Ticket,
    ) -> ServiceResult<Result<(String, String, String), String>> {
        let Some(template) = self.store.template(template_id).await? else {
            return Ok(Err(format!("template {template_id} no longer exists")));
        };
        let context =
            ticket_context(self.store.as_ref(), &self.survey, ticket, self.clock.now()).await?;
        Ok(match template::render(&template, &context) {
            Ok(rendered) => Ok((rendered.subject, rendered.body, template.name)),
            Err(e) => Err(format!("template {:?} cannot render: {e}", template.name)),
        })
    }
}

/// Whether a workflow changed any stored field of the ticket.
pub(super) fn fields_differ(before: &Ticket, after: &Ticket) -> bool {
    before.status != after.status
        || before.priority != after.priority
        || before.tags != after.tags
        || before.custom_fields != after.custom_fields
        || before.assignee_id != after.assignee_id
        || before.queue_id != after.queue_id
        || before.tier != after.tier
}
