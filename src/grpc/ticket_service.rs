//! `ticketd.v1.TicketService`: authorise, convert, call the service, convert back.

use tonic::{Request, Response, Status};

use super::auth::{ANYONE, STAFF, STAFF_OR_BOT, authorize};
use super::convert::{self, event_to_pb, ticket_to_pb};
use super::pb::{self, ticket_service_server::TicketService};
use super::streams::{GrpcStream, to_grpc};
use crate::domain::event::Event;
use crate::domain::ticket::TicketKey;
use crate::domain::validation::Violations;
use crate::service::routing::AssignTarget;
use crate::service::sla::SlaReadings;
use crate::service::tickets::{
    AttachmentInput, CreateTicketInput, ListTicketsInput, TicketPatch, TicketView,
};
use crate::service::{ServiceError, Services};

pub struct TicketApi {
    services: Services,
}

impl TicketApi {
    pub fn new(services: Services) -> Self {
        Self { services }
    }

    /// The calendars SLA clocks are measured on, for rendering tickets.
    async fn cals(&self) -> Result<SlaReadings, Status> {
        Ok(self.services.sla.readings().await?)
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn checked<T>(v: Violations, value: T) -> Result<T, Status> {
    v.finish().map_err(ServiceError::Invalid)?;
    Ok(value)
}

#[tonic::async_trait]
impl TicketService for TicketApi {
    async fn create_ticket(
        &self,
        request: Request<pb::CreateTicketRequest>,
    ) -> Reply<pb::CreateTicketResponse> {
        let principal = authorize(&request, "CreateTicket", STAFF_OR_BOT).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let input = CreateTicketInput {
            priority: convert::priority_from_pb(r.priority, "priority", &mut v),
            ticket_type: convert::type_from_pb(r.r#type, "type", &mut v),
            assignee_id: convert::optional_uuid("assignee_id", &r.assignee_id, &mut v),
            queue_id: convert::optional_uuid("queue_id", &r.queue_id, &mut v),
            contact: r.contact.map(convert::contact_from_pb),
            subject: r.subject,
            description: r.description,
            tags: r.tags,
            custom_fields: r.custom_fields.into_iter().collect(),
            request_id: r.request_id,
        };
        let input = checked(v, input)?;
        let (ticket, _created) = self.services.tickets.create(&principal, input).await?;
        Ok(Response::new(pb::CreateTicketResponse {
            ticket: Some(ticket_to_pb(&self.cals().await?, ticket)),
        }))
    }

    async fn get_ticket(
        &self,
        request: Request<pb::GetTicketRequest>,
    ) -> Reply<pb::GetTicketResponse> {
        let principal = authorize(&request, "GetTicket", STAFF_OR_BOT).await?;
        let mut v = Violations::new();
        let key = match request.into_inner().key {
            Some(pb::get_ticket_request::Key::Id(id)) => {
                convert::uuid("id", &id, &mut v).map(TicketKey::Id)
            }
            Some(pb::get_ticket_request::Key::Number(n)) if n > 0 => Some(TicketKey::Number(n)),
            Some(pb::get_ticket_request::Key::Number(_)) => {
                v.add("number", "must be positive");
                None
            }
            None => {
                v.add("id", "id or number is required");
                None
            }
        };
        let key =
            checked(v, key)?.ok_or_else(|| Status::invalid_argument("id or number is required"))?;
        if let TicketKey::Id(id) = &key {
            super::trace_ticket(id);
        }
        let ticket = self.services.tickets.get_as(&principal, key).await?;
        Ok(Response::new(pb::GetTicketResponse {
            ticket: Some(ticket_to_pb(&self.cals().await?, ticket)),
        }))
    }

    async fn list_tickets(
        &self,
        request: Request<pb::ListTicketsRequest>,
    ) -> Reply<pb::ListTicketsResponse> {
        let principal = authorize(&request, "ListTickets", STAFF_OR_BOT).await?;
        let r = request.into_inner();
        let input = ListTicketsInput {
            page_size: r.page_size,
            page_token: r.page_token,
            view: match pb::TicketView::try_from(r.view) {
                Ok(pb::TicketView::MyTickets) => Some(TicketView::MyTickets),
                Ok(pb::TicketView::Unassigned) => Some(TicketView::Unassigned),
                Ok(pb::TicketView::Overdue) => Some(TicketView::Overdue),
                Ok(pb::TicketView::AllOpen) => Some(TicketView::AllOpen),
                Ok(pb::TicketView::Unspecified) => None,
                Err(_) => {
                    return Err(ServiceError::invalid(
                        "view",
                        format!("{} is not a valid TicketView", r.view),
                    )
                    .into());
                }
            },
            filter: r.filter,
            order_by: r.order_by,
            view_id: r.view_id,
        };
        let read_mask = convert::mask_paths(r.read_mask);
        let mut v = Violations::new();
        crate::domain::view::check_columns("read_mask", &read_mask, &mut v);
        v.finish().map_err(ServiceError::Invalid)?;
        let (tickets, next_page_token, columns) =
            self.services.tickets.list(&principal, input).await?;
        let mask = if read_mask.is_empty() {
            columns
        } else {
            read_mask
        };
        let cals = self.cals().await?;
        Ok(Response::new(pb::ListTicketsResponse {
            tickets: tickets
                .into_iter()
                .map(|t| convert::mask_ticket(ticket_to_pb(&cals, t), &mask))
                .collect(),
            next_page_token,
        }))
    }

    async fn count_tickets(
        &self,
        request: Request<pb::CountTicketsRequest>,
    ) -> Reply<pb::CountTicketsResponse> {
        let principal = authorize(&request, "CountTickets", STAFF_OR_BOT).await?;
        let r = request.into_inner();
        let count = self
            .services
            .tickets
            .count(&principal, &r.filter, &r.view_id)
            .await?;
        Ok(Response::new(pb::CountTicketsResponse { count }))
    }

    async fn search_tickets(
        &self,
        request: Request<pb::SearchTicketsRequest>,
    ) -> Reply<pb::SearchTicketsResponse> {
        let principal = authorize(&request, "SearchTickets", STAFF_OR_BOT).await?;
        let r = request.into_inner();
        let (results, next_page_token) = self
            .services
            .tickets
            .search(&principal, &r.query, &r.filter, r.page_size, &r.page_token)
            .await?;
        let cals = self.cals().await?;
        Ok(Response::new(pb::SearchTicketsResponse {
            results: results
                .into_iter()
                .map(|r| pb::SearchResult {
                    ticket: Some(ticket_to_pb(&cals, r.ticket)),
                    snippets: r
                        .snippets
                        .into_iter()
                        .map(|s| pb::SearchSnippet {
                            field: s.field.to_owned(),
                            text: s.text,
                            highlights: s
                                .highlights
                                .into_iter()
                                .map(|(start, end)| pb::TextSpan { start, end })
                                .collect(),
                        })
                        .collect(),
                    score: r.score,
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn update_ticket(
        &self,
        request: Request<pb::UpdateTicketRequest>,
    ) -> Reply<pb::UpdateTicketResponse> {
        let principal = authorize(&request, "UpdateTicket", STAFF).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let ticket = r.ticket.unwrap_or_default();
        let id = convert::uuid("ticket.id", &ticket.id, &mut v);
        let patch = TicketPatch {
            status: convert::status_from_pb(ticket.status, "ticket.status", &mut v),
            priority: convert::priority_from_pb(ticket.priority, "ticket.priority", &mut v),
            ticket_type: convert::type_from_pb(ticket.r#type, "ticket.type", &mut v),
            assignee_id: convert::optional_uuid("ticket.assignee_id", &ticket.assignee_id, &mut v),
            queue_id: convert::optional_uuid("ticket.queue_id", &ticket.queue_id, &mut v),
            contact: ticket.contact.map(convert::contact_from_pb),
            subject: ticket.subject,
            description: ticket.description,
            tags: ticket.tags,
            custom_fields: ticket.custom_fields.into_iter().collect(),
        };
        let (mask, etag) = (convert::mask_paths(r.update_mask), convert::etag(r.etag));
        let id =
            checked(v, id)?.ok_or_else(|| Status::invalid_argument("ticket.id is required"))?;
        super::trace_ticket(&id);
        let ticket = self
            .services
            .tickets
            .update(&principal, id, patch, mask, etag)
            .await?;
        Ok(Response::new(pb::UpdateTicketResponse {
            ticket: Some(ticket_to_pb(&self.cals().await?, ticket)),
        }))
    }

    async fn add_reply(
        &self,
        request: Request<pb::AddReplyRequest>,
    ) -> Reply<pb::AddReplyResponse> {
        let principal = authorize(&request, "AddReply", STAFF).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let id = convert::uuid("ticket_id", &r.ticket_id, &mut v);
        let channel = convert::channel_from_pb(r.channel, "channel", &mut v);
        let attachments = r
            .attachments
            .into_iter()
            .map(|a| AttachmentInput {
                name: a.name,
                content_type: a.content_type,
                content: a.content,
            })
            .collect();
        let id =
            checked(v, id)?.ok_or_else(|| Status::invalid_argument("ticket_id is required"))?;
        super::trace_ticket(&id);
        let (entry, ticket) = self
            .services
            .tickets
            .add_reply(&principal, id, r.body, channel, attachments, &r.request_id)
            .await?;
        Ok(Response::new(pb::AddReplyResponse {
            entry: Some(event_to_pb(entry)),
            ticket: Some(ticket_to_pb(&self.cals().await?, ticket)),
        }))
    }

    async fn add_note(&self, request: Request<pb::AddNoteRequest>) -> Reply<pb::AddNoteResponse> {
        let principal = authorize(&request, "AddNote", STAFF).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let id = convert::uuid("ticket_id", &r.ticket_id, &mut v);
        let id =
            checked(v, id)?.ok_or_else(|| Status::invalid_argument("ticket_id is required"))?;
        super::trace_ticket(&id);
        let (entry, ticket) = self
            .services
            .tickets
            .add_note(&principal, id, r.body, &r.request_id)
            .await?;
        Ok(Response::new(pb::AddNoteResponse {
            entry: Some(event_to_pb(entry)),
            ticket: Some(ticket_to_pb(&self.cals().await?, ticket)),
        }))
    }

    async fn log_time(&self, request: Request<pb::LogTimeRequest>) -> Reply<pb::LogTimeResponse> {
        let principal = authorize(&request, "LogTime", STAFF).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let id = convert::uuid("ticket_id", &r.ticket_id, &mut v);
        let agent_id = convert::optional_uuid("agent_id", &r.agent_id, &mut v);
        let seconds = match r.duration {
            Some(d) if d.nanos == 0 => d.seconds,
            Some(_) => {
                v.add("duration", "must be whole seconds");
                0
            }
            None => {
                v.add("duration", "is required");
                0
            }
        };
        let id =
            checked(v, id)?.ok_or_else(|| Status::invalid_argument("ticket_id is required"))?;
        super::trace_ticket(&id);
        let (entry, ticket) = self
            .services
            .tickets
            .log_time(&principal, id, agent_id, seconds, r.note, &r.request_id)
            .await?;
        Ok(Response::new(pb::LogTimeResponse {
            entry: Some(event_to_pb(entry)),
            ticket: Some(ticket_to_pb(&self.cals().await?, ticket)),
        }))
    }

    async fn list_activity(
        &self,
        request: Request<pb::ListActivityRequest>,
    ) -> Reply<pb::ListActivityResponse> {
        let principal = authorize(&request, "ListActivity", STAFF_OR_BOT).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let id = convert::uuid("ticket_id", &r.ticket_id, &mut v);
        let id =
            checked(v, id)?.ok_or_else(|| Status::invalid_argument("ticket_id is required"))?;
        super::trace_ticket(&id);
        let (entries, next_page_token) = self
            .services
            .tickets
            .activity(&principal, id, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListActivityResponse {
            entries: entries.into_iter().map(event_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn merge_tickets(
        &self,
        request: Request<pb::MergeTicketsRequest>,
    ) -> Reply<pb::MergeTicketsResponse> {
        let principal = authorize(&request, "MergeTickets", STAFF).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let target = convert::uuid("target_ticket_id", &r.target_ticket_id, &mut v);
        let sources: Vec<_> = r
            .source_ticket_ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| convert::uuid(&format!("source_ticket_ids[{i}]"), id, &mut v))
            .collect();
        let target = checked(v, target)?
            .ok_or_else(|| Status::invalid_argument("target_ticket_id is required"))?;
        super::trace_ticket(&target);
        let (target, sources) = self
            .services
            .tickets
            .merge(&principal, target, sources, &r.request_id)
            .await?;
        let cals = self.cals().await?;
        Ok(Response::new(pb::MergeTicketsResponse {
            target: Some(ticket_to_pb(&cals, target)),
            sources: sources
                .into_iter()
                .map(|t| ticket_to_pb(&cals, t))
                .collect(),
        }))
    }

    async fn assign_ticket(
        &self,
        request: Request<pb::AssignTicketRequest>,
    ) -> Reply<pb::AssignTicketResponse> {
        let principal = authorize(&request, "AssignTicket", STAFF).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let id = convert::uuid("ticket_id", &r.ticket_id, &mut v);
        let target = match r.target {
            Some(pb::assign_ticket_request::Target::AssigneeId(agent)) => {
                convert::uuid("assignee_id", &agent, &mut v).map(AssignTarget::Agent)
            }
            Some(pb::assign_ticket_request::Target::QueueId(queue)) => {
                convert::uuid("queue_id", &queue, &mut v).map(AssignTarget::Queue)
            }
            Some(pb::assign_ticket_request::Target::Auto(true)) => Some(AssignTarget::Auto),
            Some(pb::assign_ticket_request::Target::Auto(false)) | None => {
                v.add(
                    "assignee_id",
                    "name an assignee_id, a queue_id, or auto = true",
                );
                None
            }
        };
        let (id, target) = checked(v, (id, target))?;
        let (Some(id), Some(target)) = (id, target) else {
            return Err(Status::invalid_argument(
                "ticket_id and a target are required",
            ));
        };
        let ticket = self.services.routing.assign(&principal, id, target).await?;
        Ok(Response::new(pb::AssignTicketResponse {
            ticket: Some(ticket_to_pb(&self.cals().await?, ticket)),
        }))
    }

    async fn escalate_ticket(
        &self,
        request: Request<pb::EscalateTicketRequest>,
    ) -> Reply<pb::EscalateTicketResponse> {
        let principal = authorize(&request, "EscalateTicket", STAFF).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let id = convert::uuid("ticket_id", &r.ticket_id, &mut v);
        let queue = convert::optional_uuid("queue_id", &r.queue_id, &mut v);
        let id =
            checked(v, id)?.ok_or_else(|| Status::invalid_argument("ticket_id is required"))?;
        super::trace_ticket(&id);
        let ticket = self
            .services
            .routing
            .escalate_tier(&principal, id, r.target_tier, queue, &r.reason)
            .await?;
        Ok(Response::new(pb::EscalateTicketResponse {
            ticket: Some(ticket_to_pb(&self.cals().await?, ticket)),
        }))
    }

    type WatchTicketsStream = GrpcStream<pb::WatchTicketsResponse>;

    async fn watch_tickets(
        &self,
        request: Request<pb::WatchTicketsRequest>,
    ) -> Reply<Self::WatchTicketsStream> {
        let principal = authorize(&request, "WatchTickets", STAFF).await?;
        let r = request.into_inner();
        let permit = self.services.api_keys.open_stream(&principal)?;
        let output = self
            .services
            .watch
            .watch(&principal, &r.filter, r.after_cursor)?;
        // The event is shared with every other watcher: the entry copies what it needs.
        let convert = |event: std::sync::Arc<Event>| pb::WatchTicketsResponse {
            event: Some(event_to_pb(Event::clone(&event))),
        };
        Ok(Response::new(to_grpc(output, convert, true, permit)))
    }

    type GetAttachmentStream = GrpcStream<pb::GetAttachmentResponse>;

    async fn get_attachment(
        &self,
        request: Request<pb::GetAttachmentRequest>,
    ) -> Reply<Self::GetAttachmentStream> {
        let principal = authorize(&request, "GetAttachment", ANYONE).await?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let ticket_id = convert::uuid("ticket_id", &r.ticket_id, &mut v);
        let attachment_id = convert::uuid("attachment_id", &r.attachment_id, &mut v);
        v.finish().map_err(ServiceError::Invalid)?;
        let (Some(ticket_id), Some(attachment_id)) = (ticket_id, attachment_id) else {
            return Err(Status::invalid_argument(
                "ticket_id and attachment_id are required",
            ));
        };
        let file = self
            .services
            .tickets
            .attachment(&principal, ticket_id, attachment_id)
            .await?;
        let mut first = Some(pb::GetAttachmentResponse {
            chunk: Vec::new(),
            content_type: file.content_type,
            file_name: file.name,
            size: file.size_bytes,
            sha256: file.sha256,
        });
        let content = file.content;
        let stream = async_stream::stream! {
            let mut chunks = content.chunks(ATTACHMENT_CHUNK_BYTES).peekable();
            if chunks.peek().is_none() && let Some(head) = first.take() {
                yield Ok(head);
            }
            for chunk in chunks {
                let mut message = first.take().unwrap_or_default();
                message.chunk = chunk.to_vec();
                yield Ok(message);
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The most bytes of a file one `GetAttachment` message carries.
const ATTACHMENT_CHUNK_BYTES: usize = 64 * 1024;
