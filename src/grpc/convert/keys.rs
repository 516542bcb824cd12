//! API keys.

use super::*;
use crate::grpc::pb;

pub(crate) fn api_key_to_pb(key: ApiKeyRecord) -> pb::ApiKey {
    pb::ApiKey {
        id: key.id.to_string(),
        name: key.name,
        role: role_to_pb(key.role),
        agent_id: optional_id(key.agent_id),
        channels: key.channels.into_iter().map(channel_to_pb).collect(),
        sources: key.sources,
        prefix: key.prefix,
        created_at: Some(timestamp(key.created_at)),
        revoked_at: key.revoked_at.map(timestamp),
    }
}
