//! The one mapping from service errors to gRPC statuses.
//!
//! Validation failures carry `google.rpc.BadRequest` field violations. Internal and
//! database failures reach the client as an opaque message; the cause is logged here,
//! once, inside the request's span (which carries the request id).

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::validation::shortened;
use crate::service::ServiceError;

/// The most field violations one error lists; the message counts the rest. With the
/// bounds on each (see `FieldViolation::new`) the error stays well within the 16 KiB of
/// headers gRPC clients accept.
const MAX_VIOLATIONS: usize = 10;
/// The most bytes of any other error's message (which may quote the caller's input).
const MAX_MESSAGE_BYTES: usize = 1024;

impl From<ServiceError> for Status {
    fn from(err: ServiceError) -> Status {
        let bounded = |message: String| shortened(message, MAX_MESSAGE_BYTES);
        match err {
            ServiceError::Invalid(violations) => {
                let listed = &violations[..violations.len().min(MAX_VIOLATIONS)];
                let mut details = ErrorDetails::new();
                for v in listed {
                    details.add_bad_request_violation(v.field.clone(), v.description.clone());
                }
                let mut message = listed
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                if violations.len() > listed.len() {
                    message.push_str(&format!("; and {} more", violations.len() - listed.len()));
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ServiceError::NotFound(_) => Status::not_found(bounded(err.to_string())),
            ServiceError::StaleEtag { .. } | ServiceError::Contended(_) => {
                Status::aborted(bounded(err.to_string()))
            }
            ServiceError::FailedPrecondition(message) => {
                Status::failed_precondition(bounded(message))
            }
            ServiceError::AlreadyExists(message) => Status::already_exists(bounded(message)),
            ServiceError::PermissionDenied(message) => Status::permission_denied(bounded(message)),
            ServiceError::Unauthenticated(message) => Status::unauthenticated(bounded(message)),
            ServiceError::ResourceExhausted(message) => {
                Status::resource_exhausted(bounded(message))
            }
            ServiceError::Unavailable(ref cause) => {
                tracing::warn!(error = %error_chain(cause), "database unavailable");
                Status::unavailable("the database is unavailable; retry later")
            }
            ServiceError::TimedOut(ref cause) => {
                tracing::warn!(error = %error_chain(cause), "statement timeout");
                Status::deadline_exceeded(
                    "the database work took longer than the statement timeout; narrow the \
                     request or retry later",
                )
            }
            ServiceError::Internal(ref cause) => {
                tracing::error!(error = %error_chain(cause), "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// `outer: inner: innermost`, for logs.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
