//! Auto-responses: administered here, and prepared by the [`AutoResponder`] for every
//! change the [`Writer`](crate::service::Writer) commits, so an acknowledgement, an
//! after-hours notice or a resolution confirmation is queued in the same transaction as
//! the change that calls for it.
//!
//! Guards: at most one auto-response per ticket and change; after-hours at most once per
//! ticket per closed period; a cap per contact per hour; none for tickets opened by hand
//! unless asked; tickets with no conversation are answered by email. Automatic email (auto-submitted, bounces) never becomes a customer
//! message (`IngestEmail` sets it aside), so nothing answers it, and auto-responses are
//! not customer messages, so nothing answers them either.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::{AutomationService, Versioned, ticket_context};
use crate::clock::Clock;
use crate::domain::audit::AuditEntry;
use crate::domain::auto_response::{
    ACTOR, AutoResponse, AutoResponseKind, PendingReply, after_hours_due,
};
use crate::domain::delivery::{OutboundKind, OutboundMessage};
use crate::domain::event::{Actor, ActorKind, EventKind, EventPayload, NewEvent, Visibility};
use crate::domain::ticket::{Channel, Contact, Status, Ticket, TicketKey};
use crate::domain::validation::Violations;
use crate::service::cache::{CONFIG_TTL, Cached};
use crate::service::satisfaction::SurveyTokens;
use crate::service::sla::SlaService;
use crate::service::versioned::{Mask, copy_masked, update_versioned};
use crate::service::{ServiceError, ServiceResult};
use crate::store::{Changeset, Store, StoreResult, TicketDraft};

/// The paths `UpdateAutoResponse` accepts in its `update_mask`.
pub const AUTO_RESPONSE_PATHS: &[&str] = &[
    "kind",
    "channel",
    "template_id",
    "calendar_id",
    "enabled",
    "for_agent_tickets",
];

/// An auto-response's fields as a caller sends them.
#[derive(Debug, Clone, Default)]
pub struct AutoResponsePatch {
    pub kind: Option<AutoResponseKind>,
    pub channel: Option<Channel>,
    pub template_id: Option<Uuid>,
    pub calendar_id: Option<Uuid>,
    pub enabled: bool,
    pub for_agent_tickets: bool,
}

impl Versioned for AutoResponse {
    fn version(&self) -> i64 {
        self.version
    }
}

impl AutomationService {
    pub async fn create_auto_response(
        &self,
        actor: &Actor,
        patch: AutoResponsePatch,
    ) -> ServiceResult<AutoResponse> {
        let at = self.clock.now();
        let response = self
            .checked_auto_response(Uuid::now_v7(), &patch, at)
            .await?;
        let audit = AuditEntry::saved(actor.clone(), None, &response, at);
        if !self
            .store
            .save_auto_response(&response, None, &audit)
            .await?
        {
            return Err(ServiceError::Contended("auto-response not saved".into()));
        }
        self.responder.responses.invalidate();
        Ok(response)
    }

    pub async fn update_auto_response(
        &self,
        actor: &Actor,
        id: Uuid,
        patch: AutoResponsePatch,
        mask: Vec<String>,
        etag: Option<String>,
    ) -> ServiceResult<AutoResponse> {
        let mask = Mask::new(mask, AUTO_RESPONSE_PATHS)?;
        let (mask, patch) = (&mask, &patch);
        let saved = update_versioned(
            &format!("auto-response {id}"),
            etag.as_deref(),
            || self.auto_response(id),
            |current| async move {
                let mut next = AutoResponsePatch {
                    kind: Some(current.kind),
                    channel: Some(current.channel),
                    template_id: Some(current.template_id),
                    calendar_id: current.calendar_id,
                    enabled: current.enabled,
                    for_agent_tickets: current.for_agent_tickets,
                };
                copy_masked!(
                    mask,
                    next,
                    patch,
                    [
                        kind,
                        channel,
                        template_id,
                        calendar_id,
                        enabled,
                        for_agent_tickets
                    ]
                );
                let at = self.clock.now();
                let response = AutoResponse {
                    version: current.version + 1,
                    created_at: current.created_at,
                    ..self.checked_auto_response(id, &next, at).await?
                };
                let audit = AuditEntry::saved(actor.clone(), Some(&current), &response, at);
                if audit.changes_nothing() {
                    return Ok(current);
                }
                if self
                    .store
                    .save_auto_response(&response, Some(current.version), &audit)
                    .await?
                {
                    Ok(response)
                } else {
                    Err(ServiceError::Contended(format!(
                        "auto-response {id} changed concurrently"
                    )))
                }
            },
        )
        .await?;
        self.responder.responses.invalidate();
        Ok(saved)
    }

