//! Administering workflows: checked whole as they are saved (trigger, condition, actions,
//! and every template, agent, queue and calendar they name), and tried against a ticket
//! without changing it.

use uuid::Uuid;

use super::{AutomationService, Versioned};
use crate::domain::audit::AuditEntry;
use crate::domain::event::Actor;
use crate::domain::ticket::{Channel, TicketKey};
use crate::domain::validation::Violations;
use crate::domain::workflow::{self, Action, AssignTo, Trigger, Workflow};
use crate::service::versioned::{Mask, copy_masked, update_versioned};
use crate::service::{ServiceError, ServiceResult};

/// The paths `UpdateWorkflow` accepts in its `update_mask`.
pub const WORKFLOW_PATHS: &[&str] = &[
    "name",
    "enabled",
    "position",
    "trigger",
    "condition",
    "actions",
];

/// A workflow's fields as a caller sends them.
#[derive(Debug, Clone, Default)]
pub struct WorkflowPatch {
    pub name: String,
    pub enabled: bool,
    pub position: i32,
    pub trigger: Option<Trigger>,
    pub condition: String,
    pub actions: Vec<Action>,
}

/// What `TestWorkflow` tries: a saved workflow, or one not saved yet.
#[derive(Debug, Clone)]
pub enum WorkflowSource {
    Saved(Uuid),
    Draft(WorkflowPatch),
}

/// What a workflow would do to a ticket now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowTrial {
    pub matched: bool,
    /// Why it would not run, when it would not.
    pub reason: String,
    /// What each action would do, in order.
    pub actions: Vec<String>,
}

impl Versioned for Workflow {
    fn version(&self) -> i64 {
        self.version
    }
}

impl AutomationService {
    pub async fn create_workflow(
        &self,
        actor: &Actor,
        patch: WorkflowPatch,
    ) -> ServiceResult<Workflow> {
        let mut v = Violations::new();
        workflow::check_trigger_values(patch.trigger.as_ref(), &mut v);
        v.finish()?;
        let at = self.clock.now();
        let mut workflow = self.checked_workflow(Uuid::now_v7(), &patch, at).await?;
        // A new workflow answers events committed from now on, not the log's past.
        workflow.seen_through = self.store.log_end().await?;
        let audit = AuditEntry::saved(actor.clone(), None, &workflow, at);
        if !self.store.save_workflow(&workflow, None, &audit).await? {
            return Err(ServiceError::Contended("workflow not saved".into()));
        }
        self.workflows.invalidate();
        Ok(workflow)
    }

    /// Changes the fields `mask` names (all when empty) under the caller's etag; the
    /// workflow is checked again as a whole.
    pub async fn update_workflow(
        &self,
        actor: &Actor,
        id: Uuid,
        patch: WorkflowPatch,
        mask: Vec<String>,
        etag: Option<String>,
    ) -> ServiceResult<Workflow> {
        let mask = Mask::new(mask, WORKFLOW_PATHS)?;
        if mask.names("trigger") {
            let mut v = Violations::new();
            workflow::check_trigger_values(patch.trigger.as_ref(), &mut v);
            v.finish()?;
        }
        let (mask, patch) = (&mask, &patch);
        let saved = update_versioned(
            &format!("workflow {id}"),
            etag.as_deref(),
            || self.workflow(id),
            |current| async move {
                let mut next = WorkflowPatch {
                    name: current.name.clone(),
                    enabled: current.enabled,
                    position: current.position,
                    trigger: Some(current.trigger.clone()),
                    condition: current.condition.clone(),
                    actions: current.actions.clone(),
                };
                copy_masked!(
                    mask,
                    next,
                    patch,
                    [name, enabled, position, trigger, condition, actions]
                );
                let at = self.clock.now();
                let workflow = Workflow {
                    version: current.version + 1,
                    created_at: current.created_at,
                    seen_through: current.seen_through,
                    ..self.checked_workflow(id, &next, at).await?
                };
                let audit = AuditEntry::saved(actor.clone(), Some(&current), &workflow, at);
                if audit.changes_nothing() {
                    return Ok(current);
                }
                if self
                    .store
                    .save_workflow(&workflow, Some(current.version), &audit)
                    .await?
                {
                    Ok(workflow)
                } else {
                    Err(ServiceError::Contended(format!(
                        "workflow {id} changed concurrently"
                    )))
                }
            },
        )
        .await?;
        self.workflows.invalidate();
        Ok(saved)
    }

