//! Reports oversized messages as RESOURCE_EXHAUSTED, as the gRPC status-code guide asks.
//!
//! tonic rejects a message over the configured size with OUT_OF_RANGE: an incoming one
//! before our handlers run (the status travels in the response headers), an outgoing one
//! while the body is written (the status travels in the trailers). This layer rewrites
//! that one status in both places.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tonic::codegen::http::{HeaderMap, HeaderValue, Request, Response};
use tower::{Layer, Service};

const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";
/// tonic's messages for too-large messages, percent-encoded as in `grpc-message`.
const TOO_LARGE: [&str; 2] = [
    "decoded%20message%20length%20too%20large",
    "encoded%20message%20length%20too%20large",
];

/// Rewrites the status in `headers` (response headers or trailers) if it is tonic's
/// message-size OUT_OF_RANGE.
fn rewrite(headers: &mut HeaderMap) {
    let too_large = headers
        .get("grpc-status")
        .is_some_and(|s| s == OUT_OF_RANGE)
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| TOO_LARGE.iter().any(|t| m.contains(t)));
    if too_large {
        headers.insert("grpc-status", HeaderValue::from_static(RESOURCE_EXHAUSTED));
    }
}

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
    type Response = Response<RewriteTrailers<R>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            rewrite(response.headers_mut());
            Ok(response.map(|inner| RewriteTrailers { inner }))
        })
    }
}

/// A response body whose trailers pass through [`rewrite`].
#[derive(Debug)]
pub struct RewriteTrailers<B> {
    inner: B,
}

impl<B> Body for RewriteTrailers<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(match frame.into_trailers() {
                Ok(mut trailers) => {
                    rewrite(&mut trailers);
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
