//! Workflows between their protobuf and domain shapes.

use super::*;
use crate::domain::auto_response::AutoResponse;
use crate::domain::workflow::{Action, AssignTo, Trigger, Workflow};
use crate::service::automation::{AutoResponsePatch, WorkflowPatch};

pub(crate) fn auto_response_to_pb(r: AutoResponse) -> pb::AutoResponse {
    pb::AutoResponse {
        id: r.id.to_string(),
        kind: auto_response_kind_to_pb(r.kind),
        channel: channel_to_pb(r.channel),
        template_id: r.template_id.to_string(),
        calendar_id: optional_id(r.calendar_id),
        enabled: r.enabled,
        for_agent_tickets: r.for_agent_tickets,
        etag: r.version.to_string(),
    }
}

/// The fields of an auto-response as a client sent them; the service checks them whole.
pub(crate) fn auto_response_patch(
    r: pb::AutoResponse,
) -> Result<AutoResponsePatch, crate::service::ServiceError> {
    let mut v = Violations::new();
    let patch = AutoResponsePatch {
        kind: auto_response_kind_from_pb(r.kind, "auto_response.kind", &mut v),
        channel: channel_from_pb(r.channel, "auto_response.channel", &mut v),
        template_id: optional_uuid("auto_response.template_id", &r.template_id, &mut v),
        calendar_id: optional_uuid("auto_response.calendar_id", &r.calendar_id, &mut v),
        enabled: r.enabled,
        for_agent_tickets: r.for_agent_tickets,
    };
    v.finish()?;
    Ok(patch)
}

pub(crate) fn workflow_to_pb(w: Workflow) -> pb::Workflow {
    use pb::workflow_trigger::Kind;
    let trigger = match w.trigger {
        Trigger::Event { event, from, to } => Kind::Event(pb::EventTrigger {
            r#type: workflow_event_to_pb(event),
            from,
            to,
        }),
        Trigger::Timer {
            timer,
            after_seconds,
            calendar_id,
            status,
        } => Kind::Timer(pb::TimerTrigger {
            kind: timer_kind_to_pb(timer),
            after: Some(duration_from_seconds(after_seconds)),
            calendar_id: optional_id(calendar_id),
            status: status.map(status_to_pb).unwrap_or(0),
        }),
    };
    pb::Workflow {
        id: w.id.to_string(),
        name: w.name,
        enabled: w.enabled,
        position: w.position,
        trigger: Some(pb::WorkflowTrigger {
            kind: Some(trigger),
        }),
        condition: w.condition,
        actions: w.actions.into_iter().map(action_to_pb).collect(),
        etag: w.version.to_string(),
    }
}

fn action_to_pb(action: Action) -> pb::WorkflowAction {
    use pb::workflow_action::Action as A;
    let ids = |ids: Vec<Uuid>| ids.into_iter().map(|id| id.to_string()).collect();
    let action = match action {
        Action::SetPriority { priority } => A::SetPriority(pb::SetPriorityAction {
            priority: priority_to_pb(priority),
        }),
        Action::SetStatus { status } => A::SetStatus(pb::SetStatusAction {
            status: status_to_pb(status),
        }),
        Action::AddTags { tags } => A::AddTags(pb::TagsAction { tags }),
        Action::RemoveTags { tags } => A::RemoveTags(pb::TagsAction { tags }),
        Action::SetCustomField { key, value } => {
            A::SetCustomField(pb::SetCustomFieldAction { key, value })
        }
        Action::Assign { to } => {
            use pb::assign_action::Target;
            A::Assign(pb::AssignAction {
                target: Some(match to {
                    AssignTo::Agent(id) => Target::AssigneeId(id.to_string()),
                    AssignTo::Queue(id) => Target::QueueId(id.to_string()),
                    AssignTo::Auto => Target::Auto(true),
                }),
            })
        }
        Action::EscalateTier { reason } => A::EscalateTier(pb::EscalateTierAction { reason }),
        Action::AddNote { template_id } => A::AddNote(pb::AddNoteAction {
            template_id: template_id.to_string(),
        }),
        Action::SendMessage {
            template_id,
            channel,
        } => A::SendMessage(pb::SendMessageAction {
            template_id: template_id.to_string(),
            channel: channel.map(channel_to_pb).unwrap_or(0),
        }),
        Action::Notify {
            agent_ids,
            queue_id,
            assignee,
        } => A::Notify(pb::NotifyAction {
            agent_ids: ids(agent_ids),
            queue_id: optional_id(queue_id),
            assignee,
        }),
    };
    pb::WorkflowAction {
        action: Some(action),
    }
}

