//! Bearer API-key authentication and role checks for every RPC.
//!
//! The gate ([`super::gate`]) authenticates each call before its body is read and hands
//! the principal to the handler in the request's extensions; [`authorize`] checks its
//! role. A call that reached a handler without passing the gate is refused.

use tonic::codegen::http::HeaderMap;
use tonic::{Request, Status};

use crate::domain::auth::{Principal, Role};

/// Roles allowed to call an RPC.
pub(crate) const ADMIN: &[Role] = &[Role::Admin];
pub(crate) const STAFF: &[Role] = &[Role::Admin, Role::Agent];
pub(crate) const STAFF_OR_BOT: &[Role] = &[Role::Admin, Role::Agent, Role::Bot];
pub(crate) const BOTS: &[Role] = &[Role::Admin, Role::Bot];
pub(crate) const GATEWAYS: &[Role] = &[Role::Admin, Role::Gateway];
/// Every role; the service decides what each may see.
pub(crate) const ANYONE: &[Role] = &[Role::Admin, Role::Agent, Role::Bot, Role::Gateway];
/// The two ends of the conversation bridge.
pub(crate) const BRIDGE: &[Role] = &[Role::Admin, Role::Bot, Role::Gateway];

/// The secret of an `authorization: Bearer <secret>` header.
pub(crate) fn bearer_secret(headers: &HeaderMap) -> Result<&str, Status> {
    let header = headers
        .get("authorization")
        .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <api key>"))?;
    header
        .to_str()
        .ok()
        .and_then(|value| {
            let (scheme, secret) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim())
        })
        .filter(|secret| !secret.is_empty())
        .ok_or_else(|| Status::unauthenticated("authorization must be: Bearer <api key>"))
}

/// The caller of `request`, if its role is one of `allowed`.
pub(crate) async fn authorize<T>(
    request: &Request<T>,
    rpc: &str,
    allowed: &[Role],
) -> Result<Principal, Status> {
    let principal = request
        .extensions()
        .get::<Principal>()
        .ok_or_else(|| Status::unauthenticated("the call was not authenticated"))?;
    if !allowed.contains(&principal.role) {
        return Err(Status::permission_denied(format!(
            "a {} key may not call {rpc}",
            principal.role
        )));
    }
    Ok(principal.clone())
}
