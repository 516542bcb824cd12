//! The outermost layer of our gRPC services: it sees every call's final status.
//!
//! - It reports oversized messages as RESOURCE_EXHAUSTED, as the gRPC status-code guide
//!   asks. tonic rejects a message over the configured size with OUT_OF_RANGE: an incoming
//!   one before our handlers run (the status travels in the response headers), an outgoing
//!   one while the body is written (in the trailers). The status is rewritten in both.
//! - It reports a request body that is not a well-formed gRPC message (cut short, missing,
//!   flagged compressed without an encoding, gRPC-Web text that is not base64) as
//!   INVALID_ARGUMENT, where tonic says INTERNAL: the caller's mistake, not the server's.
//! - It records each call's status code on its span and in the metrics
//!   `ticketd_rpc_requests_total` and `ticketd_rpc_duration_seconds` (by method and code;
//!   paths the server does not serve share the method label `unknown`, and calls of the
//!   HTTP routes the label `rest`, with the code their answer stands for).
//! - It answers DEADLINE_EXCEEDED for a call not answered within the server's request
//!   timeout (tonic's own server timeout would answer CANCELLED, which says the client
//!   gave up). A shorter deadline the client sends in `grpc-timeout` is still tonic's.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use tonic::codegen::http::{HeaderMap, HeaderValue, Request, Response};
use tower::{Layer, Service};
use tracing::Instrument;

const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";
/// tonic's messages for too-large messages, percent-encoded as in `grpc-message`.
const TOO_LARGE: [&str; 2] = [
    "decoded%20message%20length%20too%20large",
    "encoded%20message%20length%20too%20large",
];

const INTERNAL: &str = "13";
const INVALID_ARGUMENT: &str = "3";
/// tonic's messages for a request body that is not a well-formed gRPC message (cut short,
/// missing, flagged compressed without an encoding, gRPC-Web text that is not base64),
/// percent-encoded as in `grpc-message`: the caller's mistake, which tonic calls INTERNAL.
const MALFORMED: [&str; 8] = [
    "Unexpected%20EOF%20decoding%20stream",
    "Missing%20request%20message",
    "received%20message%20with%20compressed-flag%20but%20no%20grpc-encoding",
    // tonic-web's, for request text that is not base64 (its other errors, a body that
    // could not be read, stay INTERNAL).
    "tonic-web:%20malformed%20base64",
    "tonic-web:%20Invalid%20symbol",
    "tonic-web:%20Invalid%20last%20symbol",
    "tonic-web:%20Invalid%20input%20length",
    "tonic-web:%20Invalid%20padding",
];

/// Rewrites the status in `headers` (response headers or trailers) if it is tonic's
/// message-size OUT_OF_RANGE or its INTERNAL for a malformed request, and returns the
/// status code they carry, if any.
fn rewrite(headers: &mut HeaderMap) -> Option<String> {
    let says = |code: &str, messages: &[&str]| {
        headers.get("grpc-status").is_some_and(|s| s == code)
            && headers
                .get("grpc-message")
                .and_then(|m| m.to_str().ok())
                .is_some_and(|m| messages.iter().any(|t| m.contains(t)))
    };
    if says(OUT_OF_RANGE, &TOO_LARGE) {
        headers.insert("grpc-status", HeaderValue::from_static(RESOURCE_EXHAUSTED));
    } else if says(INTERNAL, &MALFORMED) {
        headers.insert("grpc-status", HeaderValue::from_static(INVALID_ARGUMENT));
    }
    headers
        .get("grpc-status")
        .and_then(|s| s.to_str().ok())
        .map(str::to_owned)
}

/// Records the end of a call: its status on the span, and in the metrics.
#[derive(Debug)]
struct Finish {
    method: String,
    started: Instant,
    span: tracing::Span,
    done: bool,
}

impl Finish {
    fn record(&mut self, code: &str) {
        if self.done {
            return;
        }
        self.done = true;
        let name = code_name(code);
        self.span.record("rpc.grpc.status_code", code);
        if code != "0" {
            self.span.record("otel.status_code", "ERROR");
        }
        let labels = [("method", self.method.clone()), ("code", name.to_owned())];
        metrics::counter!("ticketd_rpc_requests_total", &labels).increment(1);
        metrics::histogram!("ticketd_rpc_duration_seconds", &labels)
            .record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Finish {
    /// A call that ended without a status (the client went away) counts as CANCELLED.
    fn drop(&mut self) {
        self.record("1");
    }
}

/// Every method path the server answers: ticketd's own, health and reflection.
static KNOWN_METHODS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    use prost::Message;
    let mut paths = HashSet::new();
    for set in [
        super::pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    for version in ["v1", "v1alpha"] {
        paths.insert(format!(
            "/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
        ));
    }
    paths
});

/// The `method` label of a call: its path if the server has such a method, else
/// `unknown`, so that made-up paths cannot create new metric series; `rest` for the HTTP
/// routes, whose paths carry ids.
fn method_label(path: &str) -> String {
    if KNOWN_METHODS.contains(path) {
        path.to_owned()
    } else if super::gate::is_http(path) {
        "rest".to_owned()
    } else {
        "unknown".to_owned()
    }
}

/// The name of a `grpc-status` value (`UNKNOWN` for what is not one).
fn code_name(code: &str) -> &'static str {
    code.parse::<i32>().map_or("UNKNOWN", |n| {
        super::http_error::code_name(tonic::Code::from(n))
    })
}

