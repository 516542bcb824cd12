//! Workflows, their progress on the log, the lease of the processor that runs them, and
//! the durable timers of time-triggered ones. The writes that must be atomic with a
//! workflow's actions (its progress, a timer firing, timers armed by a change) are part
//! of the changeset: see [`step_workflows`], [`fire_timer`] and [`write_timers`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::audit::{delete_audited, save_audited};
use super::database::{Statement, Tx, json};
use super::{SqlStore, StoreError, StoreResult};
use crate::domain::audit::AuditEntry;
use crate::domain::workflow::{Action, Trigger, Workflow};

const SELECT_WORKFLOWS: &str = "SELECT id, name, enabled, position, trigger, condition, \
    actions, seen_through, version, created_at, updated_at FROM workflows";

const INSERT_WORKFLOW: &str = "INSERT INTO workflows (id, name, enabled, position, trigger, \
    condition, actions, seen_through, version, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9)";

/// Never touches `seen_through`: an update does not replay or skip events.
const UPDATE_WORKFLOW: &str = "UPDATE workflows SET name = $2, enabled = $3, position = $4, \
    trigger = $5, condition = $6, actions = $7, updated_at = $9, version = version + 1 \
    WHERE id = $1 AND version = $8";

const DELETE_WORKFLOW: &str = "DELETE FROM workflows WHERE id = $1";

/// Moves workflows forward past a position (never back): a second runner of the same
/// event finds them moved. Followed by the `IN` list of their ids.
const STEP_WORKFLOWS: &str =
    "UPDATE workflows SET seen_through = $1 WHERE seen_through < $1 AND id IN ";

const CLAIM_PROCESSOR: &str = "INSERT INTO processor_leases (name, owner, expires_at) \
    VALUES ($1, $2, $4) ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
    expires_at = excluded.expires_at \
    WHERE processor_leases.owner = excluded.owner OR processor_leases.expires_at <= $3";

const RUNS_SINCE: &str = "SELECT COUNT(*) FROM ticket_events WHERE ticket_id = $1 \
    AND event_type = 'workflow_applied' AND created_at > $2";

const ARM_TIMER: &str = "INSERT INTO workflow_timers (workflow_id, ticket_id, due_at, \
    started_at) VALUES ($1, $2, $3, $4) ON CONFLICT (workflow_id, ticket_id) \
    DO UPDATE SET due_at = excluded.due_at, started_at = excluded.started_at";

const CANCEL_TIMER: &str = "DELETE FROM workflow_timers WHERE workflow_id = $1 AND ticket_id = $2";

/// Fires a timer: only the one armed for that moment (a re-armed timer is not the one the
/// firing read), and only once across replicas.
const FIRE_TIMER: &str = "DELETE FROM workflow_timers WHERE workflow_id = $1 \
    AND ticket_id = $2 AND due_at = $3";

const DUE_TIMERS: &str = "SELECT workflow_id, ticket_id, due_at, started_at \
    FROM workflow_timers WHERE due_at <= $1 ORDER BY due_at LIMIT $2";

const NEXT_TIMER: &str = "SELECT MIN(due_at) FROM workflow_timers";

const TIMERS_OF: &str = "SELECT workflow_id, ticket_id, due_at, started_at \
    FROM workflow_timers WHERE ticket_id = $1 ORDER BY due_at";

