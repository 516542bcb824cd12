//! Outbound webhooks: administered here (checked whole as they are saved, secrets made
//! and rotated), delivered by the [`Dispatcher`] (see `dispatch.rs`), each attempt sent by
//! the [`Sender`].

mod dispatch;
mod sender;

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::paging::{self, decode, encode};
use super::versioned::{Mask, Versioned, update_versioned};
use super::{ServiceError, ServiceResult};
use crate::clock::Clock;
use crate::domain::audit::AuditEntry;
use crate::domain::event::{Actor, EventKind};
use crate::domain::filter::{AssigneeRef, TicketPredicate};
use crate::domain::hook;
use crate::domain::validation::Violations;
use crate::domain::watch::{WatchPredicate, parse_watch_filter};
use crate::domain::webhook::{Webhook, WebhookDelivery, WebhookState};
use crate::events::Tailer;
use crate::store::{StateWrite, Store, WebhookColumns};

pub use dispatch::{Changes, Dispatcher};
pub use sender::{Outcome, RenderEvent, Sender, SenderSettings, url_problem};

/// The most webhooks one installation keeps (each has a worker on the delivering
/// replica).
pub const MAX_WEBHOOKS: usize = 100;
const MAX_EVENT_TYPES: usize = 32;
const MAX_FILTER_CHARS: usize = 2000;
const MAX_DESCRIPTION_CHARS: usize = 500;
/// The longest a rotated-out secret keeps signing.
const MAX_OVERLAP: TimeDelta = TimeDelta::days(7);
const DEFAULT_OVERLAP: TimeDelta = TimeDelta::hours(24);

/// The paths `UpdateWebhook` accepts in its `update_mask`.
pub const WEBHOOK_PATHS: &[&str] = &["url", "description", "event_types", "filter", "state"];

/// A webhook's fields as a caller sends them.
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub url: String,
    pub description: String,
    pub event_types: Vec<EventKind>,
    pub filter: String,
    /// Only in updates: DISABLED pauses, HEALTHY resumes.
    pub state: Option<WebhookState>,
}

impl Versioned for Webhook {
    fn version(&self) -> i64 {
        self.version
    }
}

#[derive(Serialize, Deserialize)]
struct DeliveryPageToken {
    before: Uuid,
    webhook: Uuid,
    failed_only: bool,
}

#[derive(Clone)]
pub struct WebhookService {
    store: Arc<dyn Store>,
    sender: Arc<Sender>,
    clock: Clock,
    settings: SenderSettings,
    changes: Arc<Changes>,
}

