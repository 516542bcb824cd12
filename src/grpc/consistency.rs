//! Read-your-writes across standbys, at the edge of every authenticated call (gRPC and
//! HTTP alike):
//!
//! - a request may carry `ticketd-consistency-token` (gRPC metadata or HTTP header): the
//!   reads it makes see at least that position (a malformed token is INVALID_ARGUMENT);
//! - a response to a request that committed a write carries the token of that write,
//!   when standbys are configured (without them every read is on the primary, and there
//!   is nothing to wait for).
//!
//! The service runs the request as a session (`service::consistency`); the store does
//! the waiting and the routing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

use crate::domain::consistency::{Lsn, TOKEN_METADATA};
use crate::service::consistency::ReadConsistency;

#[derive(Clone)]
pub struct ConsistencyLayer {
    reads: ReadConsistency,
}

impl ConsistencyLayer {
    pub fn new(reads: ReadConsistency) -> Self {
        Self { reads }
    }
}

impl<S> Layer<S> for ConsistencyLayer {
    type Service = Consistency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Consistency {
            inner,
            reads: self.reads.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Consistency<S> {
    inner: S,
    reads: ReadConsistency,
}

/// The token a request carries, if any.
fn token_of<B>(request: &Request<B>) -> Result<Option<Lsn>, Status> {
    let Some(value) = request.headers().get(TOKEN_METADATA) else {
        return Ok(None);
    };
    // An empty token is no token: a client that always sends back the last one it
    // received sends nothing in particular before its first write.
    value
        .to_str()
        .map_err(|_| "it is not text".to_owned())
        .map(str::trim)
        .and_then(|text| match text {
            "" => Ok(None),
            text => text.parse::<Lsn>().map(Some),
        })
        .map_err(|why| Status::invalid_argument(format!("{TOKEN_METADATA}: {why}")))
}

impl<S> Service<Request<Body>> for Consistency<S>
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
        let reads = self.reads.clone();
        Box::pin(async move {
            let after = match token_of(&request) {
                Ok(after) => after,
                Err(status) => return Ok(super::gate::refusal(request.uri().path(), status)),
            };
            let (response, token) = reads.serve(after, inner.call(request)).await;
            let mut response = response?;
            if let Some(value) = token.and_then(|t| HeaderValue::from_str(&t.to_string()).ok()) {
                response.headers_mut().insert(TOKEN_METADATA, value);
            }
            Ok(response)
        })
    }
}
