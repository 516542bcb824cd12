//! Bearer API-key authentication and role checks for every RPC.

use tonic::{Request, Status};

use crate::domain::auth::{Principal, Role};
use crate::service::ApiKeyService;

/// Roles allowed to call an RPC.
pub(crate) const ADMIN: &[Role] = &[Role::Admin];
pub(crate) const STAFF: &[Role] = &[Role::Admin, Role::Agent];
pub(crate) const STAFF_OR_BOT: &[Role] = &[Role::Admin, Role::Agent, Role::Bot];
pub(crate) const BOTS: &[Role] = &[Role::Admin, Role::Bot];
pub(crate) const GATEWAYS: &[Role] = &[Role::Admin, Role::Gateway];

/// Authenticates the request's `authorization: Bearer <secret>` and checks its role.
pub(crate) async fn authorize<T>(
    keys: &ApiKeyService,
    request: &Request<T>,
    rpc: &str,
    allowed: &[Role],
) -> Result<Principal, Status> {
    let header = request
        .metadata()
        .get("authorization")
        .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <api key>"))?;
    let secret = header
        .to_str()
        .ok()
        .and_then(|value| {
            let (scheme, secret) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim())
        })
        .filter(|secret| !secret.is_empty())
        .ok_or_else(|| Status::unauthenticated("authorization must be: Bearer <api key>"))?;
    let principal = keys.authenticate(secret).await?;
    if !allowed.contains(&principal.role) {
        return Err(Status::permission_denied(format!(
            "a {} key may not call {rpc}",
            principal.role
        )));
    }
    Ok(principal)
}
