//! The gate in front of ticketd's own services. Before a request's body is read it
//!
//! - authenticates the bearer key (through the shared key cache, which also remembers
//!   bad keys for a moment), so an unauthenticated caller costs a header lookup;
//! - sheds load past the in-flight limit and applies the key's rate limit, answering
//!   RESOURCE_EXHAUSTED with `google.rpc.RetryInfo` and `QuotaFailure`;
//! - bounds the request body by the method's message limit, reading each message's
//!   length prefix so an oversized message is refused before it is buffered.
//!
//! The authenticated principal rides in the request's extensions to the handler, which
//! only checks its role. Health checks and reflection pass without a key.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::Semaphore;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};
use uuid::Uuid;

use super::auth::bearer_secret;
use crate::domain::auth::{Principal, Role};
use crate::service::ApiKeyService;

/// Largest message of a call that takes no attachments or transcripts.
pub const SMALL_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest message of a call that carries free text (a description, a note, custom
/// fields): 65,536 characters of four bytes each, with room for the rest.
pub const TEXT_MESSAGE_BYTES: usize = 2 * 1024 * 1024;
/// What an `IngestEmail` request holds besides the raw email: recipient, request id,
/// framing.
pub(crate) const EMAIL_ENVELOPE_BYTES: usize = 64 * 1024;

/// One value per key role: requests per second, or the rate limiters built from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits<T = u32> {
    pub admin: T,
    pub agent: T,
    pub bot: T,
    pub gateway: T,
}

impl<T> RateLimits<T> {
    fn of(&self, role: Role) -> &T {
        match role {
            Role::Admin => &self.admin,
            Role::Agent => &self.agent,
            Role::Bot => &self.bot,
            Role::Gateway => &self.gateway,
        }
    }

    fn map<U>(&self, f: impl Fn(&T) -> U) -> RateLimits<U> {
        RateLimits {
            admin: f(&self.admin),
            agent: f(&self.agent),
            bot: f(&self.bot),
            gateway: f(&self.gateway),
        }
    }
}

/// What the gate enforces.
#[derive(Debug, Clone)]
pub struct GateSettings {
    /// Calls in flight at once, over all keys; more are refused at once.
    pub max_in_flight: usize,
    pub rates: RateLimits,
    /// Largest message of the calls that carry attachments (replies, customer messages)
    /// or transcripts (escalations); every other call has a smaller limit.
    pub max_message_bytes: usize,
    /// Largest raw email `IngestEmail` takes.
    pub max_email_bytes: usize,
}

#[derive(Clone)]
pub struct GateLayer {
    gate: Arc<Gate>,
}

impl GateLayer {
    pub fn new(keys: ApiKeyService, settings: GateSettings) -> Self {
        Self {
            gate: Arc::new(Gate {
                keys,
                in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
                limiters: settings.rates.map(|&rate| {
                    NonZeroU32::new(rate).map(|rate| RateLimiter::keyed(Quota::per_second(rate)))
                }),
                settings,
            }),
        }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = GateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GateService {
            inner,
            gate: self.gate.clone(),
        }
    }
}

struct Gate {
    keys: ApiKeyService,
    in_flight: Arc<Semaphore>,
    /// `None` where the role is unlimited.
    limiters: RateLimits<Option<DefaultKeyedRateLimiter<Uuid>>>,
    settings: GateSettings,
}

impl Gate {
    /// The largest message `path` accepts.
    fn message_limit(&self, path: &str) -> usize {
        method_limit(
            path,
            self.settings.max_message_bytes,
            self.settings.max_email_bytes,
        )
    }

    /// The largest body an HTTP route accepts.
    fn http_limit(&self, path: &str) -> usize {
        if path == "/v1/email" {
            self.settings.max_email_bytes
        } else {
            // JSON carries bytes (attachments) as base64: a third more than the message.
            self.settings.max_message_bytes.saturating_mul(4) / 3 + 1024
        }
    }

    /// Applies the key's rate limit.
    fn admit(&self, principal: &Principal) -> Result<(), Status> {
        let Some(limiter) = self.limiters.of(principal.role) else {
            return Ok(());
        };
        match limiter.check_key(&principal.key_id) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                let rate = *self.settings.rates.of(principal.role);
                let mut details = ErrorDetails::with_retry_info(Some(wait.max(MIN_RETRY)));
                details.add_quota_failure_violation(
                    format!("api_key:{}", principal.key_id),
                    format!("{rate} requests per second for a {} key", principal.role),
                );
                Err(Status::with_error_details(
                    tonic::Code::ResourceExhausted,
                    format!(
                        "rate limit of {rate} requests per second for this key exceeded; retry later"
                    ),
                    details,
                ))
            }
        }
    }
}

/// The shortest retry delay suggested to a rate-limited caller.
const MIN_RETRY: Duration = Duration::from_millis(10);

/// Paths that need no key: load balancers and tools must reach them.
/// The largest message the gRPC method `path` (`/pkg.Service/Method`) accepts, under the
/// configured message and email bounds; the REST routes hold their JSON to it too.
pub(crate) fn method_limit(path: &str, max_message_bytes: usize, max_email_bytes: usize) -> usize {
    let method = path.rsplit('/').next().unwrap_or_default();
    match method {
        "AddReply" | "PostCustomerMessage" | "EscalateConversation" => max_message_bytes,
        "IngestEmail" => max_email_bytes.saturating_add(EMAIL_ENVELOPE_BYTES),
        "CreateTicket" | "UpdateTicket" | "AddNote" | "LogTime" => {
            TEXT_MESSAGE_BYTES.min(max_message_bytes)
        }
        _ => SMALL_MESSAGE_BYTES.min(max_message_bytes),
    }
}

