//! `ticketd.v1.WebhookService`: authorise, convert, call the service, convert back.

use chrono::TimeDelta;
use tonic::{Request, Response, Status};

use super::auth::{ADMIN, authorize};
use super::convert;
use super::pb::{self, webhook_service_server::WebhookService};
use crate::domain::event::Event;
use crate::domain::hook::InboundHook;
use crate::domain::validation::Violations;
use crate::domain::webhook::{Webhook, WebhookDelivery};
use crate::service::webhooks::WebhookPatch;
use crate::service::{ServiceError, Services};

pub struct WebhookApi {
    services: Services,
}

impl WebhookApi {
    pub fn new(services: Services) -> Self {
        Self { services }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// The hook as shown; its secret only when `with_secret`.
fn hook_to_pb(hook: InboundHook, with_secret: bool) -> pb::InboundHook {
    pb::InboundHook {
        url: format!("/v1/hooks/{}", hook.id),
        id: hook.id.to_string(),
        name: hook.name,
        action: convert::hook_action_to_pb(hook.action),
        source: hook.source,
        secret: if with_secret {
            hook.secret
        } else {
            String::new()
        },
        create_time: Some(convert::timestamp(hook.created_at)),
    }
}

/// What a webhook receives for `event` (the edge renders it as JSON).
pub fn webhook_payload(event: &Event) -> pb::WebhookPayload {
    pb::WebhookPayload {
        r#type: event.event.kind.as_str().to_owned(),
        timestamp: Some(convert::timestamp(event.event.created_at)),
        data: Some(convert::event_to_pb(event.clone())),
    }
}

/// The webhook as shown; its secret only when `with_secret`.
fn webhook_to_pb(w: Webhook, with_secret: bool) -> pb::Webhook {
    pb::Webhook {
        id: w.id.to_string(),
        url: w.url,
        event_types: w
            .event_types
            .iter()
            .map(|k| convert::event_type_to_pb(*k))
            .collect(),
        filter: w.filter,
        state: convert::webhook_state_to_pb(w.state),
        etag: w.version.to_string(),
        description: w.description,
        secret: if with_secret { w.secret } else { String::new() },
        delivered_through: w.delivered_through,
        failing_since: w.failing_since.map(convert::timestamp),
        last_error: w.last_error,
        create_time: Some(convert::timestamp(w.created_at)),
        update_time: Some(convert::timestamp(w.updated_at)),
    }
}

fn delivery_to_pb(d: WebhookDelivery) -> pb::WebhookDelivery {
    pb::WebhookDelivery {
        id: d.id.to_string(),
        webhook_id: d.webhook_id.to_string(),
        event_cursor: d.event_cursor,
        event_id: d.event_id.to_string(),
        event_type: convert::event_type_to_pb(d.event_type),
        attempt: d.attempt,
        status_code: d.status_code,
        latency: prost_types::Duration::try_from(d.latency).ok(),
        error: d.error,
        next_attempt_at: d.next_attempt_at.map(convert::timestamp),
        delivered_at: d.delivered_at.map(convert::timestamp),
        attempt_time: Some(convert::timestamp(d.attempted_at)),
        manual: d.manual,
    }
}

/// A webhook's fields from the request; violations name them under `field`.
fn patch_from_pb(w: pb::Webhook, field: &str, v: &mut Violations) -> WebhookPatch {
    let mut event_types = Vec::new();
    for (i, value) in w.event_types.iter().enumerate() {
        let field = format!("{field}.event_types[{i}]");
        match convert::event_type_from_pb(*value, &field, v) {
            Some(kind) => event_types.push(kind),
            None if *value == 0 => v.add(field, "must not be EVENT_TYPE_UNSPECIFIED"),
            None => {}
        }
    }
    let state = convert::webhook_state_from_pb(w.state, &format!("{field}.state"), v);
    WebhookPatch {
        url: w.url,
        description: w.description,
        event_types,
        filter: w.filter,
        state,
    }
}

#[tonic::async_trait]
impl WebhookService for WebhookApi {
    async fn create_webhook(
        &self,
        request: Request<pb::CreateWebhookRequest>,
    ) -> Reply<pb::CreateWebhookResponse> {
        let principal = authorize(&request, "CreateWebhook", ADMIN).await?;
        let mut v = Violations::new();
        let patch = patch_from_pb(
            request.into_inner().webhook.unwrap_or_default(),
            "webhook",
            &mut v,
        );
        v.finish().map_err(ServiceError::Invalid)?;
        let made = self
            .services
            .webhooks
            .create(&principal.actor(), patch)
            .await?;
        Ok(Response::new(pb::CreateWebhookResponse {
            webhook: Some(webhook_to_pb(made, true)),
        }))
    }

    async fn get_webhook(
        &self,
        request: Request<pb::GetWebhookRequest>,
    ) -> Reply<pb::GetWebhookResponse> {
        authorize(&request, "GetWebhook", ADMIN).await?;
        let id = convert::required_uuid("id", &request.get_ref().id)?;
        let webhook = self.services.webhooks.get(id).await?;
        Ok(Response::new(pb::GetWebhookResponse {
            webhook: Some(webhook_to_pb(webhook, false)),
        }))
    }

    async fn update_webhook(
        &self,
        request: Request<pb::UpdateWebhookRequest>,
    ) -> Reply<pb::UpdateWebhookResponse> {
        let principal = authorize(&request, "UpdateWebhook", ADMIN).await?;
        let r = request.into_inner();
        let webhook = r.webhook.unwrap_or_default();
        let id = convert::required_uuid("webhook.id", &webhook.id)?;
        let mut v = Violations::new();
        let patch = patch_from_pb(webhook, "webhook", &mut v);
        v.finish().map_err(ServiceError::Invalid)?;
        let saved = self
            .services
            .webhooks
            .update(
                &principal.actor(),
                id,
                patch,
                convert::mask_paths(r.update_mask),
                convert::etag(r.etag),
            )
            .await?;
        Ok(Response::new(pb::UpdateWebhookResponse {
            webhook: Some(webhook_to_pb(saved, false)),
        }))
    }

    async fn list_webhooks(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> Reply<pb::ListWebhooksResponse> {
        authorize(&request, "ListWebhooks", ADMIN).await?;
        let webhooks = self.services.webhooks.list().await?;
        Ok(Response::new(pb::ListWebhooksResponse {
            webhooks: webhooks
                .into_iter()
                .map(|w| webhook_to_pb(w, false))
                .collect(),
        }))
    }

    async fn delete_webhook(
        &self,
        request: Request<pb::DeleteWebhookRequest>,
    ) -> Reply<pb::DeleteWebhookResponse> {
        let principal = authorize(&request, "DeleteWebhook", ADMIN).await?;
        let id = convert::required_uuid("id", &request.get_ref().id)?;
        self.services
            .webhooks
            .delete(&principal.actor(), id)
            .await?;
        Ok(Response::new(pb::DeleteWebhookResponse {}))
    }

    async fn rotate_webhook_secret(
        &self,
        request: Request<pb::RotateWebhookSecretRequest>,
    ) -> Reply<pb::RotateWebhookSecretResponse> {
        let principal = authorize(&request, "RotateWebhookSecret", ADMIN).await?;
        let r = request.into_inner();
        let id = convert::required_uuid("id", &r.id)?;
        let overlap = match r.overlap.map(std::time::Duration::try_from) {
            None => None,
            Some(Ok(d)) => Some(TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)),
            Some(Err(_)) => {
                return Err(ServiceError::invalid("overlap", "must not be negative").into());
            }
        };
        let rotated = self
            .services
            .webhooks
            .rotate_secret(&principal.actor(), id, overlap)
            .await?;
        let until = rotated
            .previous_secret
            .as_ref()
            .map(|(_, until)| convert::timestamp(*until));
        Ok(Response::new(pb::RotateWebhookSecretResponse {
            webhook: Some(webhook_to_pb(rotated, true)),
            previous_secret_expire_time: until,
        }))
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Reply<pb::ListWebhookDeliveriesResponse> {
        authorize(&request, "ListWebhookDeliveries", ADMIN).await?;
        let r = request.into_inner();
        let id = convert::required_uuid("webhook_id", &r.webhook_id)?;
        let (deliveries, next_page_token) = self
            .services
            .webhooks
            .deliveries(id, r.page_size, &r.page_token, r.failed_only)
            .await?;
        Ok(Response::new(pb::ListWebhookDeliveriesResponse {
            deliveries: deliveries.into_iter().map(delivery_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn redeliver_webhook(
        &self,
        request: Request<pb::RedeliverWebhookRequest>,
    ) -> Reply<pb::RedeliverWebhookResponse> {
        authorize(&request, "RedeliverWebhook", ADMIN).await?;
        let r = request.into_inner();
        let id = convert::required_uuid("webhook_id", &r.webhook_id)?;
        let delivery = self.services.webhooks.redeliver(id, r.event_cursor).await?;
        Ok(Response::new(pb::RedeliverWebhookResponse {
            delivery: Some(delivery_to_pb(delivery)),
        }))
    }

    async fn create_inbound_hook(
        &self,
        request: Request<pb::CreateInboundHookRequest>,
    ) -> Reply<pb::CreateInboundHookResponse> {
        let principal = authorize(&request, "CreateInboundHook", ADMIN).await?;
        let hook = request.into_inner().inbound_hook.unwrap_or_default();
        let mut v = Violations::new();
        let action = convert::hook_action_from_pb(hook.action, "inbound_hook.action", &mut v);
        v.finish().map_err(ServiceError::Invalid)?;
        let made = self
            .services
            .hooks
            .create(&principal, &hook.name, action, &hook.source)
            .await?;
        Ok(Response::new(pb::CreateInboundHookResponse {
            inbound_hook: Some(hook_to_pb(made, true)),
        }))
    }

    async fn list_inbound_hooks(
        &self,
        request: Request<pb::ListInboundHooksRequest>,
    ) -> Reply<pb::ListInboundHooksResponse> {
        authorize(&request, "ListInboundHooks", ADMIN).await?;
        let hooks = self.services.hooks.list().await?;
        Ok(Response::new(pb::ListInboundHooksResponse {
            inbound_hooks: hooks.into_iter().map(|h| hook_to_pb(h, false)).collect(),
        }))
    }

    async fn delete_inbound_hook(
        &self,
        request: Request<pb::DeleteInboundHookRequest>,
    ) -> Reply<pb::DeleteInboundHookResponse> {
        let principal = authorize(&request, "DeleteInboundHook", ADMIN).await?;
        let id = convert::required_uuid("id", &request.get_ref().id)?;
        self.services.hooks.delete(&principal, id).await?;
        Ok(Response::new(pb::DeleteInboundHookResponse {}))
    }
}
