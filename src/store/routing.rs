//! SQL of routing (agents, queues, rules, candidates) and [`impl_routing_store!`], which
//! implements [`super::RoutingStore`] for both backends like `impl_store!` does `Store`.

use async_trait::async_trait;
use uuid::Uuid;

use super::audit::{commit_audited, delete_audited, save_audited};
use super::database::{Statement, Tx, json};
use super::rows::{self, AgentRow, CandidateRow, QueueRow, RuleRow};
use super::{AssignmentGuard, SqlStore, StoreError, StoreResult, unique_violation};
use crate::domain::audit::AuditEntry;
use crate::domain::routing::{Agent, Candidate, Queue, RoutingRule};

const SELECT_QUEUES: &str =
    "SELECT id, name, tier, strategy, version, created_at, updated_at FROM queues";

const INSERT_QUEUE: &str = "INSERT INTO queues \
    (id, name, tier, strategy, version, created_at, updated_at) VALUES ($1, $2, $3, $4, 1, $5, $5)";

const UPDATE_QUEUE: &str = "UPDATE queues SET name = $2, tier = $3, strategy = $4, \
    updated_at = $5, version = version + 1 WHERE id = $1 AND version = $6";

/// Refuses to delete a queue that any ticket still names.
const DELETE_QUEUE: &str = "DELETE FROM queues WHERE id = $1 \
    AND NOT EXISTS (SELECT 1 FROM tickets WHERE queue_id = $1)";

const SELECT_AGENTS: &str = "SELECT id, name, email, skills, tier, capacity, \
    availability, vip_handler, version, created_at, updated_at FROM agents";

const AGENT_QUEUES: &str =
    "SELECT queue_id FROM queue_members WHERE agent_id = $1 ORDER BY queue_id";

const INSERT_AGENT: &str = "INSERT INTO agents (id, name, email, skills, tier, \
    capacity, availability, vip_handler, version, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9)";

const UPDATE_AGENT: &str = "UPDATE agents SET name = $2, email = $3, skills = $4, \
    tier = $5, capacity = $6, availability = $7, vip_handler = $8, updated_at = $9, \
    version = version + 1 WHERE id = $1 AND version = $10";

const ADD_MEMBER: &str = "INSERT INTO queue_members (queue_id, agent_id) \
    VALUES ($1, $2) ON CONFLICT (queue_id, agent_id) DO NOTHING";

const DROP_MEMBERS: &str = "DELETE FROM queue_members WHERE agent_id = $1";

/// Refuses to delete an agent who still holds active tickets.
/// An agent goes only once no open ticket is theirs and no key acts as them.
const DELETE_AGENT: &str = "DELETE FROM agents WHERE id = $1 AND NOT EXISTS ( \
    SELECT 1 FROM tickets WHERE assignee_id = $1 \
    AND status IN ('OPEN', 'IN_PROGRESS', 'WAITING')) \
    AND NOT EXISTS (SELECT 1 FROM api_keys WHERE agent_id = $1 AND revoked_at IS NULL)";

const SELECT_RULES: &str = "SELECT id, name, position, enabled, conditions, actions, \
    version, created_at, updated_at FROM routing_rules";

const INSERT_RULE: &str = "INSERT INTO routing_rules (id, name, position, enabled, \
    conditions, actions, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)";

const UPDATE_RULE: &str = "UPDATE routing_rules SET name = $2, position = $3, \
    enabled = $4, conditions = $5, actions = $6, updated_at = $7, version = version + 1 \
    WHERE id = $1 AND version = $8";

const DELETE_RULE: &str = "DELETE FROM routing_rules WHERE id = $1";

/// A queue's members with their load: OPEN and IN_PROGRESS tickets (WAITING ones do not
/// count: the customer has the ball).
const CANDIDATES: &str = "SELECT a.id, a.name, a.availability, a.capacity, \
    a.skills, a.tier, a.vip_handler, m.last_assigned_at, \
    (SELECT COUNT(*) FROM tickets t WHERE t.assignee_id = a.id \
       AND t.status IN ('OPEN', 'IN_PROGRESS')) AS load \
    FROM queue_members m JOIN agents a ON a.id = m.agent_id WHERE m.queue_id = $1 \
    ORDER BY a.id";

/// Unassigned active tickets of a queue, most urgent first, then oldest.
const WAITING_TICKETS: &str = "SELECT id FROM tickets WHERE queue_id = $1 \
    AND assignee_id IS NULL AND status IN ('OPEN', 'IN_PROGRESS') \
    ORDER BY priority_rank DESC, created_at, number LIMIT $2";

