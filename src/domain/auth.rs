//! Callers: API-key roles and the principal a request runs as.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::event::{Actor, ActorKind};
use super::ticket::{Channel, text_enum};

text_enum!(
    /// What an API key may do.
    Role {
        Admin = "admin",
        Agent = "agent",
        Bot = "bot",
        Gateway = "gateway",
    }
);

/// An API key as stored: its secret only as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub agent_id: Option<Uuid>,
    /// Channels a gateway key is limited to; empty means all.
    pub channels: Vec<Channel>,
    /// Conversation sources a bot key speaks for; empty means any.
    pub sources: Vec<String>,
    pub prefix: String,
    pub secret_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: Uuid,
    pub key_name: String,
    pub role: Role,
    /// The agent an agent key acts as; `"me"` in filters.
    pub agent_id: Option<Uuid>,
    /// Channels a gateway key is limited to; empty means all.
    pub channels: Vec<Channel>,
    /// Conversation sources a bot key speaks for; empty means any.
    pub sources: Vec<String>,
}

impl Principal {
    /// How the caller appears in the activity feed.
    pub fn actor(&self) -> Actor {
        match self.agent_id {
            Some(agent_id) => Actor {
                kind: ActorKind::Agent,
                id: Some(agent_id),
                name: self.key_name.clone(),
            },
            None => Actor {
                kind: ActorKind::ApiKey,
                id: Some(self.key_id),
                name: self.key_name.clone(),
            },
        }
    }

    /// Whether the caller may act on `channel` (gateway keys may be limited to some).
    pub fn may_use(&self, channel: Channel) -> bool {
        self.channels.is_empty() || self.channels.contains(&channel)
    }

    /// Whether the caller may speak for conversations of `source` (bot keys may be
    /// limited to some).
    pub fn may_speak_for(&self, source: &str) -> bool {
        self.sources.is_empty() || self.sources.iter().any(|s| s == source)
    }

    /// Whether the caller may change a contact's stored details. Bots and gateways
    /// speak for whoever is on the other end of a conversation, so they may create a
    /// contact and fill its empty fields but never redirect its email or phone.
    pub fn may_edit_contacts(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Agent)
    }

    /// Agents and admins see internal notes; bots and gateways see public entries only.
    pub fn sees_internal(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Agent)
    }
}
