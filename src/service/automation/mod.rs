//! Automation: message templates (here), workflows (`workflows.rs`) that the processor
//! (`processor.rs`) and timers (`timers.rs`) run through the runner (`runner.rs`).

mod auto_responses;
mod plan;
mod processor;
mod runner;
mod timers;
mod workflows;

pub use auto_responses::{AUTO_RESPONSE_PATHS, AutoResponder, AutoResponsePatch};
pub use processor::{WorkflowProcessor, WorkflowTimerTask};
pub use runner::{RunnerSettings, WorkflowRunner};
pub use timers::TimerPlanner;
pub use workflows::{WORKFLOW_PATHS, WorkflowPatch, WorkflowSource, WorkflowTrial};

use std::sync::Arc;

use uuid::Uuid;

use super::cache::{CONFIG_TTL, Cached};
use super::routing::RoutingService;
use super::versioned::{Mask, Versioned, copy_masked, update_versioned};
use super::{ServiceError, ServiceResult};
use crate::clock::Clock;
use crate::domain::audit::AuditEntry;
use crate::domain::event::{Actor, EventKind, EventPayload};
use crate::domain::sla::Metric;
use crate::domain::template::{
    self, AssigneeVars, ContactVars, MessageVars, QueueVars, Rendered, Template, TemplateContext,
    TicketVars,
};
use crate::domain::ticket::{Channel, Status, Ticket, TicketKey};
use crate::domain::validation::Violations;
use crate::domain::workflow::Workflow;
use crate::service::satisfaction::SurveyTokens;
use crate::store::{Store, StoreResult};

/// The paths `UpdateTemplate` accepts in its `update_mask`.
pub const TEMPLATE_PATHS: &[&str] = &["name", "channel", "subject", "body"];

/// Longest template name.
const MAX_NAME_CHARS: usize = 200;

/// A template's fields as a caller sends them.
#[derive(Debug, Clone, Default)]
pub struct TemplatePatch {
    pub name: String,
    pub channel: Option<Channel>,
    pub subject: String,
    pub body: String,
}

/// What `RenderTemplate` renders: a saved template, or one not saved yet.
#[derive(Debug, Clone)]
pub enum TemplateSource {
    Saved(Uuid),
    Draft(TemplatePatch),
}

impl Versioned for Template {
    fn version(&self) -> i64 {
        self.version
    }
}

/// The workflows as every write (arming timers) and the processor see them: read once per
/// cache period; saves through this process clear it at once.
#[derive(Clone)]
pub struct WorkflowCache {
    store: Arc<dyn Store>,
    cached: Arc<Cached<Vec<Workflow>>>,
}

impl WorkflowCache {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            cached: Arc::new(Cached::new(CONFIG_TTL)),
        }
    }

    /// Every workflow, by position and name.
    pub async fn all(&self) -> StoreResult<Arc<Vec<Workflow>>> {
        self.cached.get(|| self.store.workflows()).await
    }

    pub fn invalidate(&self) {
        self.cached.invalidate();
    }
}

#[derive(Clone)]
pub struct AutomationService {
    store: Arc<dyn Store>,
    routing: RoutingService,
    workflows: WorkflowCache,
    runner: WorkflowRunner,
    responder: AutoResponder,
    survey: SurveyTokens,
    clock: Clock,
}

impl AutomationService {
    pub fn new(
        store: Arc<dyn Store>,
        routing: RoutingService,
        (workflows, runner, responder): (WorkflowCache, WorkflowRunner, AutoResponder),
        survey: SurveyTokens,
        clock: Clock,
    ) -> Self {
        Self {
            store,
            routing,
            workflows,
            runner,
            responder,
            survey,
            clock,
        }
    }

    pub async fn create_template(
        &self,
        actor: &Actor,
        patch: TemplatePatch,
    ) -> ServiceResult<Template> {
        let at = self.clock.now();
        let template = checked(Uuid::now_v7(), &patch, at)?;
        let audit = AuditEntry::saved(actor.clone(), None, &template, at);
        if !self.store.save_template(&template, None, &audit).await? {
            return Err(ServiceError::Contended("template not saved".into()));
        }
        Ok(template)
    }

    /// Changes the fields `mask` names (all of them when it is empty), under the caller's
    /// etag if it sent one; the template is checked again as a whole.
    pub async fn update_template(
        &self,
        actor: &Actor,
        id: Uuid,
        patch: TemplatePatch,
        mask: Vec<String>,
        etag: Option<String>,
    ) -> ServiceResult<Template> {
        let mask = Mask::new(mask, TEMPLATE_PATHS)?;
        let (mask, patch) = (&mask, &patch);
        update_versioned(
            &format!("template {id}"),
            etag.as_deref(),
            || self.template(id),
            |current| async move {
                let mut next = TemplatePatch {
                    name: current.name.clone(),
                    channel: Some(current.channel),
                    subject: current.subject.clone(),
                    body: current.body.clone(),
                };
                copy_masked!(mask, next, patch, [name, channel, subject, body]);
                let at = self.clock.now();
                let template = Template {
                    version: current.version + 1,
                    created_at: current.created_at,
                    ..checked(id, &next, at)?
                };
                let audit = AuditEntry::saved(actor.clone(), Some(&current), &template, at);
                if audit.changes_nothing() {
                    return Ok(current);
                }
                if self
                    .store
                    .save_template(&template, Some(current.version), &audit)
                    .await?
                {
                    Ok(template)
                } else {
                    Err(ServiceError::Contended(format!(
                        "template {id} changed concurrently"
                    )))
                }
            },
        )
        .await
    }

