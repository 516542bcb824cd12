//! Rows of routing configuration: queues, agents, rules, and the candidates a queue offers.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::parse_text;
use crate::domain::routing::{
    Agent, Availability, Candidate, Queue, RoutingRule, RuleActions, RuleConditions, Strategy,
};
use crate::store::{StoreError, StoreResult};

#[derive(sqlx::FromRow)]
pub(in crate::store) struct QueueRow {
    id: Uuid,
    name: String,
    tier: i32,
    strategy: String,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<QueueRow> for Queue {
    type Error = StoreError;

    fn try_from(row: QueueRow) -> StoreResult<Queue> {
        Ok(Queue {
            id: row.id,
            name: row.name,
            tier: row.tier,
            strategy: parse_text("strategy", &row.strategy, Strategy::parse)?,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(in crate::store) struct AgentRow {
    id: Uuid,
    name: String,
    email: String,
    skills: Json<Vec<String>>,
    tier: i32,
    capacity: i32,
    availability: String,
    vip_handler: bool,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<AgentRow> for Agent {
    type Error = StoreError;

    /// Queue memberships are read separately.
    fn try_from(row: AgentRow) -> StoreResult<Agent> {
        Ok(Agent {
            id: row.id,
            name: row.name,
            email: row.email,
            skills: row.skills.0,
            tier: row.tier,
            capacity: row.capacity,
            availability: parse_text("availability", &row.availability, Availability::parse)?,
            queue_ids: Vec::new(),
            vip_handler: row.vip_handler,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(in crate::store) struct RuleRow {
    id: Uuid,
    name: String,
    position: i32,
    enabled: bool,
    conditions: Json<RuleConditions>,
    actions: Json<RuleActions>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<RuleRow> for RoutingRule {
    type Error = StoreError;

    fn try_from(row: RuleRow) -> StoreResult<RoutingRule> {
        Ok(RoutingRule {
            id: row.id,
            name: row.name,
            position: row.position,
            enabled: row.enabled,
            conditions: row.conditions.0,
            actions: row.actions.0,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(in crate::store) struct CandidateRow {
    id: Uuid,
    name: String,
    availability: String,
    capacity: i32,
    skills: Json<Vec<String>>,
    tier: i32,
    vip_handler: bool,
    last_assigned_at: Option<DateTime<Utc>>,
    load: i64,
}

impl TryFrom<CandidateRow> for Candidate {
    type Error = StoreError;

    fn try_from(row: CandidateRow) -> StoreResult<Candidate> {
        Ok(Candidate {
            agent_id: row.id,
            name: row.name,
            availability: parse_text("availability", &row.availability, Availability::parse)?,
            capacity: row.capacity,
            load: row.load,
            skills: row.skills.0,
            tier: row.tier,
            vip_handler: row.vip_handler,
            last_assigned_at: row.last_assigned_at,
        })
    }
}