    async fn auto_response(&self, id: Uuid) -> ServiceResult<AutoResponse> {
        self.store
            .auto_responses()
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| ServiceError::NotFound(format!("auto-response {id}")))
    }

    pub async fn list_auto_responses(&self) -> ServiceResult<Vec<AutoResponse>> {
        Ok(self.store.auto_responses().await?)
    }

    pub async fn delete_auto_response(&self, actor: &Actor, id: Uuid) -> ServiceResult<()> {
        let response = self.auto_response(id).await?;
        let audit = AuditEntry::deleted(actor.clone(), &response, self.clock.now());
        if !self.store.delete_auto_response(id, &audit).await? {
            return Err(ServiceError::NotFound(format!("auto-response {id}")));
        }
        self.responder.responses.invalidate();
        Ok(())
    }

    async fn checked_auto_response(
        &self,
        id: Uuid,
        patch: &AutoResponsePatch,
        at: DateTime<Utc>,
    ) -> ServiceResult<AutoResponse> {
        let mut v = Violations::new();
        let (Some(kind), Some(channel), Some(template_id)) =
            (patch.kind, patch.channel, patch.template_id)
        else {
            for (field, missing) in [
                ("auto_response.kind", patch.kind.is_none()),
                ("auto_response.channel", patch.channel.is_none()),
                ("auto_response.template_id", patch.template_id.is_none()),
            ] {
                if missing {
                    v.add(field, "is required");
                }
            }
            v.finish()?;
            return Err(ServiceError::invalid("auto_response", "is incomplete"));
        };
        match self.store.template(template_id).await? {
            None => v.add(
                "auto_response.template_id",
                format!("template {template_id} does not exist"),
            ),
            Some(t) if t.channel != channel => v.add(
                "auto_response.template_id",
                format!("template {:?} is for {}, not {channel}", t.name, t.channel),
            ),
            Some(_) => {}
        }
        match (kind, patch.calendar_id) {
            (AutoResponseKind::AfterHours, None) => v.add(
                "auto_response.calendar_id",
                "is required: after-hours answers outside this calendar's hours",
            ),
            (AutoResponseKind::AfterHours, Some(calendar_id)) => {
                if !self
                    .store
                    .calendars()
                    .await?
                    .iter()
                    .any(|c| c.id == calendar_id)
                {
                    v.add(
                        "auto_response.calendar_id",
                        format!("no calendar {calendar_id}"),
                    );
                }
            }
            (_, Some(_)) => v.add(
                "auto_response.calendar_id",
                "is only for AUTO_RESPONSE_KIND_AFTER_HOURS",
            ),
            (_, None) => {}
        }
        if patch.for_agent_tickets && kind != AutoResponseKind::Acknowledgement {
            v.add(
                "auto_response.for_agent_tickets",
                "is only for AUTO_RESPONSE_KIND_ACKNOWLEDGEMENT",
            );
        }
        v.finish()?;
        Ok(AutoResponse {
            id,
            kind,
            channel,
            template_id,
            calendar_id: patch.calendar_id,
            enabled: patch.enabled,
            for_agent_tickets: patch.for_agent_tickets,
            version: 1,
            created_at: at,
            updated_at: at,
        })
    }
}

