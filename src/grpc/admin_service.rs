//! `ticketd.v1.AdminService`: API keys (more administration arrives with routing and SLA).

use tonic::{Request, Response, Status};

use super::auth::{ADMIN, authorize};
use super::convert::{self, api_key_to_pb};
use super::pb::{self, admin_service_server::AdminService};
use crate::domain::validation::Violations;
use crate::service::{ServiceError, Services};

pub struct AdminApi {
    services: Services,
}

impl AdminApi {
    pub fn new(services: Services) -> Self {
        Self { services }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Reply<pb::CreateApiKeyResponse> {
        authorize(&self.services.api_keys, &request, "CreateApiKey", ADMIN).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let role = convert::role_from_pb(r.role, "role", &mut v);
        let agent_id = convert::optional_uuid("agent_id", &r.agent_id, &mut v);
        let channels = r
            .channels
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let field = format!("channels[{i}]");
                let channel = convert::channel_from_pb(*c, &field, &mut v);
                if channel.is_none() && *c == 0 {
                    v.add(field, "must name a channel");
                }
                channel
            })
            .collect();
        v.finish().map_err(ServiceError::Invalid)?;
        let (key, secret) = self
            .services
            .api_keys
            .create(&r.name, role, agent_id, channels)
            .await?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            api_key: Some(api_key_to_pb(key)),
            secret,
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Reply<pb::RevokeApiKeyResponse> {
        authorize(&self.services.api_keys, &request, "RevokeApiKey", ADMIN).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let id = convert::uuid("id", &r.id, &mut v);
        v.finish().map_err(ServiceError::Invalid)?;
        let id = id.ok_or_else(|| Status::invalid_argument("id is required"))?;
        let key = self.services.api_keys.revoke(id).await?;
        Ok(Response::new(pb::RevokeApiKeyResponse {
            api_key: Some(api_key_to_pb(key)),
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Reply<pb::ListApiKeysResponse> {
        authorize(&self.services.api_keys, &request, "ListApiKeys", ADMIN).await?;
        let r = request.into_inner();
        let (keys, next_page_token) = self
            .services
            .api_keys
            .list(r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: keys.into_iter().map(api_key_to_pb).collect(),
            next_page_token,
        }))
    }
}
