//! Traces and metrics of a real server: spans reach an OTLP receiver with the caller's
//! trace id, and `/metrics` counts calls. Its own test binary, because the tracing
//! subscriber and the metrics recorder are process-wide.

#[path = "api/harness.rs"]
#[allow(dead_code, unused_macros, unused_imports)]
mod harness;

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use ticketd::config::LogFormat;
use ticketd::grpc::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use harness::{Backend, TestDatabase, new_ticket, settings_for, start};

/// An OTLP trace receiver that keeps every span it is sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match &a.value.as_ref()?.value {
            Some(Value::StringValue(s)) => Some(s.clone()),
            Some(Value::IntValue(i)) => Some(i.to_string()),
            _ => None,
        })
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A request carrying a W3C `traceparent` with [`TRACE_ID`].
fn traced<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    request
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("metrics listener");
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_carry_the_callers_trace_id_and_metrics_count_calls() {
    let receiver = Receiver::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let metrics_addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let telemetry =
        ticketd::telemetry::init(LogFormat::Pretty, Some(&collector)).expect("telemetry");

    let database = TestDatabase::create(&Backend::Sqlite).await;
    let mut settings = settings_for(&database);
    settings.metrics_listen = Some(metrics_addr.clone());
    let app = start(settings, database).await;

    let trace_id = TRACE_ID;
    let mut tickets = app.tickets();
    let ticket = tickets
        .create_ticket(traced(new_ticket("Traced")))
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    tickets
        .get_ticket(traced(pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::Id(ticket.id.clone())),
        }))
        .await
        .unwrap();
    let missing = tickets
        .get_ticket(traced(pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::Number(999)),
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    tonic_health::pb::health_client::HealthClient::new(app.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();

    // A reply travels to a gateway and is acknowledged.
    let mut escalation = app.escalation();
    let escalated = escalation
        .escalate_conversation(pb::EscalateConversationRequest {
            conversation: Some(pb::Conversation {
                source: "bot".into(),
                conversation_id: "c-1".into(),
                channel: pb::Channel::Chat as i32,
                ..Default::default()
            }),
            contact: Some(pb::Contact {
                external_id: "crm-1".into(),
                ..Default::default()
            }),
            subject: "Help".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    let mut stream = escalation
        .subscribe_channel(pb::SubscribeChannelRequest {
            channel: pb::Channel::Chat as i32,
            consumer_group: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    tickets
        .add_reply(pb::AddReplyRequest {
            ticket_id: escalated.id.clone(),
            body: "Hi".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let message = tokio_stream::StreamExt::next(&mut stream)
        .await
        .unwrap()
        .unwrap()
        .message
        .unwrap();
    escalation
        .ack_delivery(pb::AckDeliveryRequest {
            message_id: message.message_id,
            outcome: pb::DeliveryOutcome::Delivered as i32,
            lease_id: message.lease_id,
            ..Default::default()
        })
        .await
        .unwrap();
    drop(stream);

    // The HTTP routes count under one label, by the code of their answer.
    for path in [
        "/v1/tickets/not-an-id",
        &format!("/v1/tickets/{}", escalated.id),
    ] {
        reqwest::Client::new()
            .get(format!("http://{}{path}", app.addr))
            .bearer_auth(&app.admin_secret)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }

    let metrics = scrape(&metrics_addr).await;
    for expected in [
        r#"ticketd_rpc_requests_total{method="rest",code="INVALID_ARGUMENT"} 1"#,
        r#"ticketd_rpc_requests_total{method="rest",code="OK"} 1"#,
        r#"ticketd_rpc_requests_total{method="/ticketd.v1.TicketService/CreateTicket",code="OK"} 1"#,
        r#"ticketd_rpc_requests_total{method="/ticketd.v1.TicketService/GetTicket",code="NOT_FOUND"} 1"#,
        r#"ticketd_tickets_created_total{channel="none",priority="MEDIUM"} 1"#,
        "ticketd_rpc_duration_seconds_bucket",
        "ticketd_db_transaction_seconds_bucket",
        r#"ticketd_escalations_total{outcome="created"} 1"#,
        r#"ticketd_outbound_messages_total{state="queued",channel="CHAT"} 1"#,
        r#"ticketd_outbound_messages_total{state="leased",channel="CHAT"} 1"#,
        r#"ticketd_outbound_messages_total{state="delivered",channel="CHAT"} 1"#,
        r#"ticketd_delivery_latency_seconds_count{channel="CHAT"} 1"#,
        r#"ticketd_open_streams{kind="delivery"}"#,
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from:\n{metrics}"
        );
    }

    app.shutdown().await.unwrap();
    telemetry.shutdown();
    let spans = receiver.spans.lock().unwrap().clone();
    let ours: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == trace_id)
        .collect();
    let server = |name: &'static str| ours.iter().copied().filter(move |s| s.name == name);
    let create = server("ticketd.v1.TicketService/CreateTicket")
        .next()
        .expect("a server span for CreateTicket");
    assert_eq!(
        hex(&create.parent_span_id),
        "00f067aa0ba902b7",
        "the caller's span is the parent"
    );
    assert_eq!(
        attribute(create, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    assert_eq!(attribute(create, "rpc.system").as_deref(), Some("grpc"));
    let gets: Vec<&Span> = server("ticketd.v1.TicketService/GetTicket").collect();
    assert!(
        gets.iter()
            .any(|s| attribute(s, "ticket_id").as_deref() == Some(ticket.id.as_str()))
    );
    assert!(
        gets.iter()
            .any(|s| attribute(s, "rpc.grpc.status_code").as_deref() == Some("5"))
    );
    assert!(
        ours.iter()
            .any(|s| s.parent_span_id == create.span_id && s.name != create.name),
        "store and service spans are children of the server span"
    );
    assert!(
        !spans.iter().any(|s| s.name.contains("grpc.health")),
        "health checks are not traced"
    );
}
