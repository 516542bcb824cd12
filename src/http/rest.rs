//! REST/JSON for every unary RPC, from the `google.api.http` rules in the protos (read at
//! start-up from the descriptor set the build encodes). A call is transcoded, not
//! reimplemented: path parameters, the query and the JSON body make the request message
//! (proto3 JSON, through prost-reflect), which goes as a gRPC request through the same
//! service implementation; its answer comes back as proto3 JSON, its error as
//! `crate::http::error`'s JSON.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor,
    Value,
};
use serde_json::{Map, Value as Json};
use tonic::Status;
use tonic::service::Routes;
use tower::ServiceExt;

use crate::domain::auth::Principal;
use crate::grpc::http_error;
use crate::service::ServiceError;

/// One HTTP rule: how a request is matched and which gRPC method it calls.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    pub method: Method,
    pub segments: Vec<Segment>,
    pub verb: Option<String>,
    pub body: Body,
    /// `/ticketd.v1.TicketService/CreateTicket`.
    pub grpc_path: String,
    pub input: MessageDescriptor,
    pub output: MessageDescriptor,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Segment {
    Literal(String),
    /// A field path such as `ticket.id`.
    Field(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Body {
    None,
    Whole,
    Field(String),
}

/// The rules of every unary RPC, and the gRPC services they call.
#[derive(Clone)]
pub struct Transcoder {
    rules: std::sync::Arc<Vec<Rule>>,
    grpc: Routes,
    /// The message and email bounds the per-method body limits derive from.
    bounds: (usize, usize),
}

impl Transcoder {
    /// Reads the rules out of `descriptors` (an encoded `FileDescriptorSet`).
    pub fn new(
        pool: &DescriptorPool,
        grpc: Routes,
        max_message_bytes: usize,
        max_email_bytes: usize,
    ) -> Result<Self, String> {
        let http = pool
            .get_extension_by_name("google.api.http")
            .ok_or("the descriptors hold no google.api.http")?;
        let mut rules = Vec::new();
        for service in pool.services() {
            for method in service.methods() {
                // Streams are served by the SSE routes, or not over HTTP.
                if method.is_client_streaming() || method.is_server_streaming() {
                    continue;
                }
                let options = method.options();
                if !options.has_extension(&http) {
                    continue;
                }
                let Value::Message(rule) = options.get_extension(&http).into_owned() else {
                    continue;
                };
                let grpc_path = format!("/{}/{}", service.full_name(), method.name());
                // The rule, then its additional bindings (other paths to the same RPC).
                let mut bindings = vec![rule.clone()];
                if let Some(Value::List(more)) = rule
                    .get_field_by_name("additional_bindings")
                    .map(|v| v.into_owned())
                {
                    bindings.extend(more.into_iter().filter_map(|v| match v {
                        Value::Message(m) => Some(m),
                        _ => None,
                    }));
                }
                for binding in bindings {
                    rules.push(read_rule(&binding, &grpc_path, &method)?);
                }
            }
        }
        Ok(Transcoder {
            rules: std::sync::Arc::new(rules),
            grpc,
            bounds: (max_message_bytes, max_email_bytes),
        })
    }

    /// The OpenAPI document of the routes.
    pub fn openapi(&self) -> Json {
        super::openapi::document(&self.rules)
    }

    /// Every route, as `(method, path template)`, for the README and tests.
    pub fn routes(&self) -> Vec<(String, String)> {
        self.rules
            .iter()
            .map(|r| {
                let path: Vec<String> = r
                    .segments
                    .iter()
                    .map(|s| match s {
                        Segment::Literal(l) => l.clone(),
                        Segment::Field(f) => format!("{{{f}}}"),
                    })
                    .collect();
                let verb = r.verb.as_ref().map(|v| format!(":{v}")).unwrap_or_default();
                (r.method.to_string(), format!("/{}{verb}", path.join("/")))
            })
            .collect()
    }

    /// Answers one HTTP request.
    pub async fn call(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        principal: Option<Principal>,
        body: Bytes,
    ) -> Response {
        match self.transcode(method, uri, headers, principal, body).await {
            Ok(response) => response,
            Err(status) => http_error::response(&status, axum::body::Body::from),
        }
    }

    async fn transcode(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        principal: Option<Principal>,
        body: Bytes,
    ) -> Result<Response, Status> {
        let (rule, params) = self
            .find(&method, uri.path())
            .ok_or_else(|| Status::not_found(format!("no route {method} {}", uri.path())))?;
        // The method's own bound, as over gRPC, with room for JSON's base64 and escapes.
        let limit = crate::grpc::gate::method_limit(&rule.grpc_path, self.bounds.0, self.bounds.1);
        let allowed = limit.saturating_mul(3) / 2 + 1024;
        if body.len() > allowed {
            let status = Status::resource_exhausted(format!(
                "the body is larger than this route's limit of {allowed} bytes"
            ));
            return Ok(http_error::too_large(&status, axum::body::Body::from));
        }
        let mut json = match &rule.body {
            Body::None => Map::new(),
            Body::Whole => body_object(&body)?,
            Body::Field(field) => {
                let mut object = Map::new();
                if !body.is_empty() {
                    let value: Json = serde_json::from_slice(&body)
                        .map_err(|e| Status::invalid_argument(format!("body: {e}")))?;
                    set_path(&mut object, field, value);
                }
                object
            }
        };
        // The query sets fields the body does not (AIP-127): for a whole body, none.
        if rule.body != Body::Whole
            && let Some(query) = uri.query()
        {
            for (key, value) in form_urlencoded::parse(query.as_bytes()) {
                let (path, field) = field_at(&rule.input, &key).ok_or_else(|| {
                    Status::invalid_argument(format!("{key}: is not a field of the request"))
                })?;
                // What the body or the path sets is theirs alone.
                let root = path.split('.').next();
                let in_body = matches!(&rule.body, Body::Field(f) if Some(f.as_str()) == root);
                let in_path = params.iter().any(|(p, _)| p.split('.').next() == root);
                if in_body || in_path {
                    return Err(Status::invalid_argument(format!(
                        "{key}: is set by the path or the body, not the query"
                    )));
                }
                let value = query_value(&field, &value);
                if field.is_list() {
                    push_path(&mut json, &path, value);
                } else {
                    set_path(&mut json, &path, value);
                }
            }
        }
        for (field, value) in params {
            set_path(&mut json, &field, Json::String(value));
        }
        let options = DeserializeOptions::new().deny_unknown_fields(true);
        // The error names the field it is about (`page_size` from the query, `contact.vip`
        // from the body).
        let mut track = serde_path_to_error::Track::new();
        let request = DynamicMessage::deserialize_with_options(
            rule.input.clone(),
            serde_path_to_error::Deserializer::new(Json::Object(json), &mut track),
            &options,
        );
        let request = match request {
            Ok(request) => request,
            Err(e) => {
                let path = track.path().to_string();
                let field = if path == "." { "request" } else { &path };
                return Err(ServiceError::invalid(field, e.to_string()).into());
            }
        };
        let answer = self.grpc_call(rule, request, &headers, principal).await?;
        let json = serde_json::to_vec(&answer).map_err(|e| {
            tracing::error!(error = %e, "encoding a REST answer");
            Status::internal("internal error")
        })?;
        Ok((
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response())
    }

    fn find(&self, method: &Method, path: &str) -> Option<(&Rule, Vec<(String, String)>)> {
        let (segments, verb) = split_path(path)?;
        self.rules.iter().find_map(|rule| {
            if rule.method != *method || rule.verb != verb || rule.segments.len() != segments.len()
            {
                return None;
            }
            let mut params = Vec::new();
            for (template, actual) in rule.segments.iter().zip(&segments) {
                match template {
                    Segment::Literal(l) if l == actual => {}
                    Segment::Literal(_) => return None,
                    Segment::Field(_) if actual.is_empty() => return None,
                    Segment::Field(f) => params.push((f.clone(), actual.clone())),
                }
            }
            Some((rule, params))
        })
    }

    /// Sends `request` through the gRPC service in process, as gRPC, and reads its answer.
    async fn grpc_call(
        &self,
        rule: &Rule,
        request: DynamicMessage,
        headers: &HeaderMap,
        principal: Option<Principal>,
    ) -> Result<DynamicMessage, Status> {
        let message = request.encode_to_vec();
        let mut framed = Vec::with_capacity(message.len() + 5);
        framed.push(0);
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(&message);
        let mut grpc_request = axum::http::Request::builder()
            .method(Method::POST)
            .uri(format!("http://localhost{}", rule.grpc_path))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(tonic::body::Body::new(http_body_util::Full::new(
                Bytes::from(framed),
            )))
            .map_err(|e| Status::internal(e.to_string()))?;
        for name in ["traceparent", "tracestate"] {
            if let Some(value) = headers.get(name) {
                grpc_request.headers_mut().insert(name, value.clone());
            }
        }
        if let Some(principal) = principal {
            grpc_request.extensions_mut().insert(principal);
        }
        let response = match self.grpc.clone().oneshot(grpc_request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        if let Some(status) = Status::from_header_map(&parts.headers)
            && status.code() != tonic::Code::Ok
        {
            return Err(status);
        }
        let collected = body
            .collect()
            .await
            .map_err(|e| Status::internal(format!("reading the answer: {e}")))?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        if let Some(status) = Status::from_header_map(&trailers)
            && status.code() != tonic::Code::Ok
        {
            return Err(status);
        }
        let data = collected.to_bytes();
        let payload = data
            .get(5..)
            .ok_or_else(|| Status::internal("an answer without a message"))?;
        DynamicMessage::decode(rule.output.clone(), payload)
            .map_err(|e| Status::internal(format!("decoding the answer: {e}")))
    }
}

/// One HTTP binding of `method`.
fn read_rule(
    rule: &DynamicMessage,
    grpc_path: &str,
    method: &prost_reflect::MethodDescriptor,
) -> Result<Rule, String> {
    let text = |name: &str| {
        rule.get_field_by_name(name)
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let (verb, template) = [
        (Method::GET, "get"),
        (Method::POST, "post"),
        (Method::PATCH, "patch"),
        (Method::PUT, "put"),
        (Method::DELETE, "delete"),
    ]
    .into_iter()
    .map(|(m, name)| (m, text(name)))
    .find(|(_, t)| !t.is_empty())
    .ok_or_else(|| format!("{grpc_path}: an HTTP rule without a path"))?;
    let (segments, custom) = parse_template(&template)
        .ok_or_else(|| format!("{grpc_path}: {template:?} is not a path template"))?;
    let body = match text("body").as_str() {
        "" => Body::None,
        "*" => Body::Whole,
        field => Body::Field(field.to_owned()),
    };
    Ok(Rule {
        method: verb,
        segments,
        verb: custom,
        body,
        grpc_path: grpc_path.to_owned(),
        input: method.input(),
        output: method.output(),
    })
}

/// `/v1/tickets/{ticket_id}:reply` → segments and the custom verb.
fn parse_template(template: &str) -> Option<(Vec<Segment>, Option<String>)> {
    let (segments, verb) = split_path(template)?;
    let segments = segments
        .into_iter()
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(field) => Segment::Field(field.to_owned()),
                None => Segment::Literal(s),
            },
        )
        .collect();
    Some((segments, verb))
}

/// A path's segments (percent-decoded) and the custom verb after the last `:` of its
/// last segment.
fn split_path(path: &str) -> Option<(Vec<String>, Option<String>)> {
    let path = path.strip_prefix('/')?;
    let mut segments: Vec<String> = path.split('/').map(str::to_owned).collect();
    let mut verb = None;
    if let Some(last) = segments.last_mut()
        && let Some(colon) = last.rfind(':')
        && !last[colon..].contains('}')
    {
        verb = Some(last[colon + 1..].to_owned());
        last.truncate(colon);
    }
    let segments = segments
        .into_iter()
        .map(|s| {
            percent_encoding::percent_decode_str(&s)
                .decode_utf8()
                .map(|d| d.into_owned())
                .unwrap_or(s)
        })
        .collect();
    Some((segments, verb))
}

fn body_object(body: &Bytes) -> Result<Map<String, Json>, Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Json::Object(object)) => Ok(object),
        Ok(_) => Err(Status::invalid_argument("body: must be a JSON object")),
        Err(e) => Err(Status::invalid_argument(format!("body: {e}"))),
    }
}

