//! Reports oversized messages as RESOURCE_EXHAUSTED, as the gRPC status-code guide asks.
//!
//! tonic rejects a message over the configured size with OUT_OF_RANGE before our
//! handlers run; this layer rewrites that one status on the way out.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";
/// tonic's message for a too-large incoming message, percent-encoded as in `grpc-message`.
const TOO_LARGE: &str = "decoded%20message%20length%20too%20large";

#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceExhaustedLayer;

impl<S> Layer<S> for ResourceExhaustedLayer {
    type Service = ResourceExhausted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResourceExhausted { inner }
    }
}

#[derive(Debug, Clone)]
pub struct ResourceExhausted<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for ResourceExhausted<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            let headers = response.headers_mut();
            let too_large = headers
                .get("grpc-status")
                .is_some_and(|s| s == OUT_OF_RANGE)
                && headers
                    .get("grpc-message")
                    .and_then(|m| m.to_str().ok())
                    .is_some_and(|m| m.contains(TOO_LARGE));
            if too_large {
                headers.insert("grpc-status", HeaderValue::from_static(RESOURCE_EXHAUSTED));
            }
            Ok(response)
        })
    }
}