#[derive(sqlx::FromRow)]
struct WorkflowRow {
    id: Uuid,
    name: String,
    enabled: bool,
    position: i32,
    trigger: Json<Trigger>,
    condition: String,
    actions: Json<Vec<Action>>,
    seen_through: i64,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<WorkflowRow> for Workflow {
    fn from(row: WorkflowRow) -> Self {
        Workflow {
            id: row.id,
            name: row.name,
            enabled: row.enabled,
            position: row.position,
            trigger: row.trigger.0,
            condition: row.condition,
            actions: row.actions.0,
            seen_through: row.seen_through,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A timer armed on a ticket for a time-triggered workflow.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WorkflowTimer {
    pub workflow_id: Uuid,
    pub ticket_id: Uuid,
    pub due_at: DateTime<Utc>,
    /// When the measured span began (the customer's message, the status change…).
    pub started_at: DateTime<Utc>,
}

/// A change to a timer, written with the change that causes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerWrite {
    Arm(WorkflowTimer),
    Cancel { workflow_id: Uuid, ticket_id: Uuid },
}

/// A workflow moving past an event of the log, to its position `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkflowStep {
    pub workflow_id: Uuid,
    pub to: i64,
}

#[async_trait]
pub trait WorkflowStore: Send + Sync {
    /// Inserts `workflow` (`expected_version` None) or updates it if still at that
    /// version; `false` otherwise.
    async fn save_workflow(
        &self,
        workflow: &Workflow,
        expected_version: Option<i64>,
        audit: &AuditEntry,
    ) -> StoreResult<bool>;
    async fn workflow(&self, id: Uuid) -> StoreResult<Option<Workflow>>;
    /// Every workflow, by position and name.
    async fn workflows(&self) -> StoreResult<Vec<Workflow>>;
    /// Deletes a workflow and its timers.
    async fn delete_workflow(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool>;
    /// Moves the workflows forward to position `to` (those already past it stay), once
    /// the caller has looked at every event up to it for them.
    async fn advance_workflows(&self, ids: &[Uuid], to: i64) -> StoreResult<()>;
    /// Takes or renews the lease on processor `name` for `owner` until `until`; `false`
    /// while another owner holds an unexpired one.
    async fn claim_processor(
        &self,
        name: &str,
        owner: Uuid,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// How many workflow runs a ticket has recorded after `since`.
    async fn workflow_runs_since(&self, ticket_id: Uuid, since: DateTime<Utc>) -> StoreResult<i64>;
    /// Timers due by `now`, earliest first.
    async fn due_workflow_timers(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<WorkflowTimer>>;
    async fn next_workflow_timer(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// The timers armed on one ticket, earliest first.
    async fn workflow_timers_of(&self, ticket_id: Uuid) -> StoreResult<Vec<WorkflowTimer>>;
}

#[async_trait]
impl WorkflowStore for SqlStore {
    async fn save_workflow(
        &self,
        w: &Workflow,
        expected_version: Option<i64>,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let query = Statement::new(match expected_version {
            None => INSERT_WORKFLOW,
            Some(_) => UPDATE_WORKFLOW,
        })
        .bind(w.id)
        .bind(&w.name)
        .bind(w.enabled)
        .bind(w.position)
        .bind(json(&w.trigger)?)
        .bind(&w.condition)
        .bind(json(&w.actions)?);
        let query = match expected_version {
            None => query.bind(w.seen_through),
            Some(version) => query.bind(version),
        }
        .bind(w.updated_at);
        save_audited(&self.pools, query, "a workflow with this name", audit).await
    }

    async fn workflow(&self, id: Uuid) -> StoreResult<Option<Workflow>> {
        let row: Option<WorkflowRow> =
            Statement::owned(format!("{SELECT_WORKFLOWS} WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pools)
                .await?;
        Ok(row.map(Workflow::from))
    }

    async fn workflows(&self) -> StoreResult<Vec<Workflow>> {
        let rows: Vec<WorkflowRow> =
            Statement::owned(format!("{SELECT_WORKFLOWS} ORDER BY position, name, id"))
                .fetch_all(&self.pools)
                .await?;
        Ok(rows.into_iter().map(Workflow::from).collect())
    }

    async fn delete_workflow(&self, id: Uuid, audit: &AuditEntry) -> StoreResult<bool> {
        delete_audited(&self.pools, DELETE_WORKFLOW, id, audit).await
    }

    async fn advance_workflows(&self, ids: &[Uuid], to: i64) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.pools.write(step(ids.iter().copied(), to)).await?;
        Ok(())
    }

    async fn claim_processor(
        &self,
        name: &str,
        owner: Uuid,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = self
            .pools
            .write(
                Statement::new(CLAIM_PROCESSOR)
                    .bind(name)
                    .bind(owner)
                    .bind(now)
                    .bind(until),
            )
            .await?;
        Ok(done == 1)
    }

    async fn workflow_runs_since(&self, ticket_id: Uuid, since: DateTime<Utc>) -> StoreResult<i64> {
        let (count,): (i64,) = Statement::new(RUNS_SINCE)
            .bind(ticket_id)
            .bind(since)
            .fetch_one(&self.pools)
            .await?;
        Ok(count)
    }

    async fn due_workflow_timers(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<WorkflowTimer>> {
        Statement::new(DUE_TIMERS)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pools)
            .await
    }

    async fn next_workflow_timer(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let (next,): (Option<DateTime<Utc>>,) =
            Statement::new(NEXT_TIMER).fetch_one(&self.pools).await?;
        Ok(next)
    }

    async fn workflow_timers_of(&self, ticket_id: Uuid) -> StoreResult<Vec<WorkflowTimer>> {
        Statement::new(TIMERS_OF)
            .bind(ticket_id)
            .fetch_all(&self.pools)
            .await
    }
}

fn step(ids: impl IntoIterator<Item = Uuid>, to: i64) -> Statement<'static> {
    let mut statement = Statement::new(STEP_WORKFLOWS).bind(to);
    statement.push_list(ids);
    statement
}

/// Moves the workflows past the event their actions answer, in their transaction; fails
/// with [`StoreError::Superseded`] when another runner moved one first (and so acted).
pub(super) async fn step_workflows(tx: &mut Tx, steps: &[WorkflowStep]) -> StoreResult<()> {
    let mut targets: Vec<i64> = steps.iter().map(|s| s.to).collect();
    targets.sort();
    targets.dedup();
    for to in targets {
        let ids: Vec<Uuid> = steps
            .iter()
            .filter(|s| s.to == to)
            .map(|s| s.workflow_id)
            .collect();
        let moved = tx.execute(step(ids.iter().copied(), to)).await?;
        if moved != ids.len() as u64 {
            return Err(StoreError::Superseded(
                "a workflow already answered this event",
            ));
        }
    }
    Ok(())
}

/// Deletes the timer being fired, in the transaction of its actions; fails with
/// [`StoreError::Superseded`] when it fired elsewhere, was re-armed or cancelled.
pub(super) async fn fire_timer(tx: &mut Tx, t: &WorkflowTimer) -> StoreResult<()> {
    let fired = tx
        .execute(
            Statement::new(FIRE_TIMER)
                .bind(t.workflow_id)
                .bind(t.ticket_id)
                .bind(t.due_at),
        )
        .await?;
    if fired == 1 {
        Ok(())
    } else {
        Err(StoreError::Superseded("the timer fired elsewhere or moved"))
    }
}

/// Arms and cancels timers in the transaction of the change that moves them.
pub(super) async fn write_timers(tx: &mut Tx, writes: &[TimerWrite]) -> StoreResult<()> {
    for write in writes {
        let statement = match write {
            TimerWrite::Arm(t) => Statement::new(ARM_TIMER)
                .bind(t.workflow_id)
                .bind(t.ticket_id)
                .bind(t.due_at)
                .bind(t.started_at),
            TimerWrite::Cancel {
                workflow_id,
                ticket_id,
            } => Statement::new(CANCEL_TIMER)
                .bind(*workflow_id)
                .bind(*ticket_id),
        };
        tx.execute(statement).await?;
    }
    Ok(())
}
