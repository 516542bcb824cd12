//! HTTP beside gRPC, on the same port, for callers that cannot hold a gRPC stream or send
//! a protobuf: watches as Server-Sent Events and email intake as a raw message. Each
//! route builds the gRPC request and calls the same gRPC service implementation (so
//! authorisation, validation, limits and conversions are gRPC's own); bodies are the
//! messages' proto3 JSON. The gate in front of every route has authenticated the caller
//! (`Authorization: Bearer`) and applied its key's rate limit already.

mod openapi;
pub mod rest;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio_stream::StreamExt;
use tonic::Status;

use crate::domain::auth::Principal;
use crate::grpc::http_error;
use crate::grpc::pb::escalation_service_server::EscalationService;
use crate::grpc::pb::ticket_service_server::TicketService;
use crate::grpc::{EscalationApi, TicketApi, pb};
use crate::service::Services;

/// The routes `/v1/tickets:watch`, `/v1/conversations:watch` and `/v1/email`, and every
/// unary RPC under the path its `google.api.http` rule names, calling `grpc`.
pub fn router(
    services: &Services,
    grpc: tonic::service::Routes,
    limits: &crate::grpc::GrpcLimits,
) -> Router {
    let request_timeout = limits.request_timeout;
    let rest = match descriptors()
        .ok_or_else(|| "the descriptor set does not decode".to_owned())
        .and_then(|pool| {
            rest::Transcoder::new(pool, grpc, limits.max_message_bytes, limits.max_email_bytes)
        }) {
        Ok(rest) => Some(Arc::new(rest)),
        Err(err) => {
            tracing::error!(error = %err, "REST routes unavailable");
            None
        }
    };
    let openapi = rest
        .as_ref()
        .map(|rest| Bytes::from(rest.openapi().to_string()));
    let apis = Apis {
        tickets: Arc::new(TicketApi::new(services.clone())),
        escalation: Arc::new(EscalationApi::new(services.clone())),
        rest,
        openapi,
        hooks: services.hooks.clone(),
    };
    Router::new()
        .route("/v1/openapi.json", get(openapi_document))
        .route("/v1/tickets:watch", get(watch_tickets))
        .route("/v1/conversations:watch", get(watch_conversations))
        .route("/v1/email", post(ingest_email))
        .route("/v1/hooks/{id}", post(receive_hook))
        .route("/v1/{*rest}", axum::routing::any(transcode))
        // The gate bounds every body already (by route); axum's own 2 MiB default would
        // cut email and attachments short.
        .layer(axum::extract::DefaultBodyLimit::disable())
        // A second before the server's own limit, which would answer in gRPC's terms.
        .layer(axum::middleware::from_fn(move |request, next| {
            within(
                request_timeout.saturating_sub(std::time::Duration::from_secs(1)),
                request,
                next,
            )
        }))
        .with_state(apis)
}

#[derive(Clone)]
struct Apis {
    tickets: Arc<TicketApi>,
    escalation: Arc<EscalationApi>,
    rest: Option<Arc<rest::Transcoder>>,
    /// The OpenAPI document, made once at start-up.
    openapi: Option<Bytes>,
    hooks: crate::service::hooks::HookService,
}

/// The largest payload an inbound hook takes.
const MAX_HOOK_BODY: usize = 1024 * 1024;

/// A message from its proto3 JSON (unknown fields refused).
fn from_json<M: prost::Message + prost::Name + Default>(body: &[u8]) -> Result<M, Status> {
    let desc = descriptors()
        .and_then(|pool| pool.get_message_by_name(&M::full_name()))
        .ok_or_else(|| Status::internal("message descriptors are missing"))?;
    let options = prost_reflect::DeserializeOptions::new().deny_unknown_fields(true);
    let mut json = serde_json::Deserializer::from_slice(body);
    let dynamic =
        prost_reflect::DynamicMessage::deserialize_with_options(desc, &mut json, &options)
            .map_err(|e| Status::invalid_argument(format!("body: {e}")))?;
    dynamic
        .transcode_to::<M>()
        .map_err(|e| Status::invalid_argument(format!("body: {e}")))
}

