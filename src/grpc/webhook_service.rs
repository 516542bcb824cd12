//! `ticketd.v1.WebhookService`: authorise, convert, call the service, convert back.

use tonic::{Request, Response, Status};

use super::auth::{ADMIN, authorize};
use super::convert;
use super::pb::{self, webhook_service_server::WebhookService};
use crate::domain::hook::{HookAction, InboundHook};
use crate::domain::validation::Violations;
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
        action: match hook.action {
            HookAction::CreateTicket => pb::InboundHookAction::CreateTicket,
            HookAction::PostCustomerMessage => pb::InboundHookAction::PostCustomerMessage,
        } as i32,
        source: hook.source,
        secret: if with_secret {
            hook.secret
        } else {
            String::new()
        },
        create_time: Some(convert::timestamp(hook.created_at)),
    }
}

#[tonic::async_trait]
impl WebhookService for WebhookApi {
    async fn create_inbound_hook(
        &self,
        request: Request<pb::CreateInboundHookRequest>,
    ) -> Reply<pb::CreateInboundHookResponse> {
        let principal = authorize(&request, "CreateInboundHook", ADMIN).await?;
        let hook = request.into_inner().inbound_hook.unwrap_or_default();
        let action = match pb::InboundHookAction::try_from(hook.action) {
            Ok(pb::InboundHookAction::CreateTicket) => Some(HookAction::CreateTicket),
            Ok(pb::InboundHookAction::PostCustomerMessage) => Some(HookAction::PostCustomerMessage),
            Ok(pb::InboundHookAction::Unspecified) => None,
            Err(_) => {
                return Err(ServiceError::invalid(
                    "inbound_hook.action",
                    "is not an InboundHookAction",
                )
                .into());
            }
        };
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
        let mut v = Violations::new();
        let id = convert::uuid("id", &request.get_ref().id, &mut v);
        v.finish().map_err(ServiceError::Invalid)?;
        let Some(id) = id else {
            return Err(Status::invalid_argument("id is required"));
        };
        self.services.hooks.delete(&principal, id).await?;
        Ok(Response::new(pb::DeleteInboundHookResponse {}))
    }
}