impl WebhookService {
    pub fn new(
        store: Arc<dyn Store>,
        settings: SenderSettings,
        render: RenderEvent,
        clock: Clock,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            sender: Arc::new(Sender::new(settings.clone(), render)?),
            store,
            clock,
            settings,
            changes: Arc::default(),
        })
    }

    /// The task that delivers, while this replica holds the lease.
    pub fn dispatcher(&self, tailer: Tailer, poll: Duration) -> Dispatcher {
        Dispatcher {
            store: self.store.clone(),
            sender: self.sender.clone(),
            tailer,
            clock: self.clock.clone(),
            changes: self.changes.clone(),
            poll,
        }
    }

    /// Makes a webhook with a fresh secret; it receives what is committed from now on.
    pub async fn create(&self, actor: &Actor, patch: WebhookPatch) -> ServiceResult<Webhook> {
        self.check(&patch, "webhook")?;
        if patch.state.is_some() {
            return Err(ServiceError::invalid(
                "webhook.state",
                "is output only when creating",
            ));
        }
        if self.store.webhooks().await?.len() >= MAX_WEBHOOKS {
            return Err(ServiceError::ResourceExhausted(format!(
                "there are {MAX_WEBHOOKS} webhooks; delete unused ones first"
            )));
        }
        let now = self.clock.now();
        let webhook = Webhook {
            id: Uuid::now_v7(),
            url: patch.url.trim().to_owned(),
            description: patch.description.trim().to_owned(),
            event_types: dedup(patch.event_types),
            filter: patch.filter.trim().to_owned(),
            state: WebhookState::Healthy,
            secret: hook::new_secret(),
            previous_secret: None,
            delivered_through: self.store.log_end().await?,
            attempts: 0,
            next_attempt_at: None,
            failing_since: None,
            last_error: String::new(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let audit = AuditEntry::saved(actor.clone(), None, &webhook, now);
        self.store.insert_webhook(&webhook, &audit).await?;
        self.changes.saved(webhook.id, webhook.version);
        Ok(webhook)
    }

    pub async fn get(&self, id: Uuid) -> ServiceResult<Webhook> {
        self.store
            .webhook(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("webhook {id}")))
    }

    pub async fn list(&self) -> ServiceResult<Vec<Webhook>> {
        Ok(self.store.webhooks().await?)
    }

    /// Changes the fields `mask` names under the caller's etag. Setting HEALTHY resumes
    /// delivery from the first event not delivered, at once; a new URL starts the head
    /// event's retries afresh.
    pub async fn update(
        &self,
        actor: &Actor,
        id: Uuid,
        patch: WebhookPatch,
        mask: Vec<String>,
        etag: Option<String>,
    ) -> ServiceResult<Webhook> {
        let mask = Mask::required(mask, WEBHOOK_PATHS)?;
        let (mask, patch) = (&mask, &patch);
        self.saved_with(actor, id, etag.as_deref(), |current| {
            let mut merged = WebhookPatch {
                url: current.url.clone(),
                description: current.description.clone(),
                event_types: current.event_types.clone(),
                filter: current.filter.clone(),
                state: None,
            };
            crate::service::versioned::copy_masked!(
                mask,
                merged,
                patch,
                [url, description, event_types, filter]
            );
            self.check(&merged, "webhook")?;
            let mut next = current.clone();
            next.url = merged.url.trim().to_owned();
            next.description = merged.description.trim().to_owned();
            next.event_types = dedup(merged.event_types);
            next.filter = merged.filter.trim().to_owned();
            let mut columns = WebhookColumns {
                settings: next.url != current.url
                    || next.description != current.description
                    || next.event_types != current.event_types
                    || next.filter != current.filter,
                state: StateWrite::Keep,
                secrets: false,
            };
            let wanted = if mask.names("state") {
                match patch.state {
                    Some(state @ (WebhookState::Healthy | WebhookState::Disabled)) => Some(state),
                    _ => {
                        return Err(ServiceError::invalid(
                            "webhook.state",
                            "must be WEBHOOK_STATE_HEALTHY (resume) or WEBHOOK_STATE_DISABLED \
                             (pause)",
                        ));
                    }
                }
            } else {
                None
            };
            let fresh_start = |next: &mut Webhook| {
                next.attempts = 0;
                next.next_attempt_at = None;
                next.failing_since = None;
                next.last_error.clear();
            };
            match wanted {
                Some(WebhookState::Disabled) if current.state != WebhookState::Disabled => {
                    next.state = WebhookState::Disabled;
                    next.next_attempt_at = None;
                    columns.state = StateWrite::Pause;
                }
                Some(WebhookState::Healthy) if current.state != WebhookState::Healthy => {
                    next.state = WebhookState::Healthy;
                    fresh_start(&mut next);
                    columns.state = StateWrite::Reset;
                }
                // A failing endpoint moved elsewhere: the new one gets a fresh start.
                _ if next.url != current.url && current.state == WebhookState::Failing => {
                    next.state = WebhookState::Healthy;
                    fresh_start(&mut next);
                    columns.state = StateWrite::Reset;
                }
                _ => {}
            }
            Ok((next, columns))
        })
        .await
    }

    /// The change `change` makes to the webhook, saved through the admin update path
    /// (etag, and a re-read when another save came in between); the webhook as it is when
    /// the change changes nothing.
    async fn saved_with(
        &self,
        actor: &Actor,
        id: Uuid,
        etag: Option<&str>,
        change: impl Fn(&Webhook) -> ServiceResult<(Webhook, WebhookColumns)>,
    ) -> ServiceResult<Webhook> {
        let change = &change;
        update_versioned(
            &format!("webhook {id}"),
            etag,
            || self.get(id),
            |current| async move {
                let (mut next, columns) = change(&current)?;
                if !columns.settings && columns.state == StateWrite::Keep && !columns.secrets {
                    return Ok(current);
                }
                let now = self.clock.now();
                next.version = current.version + 1;
                next.updated_at = now;
                let audit = AuditEntry::saved(actor.clone(), Some(&current), &next, now);
                if self
                    .store
                    .update_webhook(&next, columns, current.version, &audit)
                    .await?
                {
                    self.changes.saved(next.id, next.version);
                    Ok(next)
                } else {
                    Err(ServiceError::Contended(format!(
                        "webhook {id} changed concurrently"
                    )))
                }
            },
        )
        .await
    }

    pub async fn delete(&self, actor: &Actor, id: Uuid) -> ServiceResult<()> {
        let webhook = self.get(id).await?;
        let audit = AuditEntry::deleted(actor.clone(), &webhook, self.clock.now());
        if !self.store.delete_webhook(id, &audit).await? {
            return Err(ServiceError::NotFound(format!("webhook {id}")));
        }
        self.changes.deleted(id);
        Ok(())
    }

    /// A new secret; the old one signs too until `overlap` (24 hours when `None`) has
    /// passed. Returns the webhook with its new secret.
    pub async fn rotate_secret(
        &self,
        actor: &Actor,
        id: Uuid,
        overlap: Option<TimeDelta>,
    ) -> ServiceResult<Webhook> {
        let overlap = overlap.unwrap_or(DEFAULT_OVERLAP);
        if overlap < TimeDelta::zero() || overlap > MAX_OVERLAP {
            return Err(ServiceError::invalid(
                "overlap",
                "must be between 0 and 7 days",
            ));
        }
        let now = self.clock.now();
        self.saved_with(actor, id, None, |current| {
            let mut next = current.clone();
            next.secret = hook::new_secret();
            next.previous_secret =
                (overlap > TimeDelta::zero()).then(|| (current.secret.clone(), now + overlap));
            let columns = WebhookColumns {
                settings: false,
                state: StateWrite::Keep,
                secrets: true,
            };
            Ok((next, columns))
        })
        .await
    }

    /// A webhook's attempts, newest first.
    pub async fn deliveries(
        &self,
        webhook_id: Uuid,
        page_size: i32,
        page_token: &str,
        failed_only: bool,
    ) -> ServiceResult<(Vec<WebhookDelivery>, String)> {
        let limit = paging::page_size(page_size, paging::DEFAULT_PAGE_SIZE)?;
        let before = if page_token.is_empty() {
            None
        } else {
            let token: DeliveryPageToken = decode(page_token)?;
            if token.webhook != webhook_id || token.failed_only != failed_only {
                return Err(ServiceError::invalid(
                    "page_token",
                    "belongs to another listing",
                ));
            }
            Some(token.before)
        };
        self.get(webhook_id).await?;
        let mut found = self
            .store
            .webhook_deliveries(webhook_id, before, failed_only, limit + 1)
            .await?;
        let mut next = String::new();
        if found.len() as i64 > limit {
            found.truncate(limit as usize);
            if let Some(last) = found.last() {
                next = encode(&DeliveryPageToken {
                    before: last.id,
                    webhook: webhook_id,
                    failed_only,
                });
            }
        }
        Ok((found, next))
    }

    /// Sends the event at `cursor` to the webhook now and records the attempt.
    pub async fn redeliver(&self, webhook_id: Uuid, cursor: i64) -> ServiceResult<WebhookDelivery> {
        if cursor <= 0 {
            return Err(ServiceError::invalid(
                "event_cursor",
                "must be a cursor of the log",
            ));
        }
        let webhook = self.get(webhook_id).await?;
        // By position, not through the stream horizon: an event held back behind another
        // transaction still in flight is committed, and redelivering it is fine.
        let event = self
            .store
            .event_at(cursor)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("event at cursor {cursor}")))?;
        let attempt = self.store.webhook_attempts_at(webhook_id, cursor).await? + 1;
        let now = self.clock.now();
        let outcome = self.sender.send(&webhook, &event, now).await;
        let delivered = outcome.delivered();
        let delivery = WebhookDelivery {
            id: Uuid::now_v7(),
            webhook_id,
            event_cursor: cursor,
            event_id: event.event.id,
            event_type: event.event.kind,
            attempt,
            status_code: outcome.status_code,
            latency: outcome.latency,
            error: outcome.error,
            attempted_at: now,
            next_attempt_at: None,
            delivered_at: delivered.then(|| self.clock.now()),
            manual: true,
        };
        self.store
            .insert_webhook_deliveries(std::slice::from_ref(&delivery))
            .await?;
        Ok(delivery)
    }

    /// Checks a webhook's fields whole; `prefix` names the message in violations.
    fn check(&self, patch: &WebhookPatch, prefix: &str) -> ServiceResult<()> {
        let mut v = Violations::new();
        let url = patch.url.trim();
        if url.is_empty() {
            v.add(format!("{prefix}.url"), "is required");
        } else if let Some(problem) = url_problem(url, self.settings.allow_private) {
            v.add(format!("{prefix}.url"), problem);
        }
        v.text(
            &format!("{prefix}.description"),
            &patch.description,
            false,
            MAX_DESCRIPTION_CHARS,
        );
        if patch.event_types.len() > MAX_EVENT_TYPES {
            v.add(
                format!("{prefix}.event_types"),
                format!("must name at most {MAX_EVENT_TYPES} types"),
            );
        }
        let filter = patch.filter.trim();
        if filter.chars().count() > MAX_FILTER_CHARS {
            v.add(
                format!("{prefix}.filter"),
                format!("must be at most {MAX_FILTER_CHARS} characters"),
            );
        } else {
            match parse_watch_filter(filter) {
                Err(err) => v.add(format!("{prefix}.filter"), err.to_string()),
                Ok(Some(parsed)) if names_me(&parsed) => v.add(
                    format!("{prefix}.filter"),
                    "\"me\" has no meaning for a webhook; name the agent's id",
                ),
                Ok(_) => {}
            }
        }
        v.finish()?;
        Ok(())
    }
}

/// Whether a filter says "me" anywhere.
fn names_me(filter: &crate::domain::watch::WatchFilter) -> bool {
    let mut found = false;
    let _ = filter.clone().try_map(&mut |p| {
        if matches!(
            p,
            WatchPredicate::Ticket(TicketPredicate::Assignee(_, AssigneeRef::Me))
                | WatchPredicate::Recipient(_, AssigneeRef::Me)
        ) {
            found = true;
        }
        Ok::<_, ()>(p)
    });
    found
}

fn dedup(mut kinds: Vec<EventKind>) -> Vec<EventKind> {
    kinds.sort();
    kinds.dedup();
    kinds
}
