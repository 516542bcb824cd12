//! `ticketd.v1.AdminService`: API keys, agents, queues and routing rules. Calendars and SLA
//! policies are in `admin_sla.rs`.

use tonic::{Request, Response, Status};

use uuid::Uuid;

use super::admin_sla;
use super::auth::{ADMIN, STAFF, authorize};
use super::convert::{self, api_key_to_pb};
use super::convert::{
    agent_to_pb, availability_from_pb, queue_ids, queue_to_pb, rule_parts_from_pb, rule_to_pb,
    strategy_from_pb,
};
use super::pb::{self, admin_service_server::AdminService};
use crate::domain::routing::RoutingRule;
use crate::domain::validation::Violations;
use crate::service::routing::{AgentPatch, QueuePatch};
use crate::service::{ServiceError, Services};

/// `ticketd.v1.AdminService`.
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
        let principal = authorize(&request, "CreateApiKey", ADMIN).await?;
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
            .create(
                &principal.actor(),
                &r.name,
                role,
                agent_id,
                channels,
                r.sources,
            )
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
        let principal = authorize(&request, "RevokeApiKey", ADMIN).await?;
        let id = convert::required_uuid("id", &request.into_inner().id)?;
        let key = self
            .services
            .api_keys
            .revoke(&principal.actor(), id)
            .await?;
        Ok(Response::new(pb::RevokeApiKeyResponse {
            api_key: Some(api_key_to_pb(key)),
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Reply<pb::ListApiKeysResponse> {
        authorize(&request, "ListApiKeys", ADMIN).await?;
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

    async fn create_agent(
        &self,
        request: Request<pb::CreateAgentRequest>,
    ) -> Reply<pb::CreateAgentResponse> {
        let principal = authorize(&request, "CreateAgent", ADMIN).await?;
        let patch = agent_patch(request.into_inner().agent.unwrap_or_default())?;
        let agent = self
            .services
            .routing
            .create_agent(&principal.actor(), patch)
            .await?;
        Ok(Response::new(pb::CreateAgentResponse {
            agent: Some(agent_to_pb(agent)),
        }))
    }

    async fn update_agent(
        &self,
        request: Request<pb::UpdateAgentRequest>,
    ) -> Reply<pb::UpdateAgentResponse> {
        let principal = authorize(&request, "UpdateAgent", ADMIN).await?;
        let r = request.into_inner();
        let a = r.agent.unwrap_or_default();
        let id = convert::required_uuid("agent.id", &a.id)?;
        let (mask, etag) = (convert::mask_paths(r.update_mask), convert::etag(r.etag));
        let agent = self
            .services
            .routing
            .update_agent(&principal.actor(), id, agent_patch(a)?, mask, etag)
            .await?;
        Ok(Response::new(pb::UpdateAgentResponse {
            agent: Some(agent_to_pb(agent)),
        }))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Reply<pb::GetAgentResponse> {
        authorize(&request, "GetAgent", STAFF).await?;
        let id = convert::required_uuid("id", &request.into_inner().id)?;
        let agent = self.services.routing.agent(id).await?;
        Ok(Response::new(pb::GetAgentResponse {
            agent: Some(agent_to_pb(agent)),
        }))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Reply<pb::ListAgentsResponse> {
        authorize(&request, "ListAgents", STAFF).await?;
        let agents = self.services.routing.agents().await?;
        Ok(Response::new(pb::ListAgentsResponse {
            agents: agents.into_iter().map(agent_to_pb).collect(),
        }))
    }

    async fn delete_agent(
        &self,
        request: Request<pb::DeleteAgentRequest>,
    ) -> Reply<pb::DeleteAgentResponse> {
        let principal = authorize(&request, "DeleteAgent", ADMIN).await?;
        let id = convert::required_uuid("id", &request.into_inner().id)?;
        self.services
            .routing
            .delete_agent(&principal.actor(), id)
            .await?;
        Ok(Response::new(pb::DeleteAgentResponse {}))
    }

    async fn set_agent_availability(
        &self,
        request: Request<pb::SetAgentAvailabilityRequest>,
    ) -> Reply<pb::SetAgentAvailabilityResponse> {
        let principal = authorize(&request, "SetAgentAvailability", STAFF).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let id = convert::uuid("agent_id", &r.agent_id, &mut v);
        let availability = availability_from_pb(r.availability, "availability", &mut v);
        if availability.is_none() && r.availability == 0 {
            v.add("availability", "is required");
        }
        v.finish().map_err(ServiceError::Invalid)?;
        let (Some(id), Some(availability)) = (id, availability) else {
            return Err(Status::invalid_argument(
                "agent_id and availability are required",
            ));
        };
        let agent = self
            .services
            .routing
            .set_availability(&principal, id, availability)
            .await?;
        Ok(Response::new(pb::SetAgentAvailabilityResponse {
            agent: Some(agent_to_pb(agent)),
        }))
    }

    async fn create_queue(
        &self,
        request: Request<pb::CreateQueueRequest>,
    ) -> Reply<pb::CreateQueueResponse> {
        let principal = authorize(&request, "CreateQueue", ADMIN).await?;
        let q = request.into_inner().queue.unwrap_or_default();
        let mut v = Violations::new();
        let strategy = strategy_from_pb(q.strategy, "queue.strategy", &mut v);
        v.finish().map_err(ServiceError::Invalid)?;
        let tier = if q.tier == 0 { 1 } else { q.tier };
        let queue = self
            .services
            .routing
            .save_queue(&principal.actor(), None, &q.name, tier, strategy)
            .await?;
        Ok(Response::new(pb::CreateQueueResponse {
            queue: Some(queue_to_pb(queue)),
        }))
    }

    async fn update_queue(
        &self,
        request: Request<pb::UpdateQueueRequest>,
    ) -> Reply<pb::UpdateQueueResponse> {
        let principal = authorize(&request, "UpdateQueue", ADMIN).await?;
        let r = request.into_inner();
        let q = r.queue.unwrap_or_default();
        let mut v = Violations::new();
        let id = convert::uuid("queue.id", &q.id, &mut v);
        let strategy = strategy_from_pb(q.strategy, "queue.strategy", &mut v);
        v.finish().map_err(ServiceError::Invalid)?;
        let id = id.ok_or_else(|| Status::invalid_argument("queue.id is required"))?;
        let patch = QueuePatch {
            name: q.name,
            tier: q.tier,
            strategy,
        };
        let queue = self
            .services
            .routing
            .update_queue(
                &principal.actor(),
                id,
                patch,
                convert::mask_paths(r.update_mask),
                convert::etag(r.etag),
            )
            .await?;
        Ok(Response::new(pb::UpdateQueueResponse {
            queue: Some(queue_to_pb(queue)),
        }))
    }

    async fn list_queues(
        &self,
        request: Request<pb::ListQueuesRequest>,
    ) -> Reply<pb::ListQueuesResponse> {
        authorize(&request, "ListQueues", STAFF).await?;
        let queues = self.services.routing.queues().await?;
        Ok(Response::new(pb::ListQueuesResponse {
            queues: queues.into_iter().map(queue_to_pb).collect(),
        }))
    }

    async fn delete_queue(
        &self,
        request: Request<pb::DeleteQueueRequest>,
    ) -> Reply<pb::DeleteQueueResponse> {
        let principal = authorize(&request, "DeleteQueue", ADMIN).await?;
        let id = convert::required_uuid("id", &request.into_inner().id)?;
        self.services
            .routing
            .delete_queue(&principal.actor(), id)
            .await?;
        Ok(Response::new(pb::DeleteQueueResponse {}))
    }

    async fn create_routing_rule(
        &self,
        request: Request<pb::CreateRoutingRuleRequest>,
    ) -> Reply<pb::CreateRoutingRuleResponse> {
        let principal = authorize(&request, "CreateRoutingRule", ADMIN).await?;
        let rule = rule_from_pb(request.into_inner().rule.unwrap_or_default(), None)?;
        let rule = self
            .services
            .routing
            .create_rule(&principal.actor(), rule)
            .await?;
        Ok(Response::new(pb::CreateRoutingRuleResponse {
            rule: Some(rule_to_pb(rule)),
        }))
    }

    async fn update_routing_rule(
        &self,
        request: Request<pb::UpdateRoutingRuleRequest>,
    ) -> Reply<pb::UpdateRoutingRuleResponse> {
        let principal = authorize(&request, "UpdateRoutingRule", ADMIN).await?;
        let r = request.into_inner();
        let rule = r.rule.unwrap_or_default();
        let id = convert::required_uuid("rule.id", &rule.id)?;
        let patch = rule_from_pb(rule, Some(id))?;
        let rule = self
            .services
            .routing
            .update_rule(
                &principal.actor(),
                id,
                patch,
                convert::mask_paths(r.update_mask),
                convert::etag(r.etag),
            )
            .await?;
        Ok(Response::new(pb::UpdateRoutingRuleResponse {
            rule: Some(rule_to_pb(rule)),
        }))
    }

    async fn list_routing_rules(
        &self,
        request: Request<pb::ListRoutingRulesRequest>,
    ) -> Reply<pb::ListRoutingRulesResponse> {
        authorize(&request, "ListRoutingRules", ADMIN).await?;
        let rules = self.services.routing.rules().await?;
        Ok(Response::new(pb::ListRoutingRulesResponse {
            rules: rules.into_iter().map(rule_to_pb).collect(),
        }))
    }

    async fn delete_routing_rule(
        &self,
        request: Request<pb::DeleteRoutingRuleRequest>,
    ) -> Reply<pb::DeleteRoutingRuleResponse> {
        let principal = authorize(&request, "DeleteRoutingRule", ADMIN).await?;
        let id = convert::required_uuid("id", &request.into_inner().id)?;
        self.services
            .routing
            .delete_rule(&principal.actor(), id)
            .await?;
        Ok(Response::new(pb::DeleteRoutingRuleResponse {}))
    }

    async fn create_sla_policy(
        &self,
        r: Request<pb::CreateSlaPolicyRequest>,
    ) -> Reply<pb::CreateSlaPolicyResponse> {
        admin_sla::create_policy(&self.services, r).await
    }

    async fn update_sla_policy(
        &self,
        r: Request<pb::UpdateSlaPolicyRequest>,
    ) -> Reply<pb::UpdateSlaPolicyResponse> {
        admin_sla::update_policy(&self.services, r).await
    }

    async fn list_sla_policies(
        &self,
        r: Request<pb::ListSlaPoliciesRequest>,
    ) -> Reply<pb::ListSlaPoliciesResponse> {
        admin_sla::list_policies(&self.services, r).await
    }

    async fn delete_sla_policy(
        &self,
        r: Request<pb::DeleteSlaPolicyRequest>,
    ) -> Reply<pb::DeleteSlaPolicyResponse> {
        admin_sla::delete_policy(&self.services, r).await
    }

    async fn create_calendar(
        &self,
        r: Request<pb::CreateCalendarRequest>,
    ) -> Reply<pb::CreateCalendarResponse> {
        admin_sla::create_calendar(&self.services, r).await
    }

    async fn update_calendar(
        &self,
        r: Request<pb::UpdateCalendarRequest>,
    ) -> Reply<pb::UpdateCalendarResponse> {
        admin_sla::update_calendar(&self.services, r).await
    }

    async fn list_calendars(
        &self,
        r: Request<pb::ListCalendarsRequest>,
    ) -> Reply<pb::ListCalendarsResponse> {
        admin_sla::list_calendars(&self.services, r).await
    }

    async fn delete_calendar(
        &self,
        r: Request<pb::DeleteCalendarRequest>,
    ) -> Reply<pb::DeleteCalendarResponse> {
        admin_sla::delete_calendar(&self.services, r).await
    }

    async fn list_audit_entries(
        &self,
        request: Request<pb::ListAuditEntriesRequest>,
    ) -> Reply<pb::ListAuditEntriesResponse> {
        authorize(&request, "ListAuditEntries", ADMIN).await?;
        let r = request.into_inner();
        let (entries, next_page_token) = self
            .services
            .audit
            .list(&r.filter, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListAuditEntriesResponse {
            entries: entries
                .into_iter()
                .map(convert::audit_entry_to_pb)
                .collect(),
            next_page_token,
        }))
    }
}

fn rule_from_pb(r: pb::RoutingRule, id: Option<Uuid>) -> Result<RoutingRule, Status> {
    let mut v = Violations::new();
    let (conditions, actions) = rule_parts_from_pb(
        r.conditions.unwrap_or_default(),
        r.actions.unwrap_or_default(),
        &mut v,
    );
    v.finish().map_err(ServiceError::Invalid)?;
    // Stamped by the service as it saves.
    let at = chrono::DateTime::UNIX_EPOCH;
    Ok(RoutingRule {
        // A new rule gets its id from the service.
        id: id.unwrap_or_default(),
        name: r.name.trim().to_owned(),
        position: r.position,
        enabled: r.enabled,
        conditions,
        actions,
        version: 0,
        created_at: at,
        updated_at: at,
    })
}

/// The fields of an agent as a client sent them; the service applies them.
fn agent_patch(a: pb::Agent) -> Result<AgentPatch, Status> {
    let mut v = Violations::new();
    let patch = AgentPatch {
        availability: availability_from_pb(a.availability, "agent.availability", &mut v),
        queue_ids: queue_ids("agent.queue_ids", &a.queue_ids, &mut v),
        name: a.name,
        email: a.email,
        skills: a.skills,
        tier: a.tier,
        capacity: a.capacity,
        vip_handler: a.vip_handler,
    };
    v.finish().map_err(ServiceError::Invalid)?;
    Ok(patch)
}