/// Prepares the auto-responses a change calls for; see the module notes for its guards.
#[derive(Clone)]
pub struct AutoResponder {
    store: Arc<dyn Store>,
    responses: Arc<Cached<Vec<AutoResponse>>>,
    sla: SlaService,
    survey: SurveyTokens,
    clock: Clock,
    per_contact_hour: i64,
}

/// What an event of the change asks for.
struct Call {
    kind: AutoResponseKind,
    ticket_id: Uuid,
    channel: Channel,
    at: DateTime<Utc>,
}

impl AutoResponder {
    pub fn new(
        store: Arc<dyn Store>,
        (sla, survey): (SlaService, SurveyTokens),
        clock: Clock,
        per_contact_hour: i64,
    ) -> Self {
        Self {
            store,
            responses: Arc::new(Cached::new(CONFIG_TTL)),
            sla,
            survey,
            clock,
            per_contact_hour,
        }
    }

    /// Adds to `changes` the auto-responses its events call for (`draft`: the ticket the
    /// change creates, if it does).
    pub async fn prepare(
        &self,
        changes: &mut Changeset,
        draft: Option<&TicketDraft>,
    ) -> StoreResult<()> {
        if changes.events.is_empty() {
            return Ok(());
        }
        let responses = self.responses.get(|| self.store.auto_responses()).await?;
        if !responses.iter().any(|r| r.enabled) {
            return Ok(());
        }
        let find = |kind, channel| {
            responses
                .iter()
                .find(|r| r.enabled && r.kind == kind && r.channel == channel)
        };
        // A customer opened the ticket or wrote: directly, or through a bot's escalation.
        let customer_spoke = |ticket_id: Uuid| {
            changes.events.iter().any(|e| {
                e.ticket_id == ticket_id
                    && (matches!(
                        e.kind,
                        EventKind::ConversationEscalated | EventKind::CustomerMessage
                    ) || matches!(e.actor.kind, ActorKind::Customer | ActorKind::Bot))
            })
        };
        let mut calls: Vec<(Call, &AutoResponse)> = Vec::new();
        for event in &changes.events {
            if calls.iter().any(|(c, _)| c.ticket_id == event.ticket_id) {
                continue;
            }
            // A ticket opened by hand has no conversation: it is answered by email.
            let channel = event.ticket.channel.unwrap_or(Channel::Email);
            let call = |kind| Call {
                kind,
                ticket_id: event.ticket_id,
                channel,
                at: event.created_at,
            };
            let from_customer = customer_spoke(event.ticket_id);
            let wanted = match event.kind {
                EventKind::TicketCreated | EventKind::CustomerMessage => {
                    let after_hours = match find(AutoResponseKind::AfterHours, channel) {
                        Some(r) if from_customer => self.after_hours(r, event).await?,
                        _ => None,
                    };
                    after_hours.or_else(|| {
                        let ack = find(AutoResponseKind::Acknowledgement, channel)?;
                        (event.kind == EventKind::TicketCreated
                            && (from_customer || ack.for_agent_tickets))
                            .then_some(ack)
                    })
                }
                EventKind::StatusChanged if event.ticket.status == Status::Resolved => {
                    find(AutoResponseKind::ResolutionConfirmation, channel)
                }
                _ => None,
            };
            if let Some(response) = wanted {
                calls.push((call(response.kind), response));
            }
        }
        for (call, response) in calls {
            if let Some(reply) = self.pending(changes, draft, call, response).await? {
                changes.auto_replies.push(reply);
            }
        }
        Ok(())
    }