/// `POST /v1/hooks/{id}`: a payload signed per Standard Webhooks, acted on as the hook
/// says. The `webhook-id` makes it idempotent: a replay gets the first result.
async fn receive_hook(
    State(apis): State<Apis>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Ok(id) = uuid::Uuid::parse_str(&id) else {
        return error(&Status::not_found(format!("inbound hook {id}")));
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_HOOK_BODY).await else {
        return http_error::too_large(
            &Status::resource_exhausted(format!("a hook payload is at most {MAX_HOOK_BODY} bytes")),
            axum::body::Body::from,
        );
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let hook = match apis
        .hooks
        .verify(
            id,
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
            &body,
        )
        .await
    {
        Ok(hook) => hook,
        Err(err) => return error(&Status::from(err)),
    };
    let webhook_id = header("webhook-id").unwrap_or_default().to_owned();
    let payload: pb::InboundHookPayload = match from_json(&body) {
        Ok(payload) => payload,
        Err(status) => return error(&status),
    };
    let principal = |role| Principal {
        key_id: hook.id,
        key_name: format!("hook {}", hook.name),
        role,
        agent_id: None,
        channels: Vec::new(),
        sources: vec![hook.source.clone()],
    };
    let request_id = format!("hook:{webhook_id}");
    let answer = match hook.action {
        crate::domain::hook::HookAction::CreateTicket => {
            let message = pb::CreateTicketRequest {
                subject: payload.subject,
                description: payload.description,
                priority: payload.priority,
                tags: payload.tags,
                custom_fields: payload.custom_fields,
                contact: payload.contact,
                request_id,
                ..Default::default()
            };
            let call = request(
                message,
                &headers,
                Some(principal(crate::domain::auth::Role::Bot)),
            );
            apis.tickets
                .create_ticket(call)
                .await
                .map(|r| to_json(&r.into_inner()))
        }
        crate::domain::hook::HookAction::PostCustomerMessage => {
            let message = pb::PostCustomerMessageRequest {
                source: hook.source.clone(),
                conversation_id: payload.conversation_id,
                channel: payload.channel,
                sender: payload.sender,
                text: payload.text,
                // Scoped to the hook: message ids are unique per channel across senders.
                external_message_id: format!("hook:{}:{webhook_id}", hook.id),
                request_id,
                contact: payload.contact,
                ..Default::default()
            };
            let call = request(
                message,
                &headers,
                Some(principal(crate::domain::auth::Role::Gateway)),
            );
            apis.escalation
                .post_customer_message(call)
                .await
                .map(|r| to_json(&r.into_inner()))
        }
    };
    match answer {
        Ok(json) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response(),
        Err(status) => error(&status),
    }
}

/// `GET /v1/openapi.json` (no key needed).
async fn openapi_document(State(apis): State<Apis>) -> Response {
    match apis.openapi {
        Some(document) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            document,
        )
            .into_response(),
        None => error(&Status::unimplemented("REST routes are unavailable")),
    }
}

/// Any other `/v1/` request: the RPC whose HTTP rule it matches.
async fn transcode(
    State(apis): State<Apis>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(rest) = apis.rest else {
        return error(&Status::unimplemented("REST routes are unavailable"));
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_refused(&rejection),
    };
    rest.call(method, uri, headers, principal(&extensions), body)
        .await
}

/// The descriptors the build encodes, read once.
fn descriptors() -> Option<&'static prost_reflect::DescriptorPool> {
    static POOL: std::sync::LazyLock<Option<prost_reflect::DescriptorPool>> =
        std::sync::LazyLock::new(|| {
            prost_reflect::DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).ok()
        });
    POOL.as_ref()
}

/// A message as proto3 JSON, as the REST routes write it (prost-reflect over the
/// descriptors the build encodes).
fn to_json<M: prost::Message + prost::Name>(message: &M) -> String {
    let dynamic = descriptors()
        .and_then(|pool| pool.get_message_by_name(&M::full_name()))
        .and_then(|desc| {
            prost_reflect::DynamicMessage::decode(desc, message.encode_to_vec().as_slice()).ok()
        });
    dynamic
        .and_then(|m| serde_json::to_string(&m).ok())
        .unwrap_or_default()
}

/// The body a webhook receives for an event: its `WebhookPayload` as proto3 JSON.
pub fn webhook_body(event: &crate::domain::event::Event) -> Vec<u8> {
    to_json(&crate::grpc::webhook_payload(event)).into_bytes()
}

/// Answers DEADLINE_EXCEEDED as JSON when the route has not answered within `limit` (a
/// stream counts as answered once it starts).
async fn within(
    limit: std::time::Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let limit = limit.max(std::time::Duration::from_secs(1));
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error(&Status::deadline_exceeded(format!(
            "no answer within {} s",
            limit.as_secs()
        ))),
    }
}