#[derive(Debug, Clone, Copy)]
pub struct EdgeLayer {
    request_timeout: Duration,
}

impl EdgeLayer {
    /// `request_timeout`: how long a call may take to answer (its response headers; a
    /// stream's messages may follow for as long as it lasts).
    pub fn new(request_timeout: Duration) -> Self {
        EdgeLayer { request_timeout }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Edge {
            inner,
            request_timeout: self.request_timeout,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Edge<S> {
    inner: S,
    request_timeout: Duration,
}

impl<S, B> Service<Request<B>> for Edge<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = Response<FinishBody<tonic::body::Body>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let span = request_span(&request);
        let mut finish = Finish {
            method: method_label(request.uri().path()),
            started: Instant::now(),
            span: span.clone(),
            done: false,
        };
        let http = super::gate::is_http(request.uri().path());
        let future = span.in_scope(|| self.inner.call(request));
        let timeout = self.request_timeout;
        Box::pin(
            async move {
                let mut response = match tokio::time::timeout(timeout, future).await {
                    Ok(response) => response?,
                    // (The HTTP routes answer a second earlier themselves, unless the
                    // gate held the call that long; then the answer is their JSON too.)
                    Err(_) => super::gate::answer(
                        http,
                        tonic::Status::deadline_exceeded(format!(
                            "not answered within the server's request timeout ({} s)",
                            timeout.as_secs_f64()
                        )),
                    ),
                };
                if http {
                    // An HTTP route's answer ends the call: an error says its code (see
                    // `http_error::response`), anything else succeeded or is HTTP's own.
                    let code = match response.extensions().get::<tonic::Code>() {
                        Some(code) => *code,
                        None if response.status().is_success() => tonic::Code::Ok,
                        None => tonic::Code::Unknown,
                    };
                    finish.record(&(code as i32).to_string());
                } else if let Some(code) = rewrite(response.headers_mut()) {
                    // A status in the headers ends the call (trailers-only response).
                    finish.record(&code);
                }
                Ok(response.map(|inner| FinishBody { inner, finish }))
            }
            .instrument(span),
        )
    }
}

/// A response body whose trailers pass through [`rewrite`] and end the call.
#[derive(Debug)]
pub struct FinishBody<B> {
    inner: B,
    finish: Finish,
}

impl<B> Body for FinishBody<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        // Streaming handlers produce their messages while the body is polled.
        let _entered = this.finish.span.clone().entered();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(match frame.into_trailers() {
                Ok(mut trailers) => {
                    if let Some(code) = rewrite(&mut trailers) {
                        this.finish.record(&code);
                    }
                    Frame::trailers(trailers)
                }
                Err(frame) => frame,
            }))),
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One span per call: the OpenTelemetry server span when tracing is on, and the context
/// of every log line of the call. It carries the method, a request id (the caller's
/// `x-request-id` or a fresh one), the trace id, the status code once known, and the
/// ticket id where a handler knows it. A W3C `traceparent` from the caller becomes its
/// parent. Health checks are not traced: probes would drown everything else.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let path = request.uri().path();
    if path.starts_with("/grpc.health.v1.Health/") {
        return tracing::Span::none();
    }
    let full = path.trim_start_matches('/');
    let (service, method) = full.split_once('/').unwrap_or((full, ""));
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(64).collect::<String>())
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let span = tracing::info_span!(
        "grpc",
        otel.name = %full,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
        request_id = %request_id,
        ticket_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    let _ = span.set_parent(parent);
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
    span
}

/// Reads propagation headers (`traceparent`, `tracestate`) from gRPC metadata.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::method_label;

    #[test]
    fn only_served_methods_become_metric_labels() {
        for path in [
            "/ticketd.v1.TicketService/CreateTicket",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(method_label(path), path);
        }
        for path in [
            "/ticketd.v1.TicketService/Nope",
            "/x/y",
            "/",
            "/a-random-path-0042",
        ] {
            assert_eq!(method_label(path), "unknown");
        }
    }
}