    /// The after-hours response, if the customer wrote while its calendar was closed and
    /// none went to the ticket since it was last open.
    async fn after_hours<'a>(
        &self,
        response: &'a AutoResponse,
        event: &NewEvent,
    ) -> StoreResult<Option<&'a AutoResponse>> {
        let calendars = self.sla.calendar_set().await?;
        let calendar = calendars.get(response.calendar_id);
        if calendar.is_open(event.created_at) {
            return Ok(None);
        }
        let last = self
            .store
            .last_auto_response(event.ticket_id, AutoResponseKind::AfterHours)
            .await?;
        Ok(after_hours_due(calendar, event.created_at, last).then_some(response))
    }

    async fn pending(
        &self,
        changes: &Changeset,
        draft: Option<&TicketDraft>,
        call: Call,
        response: &AutoResponse,
    ) -> StoreResult<Option<PendingReply>> {
        let ticket = if let Some(update) = changes
            .updates
            .iter()
            .find(|u| u.ticket.id == call.ticket_id)
        {
            update.ticket.clone()
        } else if let Some(d) = draft.filter(|d| d.id == call.ticket_id) {
            let contact = Contact {
                id: Uuid::nil(),
                external_id: d.contact.external_id.clone(),
                name: d.contact.name.clone(),
                email: d.contact.email.clone(),
                phone: d.contact.phone.clone(),
                vip: d.contact.vip.unwrap_or(false),
            };
            d.clone().into_ticket(0, contact, Vec::new())
        } else {
            match self.store.ticket(TicketKey::Id(call.ticket_id)).await? {
                Some(t) => t,
                None => return Ok(None),
            }
        };
        let pending_to_contact = changes
            .auto_replies
            .iter()
            .filter(|r| r.contact.external_id == ticket.contact.external_id)
            .count() as i64;
        let since = self.clock.now() - TimeDelta::hours(1);
        let sent = self
            .store
            .auto_responses_to(&ticket.contact.external_id, since)
            .await?;
        if sent + pending_to_contact >= self.per_contact_hour {
            tracing::info!(ticket_id = %ticket.id, kind = %call.kind, "auto-response held back: contact limit");
            metrics::counter!("ticketd_auto_responses_limited_total").increment(1);
            return Ok(None);
        }
        let Some(template) = self.store.template(response.template_id).await? else {
            tracing::warn!(auto_response = %response.id, "auto-response template is gone");
            return Ok(None);
        };
        let context = ticket_context(self.store.as_ref(), &self.survey, &ticket, call.at).await?;
        Ok(Some(pending_reply(&ticket, call, template, context)))
    }
}

fn pending_reply(
    ticket: &Ticket,
    call: Call,
    template: crate::domain::template::Template,
    context: crate::domain::template::TemplateContext,
) -> PendingReply {
    let conversation = ticket
        .conversation
        .as_ref()
        .filter(|c| c.channel == call.channel);
    let event = NewEvent::about(
        ticket,
        EventKind::ReplyAdded,
        Actor::system(ACTOR),
        Visibility::Public,
        EventPayload::Reply {
            body: String::new(),
            channel: call.channel.as_str().to_owned(),
            attachments: Vec::new(),
            message_id: None,
        },
        call.at,
    );
    let message = OutboundMessage {
        id: Uuid::now_v7(),
        ticket_id: ticket.id,
        ticket_number: ticket.number,
        event_id: event.id,
        conversation_id: conversation
            .map(|c| c.external_id.clone())
            .unwrap_or_default(),
        channel: call.channel,
        recipient: String::new(),
        subject: String::new(),
        body: String::new(),
        attachments: Vec::new(),
        kind: OutboundKind::AutoResponse,
        source: conversation.map(|c| c.source.clone()).unwrap_or_default(),
        created_at: call.at,
    };
    PendingReply {
        kind: call.kind,
        template,
        context,
        event,
        message,
        chat_address: conversation
            .filter(|c| c.channel == Channel::Chat)
            .map(|c| c.external_id.clone())
            .unwrap_or_default(),
        contact: ticket.contact.clone(),
    }
}