/// A body that could not be read: past the gate's bound (one sent without a length
/// fails while read) is 413, anything else 400.
fn body_refused(rejection: &BytesRejection) -> Response {
    let text = rejection.body_text();
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE || text.contains("length limit") {
        http_error::too_large(
            &Status::resource_exhausted("the body is larger than this route's limit"),
            axum::body::Body::from,
        )
    } else {
        error(&Status::invalid_argument(format!("body: {text}")))
    }
}

fn error(status: &Status) -> Response {
    http_error::response(status, axum::body::Body::from)
}

/// The gRPC request with the caller the gate admitted.
fn request<T>(message: T, headers: &HeaderMap, principal: Option<Principal>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(principal) = principal {
        request.extensions_mut().insert(principal);
    }
    // The trace context travels on as it does for gRPC.
    if let Some(parent) = headers.get("traceparent")
        && let Ok(value) = parent.to_str()
        && let Ok(value) = value.parse()
    {
        request.metadata_mut().insert("traceparent", value);
    }
    request
}

fn principal(parts: &axum::http::Extensions) -> Option<Principal> {
    parts.get::<Principal>().cloned()
}

/// `/v1/tickets:watch`'s query; a parameter it does not know is refused, as on the other
/// routes. Each takes its proto name or its JSON name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketsWatchQuery {
    #[serde(default)]
    filter: String,
    #[serde(default, alias = "afterCursor")]
    after_cursor: i64,
}

/// `/v1/conversations:watch`'s query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConversationsWatchQuery {
    #[serde(default)]
    source: String,
    /// `chat`, `CHAT` or `CHANNEL_CHAT`.
    #[serde(default)]
    channel: String,
    #[serde(default, alias = "conversationId")]
    conversation_id: String,
    #[serde(default, alias = "afterCursor")]
    after_cursor: i64,
}

fn bad_query(rejection: QueryRejection) -> Response {
    error(&Status::invalid_argument(format!(
        "query: {}",
        rejection.body_text()
    )))
}

/// A watch's query and where it starts: the `Last-Event-ID` a reconnecting
/// `EventSource` sends, else the query's `after_cursor`.
fn watch_query<Q>(
    query: Result<Query<Q>, QueryRejection>,
    headers: &HeaderMap,
    after_cursor: fn(&Q) -> i64,
) -> Result<(Q, i64), Box<Response>> {
    let Query(query) = query.map_err(|rejection| Box::new(bad_query(rejection)))?;
    let after_cursor =
        resume_from(headers, after_cursor(&query)).map_err(|status| Box::new(error(&status)))?;
    Ok((query, after_cursor))
}

/// Where a reconnecting `EventSource` resumes: its `Last-Event-ID`, else the query's
/// `after_cursor`.
fn resume_from(headers: &HeaderMap, after_cursor: i64) -> Result<i64, Status> {
    match headers.get("last-event-id") {
        None => Ok(after_cursor),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                Status::invalid_argument("Last-Event-ID: must be a cursor this server sent")
            }),
    }
}

