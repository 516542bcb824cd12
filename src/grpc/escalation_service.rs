//! `ticketd.v1.EscalationService`: authorise, convert, call the service, convert back.

use tonic::{Request, Response, Status};

use super::auth::{BOTS, BRIDGE, GATEWAYS, authorize};
use super::convert::{self, conversation_update_to_pb, event_to_pb, leased_to_pb, ticket_to_pb};
use super::pb::{self, escalation_service_server::EscalationService};
use super::streams::{GrpcStream, to_grpc};
use crate::domain::conversation::ConversationInput;
use crate::domain::validation::Violations;
use crate::service::escalation::{CustomerMessageInput, EscalateInput, MessageTarget};
use crate::service::satisfaction::RatingInput;
use crate::service::sla::SlaReadings;
use crate::service::watch::ConversationFilter;
use crate::service::{AckInput, ServiceError, Services};

pub struct EscalationApi {
    services: Services,
}

impl EscalationApi {
    pub fn new(services: Services) -> Self {
        Self { services }
    }

    /// The calendars SLA clocks are measured on, for rendering tickets.
    async fn cals(&self) -> Result<SlaReadings, Status> {
        Ok(self.services.sla.readings().await?)
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl EscalationService for EscalationApi {
    async fn escalate_conversation(
        &self,
        request: Request<pb::EscalateConversationRequest>,
    ) -> Reply<pb::EscalateConversationResponse> {
        let principal = authorize(&request, "EscalateConversation", BOTS).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let c = r.conversation.unwrap_or_default();
        let transcript = c
            .transcript
            .into_iter()
            .enumerate()
            .filter_map(|(i, m)| {
                convert::transcript_from_pb(&format!("conversation.transcript[{i}]"), m, &mut v)
            })
            .collect();
        let input = EscalateInput {
            conversation: ConversationInput {
                channel: convert::channel_from_pb(c.channel, "conversation.channel", &mut v),
                source: c.source.trim().to_owned(),
                external_id: c.conversation_id.trim().to_owned(),
                transcript,
                summary: c.summary,
                intent: c.intent,
                metadata: c.metadata.into_iter().collect(),
            },
            contact: r.contact.map(convert::contact_from_pb),
            priority: convert::priority_from_pb(r.priority, "priority", &mut v),
            ticket_type: convert::type_from_pb(r.r#type, "type", &mut v),
            assignee_id: convert::optional_uuid("assignee_id", &r.assignee_id, &mut v),
            queue_id: convert::optional_uuid("queue_id", &r.queue_id, &mut v),
            subject: r.subject,
            reason: r.reason,
            tags: r.tags,
            request_id: r.request_id,
        };
        v.finish().map_err(ServiceError::Invalid)?;
        let (ticket, created) = self.services.escalation.escalate(&principal, input).await?;
        Ok(Response::new(pb::EscalateConversationResponse {
            ticket: Some(ticket_to_pb(&self.cals().await?, ticket)),
            created,
        }))
    }

    async fn get_conversation_ticket(
        &self,
        request: Request<pb::GetConversationTicketRequest>,
    ) -> Reply<pb::GetConversationTicketResponse> {
        let principal = authorize(&request, "GetConversationTicket", BOTS).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        v.line("source", &r.source, true, 256);
        v.line("conversation_id", &r.conversation_id, true, 256);
        v.finish().map_err(ServiceError::Invalid)?;
        let ticket = self
            .services
            .escalation
            .conversation_ticket(&principal, r.source.trim(), r.conversation_id.trim())
            .await?;
        Ok(Response::new(pb::GetConversationTicketResponse {
            ticket: Some(ticket_to_pb(&self.cals().await?, ticket)),
        }))
    }

    async fn post_customer_message(
        &self,
        request: Request<pb::PostCustomerMessageRequest>,
    ) -> Reply<pb::PostCustomerMessageResponse> {
        let principal = authorize(&request, "PostCustomerMessage", GATEWAYS).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let target = if !r.ticket_id.is_empty() {
            convert::uuid("ticket_id", &r.ticket_id, &mut v).map(MessageTarget::Ticket)
        } else if !r.conversation_id.is_empty() || !r.source.is_empty() {
            Some(MessageTarget::Conversation {
                source: r.source.trim().to_owned(),
                external_id: r.conversation_id.trim().to_owned(),
            })
        } else {
            v.add(
                "conversation_id",
                "name the conversation (source and conversation_id) or ticket_id",
            );
            None
        };
        let channel = convert::channel_from_pb(r.channel, "channel", &mut v);
        v.finish().map_err(ServiceError::Invalid)?;
        let target = target
            .ok_or_else(|| Status::invalid_argument("conversation_id or ticket_id is required"))?;
        let outcome = self
            .services
            .escalation
            .post_customer_message(
                &principal,
                CustomerMessageInput {
                    target,
                    channel,
                    sender: r.sender,
                    text: r.text,
                    attachments: r
                        .attachments
                        .into_iter()
                        .map(convert::attachment_from_pb)
                        .collect(),
                    external_message_id: r.external_message_id.trim().to_owned(),
                    request_id: r.request_id,
                    contact: r.contact.map(convert::contact_from_pb),
                    email: None,
                },
            )
            .await?;
        Ok(Response::new(pb::PostCustomerMessageResponse {
            ticket: Some(ticket_to_pb(&self.cals().await?, outcome.ticket)),
            entry: Some(event_to_pb(outcome.entry)),
            duplicate: outcome.duplicate,
            follow_up: outcome.follow_up,
            created: outcome.created,
        }))
    }

    type SubscribeChannelStream = GrpcStream<pb::SubscribeChannelResponse>;

    async fn subscribe_channel(
        &self,
        request: Request<pb::SubscribeChannelRequest>,
    ) -> Reply<Self::SubscribeChannelStream> {
        let principal = authorize(&request, "SubscribeChannel", GATEWAYS).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let channel = convert::channel_from_pb(r.channel, "channel", &mut v);
        v.finish().map_err(ServiceError::Invalid)?;
        let permit = self.services.api_keys.open_stream(&principal)?;
        let output = self
            .services
            .delivery
            .subscribe(&principal, channel, &r.consumer_group)
            .await?;
        Ok(Response::new(to_grpc(output, leased_to_pb, false, permit)))
    }

    async fn claim_deliveries(
        &self,
        request: Request<pb::ClaimDeliveriesRequest>,
    ) -> Reply<pb::ClaimDeliveriesResponse> {
        let principal = authorize(&request, "ClaimDeliveries", GATEWAYS).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let channel = convert::channel_from_pb(r.channel, "channel", &mut v);
        let wait = match r.wait {
            None => std::time::Duration::ZERO,
            Some(d) if d.seconds < 0 || d.nanos < 0 => {
                v.add("wait", "must not be negative");
                std::time::Duration::ZERO
            }
            Some(d) => std::time::Duration::new(d.seconds as u64, d.nanos as u32),
        };
        v.finish().map_err(ServiceError::Invalid)?;
        let leased = self
            .services
            .delivery
            .claim(&principal, channel, &r.consumer_group, r.max_messages, wait)
            .await?;
        Ok(Response::new(pb::ClaimDeliveriesResponse {
            messages: leased
                .into_iter()
                .filter_map(|m| leased_to_pb(m).message)
                .collect(),
        }))
    }

    async fn record_satisfaction(
        &self,
        request: Request<pb::RecordSatisfactionRequest>,
    ) -> Reply<pb::RecordSatisfactionResponse> {
        let principal = authorize(&request, "RecordSatisfaction", BRIDGE).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let ticket_id = convert::optional_uuid("ticket_id", &r.ticket_id, &mut v);
        v.line("request_id", &r.request_id, false, 128);
        v.finish().map_err(ServiceError::Invalid)?;
        let ticket = self
            .services
            .satisfaction
            .record(
                &principal,
                RatingInput {
                    survey_token: r.survey_token,
                    ticket_id,
                    score: r.score,
                    comment: r.comment,
                },
            )
            .await?;
        Ok(Response::new(pb::RecordSatisfactionResponse {
            ticket: Some(ticket_to_pb(&self.cals().await?, ticket)),
        }))
    }

    async fn ack_delivery(
        &self,
        request: Request<pb::AckDeliveryRequest>,
    ) -> Reply<pb::AckDeliveryResponse> {
        let principal = authorize(&request, "AckDelivery", GATEWAYS).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let message_id = convert::uuid("message_id", &r.message_id, &mut v);
        let outcome = convert::outcome_from_pb(r.outcome, "outcome", &mut v);
        let lease_id = convert::optional_uuid("lease_id", &r.lease_id, &mut v);
        v.finish().map_err(ServiceError::Invalid)?;
        let message_id =
            message_id.ok_or_else(|| Status::invalid_argument("message_id is required"))?;
        let status = self
            .services
            .delivery
            .acknowledge(
                &principal,
                AckInput {
                    message_id,
                    consumer_group: r.consumer_group,
                    lease_id,
                    outcome,
                    provider_message_id: r.provider_message_id,
                    error: r.error,
                },
            )
            .await?;
        Ok(Response::new(pb::AckDeliveryResponse {
            status: convert::delivery_status_from_domain(status),
        }))
    }

    type WatchConversationsStream = GrpcStream<pb::WatchConversationsResponse>;

    async fn watch_conversations(
        &self,
        request: Request<pb::WatchConversationsRequest>,
    ) -> Reply<Self::WatchConversationsStream> {
        let principal = authorize(&request, "WatchConversations", BRIDGE).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let channel = convert::channel_from_pb(r.channel, "channel", &mut v);
        v.finish().map_err(ServiceError::Invalid)?;
        let filter = ConversationFilter {
            source: (!r.source.is_empty()).then_some(r.source),
            channel,
            conversation_id: (!r.conversation_id.is_empty()).then_some(r.conversation_id),
        };
        let permit = self.services.api_keys.open_stream(&principal)?;
        let output = self
            .services
            .watch
            .watch_conversations(&principal, filter, r.after_cursor)?;
        let convert = |update| pb::WatchConversationsResponse {
            update: Some(conversation_update_to_pb(update)),
        };
        Ok(Response::new(to_grpc(output, convert, true, permit)))
    }

    async fn ingest_email(
        &self,
        request: Request<pb::IngestEmailRequest>,
    ) -> Reply<pb::IngestEmailResponse> {
        let principal = authorize(&request, "IngestEmail", GATEWAYS).await?;
        let r = request.into_inner();
        let outcome = self
            .services
            .escalation
            .ingest_email(&principal, &r.raw, r.recipient.trim(), &r.request_id)
            .await?;
        let threaded_by = outcome
            .threaded_by
            .map_or(0, |rule| convert::threaded_by_to_pb(rule.as_str()));
        let mut response = pb::IngestEmailResponse {
            threaded_by,
            ignored_reason: outcome.ignored_reason,
            ..Default::default()
        };
        if let Some(message) = outcome.message {
            response.ticket = Some(ticket_to_pb(&self.cals().await?, message.ticket));
            response.entry = Some(event_to_pb(message.entry));
            response.created = message.created;
            response.duplicate = message.duplicate;
            response.follow_up = message.follow_up;
        }
        Ok(Response::new(response))
    }
}