/// The field `path` (`a.b`, proto or JSON names) names in `message`, and its path in
/// proto names.
fn field_at(message: &MessageDescriptor, path: &str) -> Option<(String, FieldDescriptor)> {
    let mut message = message.clone();
    let mut parts = path.split('.').peekable();
    let mut names = Vec::new();
    while let Some(part) = parts.next() {
        let field = message
            .get_field_by_name(part)
            .or_else(|| message.get_field_by_json_name(part))?;
        names.push(field.name().to_owned());
        if parts.peek().is_none() {
            return Some((names.join("."), field));
        }
        match field.kind() {
            Kind::Message(inner) => message = inner,
            _ => return None,
        }
    }
    None
}

/// A query parameter's text as the JSON the field's type reads.
fn query_value(field: &FieldDescriptor, text: &str) -> Json {
    match field.kind() {
        Kind::Bool => match text {
            "true" => Json::Bool(true),
            "false" => Json::Bool(false),
            _ => Json::String(text.to_owned()),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 | Kind::Uint32 | Kind::Fixed32 => text
            .parse::<i64>()
            .map(Json::from)
            .unwrap_or_else(|_| Json::String(text.to_owned())),
        Kind::Double | Kind::Float => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Json::Number)
            .unwrap_or_else(|| Json::String(text.to_owned())),
        _ => Json::String(text.to_owned()),
    }
}