/// The agent's load apart from the ticket being assigned, read after the agent row is
/// locked so that concurrent assignments to one agent are counted one after the other.
const AGENT_LOAD: &str = "SELECT a.capacity, a.availability, \
    (SELECT COUNT(*) FROM tickets t WHERE t.assignee_id = a.id AND t.id <> $2 \
       AND t.status IN ('OPEN', 'IN_PROGRESS')) AS load \
    FROM agents a WHERE a.id = $1";

const TOUCH_MEMBER: &str =
    "UPDATE queue_members SET last_assigned_at = $3 WHERE queue_id = $1 AND agent_id = $2";

/// Agents, queues and routing rules.
#[async_trait]
pub trait RoutingStore: Send + Sync {
    /// Inserts (`expected_version` None) or updates a queue; false on a stale version.
    async fn save_queue(
        &self,
        queue: &Queue,
        expected_version: Option<i64>,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    async fn queues(&self) -> StoreResult<Vec<Queue>>;
    async fn queue(&self, id: Uuid) -> StoreResult<Option<Queue>>;
    /// False if the queue does not exist or tickets still name it.
    async fn delete_queue(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool>;
    /// Inserts or updates an agent with its queue memberships.
    async fn save_agent(
        &self,
        agent: &Agent,
        expected_version: Option<i64>,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    async fn agents(&self) -> StoreResult<Vec<Agent>>;
    async fn agent(&self, id: Uuid) -> StoreResult<Option<Agent>>;
    /// False if the agent does not exist or still holds active tickets.
    async fn delete_agent(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool>;
    async fn save_rule(
        &self,
        rule: &RoutingRule,
        expected_version: Option<i64>,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    async fn rules(&self) -> StoreResult<Vec<RoutingRule>>;
    async fn delete_rule(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool>;
    /// A queue's members with their current load.
    async fn candidates(&self, queue_id: Uuid) -> StoreResult<Vec<Candidate>>;
    /// Unassigned active tickets of a queue, most urgent first, then oldest.
    async fn waiting_tickets(&self, queue_id: Uuid, limit: i64) -> StoreResult<Vec<Uuid>>;
    /// The stored VIP flag of a contact, if the contact is known.
    async fn contact_vip(&self, external_id: &str) -> StoreResult<Option<bool>>;
}

#[async_trait]
impl RoutingStore for SqlStore {
    async fn save_queue(
        &self,
        queue: &Queue,
        expected_version: Option<i64>,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let query = match expected_version {
            None => Statement::new(INSERT_QUEUE)
                .bind(queue.id)
                .bind(&queue.name)
                .bind(queue.tier)
                .bind(queue.strategy.as_str())
                .bind(queue.updated_at),
            Some(version) => Statement::new(UPDATE_QUEUE)
                .bind(queue.id)
                .bind(&queue.name)
                .bind(queue.tier)
                .bind(queue.strategy.as_str())
                .bind(queue.updated_at)
                .bind(version),
        };
        save_audited(&self.pools, query, "a queue with this name", audit).await
    }

    async fn queues(&self) -> StoreResult<Vec<Queue>> {
        let sql = format!("{} ORDER BY created_at, id", SELECT_QUEUES);
        let rows: Vec<QueueRow> = Statement::owned(sql).fetch_all(&self.pools).await?;
        rows::convert_all(rows)
    }

    async fn queue(&self, id: Uuid) -> StoreResult<Option<Queue>> {
        let row: Option<QueueRow> = Statement::owned(format!("{SELECT_QUEUES} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pools)
            .await?;
        row.map(Queue::try_from).transpose()
    }

    async fn delete_queue(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool> {
        delete_audited(&self.pools, DELETE_QUEUE, id, audit).await
    }

    async fn save_agent(
        &self,
        agent: &Agent,
        expected_version: Option<i64>,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let mut tx = self.pools.begin().await?;
        let query = match expected_version {
            None => Statement::new(INSERT_AGENT),
            Some(_) => Statement::new(UPDATE_AGENT),
        };
        let mut query = query
            .bind(agent.id)
            .bind(&agent.name)
            .bind(&agent.email)
            .bind(json(&agent.skills)?)
            .bind(agent.tier)
            .bind(agent.capacity)
            .bind(agent.availability.as_str())
            .bind(agent.vip_handler)
            .bind(agent.updated_at);
        if let Some(version) = expected_version {
            query = query.bind(version);
        }
        let saved = query
            .execute(&mut tx)
            .await
            .map_err(|e| unique_violation(e, "an agent with this email"))?;
        if saved == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        // Members keep their round-robin turn in queues they stay in.
        let keep: Vec<String> = agent.queue_ids.iter().map(|q| q.to_string()).collect();
        let current: Vec<(Uuid,)> = Statement::new(AGENT_QUEUES)
            .bind(agent.id)
            .fetch_all(&mut tx)
            .await?;
        if current.iter().any(|(q,)| !keep.contains(&q.to_string())) {
            Statement::new(DROP_MEMBERS)
                .bind(agent.id)
                .execute(&mut tx)
                .await?;
        }
        for queue_id in &agent.queue_ids {
            Statement::new(ADD_MEMBER)
                .bind(queue_id)
                .bind(agent.id)
                .execute(&mut tx)
                .await?;
        }
        commit_audited(tx, true, audit).await
    }

    async fn agents(&self) -> StoreResult<Vec<Agent>> {
        let sql = format!("{SELECT_AGENTS} ORDER BY created_at, id");
        let rows: Vec<AgentRow> = Statement::owned(sql).fetch_all(&self.pools).await?;
        let mut agents: Vec<Agent> = rows::convert_all(rows)?;
        for agent in &mut agents {
            let queues: Vec<(Uuid,)> = Statement::new(AGENT_QUEUES)
                .bind(agent.id)
                .fetch_all(&self.pools)
                .await?;
            agent.queue_ids = queues.into_iter().map(|(q,)| q).collect();
        }
        Ok(agents)
    }

    async fn agent(&self, id: Uuid) -> StoreResult<Option<Agent>> {
        let sql = format!("{SELECT_AGENTS} WHERE id = $1");
        let row: Option<AgentRow> = Statement::owned(sql)
            .bind(id)
            .fetch_optional(&self.pools)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut agent = Agent::try_from(row)?;
        let queues: Vec<(Uuid,)> = Statement::new(AGENT_QUEUES)
            .bind(id)
            .fetch_all(&self.pools)
            .await?;
        agent.queue_ids = queues.into_iter().map(|(q,)| q).collect();
        Ok(Some(agent))
    }

    async fn delete_agent(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool> {
        delete_audited(&self.pools, DELETE_AGENT, id, audit).await
    }

    async fn save_rule(
        &self,
        rule: &RoutingRule,
        expected_version: Option<i64>,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let query = Statement::new(match expected_version {
            None => INSERT_RULE,
            Some(_) => UPDATE_RULE,
        })
        .bind(rule.id)
        .bind(&rule.name)
        .bind(rule.position)
        .bind(rule.enabled)
        .bind(json(&rule.conditions)?)
        .bind(json(&rule.actions)?);
        let query = match expected_version {
            None => query.bind(rule.created_at),
            Some(version) => query.bind(rule.updated_at).bind(version),
        };
        let mut tx = self.pools.begin().await?;
        let saved = query.execute(&mut tx).await?;
        commit_audited(tx, saved == 1, audit).await
    }

    async fn rules(&self) -> StoreResult<Vec<RoutingRule>> {
        let sql = format!("{} ORDER BY position, created_at, id", SELECT_RULES);
        let rows: Vec<RuleRow> = Statement::owned(sql).fetch_all(&self.pools).await?;
        rows::convert_all(rows)
    }

    async fn delete_rule(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool> {
        delete_audited(&self.pools, DELETE_RULE, id, audit).await
    }

    async fn candidates(&self, queue_id: Uuid) -> StoreResult<Vec<Candidate>> {
        let rows: Vec<CandidateRow> = Statement::new(CANDIDATES)
            .bind(queue_id)
            .fetch_all(&self.pools)
            .await?;
        rows::convert_all(rows)
    }

    async fn waiting_tickets(&self, queue_id: Uuid, limit: i64) -> StoreResult<Vec<Uuid>> {
        let rows: Vec<(Uuid,)> = Statement::new(WAITING_TICKETS)
            .bind(queue_id)
            .bind(limit)
            .fetch_all(&self.pools)
            .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn contact_vip(&self, external_id: &str) -> StoreResult<Option<bool>> {
        let row: Option<(bool,)> =
            Statement::new("SELECT vip FROM contacts WHERE external_id = $1")
                .bind(external_id)
                .fetch_optional(&self.pools)
                .await?;
        Ok(row.map(|(vip,)| vip))
    }
}

/// Checks, under a lock on the agent's row, that an automatic assignment keeps
/// the agent within capacity and that the agent is still ONLINE.
pub(super) async fn guard_assignment(tx: &mut Tx, guard: &AssignmentGuard) -> StoreResult<()> {
    Statement::new(tx.dialect().lock_agent())
        .bind(guard.agent_id)
        .execute(&mut *tx)
        .await?;
    let state: Option<(i32, String, i64)> = Statement::new(AGENT_LOAD)
        .bind(guard.agent_id)
        .bind(guard.ticket_id)
        .fetch_optional(&mut *tx)
        .await?;
    match state {
        Some((capacity, availability, load))
            if availability == "ONLINE" && load < i64::from(capacity) => {}
        _ => return Err(StoreError::AgentUnavailable(guard.agent_id)),
    }
    Statement::new(TOUCH_MEMBER)
        .bind(guard.queue_id)
        .bind(guard.agent_id)
        .bind(guard.at)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