/// The gate's refusal: a gRPC status, or for the HTTP routes its JSON.
pub(super) fn refusal(path: &str, status: Status) -> Response<Body> {
    answer(is_http(path), status)
}

/// `status` as an answer: JSON for an HTTP route, else a gRPC status.
pub(super) fn answer(http: bool, status: Status) -> Response<Body> {
    if http {
        super::http_error::response(&status, |json| {
            Body::new(http_body_util::Full::new(bytes::Bytes::from(json)))
        })
    } else {
        status.into_http()
    }
}

/// Inbound hooks prove themselves by their signature instead of a key: a POST to
/// `/v1/hooks/{id}` exactly.
fn is_hook(method: &tonic::codegen::http::Method, path: &str) -> bool {
    *method == tonic::codegen::http::Method::POST
        && path
            .strip_prefix("/v1/hooks/")
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// The HTTP routes beside gRPC (`crate::http`, paths under `/v1/`): errors as JSON,
/// bodies bounded by bytes.
pub(super) fn is_http(path: &str) -> bool {
    path.starts_with("/v1/")
}

fn is_open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.")
        || path == "/v1/openapi.json"
}

#[derive(Clone)]
pub struct GateService<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S> Service<Request<Body>> for GateService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone that was made ready is the one to call; keep a fresh one for later.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            if is_open(&path) {
                return inner.call(request).await;
            }
            let Ok(_permit) = gate.in_flight.clone().try_acquire_owned() else {
                metrics::counter!("ticketd_requests_shed_total").increment(1);
                let status = Status::resource_exhausted(format!(
                    "the server is at its limit of {} calls in flight; retry later",
                    gate.settings.max_in_flight
                ));
                return Ok(refusal(&path, status));
            };
            if is_hook(request.method(), &path) {
                // Counted among the calls in flight; its signature is checked by the route.
                return inner.call(request).await;
            }
            let principal = match bearer_secret(request.headers()) {
                Ok(secret) => gate.keys.authenticate(secret).await.map_err(Status::from),
                Err(status) => Err(status),
            };
            let principal = match principal.and_then(|p| gate.admit(&p).map(|()| p)) {
                Ok(principal) => principal,
                Err(status) => return Ok(refusal(&path, status)),
            };
            let mut request = if is_http(&path) {
                // HTTP bodies are not gRPC-framed: bound their bytes, refusing at once a
                // body whose declared length is over the bound.
                let limit = gate.http_limit(&path);
                let declared = request
                    .headers()
                    .get(tonic::codegen::http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<usize>().ok());
                if declared.is_some_and(|length| length > limit) {
                    let status = Status::resource_exhausted(format!(
                        "the body is larger than this route's limit of {limit} bytes"
                    ));
                    return Ok(super::http_error::too_large(&status, |json| {
                        Body::new(http_body_util::Full::new(bytes::Bytes::from(json)))
                    }));
                }
                request.map(|body| Body::new(http_body_util::Limited::new(body, limit)))
            } else {
                let limit = gate.message_limit(&path);
                request.map(|body| Body::new(LimitedBody::new(body, limit)))
            };
            request.extensions_mut().insert(principal);
            inner.call(request).await
        })
    }
}

/// A request body that refuses any gRPC message longer than `limit`, judged by the
/// length prefix of each message before its bytes are buffered anywhere.
struct LimitedBody {
    inner: Body,
    limit: usize,
    /// The prefix of the message being read: a compression flag and a big-endian length.
    prefix: [u8; 5],
    prefix_len: usize,
    /// Bytes of the current message still to pass.
    payload_left: usize,
    failed: bool,
}

impl LimitedBody {
    fn new(inner: Body, limit: usize) -> Self {
        Self {
            inner,
            limit,
            prefix: [0; 5],
            prefix_len: 0,
            payload_left: 0,
            failed: false,
        }
    }

    /// Follows the message framing through `data`; an error for an oversized message.
    fn inspect(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(data.len());
                self.payload_left -= skip;
                data = &data[skip..];
                continue;
            }
            let take = (5 - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&data[..take]);
            self.prefix_len += take;
            data = &data[take..];
            if self.prefix_len == 5 {
                self.prefix_len = 0;
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]) as usize;
                if len > self.limit {
                    return Err(Status::resource_exhausted(format!(
                        "request message of {len} bytes is over this method's limit of {} bytes",
                        self.limit
                    )));
                }
                self.payload_left = len;
            }
        }
        Ok(())
    }
}

impl HttpBody for LimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && let Err(status) = this.inspect(data)
                {
                    this.failed = true;
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(len: u32) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend(std::iter::repeat_n(7u8, len as usize));
        bytes
    }

    #[test]
    fn messages_within_the_limit_pass_whatever_the_chunking() {
        let mut stream = framed(10);
        stream.extend(framed(100));
        for chunk in [1, 2, 3, 7, 64, 1024] {
            let mut body = LimitedBody::new(Body::empty(), 100);
            for piece in stream.chunks(chunk) {
                assert!(body.inspect(piece).is_ok(), "chunk size {chunk}");
            }
        }
    }

    #[test]
    fn an_oversized_length_prefix_is_refused_before_its_payload() {
        let mut body = LimitedBody::new(Body::empty(), 100);
        let prefix = &framed(101)[..5];
        let status = body
            .inspect(&prefix[..3])
            .and_then(|()| body.inspect(&prefix[3..]));
        assert_eq!(
            status.map_err(|s| s.code()),
            Err(tonic::Code::ResourceExhausted)
        );
    }
}