/// The object holding the last part of `path`, made on the way where missing.
fn parent_of<'a>(
    object: &'a mut Map<String, Json>,
    path: &'a str,
) -> Option<(&'a mut Map<String, Json>, &'a str)> {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop()?;
    let mut current = object;
    for part in parts {
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| Json::Object(Map::new()));
        if !entry.is_object() {
            *entry = Json::Object(Map::new());
        }
        let Json::Object(next) = entry else {
            return None;
        };
        current = next;
    }
    Some((current, last))
}

fn set_path(object: &mut Map<String, Json>, path: &str, value: Json) {
    if let Some((parent, last)) = parent_of(object, path) {
        parent.insert(last.to_owned(), value);
    }
}

fn push_path(object: &mut Map<String, Json>, path: &str, value: Json) {
    if let Some((parent, last)) = parent_of(object, path) {
        match parent
            .entry(last.to_owned())
            .or_insert_with(|| Json::Array(Vec::new()))
        {
            Json::Array(items) => items.push(value),
            other => *other = Json::Array(vec![value]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_paths_split_into_segments_and_verbs() {
        assert_eq!(
            parse_template("/v1/tickets/{ticket_id}:reply"),
            Some((
                vec![
                    Segment::Literal("v1".into()),
                    Segment::Literal("tickets".into()),
                    Segment::Field("ticket_id".into())
                ],
                Some("reply".into())
            ))
        );
        assert_eq!(
            split_path("/v1/tickets:count"),
            Some((vec!["v1".into(), "tickets".into()], Some("count".into())))
        );
        assert_eq!(
            split_path("/v1/conversations/help%20bot/c-1/ticket"),
            Some((
                vec![
                    "v1".into(),
                    "conversations".into(),
                    "help bot".into(),
                    "c-1".into(),
                    "ticket".into()
                ],
                None
            ))
        );
    }

    #[test]
    fn every_unary_rpc_has_a_route_and_no_two_routes_collide() {
        let pool = DescriptorPool::decode(crate::grpc::pb::FILE_DESCRIPTOR_SET).unwrap();
        let rest =
            Transcoder::new(&pool, Routes::default(), 1 << 20, 1 << 20).expect("the rules read");
        let unary = pool
            .services()
            .filter(|s| s.full_name().starts_with("ticketd."))
            .flat_map(|s| s.methods().collect::<Vec<_>>())
            .filter(|m| !m.is_client_streaming() && !m.is_server_streaming())
            .count();
        let routes = rest.routes();
        let methods: std::collections::HashSet<&str> =
            rest.rules.iter().map(|r| r.grpc_path.as_str()).collect();
        assert_eq!(methods.len(), unary, "every unary RPC has a route");
        let mut unique = routes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), routes.len(), "a route is declared twice");
        assert!(routes.contains(&("POST".into(), "/v1/tickets/{ticket_id}:reply".into())));
        assert!(routes.contains(&("PATCH".into(), "/v1/tickets/{ticket.id}".into())));
        assert!(routes.contains(&("GET".into(), "/v1/ticketNumbers/{number}".into())));
    }

    #[test]
    fn nested_fields_are_set_and_pushed() {
        let mut object = Map::new();
        set_path(&mut object, "ticket.id", Json::from("t1"));
        push_path(&mut object, "update_mask.paths", Json::from("a"));
        push_path(&mut object, "update_mask.paths", Json::from("b"));
        assert_eq!(
            Json::Object(object),
            serde_json::json!({"ticket": {"id": "t1"}, "update_mask": {"paths": ["a", "b"]}})
        );
    }
}
