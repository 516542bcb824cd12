//! Customer satisfaction: survey tokens issued for resolved tickets (templates show them as
//! `ticket.survey_token`), and ratings recorded by the gateway or bot the customer answered.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::OnceCell;
use uuid::Uuid;

use tracing::instrument;

use super::sla::Writer;
use super::{ServiceError, ServiceResult, retry_contended};
use crate::clock::Clock;
use crate::domain::auth::{Principal, Role};
use crate::domain::event::{Actor, ActorKind, EventKind, EventPayload, NewEvent, Visibility};
use crate::domain::survey::{self, TokenError};
use crate::domain::ticket::{Satisfaction, Status, Ticket, TicketKey};
use crate::domain::validation::Violations;
use crate::store::{Changeset, Store, StoreError, StoreResult, TicketUpdate};

/// How long a survey token, and a rating's chance to be changed, lasts.
pub const SURVEY_DAYS: i64 = 14;

/// Issues and checks survey tokens with the secret the replicas share.
#[derive(Clone)]
pub struct SurveyTokens {
    store: Arc<dyn Store>,
    secret: Arc<OnceCell<Vec<u8>>>,
}

impl SurveyTokens {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            secret: Arc::new(OnceCell::new()),
        }
    }

    async fn secret(&self) -> StoreResult<&[u8]> {
        self.secret
            .get_or_try_init(|| async {
                let fresh: [u8; 32] = crate::domain::random_bytes();
                self.store.signing_key("survey", &fresh).await
            })
            .await
            .map(Vec::as_slice)
    }

    /// A token for rating `ticket_id`, valid for [`SURVEY_DAYS`] from `now`.
    pub async fn issue(&self, ticket_id: Uuid, now: DateTime<Utc>) -> StoreResult<String> {
        let secret = self.secret().await?;
        Ok(survey::issue(
            secret,
            ticket_id,
            now + TimeDelta::days(SURVEY_DAYS),
        ))
    }

    /// The ticket a token rates; `INVALID_ARGUMENT` naming `survey_token` otherwise.
    pub async fn verify(&self, token: &str, now: DateTime<Utc>) -> ServiceResult<Uuid> {
        let secret = self.secret().await?;
        survey::verify(secret, token, now).map_err(|e| match e {
            TokenError::Invalid | TokenError::Expired => {
                ServiceError::invalid("survey_token", e.to_string())
            }
        })
    }
}

/// A rating as a gateway or bot sends it.
#[derive(Debug, Clone, Default)]
pub struct RatingInput {
    pub survey_token: String,
    pub ticket_id: Option<Uuid>,
    pub score: i32,
    pub comment: String,
}

/// Longest rating comment.
pub const MAX_COMMENT_CHARS: usize = 2_000;

/// Records ratings.
#[derive(Clone)]
pub struct SatisfactionService {
    store: Arc<dyn Store>,
    writer: Writer,
    tokens: SurveyTokens,
    clock: Clock,
}

impl SatisfactionService {
    pub fn new(store: Arc<dyn Store>, writer: Writer, tokens: SurveyTokens, clock: Clock) -> Self {
        Self {
            store,
            writer,
            tokens,
            clock,
        }
    }

    /// Records (or, within [`SURVEY_DAYS`] of the first rating, replaces) a customer's
    /// rating of a resolved or closed ticket.
    #[instrument(skip_all)]
    pub async fn record(&self, principal: &Principal, input: RatingInput) -> ServiceResult<Ticket> {
        let mut v = Violations::new();
        if !(1..=5).contains(&input.score) {
            v.add("score", "must be 1 to 5");
        }
        v.text("comment", &input.comment, false, MAX_COMMENT_CHARS);
        match (input.survey_token.is_empty(), input.ticket_id.is_some()) {
            (true, false) => v.add(
                "survey_token",
                "name the ticket by survey_token or ticket_id",
            ),
            (false, true) => v.add(
                "ticket_id",
                "name the ticket by survey_token or ticket_id, not both",
            ),
            _ => {}
        }
        v.finish()?;
        let now = self.clock.now();
        let (ticket_id, by_token) = match input.ticket_id {
            Some(id) => (id, false),
            None => (self.tokens.verify(&input.survey_token, now).await?, true),
        };
        let input = &input;
        retry_contended(
            ServiceError::Contended(format!("ticket {ticket_id} kept changing; retry")),
            || async move {
                let ticket = self
                    .store
                    .ticket(TicketKey::Id(ticket_id))
                    .await?
                    .ok_or_else(|| ServiceError::NotFound(format!("ticket {ticket_id}")))?;
                if !by_token && !may_rate(principal, &ticket) {
                    return Err(ServiceError::PermissionDenied(format!(
                        "ticket #{} is not on a channel or conversation source of this key",
                        ticket.number
                    )));
                }
                if !matches!(ticket.status, Status::Resolved | Status::Closed) {
                    return Err(ServiceError::FailedPrecondition(format!(
                        "ticket #{} is {}; customers rate resolved tickets",
                        ticket.number, ticket.status
                    )));
                }
                if let Some(previous) = &ticket.satisfaction {
                    if previous.score == input.score && previous.comment == input.comment {
                        return Ok(ticket);
                    }
                    if now > previous.rated_at + TimeDelta::days(SURVEY_DAYS) {
                        return Err(ServiceError::FailedPrecondition(format!(
                            "the rating of ticket #{} can no longer change",
                            ticket.number
                        )));
                    }
                }
                let mut next = ticket.clone();
                next.satisfaction = Some(Satisfaction {
                    score: input.score,
                    comment: input.comment.clone(),
                    rated_at: now,
                });
                next.updated_at = now;
                let customer = Actor {
                    kind: ActorKind::Customer,
                    id: Some(ticket.contact.id),
                    name: ticket.contact.name.clone(),
                };
                let event = NewEvent::about(
                    &next,
                    EventKind::SatisfactionRated,
                    customer,
                    Visibility::Internal,
                    EventPayload::SatisfactionRated {
                        score: input.score,
                        comment: input.comment.clone(),
                    },
                    now,
                );
                let changes = Changeset {
                    updates: vec![TicketUpdate::fields_only(next, ticket.version)],
                    events: vec![event],
                    ..Changeset::default()
                };
                match self.writer.commit(changes).await {
                    Ok(mut committed) => committed
                        .tickets
                        .pop()
                        .ok_or_else(|| ServiceError::NotFound(format!("ticket {ticket_id}"))),
                    Err(StoreError::Conflict(_)) => {
                        Err(ServiceError::Contended("ticket changed".into()))
                    }
                    Err(other) => Err(other.into()),
                }
            },
        )
        .await
    }
}

/// Whether a key may rate a ticket it names by id: admins any; gateways those of their
/// channels; bots those of their conversation sources.
fn may_rate(principal: &Principal, ticket: &Ticket) -> bool {
    match principal.role {
        Role::Admin => true,
        Role::Gateway => ticket.channel.is_some_and(|c| principal.may_use(c)),
        Role::Bot => ticket
            .conversation
            .as_ref()
            .is_some_and(|c| principal.may_speak_for(&c.source)),
        Role::Agent => false,
    }
}