/// The fields of a workflow as a client sent them; the service checks them whole.
pub(crate) fn workflow_patch(
    w: pb::Workflow,
) -> Result<WorkflowPatch, crate::service::ServiceError> {
    let mut v = Violations::new();
    let trigger = w
        .trigger
        .and_then(|t| t.kind)
        .and_then(|kind| trigger_from_pb(kind, &mut v));
    let actions = w
        .actions
        .into_iter()
        .enumerate()
        .filter_map(|(i, a)| action_from_pb(&format!("workflow.actions[{i}]"), a, &mut v))
        .collect();
    v.finish()?;
    Ok(WorkflowPatch {
        name: w.name,
        enabled: w.enabled,
        position: w.position,
        trigger,
        condition: w.condition,
        actions,
    })
}

fn trigger_from_pb(kind: pb::workflow_trigger::Kind, v: &mut Violations) -> Option<Trigger> {
    use pb::workflow_trigger::Kind;
    match kind {
        Kind::Event(e) => {
            let field = "workflow.trigger.event.type";
            let event = workflow_event_from_pb(e.r#type, field, v);
            if event.is_none() && e.r#type == 0 {
                v.add(field, "is required");
            }
            Some(Trigger::Event {
                event: event?,
                from: e.from,
                to: e.to,
            })
        }
        Kind::Timer(t) => {
            let field = "workflow.trigger.timer.kind";
            let timer = timer_kind_from_pb(t.kind, field, v);
            if timer.is_none() && t.kind == 0 {
                v.add(field, "is required");
            }
            let after = positive_seconds("workflow.trigger.timer.after", t.after, v);
            if after.is_none() {
                v.add("workflow.trigger.timer.after", "is required");
            }
            let calendar_id =
                optional_uuid("workflow.trigger.timer.calendar_id", &t.calendar_id, v);
            let status = status_from_pb(t.status, "workflow.trigger.timer.status", v);
            Some(Trigger::Timer {
                timer: timer?,
                after_seconds: after?,
                calendar_id,
                status,
            })
        }
    }
}

fn action_from_pb(field: &str, a: pb::WorkflowAction, v: &mut Violations) -> Option<Action> {
    use pb::workflow_action::Action as A;
    let Some(action) = a.action else {
        v.add(field, "must name an action");
        return None;
    };
    fn required<T>(v: &mut Violations, field: String, parsed: Option<T>, raw: i32) -> Option<T> {
        if parsed.is_none() && raw == 0 {
            v.add(field, "is required");
        }
        parsed
    }
    match action {
        A::SetPriority(p) => {
            let priority =
                priority_from_pb(p.priority, &format!("{field}.set_priority.priority"), v);
            required(
                v,
                format!("{field}.set_priority.priority"),
                priority,
                p.priority,
            )
            .map(|priority| Action::SetPriority { priority })
        }
        A::SetStatus(s) => {
            let status = status_from_pb(s.status, &format!("{field}.set_status.status"), v);
            required(v, format!("{field}.set_status.status"), status, s.status)
                .map(|status| Action::SetStatus { status })
        }
        A::AddTags(t) => Some(Action::AddTags { tags: t.tags }),
        A::RemoveTags(t) => Some(Action::RemoveTags { tags: t.tags }),
        A::SetCustomField(f) => Some(Action::SetCustomField {
            key: f.key,
            value: f.value,
        }),
        A::Assign(a) => {
            use pb::assign_action::Target;
            let to = match a.target {
                Some(Target::AssigneeId(id)) => {
                    AssignTo::Agent(uuid(&format!("{field}.assign.assignee_id"), &id, v)?)
                }
                Some(Target::QueueId(id)) => {
                    AssignTo::Queue(uuid(&format!("{field}.assign.queue_id"), &id, v)?)
                }
                Some(Target::Auto(true)) => AssignTo::Auto,
                Some(Target::Auto(false)) | None => {
                    v.add(
                        format!("{field}.assign"),
                        "must name an assignee_id, a queue_id or auto",
                    );
                    return None;
                }
            };
            Some(Action::Assign { to })
        }
        A::EscalateTier(e) => Some(Action::EscalateTier { reason: e.reason }),
        A::AddNote(n) => Some(Action::AddNote {
            template_id: uuid(&format!("{field}.add_note.template_id"), &n.template_id, v)?,
        }),
        A::SendMessage(m) => {
            let channel = channel_from_pb(m.channel, &format!("{field}.send_message.channel"), v);
            Some(Action::SendMessage {
                template_id: uuid(
                    &format!("{field}.send_message.template_id"),
                    &m.template_id,
                    v,
                )?,
                channel,
            })
        }
        A::Notify(n) => {
            let agent_ids = n
                .agent_ids
                .iter()
                .enumerate()
                .filter_map(|(i, id)| uuid(&format!("{field}.notify.agent_ids[{i}]"), id, v))
                .collect();
            Some(Action::Notify {
                agent_ids,
                queue_id: optional_uuid(&format!("{field}.notify.queue_id"), &n.queue_id, v),
                assignee: n.assignee,
            })
        }
    }
}