    pub async fn template(&self, id: Uuid) -> ServiceResult<Template> {
        self.store
            .template(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("template {id}")))
    }

    pub async fn templates(&self) -> ServiceResult<Vec<Template>> {
        Ok(self.store.templates().await?)
    }

    pub async fn delete_template(&self, actor: &Actor, id: Uuid) -> ServiceResult<()> {
        let template = self.template(id).await?;
        let audit = AuditEntry::deleted(actor.clone(), &template, self.clock.now());
        if self.store.delete_template(id, &audit).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!("template {id}")))
        }
    }

    /// Renders a saved or draft template for a ticket, changing nothing.
    pub async fn render_template(
        &self,
        source: TemplateSource,
        ticket_id: Uuid,
    ) -> ServiceResult<Rendered> {
        let (template, saved) = match source {
            TemplateSource::Saved(id) => (self.template(id).await?, true),
            TemplateSource::Draft(patch) => {
                (checked(Uuid::nil(), &patch, self.clock.now())?, false)
            }
        };
        let ticket = self
            .store
            .ticket(TicketKey::Id(ticket_id))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("ticket {ticket_id}")))?;
        let context =
            ticket_context(self.store.as_ref(), &self.survey, &ticket, self.clock.now()).await?;
        template::render(&template, &context).map_err(|e| {
            if saved {
                // The template is sound; this ticket's data takes it past its budget.
                ServiceError::FailedPrecondition(format!(
                    "template {:?} cannot render for ticket #{}: {e}",
                    template.name, ticket.number
                ))
            } else {
                ServiceError::invalid("template", e)
            }
        })
    }
}

/// What a template sees of a ticket.
pub(crate) async fn ticket_context(
    store: &dyn Store,
    survey: &SurveyTokens,
    ticket: &Ticket,
    now: chrono::DateTime<chrono::Utc>,
) -> StoreResult<TemplateContext> {
    let time =
        |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let due = |metric| {
        ticket
            .sla_clocks
            .iter()
            .find(|c| c.metric == metric && !c.stopped)
            .and_then(|c| c.due_at)
            .map(time)
            .unwrap_or_default()
    };
    // (An agent or queue deleted since reads as nobody.)
    let assignee = match ticket.assignee_id {
        Some(id) => store
            .agent(id)
            .await?
            .map(|a| AssigneeVars {
                name: a.name,
                email: a.email,
            })
            .unwrap_or_default(),
        None => AssigneeVars::default(),
    };
    let queue = match ticket.queue_id {
        Some(id) => store
            .queue(id)
            .await?
            .map(|q| QueueVars { name: q.name })
            .unwrap_or_default(),
        None => QueueVars::default(),
    };
    let last = store
        .last_event_of(ticket.id, EventKind::CustomerMessage)
        .await?;
    let last_customer_message = match last.map(|e| (e.event.payload, e.event.created_at)) {
        Some((EventPayload::CustomerMessage { text, channel, .. }, at)) => MessageVars {
            text,
            channel,
            at: time(at),
        },
        _ => MessageVars::default(),
    };
    Ok(TemplateContext {
        ticket: TicketVars {
            id: ticket.id.to_string(),
            number: ticket.number,
            subject: ticket.subject.clone(),
            status: ticket.status.as_str().to_owned(),
            priority: ticket.priority.as_str().to_owned(),
            ticket_type: ticket.ticket_type.as_str().to_owned(),
            channel: ticket
                .channel
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            tags: ticket.tags.clone(),
            created_at: time(ticket.created_at),
            first_response_due: due(Metric::FirstResponse),
            resolution_due: due(Metric::Resolution),
            survey_token: match ticket.status {
                Status::Resolved | Status::Closed => survey.issue(ticket.id, now).await?,
                _ => String::new(),
            },
        },
        contact: ContactVars {
            name: ticket.contact.name.clone(),
            email: ticket.contact.email.clone(),
            phone: ticket.contact.phone.clone(),
            external_id: ticket.contact.external_id.clone(),
        },
        assignee,
        queue,
        last_customer_message,
    })
}

/// A template from the caller's fields, checked whole: name, channel, and texts that
/// parse, name known variables only and render within budget.
fn checked(
    id: Uuid,
    patch: &TemplatePatch,
    at: chrono::DateTime<chrono::Utc>,
) -> ServiceResult<Template> {
    let mut v = Violations::new();
    let name = patch.name.trim().to_owned();
    v.line("template.name", &name, true, MAX_NAME_CHARS);
    if patch.channel.is_none() {
        v.add("template.channel", "is required");
    }
    if patch.channel == Some(Channel::Email) {
        if patch.subject.trim().is_empty() {
            v.add("template.subject", "is required for an email template");
        }
        template::check("template.subject", &patch.subject, &mut v);
    } else if !patch.subject.is_empty() {
        v.add("template.subject", "only email templates have a subject");
    }
    if patch.body.trim().is_empty() {
        v.add("template.body", "is required");
    }
    template::check("template.body", &patch.body, &mut v);
    v.finish()?;
    let channel = patch
        .channel
        .ok_or_else(|| ServiceError::invalid("template.channel", "is required"))?;
    Ok(Template {
        id,
        name,
        channel,
        subject: patch.subject.clone(),
        body: patch.body.clone(),
        version: 1,
        created_at: at,
        updated_at: at,
    })
}
