//! Errors over HTTP (the `/v1/` routes beside gRPC, and the gate's refusals of them): the
//! gRPC status as JSON in Google's HTTP error shape
//! (`{"error": {"code", "status", "message", "details"}}`), with the HTTP status AIP-193
//! gives each code.

use serde::Serialize;
use tonic::codegen::http::{HeaderValue, StatusCode, header};
use tonic::{Code, Status};
use tonic_types::StatusExt;

#[derive(Serialize)]
struct Envelope {
    error: ErrorBody,
}

#[derive(Serialize)]
struct ErrorBody {
    code: u16,
    status: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<Detail>,
}

/// The details ticketd's errors carry, named by their `google.rpc` type.
#[derive(Serialize)]
#[serde(tag = "@type")]
enum Detail {
    #[serde(rename = "type.googleapis.com/google.rpc.BadRequest")]
    BadRequest {
        #[serde(rename = "fieldViolations")]
        field_violations: Vec<FieldViolation>,
    },
    #[serde(rename = "type.googleapis.com/google.rpc.RetryInfo")]
    RetryInfo {
        #[serde(rename = "retryDelay")]
        retry_delay: String,
    },
}

#[derive(Serialize)]
struct FieldViolation {
    field: String,
    description: String,
}

/// The HTTP status of a gRPC code (AIP-193).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Aborted | Code::AlreadyExists => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The error as JSON text, and the seconds a caller should wait before retrying (from the
/// status's `RetryInfo`), if it says.
pub fn error_json(status: &Status, http: StatusCode) -> (String, Option<u64>) {
    let details = status.get_error_details();
    let mut out = Vec::new();
    if let Some(bad) = details.bad_request() {
        out.push(Detail::BadRequest {
            field_violations: bad
                .field_violations
                .iter()
                .map(|v| FieldViolation {
                    field: v.field.clone(),
                    description: v.description.clone(),
                })
                .collect(),
        });
    }
    let retry = details
        .retry_info()
        .and_then(|r| r.retry_delay)
        .map(|d| d.as_secs_f64().ceil().max(1.0) as u64);
    if let Some(seconds) = retry {
        out.push(Detail::RetryInfo {
            retry_delay: format!("{seconds}s"),
        });
    }
    let body = Envelope {
        error: ErrorBody {
            code: http.as_u16(),
            status: code_name(status.code()),
            // Bounded: some messages (a body's parse error) quote the caller's input.
            message: crate::domain::validation::shortened(status.message().to_owned(), 1024),
            details: out,
        },
    };
    // Serialising plain strings and numbers cannot fail.
    (serde_json::to_string(&body).unwrap_or_default(), retry)
}

/// A complete HTTP error response for `status`.
pub fn response<B>(
    status: &Status,
    body: impl FnOnce(String) -> B,
) -> tonic::codegen::http::Response<B> {
    response_as(status, http_status(status.code()), body)
}

/// A body past a route's bound: `status` (RESOURCE_EXHAUSTED) sent as 413, the code its
/// JSON says too.
pub fn too_large<B>(
    status: &Status,
    body: impl FnOnce(String) -> B,
) -> tonic::codegen::http::Response<B> {
    response_as(status, StatusCode::PAYLOAD_TOO_LARGE, body)
}

fn response_as<B>(
    status: &Status,
    http: StatusCode,
    body: impl FnOnce(String) -> B,
) -> tonic::codegen::http::Response<B> {
    let (json, retry) = error_json(status, http);
    let mut response = tonic::codegen::http::Response::new(body(json));
    *response.status_mut() = http;
    // For the call's metrics: HTTP statuses name several codes at once.
    response.extensions_mut().insert(status.code());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(seconds) = retry
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        headers.insert(header::RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    #[test]
    fn invalid_arguments_are_400_with_their_fields() {
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "filter: bad",
            ErrorDetails::with_bad_request_violation("filter", "bad"),
        );
        let (json, retry) = error_json(&status, http_status(status.code()));
        assert_eq!(retry, None);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["error"]["code"], 400);
        assert_eq!(value["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(
            value["error"]["details"][0]["fieldViolations"][0]["field"],
            "filter"
        );
    }

    #[test]
    fn codes_map_as_aip_193_says() {
        assert_eq!(http_status(Code::NotFound), 404);
        assert_eq!(http_status(Code::Aborted), 409);
        assert_eq!(http_status(Code::Unauthenticated), 401);
        assert_eq!(http_status(Code::PermissionDenied), 403);
        assert_eq!(http_status(Code::ResourceExhausted), 429);
        assert_eq!(http_status(Code::Unavailable), 503);
    }
}
