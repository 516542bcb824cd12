//! The gRPC edge: generated protobuf types, one adapter per service, conversions,
//! authentication and limits. The only module that knows about tonic.

mod admin_service;
mod admin_sla;
mod auth;
mod automation_service;
mod codec;
mod consistency;
mod contact_service;
mod convert;
mod edge;
mod error;
mod escalation_service;
pub(crate) mod gate;
pub mod http_error;
mod report_service;
mod streams;
mod ticket_service;
mod view_service;
mod webhook_service;

use std::time::Duration;

use tonic::service::Routes;

pub use admin_service::AdminApi;
pub use automation_service::AutomationApi;
pub use consistency::ConsistencyLayer;
pub use contact_service::ContactApi;
pub use edge::EdgeLayer;
pub use error::error_chain;
pub use escalation_service::EscalationApi;
pub use gate::{GateLayer, GateSettings, RateLimits};
pub use report_service::ReportApi;
pub use streams::RESUME_CURSOR;
pub use ticket_service::TicketApi;
pub use view_service::ViewApi;
pub use webhook_service::{WebhookApi, webhook_payload};

use crate::service::Services;

/// Generated messages, clients and servers for `ticketd.v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("ticketd.v1");

    /// The encoded descriptors of every ticketd proto file, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("ticketd_descriptor");
}

/// Names the ticket a call is about on the call's span (and so on its trace and logs).
pub(crate) fn trace_ticket(id: &uuid::Uuid) {
    tracing::Span::current().record("ticket_id", tracing::field::display(id));
}

/// Limits applied to every gRPC service.
#[derive(Debug, Clone)]
pub struct GrpcLimits {
    /// Largest message accepted or sent, in bytes.
    pub max_message_bytes: usize,
    /// Largest raw email `IngestEmail` takes; its service accepts messages that large.
    pub max_email_bytes: usize,
    pub request_timeout: Duration,
}

/// Builds the routes of ticketd's own services (health and reflection are added by the app).
pub fn routes(services: &Services, limits: &GrpcLimits) -> Routes {
    let tickets =
        pb::ticket_service_server::TicketServiceServer::new(TicketApi::new(services.clone()))
            .max_decoding_message_size(limits.max_message_bytes)
            .max_encoding_message_size(limits.max_message_bytes);
    let admin = pb::admin_service_server::AdminServiceServer::new(AdminApi::new(services.clone()))
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_message_bytes);
    // The gate holds each method to its own limit; this is the largest of them.
    let escalation_limit = limits.max_message_bytes.max(
        limits
            .max_email_bytes
            .saturating_add(gate::EMAIL_ENVELOPE_BYTES),
    );
    let escalation = pb::escalation_service_server::EscalationServiceServer::new(
        EscalationApi::new(services.clone()),
    )
    .max_decoding_message_size(escalation_limit)
    .max_encoding_message_size(limits.max_message_bytes);
    let contacts =
        pb::contact_service_server::ContactServiceServer::new(ContactApi::new(services.clone()))
            .max_decoding_message_size(limits.max_message_bytes)
            .max_encoding_message_size(limits.max_message_bytes);
    let automation = pb::automation_service_server::AutomationServiceServer::new(
        AutomationApi::new(services.clone()),
    )
    .max_decoding_message_size(limits.max_message_bytes)
    .max_encoding_message_size(limits.max_message_bytes);
    let views = pb::view_service_server::ViewServiceServer::new(ViewApi::new(services.clone()))
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_message_bytes);
    let webhooks =
        pb::webhook_service_server::WebhookServiceServer::new(WebhookApi::new(services.clone()))
            .max_decoding_message_size(limits.max_message_bytes)
            .max_encoding_message_size(limits.max_message_bytes);
    let reports =
        pb::report_service_server::ReportServiceServer::new(ReportApi::new(services.clone()))
            .max_decoding_message_size(limits.max_message_bytes)
            .max_encoding_message_size(limits.max_message_bytes);
    Routes::new(tickets)
        .add_service(admin)
        .add_service(reports)
        .add_service(webhooks)
        .add_service(automation)
        .add_service(views)
        .add_service(contacts)
        .add_service(escalation)
}