/// A gRPC server stream as Server-Sent Events: each message as its JSON with the
/// cursor as the event's `id`; the status that ends the stream (shutdown, falling
/// behind, a revoked key) as a last event named `error`, after which the client
/// reconnects with `Last-Event-ID`.
fn to_sse<M, S>(stream: S, cursor: fn(&M) -> Option<i64>) -> Response
where
    M: prost::Message + prost::Name + Send + 'static,
    S: tokio_stream::Stream<Item = Result<M, Status>> + Send + 'static,
{
    let events = stream.map(move |item| {
        let event = match item {
            Ok(message) => {
                let data = to_json(&message);
                let event = SseEvent::default().data(data);
                match cursor(&message) {
                    Some(cursor) => event.id(cursor.to_string()),
                    None => event,
                }
            }
            Err(status) => {
                let (json, _) =
                    http_error::error_json(&status, http_error::http_status(status.code()));
                SseEvent::default().event("error").data(json)
            }
        };
        Ok::<_, std::convert::Infallible>(event)
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn watch_tickets(
    State(apis): State<Apis>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    query: Result<Query<TicketsWatchQuery>, QueryRejection>,
) -> Response {
    let (query, after_cursor) = match watch_query(query, &headers, |q| q.after_cursor) {
        Ok(read) => read,
        Err(response) => return *response,
    };
    let message = pb::WatchTicketsRequest {
        filter: query.filter,
        after_cursor,
    };
    match apis
        .tickets
        .watch_tickets(request(message, &headers, principal(&extensions)))
        .await
    {
        Ok(stream) => to_sse(stream.into_inner(), |m: &pb::WatchTicketsResponse| {
            m.event.as_ref().map(|e| e.cursor)
        }),
        Err(status) => error(&status),
    }
}

async fn watch_conversations(
    State(apis): State<Apis>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    query: Result<Query<ConversationsWatchQuery>, QueryRejection>,
) -> Response {
    let (query, after_cursor) = match watch_query(query, &headers, |q| q.after_cursor) {
        Ok(read) => read,
        Err(response) => return *response,
    };
    let channel = if query.channel.is_empty() {
        pb::Channel::Unspecified
    } else {
        let name = query.channel.trim().to_uppercase();
        let name = name.strip_prefix("CHANNEL_").unwrap_or(&name);
        match pb::Channel::from_str_name(&format!("CHANNEL_{name}")) {
            Some(channel) if channel != pb::Channel::Unspecified => channel,
            _ => {
                return error(&Status::invalid_argument(
                    "channel: must be EMAIL, SMS or CHAT",
                ));
            }
        }
    };
    let message = pb::WatchConversationsRequest {
        source: query.source,
        channel: channel as i32,
        conversation_id: query.conversation_id,
        after_cursor,
    };
    match apis
        .escalation
        .watch_conversations(request(message, &headers, principal(&extensions)))
        .await
    {
        Ok(stream) => to_sse(stream.into_inner(), |m: &pb::WatchConversationsResponse| {
            m.update.as_ref().map(|u| u.cursor)
        }),
        Err(status) => error(&status),
    }
}

#[derive(Deserialize)]
struct EmailQuery {
    #[serde(default)]
    recipient: String,
    #[serde(default)]
    request_id: String,
}

/// `POST /v1/email`: the raw message (`message/rfc822`) as the body, the envelope
/// recipient as `?recipient=`; a retry with the same `Idempotency-Key` (or
/// `?request_id=`) returns the first result.
async fn ingest_email(
    State(apis): State<Apis>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    query: Result<Query<EmailQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return bad_query(rejection),
    };
    let raw = match body {
        Ok(raw) => raw,
        Err(rejection) => return body_refused(&rejection),
    };
    let request_id = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or(query.request_id);
    let message = pb::IngestEmailRequest {
        raw: raw.to_vec(),
        recipient: query.recipient,
        request_id,
    };
    match apis
        .escalation
        .ingest_email(request(message, &headers, principal(&extensions)))
        .await
    {
        Ok(response) => {
            let json = to_json(&response.into_inner());
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                json,
            )
                .into_response()
        }
        Err(status) => error(&status),
    }
}

/// gRPC-Web translation for the gRPC routes only: tonic-web refuses HTTP/1.1 requests
/// that are not gRPC-Web, which the `/v1/` routes are.
#[derive(Clone, Default)]
pub struct GrpcWebLayer;

impl<S: Clone> tower::Layer<S> for GrpcWebLayer {
    type Service = GrpcWebOrHttp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcWebOrHttp {
            web: tower::Layer::layer(&tonic_web::GrpcWebLayer::new(), inner.clone()),
            plain: inner,
        }
    }
}

#[derive(Clone)]
pub struct GrpcWebOrHttp<S> {
    web: tonic_web::GrpcWebService<S>,
    plain: S,
}

type HttpRequest = axum::http::Request<tonic::body::Body>;
type HttpResponse = axum::http::Response<tonic::body::Body>;

impl<S, B> tower::Service<HttpRequest> for GrpcWebOrHttp<S>
where
    S: tower::Service<HttpRequest, Response = axum::http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + std::fmt::Display,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<HttpResponse, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.plain.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        use tower::ServiceExt;
        if request.uri().path().starts_with("/v1/") {
            // The clone that was made ready is the one to call.
            let clone = self.plain.clone();
            let plain = std::mem::replace(&mut self.plain, clone);
            Box::pin(async move {
                let response = plain.oneshot(request).await?;
                Ok(response.map(tonic::body::Body::new))
            })
        } else {
            let web = self.web.clone();
            Box::pin(web.oneshot(request))
        }
    }
}