    pub async fn workflow(&self, id: Uuid) -> ServiceResult<Workflow> {
        self.store
            .workflow(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("workflow {id}")))
    }

    pub async fn list_workflows(&self) -> ServiceResult<Vec<Workflow>> {
        Ok(self.store.workflows().await?)
    }

    /// Deletes a workflow and the timers it armed.
    pub async fn delete_workflow(&self, actor: &Actor, id: Uuid) -> ServiceResult<()> {
        let workflow = self.workflow(id).await?;
        let audit = AuditEntry::deleted(actor.clone(), &workflow, self.clock.now());
        if !self.store.delete_workflow(id, &audit).await? {
            return Err(ServiceError::NotFound(format!("workflow {id}")));
        }
        self.workflows.invalidate();
        Ok(())
    }

    /// Whether the workflow would run on the ticket as it is now, and what each action
    /// would do; changes nothing. (The trigger is not checked: the ticket is tried as if
    /// the trigger had just fired.)
    pub async fn test_workflow(
        &self,
        source: WorkflowSource,
        ticket_id: Uuid,
    ) -> ServiceResult<WorkflowTrial> {
        let workflow = match source {
            WorkflowSource::Saved(id) => self.workflow(id).await?,
            WorkflowSource::Draft(patch) => {
                self.checked_workflow(Uuid::nil(), &patch, self.clock.now())
                    .await?
            }
        };
        let ticket = self
            .store
            .ticket(TicketKey::Id(ticket_id))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("ticket {ticket_id}")))?;
        self.runner.trial(&workflow, &ticket).await
    }

    /// A workflow from the caller's fields, checked whole.
    async fn checked_workflow(
        &self,
        id: Uuid,
        patch: &WorkflowPatch,
        at: chrono::DateTime<chrono::Utc>,
    ) -> ServiceResult<Workflow> {
        let mut v = Violations::new();
        let name = patch.name.trim().to_owned();
        let actions = workflow::check(
            &name,
            patch.trigger.as_ref(),
            &patch.condition,
            &patch.actions,
            &mut v,
        );
        v.finish()?;
        let mut v = Violations::new();
        if let Some(Trigger::Timer {
            calendar_id: Some(calendar_id),
            ..
        }) = &patch.trigger
            && !self
                .store
                .calendars()
                .await?
                .iter()
                .any(|c| c.id == *calendar_id)
        {
            v.add(
                "workflow.trigger.timer.calendar_id",
                format!("no calendar {calendar_id}"),
            );
        }
        for (i, action) in actions.iter().enumerate() {
            self.check_references(&format!("workflow.actions[{i}]"), action, &mut v)
                .await?;
        }
        v.finish()?;
        let trigger = patch
            .trigger
            .clone()
            .ok_or_else(|| ServiceError::invalid("workflow.trigger", "is required"))?;
        Ok(Workflow {
            id,
            name,
            enabled: patch.enabled,
            position: patch.position,
            trigger,
            condition: patch.condition.trim().to_owned(),
            actions,
            seen_through: 0,
            version: 1,
            created_at: at,
            updated_at: at,
        })
    }

    /// Records a violation for each template, agent or queue an action names that does
    /// not exist (or does not fit).
    async fn check_references(
        &self,
        field: &str,
        action: &Action,
        v: &mut Violations,
    ) -> ServiceResult<()> {
        let missing = |e: ServiceError| match e {
            ServiceError::NotFound(what) => Ok(what),
            other => Err(other),
        };
        match action {
            Action::AddNote { template_id } => {
                if let Err(e) = self.template(*template_id).await {
                    v.add(
                        format!("{field}.add_note.template_id"),
                        format!("{} does not exist", missing(e)?),
                    );
                }
            }
            Action::SendMessage {
                template_id,
                channel,
            } => match self.template(*template_id).await {
                Ok(t) if channel.is_some_and(|c| c != t.channel) => v.add(
                    format!("{field}.send_message.template_id"),
                    format!(
                        "template {:?} is for {}, not {}",
                        t.name,
                        t.channel,
                        channel.map(Channel::as_str).unwrap_or_default()
                    ),
                ),
                Ok(_) => {}
                Err(e) => v.add(
                    format!("{field}.send_message.template_id"),
                    format!("{} does not exist", missing(e)?),
                ),
            },
            Action::Assign { to } => {
                let found = match to {
                    AssignTo::Agent(id) => self.routing.agent(*id).await.map(|_| ()),
                    AssignTo::Queue(id) => self.routing.queue(*id).await.map(|_| ()),
                    AssignTo::Auto => Ok(()),
                };
                if let Err(e) = found {
                    v.add(
                        format!("{field}.assign"),
                        format!("{} does not exist", missing(e)?),
                    );
                }
            }
            Action::Notify {
                agent_ids,
                queue_id,
                ..
            } => {
                for (i, id) in agent_ids.iter().enumerate() {
                    if let Err(e) = self.routing.agent(*id).await {
                        v.add(
                            format!("{field}.notify.agent_ids[{i}]"),
                            format!("{} does not exist", missing(e)?),
                        );
                    }
                }
                if let Some(id) = queue_id
                    && let Err(e) = self.routing.queue(*id).await
                {
                    v.add(
                        format!("{field}.notify.queue_id"),
                        format!("{} does not exist", missing(e)?),
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }
}
