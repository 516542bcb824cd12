//! Conversions of agents, queues and routing rules.

use uuid::Uuid;

use super::{
    channel_from_pb, channel_to_pb, enum_list, optional_id, priority_from_pb, priority_to_pb,
    type_from_pb, type_to_pb,
};
use crate::domain::routing::{
    Agent, Availability, Queue, RoutingRule, RuleActions, RuleConditions, Strategy,
};
use crate::domain::validation::{Violations, parse_uuid};
use crate::grpc::pb;

pub(crate) fn availability_to_pb(a: Availability) -> i32 {
    let value = match a {
        Availability::Online => pb::AgentAvailability::Online,
        Availability::Away => pb::AgentAvailability::Away,
        Availability::Offline => pb::AgentAvailability::Offline,
    };
    value as i32
}

/// `None` for the unspecified value; a violation for an unknown number.
pub(crate) fn availability_from_pb(
    value: i32,
    field: &str,
    v: &mut Violations,
) -> Option<Availability> {
    match pb::AgentAvailability::try_from(value) {
        Ok(pb::AgentAvailability::Online) => Some(Availability::Online),
        Ok(pb::AgentAvailability::Away) => Some(Availability::Away),
        Ok(pb::AgentAvailability::Offline) => Some(Availability::Offline),
        Ok(pb::AgentAvailability::Unspecified) => None,
        Err(_) => {
            v.add(field, format!("{value} is not a valid AgentAvailability"));
            None
        }
    }
}

pub(crate) fn strategy_to_pb(s: Strategy) -> i32 {
    let value = match s {
        Strategy::Manual => pb::AssignmentStrategy::Manual,
        Strategy::RoundRobin => pb::AssignmentStrategy::RoundRobin,
        Strategy::SkillBased => pb::AssignmentStrategy::SkillBased,
        Strategy::LoadBalanced => pb::AssignmentStrategy::LoadBalanced,
    };
    value as i32
}

pub(crate) fn strategy_from_pb(value: i32, field: &str, v: &mut Violations) -> Option<Strategy> {
    match pb::AssignmentStrategy::try_from(value) {
        Ok(pb::AssignmentStrategy::Manual) => Some(Strategy::Manual),
        Ok(pb::AssignmentStrategy::RoundRobin) => Some(Strategy::RoundRobin),
        Ok(pb::AssignmentStrategy::SkillBased) => Some(Strategy::SkillBased),
        Ok(pb::AssignmentStrategy::LoadBalanced) => Some(Strategy::LoadBalanced),
        Ok(pb::AssignmentStrategy::Unspecified) => None,
        Err(_) => {
            v.add(field, format!("{value} is not a valid AssignmentStrategy"));
            None
        }
    }
}

pub(crate) fn agent_to_pb(a: Agent) -> pb::Agent {
    pb::Agent {
        id: a.id.to_string(),
        name: a.name,
        email: a.email,
        skills: a.skills,
        tier: a.tier,
        capacity: a.capacity,
        availability: availability_to_pb(a.availability),
        queue_ids: a.queue_ids.iter().map(Uuid::to_string).collect(),
        vip_handler: a.vip_handler,
        etag: a.version.to_string(),
    }
}

pub(crate) fn queue_ids(field: &str, ids: &[String], v: &mut Violations) -> Vec<Uuid> {
    ids.iter()
        .enumerate()
        .filter_map(|(i, id)| parse_uuid(v, &format!("{field}[{i}]"), id))
        .collect()
}

pub(crate) fn queue_to_pb(q: Queue) -> pb::Queue {
    pb::Queue {
        id: q.id.to_string(),
        name: q.name,
        tier: q.tier,
        strategy: strategy_to_pb(q.strategy),
        etag: q.version.to_string(),
    }
}

pub(crate) fn rule_to_pb(r: RoutingRule) -> pb::RoutingRule {
    let c = r.conditions;
    let a = r.actions;
    pb::RoutingRule {
        id: r.id.to_string(),
        name: r.name,
        position: r.position,
        enabled: r.enabled,
        conditions: Some(pb::RuleConditions {
            types: c.types.into_iter().map(type_to_pb).collect(),
            priorities: c.priorities.into_iter().map(priority_to_pb).collect(),
            channels: c.channels.into_iter().map(channel_to_pb).collect(),
            any_tags: c.any_tags,
            contact_vip: c.contact_vip,
            custom_fields: c.custom_fields.into_iter().collect(),
            escalation_sources: c.escalation_sources,
        }),
        actions: Some(pb::RuleActions {
            queue_id: optional_id(a.queue_id),
            set_priority: a.set_priority.map_or(0, priority_to_pb),
            raise_priority: a.raise_priority,
            add_tags: a.add_tags,
            required_skills: a.required_skills,
            vip_handlers_only: a.vip_handlers_only,
        }),
        etag: r.version.to_string(),
    }
}

/// The conditions and actions of a rule as sent; unspecified enum values are rejected.
pub(crate) fn rule_parts_from_pb(
    conditions: pb::RuleConditions,
    actions: pb::RuleActions,
    v: &mut Violations,
) -> (RuleConditions, RuleActions) {
    let conditions = RuleConditions {
        types: enum_list(&conditions.types, "rule.conditions.types", v, type_from_pb),
        priorities: enum_list(
            &conditions.priorities,
            "rule.conditions.priorities",
            v,
            priority_from_pb,
        ),
        channels: enum_list(
            &conditions.channels,
            "rule.conditions.channels",
            v,
            channel_from_pb,
        ),
        any_tags: conditions.any_tags,
        contact_vip: conditions.contact_vip,
        custom_fields: conditions.custom_fields.into_iter().collect(),
        escalation_sources: conditions.escalation_sources,
    };
    let queue_id = if actions.queue_id.is_empty() {
        None
    } else {
        parse_uuid(v, "rule.actions.queue_id", &actions.queue_id)
    };
    let actions = RuleActions {
        queue_id,
        set_priority: priority_from_pb(actions.set_priority, "rule.actions.set_priority", v),
        raise_priority: actions.raise_priority,
        add_tags: actions.add_tags,
        required_skills: actions.required_skills,
        vip_handlers_only: actions.vip_handlers_only,
    };
    (conditions, actions)
}
