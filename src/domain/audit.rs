//! The audit trail of administrative changes: who changed which key, agent, queue, rule,
//! policy or calendar, when, and how. Entries outlive the objects they describe.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::auth::ApiKey;
use super::calendar::BusinessCalendar;
use super::event::{Actor, FieldChange};
use super::filter::{self, Comparison, Expr, FilterError, Op};
use super::routing::{Agent, Queue, RoutingRule};
use super::sla::SlaPolicy;
use super::ticket::text_enum;

text_enum!(
    AuditAction {
        Create = "create",
        Update = "update",
        Delete = "delete",
        Revoke = "revoke",
    }
);

text_enum!(
    AuditResource {
        ApiKey = "api_key",
        Agent = "agent",
        Queue = "queue",
        RoutingRule = "routing_rule",
        SlaPolicy = "sla_policy",
        Calendar = "calendar",
        Template = "template",
        Contact = "contact",
        Workflow = "workflow",
        AutoResponse = "auto_response",
        View = "view",
        InboundHook = "inbound_hook",
        Webhook = "webhook",
    }
);

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: Uuid,
    pub actor: Actor,
    pub action: AuditAction,
    pub resource: AuditResource,
    pub resource_id: Uuid,
    /// Each field that changed, values as JSON text (`old` empty on create, `new` empty on
    /// delete).
    pub changes: Vec<FieldChange>,
    pub created_at: DateTime<Utc>,
}

impl AuditEntry {
    /// The entry for `action` on `resource`, with the fields that differ between
    /// `before` and `after` (either may be absent: a create has no before, a delete no
    /// after).
    pub fn of<T: Audited>(
        actor: Actor,
        action: AuditAction,
        before: Option<&T>,
        after: Option<&T>,
        at: DateTime<Utc>,
    ) -> AuditEntry {
        let resource_id = after.or(before).map_or(Uuid::nil(), |o| o.audit_id());
        AuditEntry {
            id: Uuid::now_v7(),
            actor,
            action,
            resource: T::RESOURCE,
            resource_id,
            changes: changes(
                &before.map(Audited::audit_fields).unwrap_or_default(),
                &after.map(Audited::audit_fields).unwrap_or_default(),
            ),
            created_at: at,
        }
    }
}

impl AuditEntry {
    /// Roughly what the entry takes in a response, in bytes.
    pub fn approximate_size(&self) -> usize {
        256 + self.actor.name.len()
            + self
                .changes
                .iter()
                .map(|c| 32 + c.field.len() + c.old.len() + c.new.len())
                .sum::<usize>()
    }

    /// `after` created (no `before`) or changed from `before`.
    pub fn saved<T: Audited>(
        actor: Actor,
        before: Option<&T>,
        after: &T,
        at: DateTime<Utc>,
    ) -> Self {
        let action = if before.is_some() {
            AuditAction::Update
        } else {
            AuditAction::Create
        };
        Self::of(actor, action, before, Some(after), at)
    }

    /// An update whose fields all stayed as they were: saving it would only move the
    /// version and record an empty change.
    pub fn changes_nothing(&self) -> bool {
        self.action == AuditAction::Update && self.changes.is_empty()
    }

    /// `object` deleted.
    pub fn deleted<T: Audited>(actor: Actor, object: &T, at: DateTime<Utc>) -> Self {
        Self::of(actor, AuditAction::Delete, Some(object), None, at)
    }
}

/// Which entries `ListAuditEntries` returns: every condition set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub resource: Option<AuditResource>,
    pub resource_id: Option<Uuid>,
    pub action: Option<AuditAction>,
    pub actor_id: Option<Uuid>,
    /// Entries at or after this moment.
    pub since: Option<DateTime<Utc>>,
    /// Entries before this moment.
    pub until: Option<DateTime<Utc>>,
}

impl AuditFilter {
    /// Reads a filter in the `ListTickets` language, limited to comparisons joined by
    /// `AND`: `resource`, `resource_id`, `action` and `actor_id` with `=`, `created_at`
    /// with `<`, `<=`, `>`, `>=` and an RFC 3339 time.
    pub fn parse(text: &str) -> Result<AuditFilter, FilterError> {
        let mut filter = AuditFilter::default();
        let Some(expr) = filter::parse(text)? else {
            return Ok(filter);
        };
        let comparisons = match expr {
            Expr::Cond(c) => vec![c],
            Expr::And(items) => items
                .into_iter()
                .map(|item| match item {
                    Expr::Cond(c) => Ok(c),
                    _ => Err(FilterError {
                        position: 0,
                        message: "audit filters join comparisons with AND only".into(),
                    }),
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(FilterError {
                    position: 0,
                    message: "audit filters join comparisons with AND only".into(),
                });
            }
        };
        for c in comparisons {
            filter.add(&c)?;
        }
        Ok(filter)
    }

    fn add(&mut self, c: &Comparison) -> Result<(), FilterError> {
        let fail = |message: String| FilterError {
            position: c.position,
            message,
        };
        let text = c.value.text();
        let field = c.field.as_str();
        if field != "created_at" && c.op != Op::Eq {
            return Err(fail(format!("{field} supports only =")));
        }
        let uuid = || Uuid::parse_str(&text).map_err(|_| fail(format!("{field} must be a UUID")));
        match field {
            "resource" => {
                let names: Vec<&str> = AuditResource::ALL.iter().map(|r| r.as_str()).collect();
                self.resource = Some(AuditResource::parse(&text).ok_or_else(|| {
                    fail(format!("resource must be one of {}", names.join(", ")))
                })?);
            }
            "action" => {
                let names: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
                self.action =
                    Some(AuditAction::parse(&text).ok_or_else(|| {
                        fail(format!("action must be one of {}", names.join(", ")))
                    })?);
            }
            "resource_id" => self.resource_id = Some(uuid()?),
            "actor_id" => self.actor_id = Some(uuid()?),
            "created_at" => {
                let at = DateTime::parse_from_rfc3339(&text)
                    .map_err(|_| fail("created_at must be compared with an RFC 3339 time".into()))?
                    .with_timezone(&Utc);
                let just_after = at + TimeDelta::microseconds(1);
                match c.op {
                    Op::Ge => self.since = Some(at),
                    Op::Gt => self.since = Some(just_after),
                    Op::Lt => self.until = Some(at),
                    Op::Le => self.until = Some(just_after),
                    Op::Eq | Op::Ne => {
                        return Err(fail("created_at supports only <, <=, > and >=".into()));
                    }
                }
            }
            other => {
                return Err(fail(format!(
                    "unknown field {other:?}; audit entries filter on resource, resource_id, \
                     action, actor_id and created_at"
                )));
            }
        }
        Ok(())
    }
}

/// What an audited object records of itself: its settings, never secrets, versions or
/// timestamps.
pub trait Audited {
    const RESOURCE: AuditResource;
    fn audit_id(&self) -> Uuid;
    fn audit_fields(&self) -> Map<String, Value>;
}

/// The fields whose values differ, in name order.
pub fn changes(before: &Map<String, Value>, after: &Map<String, Value>) -> Vec<FieldChange> {
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    let text = |v: Option<&Value>| v.map(Value::to_string).unwrap_or_default();
    names
        .into_iter()
        .filter(|name| before.get(*name) != after.get(*name))
        .map(|name| FieldChange {
            field: name.clone(),
            old: text(before.get(name)),
            new: text(after.get(name)),
        })
        .collect()
}

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Declares what a type records of itself: its resource name, and its settings as JSON
/// (`$this` names the object).
macro_rules! audited {
    ($type:ty, $resource:expr, |$this:ident| $fields:expr) => {
        impl Audited for $type {
            const RESOURCE: AuditResource = $resource;
            fn audit_id(&self) -> Uuid {
                self.id
            }
            fn audit_fields(&self) -> Map<String, Value> {
                let $this = self;
                fields($fields)
            }
        }
    };
}

audited!(ApiKey, AuditResource::ApiKey, |it| json!({
    "name": it.name,
    "role": it.role.as_str(),
    "agent_id": it.agent_id,
    "channels": it.channels.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
    "sources": it.sources,
    "prefix": it.prefix,
    "revoked": it.revoked_at.is_some(),
}));

audited!(Agent, AuditResource::Agent, |it| json!({
    "name": it.name,
    "email": it.email,
    "skills": it.skills,
    "tier": it.tier,
    "capacity": it.capacity,
    "availability": it.availability.as_str(),
    "queue_ids": it.queue_ids,
    "vip_handler": it.vip_handler,
}));

// Never the secret.
audited!(
    crate::domain::hook::InboundHook,
    AuditResource::InboundHook,
    |it| json!({
        "name": it.name,
        "action": it.action.as_str(),
        "source": it.source,
    })
);

audited!(Queue, AuditResource::Queue, |it| json!({
    "name": it.name,
    "tier": it.tier,
    "strategy": it.strategy.as_str(),
}));

audited!(RoutingRule, AuditResource::RoutingRule, |it| json!({
    "name": it.name,
    "position": it.position,
    "enabled": it.enabled,
    "conditions": it.conditions,
    "actions": it.actions,
}));

audited!(SlaPolicy, AuditResource::SlaPolicy, |it| json!({
    "name": it.name,
    "position": it.position,
    "conditions": it.conditions,
    "targets": it.targets,
    "calendar_id": it.calendar_id,
    "warning": it.warning,
}));

audited!(BusinessCalendar, AuditResource::Calendar, |it| json!({
    "name": it.name,
    "time_zone": it.time_zone.name(),
    "weekly": it.weekly,
    "holidays": it.holidays.iter().map(ToString::to_string).collect::<Vec<_>>(),
    "yearly_holidays": it.yearly_holidays,
}));

#[cfg(test)]
mod tests {
    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        fields(value)
    }

    #[test]
    fn only_differing_fields_are_recorded() {
        let before = map(json!({"name": "Ada", "tier": 1, "skills": ["billing"]}));
        let after = map(json!({"name": "Ada", "tier": 2, "skills": ["billing", "de"]}));
        let changes = changes(&before, &after);
        assert_eq!(
            changes,
            vec![
                FieldChange {
                    field: "skills".into(),
                    old: r#"["billing"]"#.into(),
                    new: r#"["billing","de"]"#.into(),
                },
                FieldChange {
                    field: "tier".into(),
                    old: "1".into(),
                    new: "2".into(),
                },
            ]
        );
    }

    #[test]
    fn filters_are_conjunctions_of_known_fields() {
        let id = Uuid::now_v7();
        let filter = AuditFilter::parse(&format!(
            r#"resource = "agent" AND resource_id = "{id}" AND created_at >= "2026-01-01T00:00:00Z""#
        ))
        .unwrap();
        assert_eq!(filter.resource, Some(AuditResource::Agent));
        assert_eq!(filter.resource_id, Some(id));
        assert!(filter.since.is_some() && filter.until.is_none());
        assert_eq!(AuditFilter::parse("").unwrap(), AuditFilter::default());
        for bad in [
            r#"resource = "agent" OR action = "delete""#,
            r#"resource = "ticket""#,
            r#"resource != "agent""#,
            r#"actor_id = "me""#,
            r#"name = "x""#,
            r#"created_at = "2026-01-01T00:00:00Z""#,
        ] {
            assert!(AuditFilter::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn creates_and_deletes_record_every_field_on_one_side() {
        let object = map(json!({"name": "Billing", "tier": 1}));
        let created = changes(&Map::new(), &object);
        assert_eq!(created.len(), 2);
        assert!(
            created
                .iter()
                .all(|c| c.old.is_empty() && !c.new.is_empty())
        );
        let deleted = changes(&object, &Map::new());
        assert!(
            deleted
                .iter()
                .all(|c| c.new.is_empty() && !c.old.is_empty())
        );
        assert!(changes(&object, &object).is_empty());
    }
}

audited!(
    crate::domain::workflow::Workflow,
    AuditResource::Workflow,
    |it| json!({
        "name": it.name,
        "enabled": it.enabled,
        "position": it.position,
        "trigger": it.trigger,
        "condition": it.condition,
        "actions": it.actions,
    })
);

audited!(
    crate::domain::webhook::Webhook,
    AuditResource::Webhook,
    |it| json!({
        "url": it.url,
        "description": it.description,
        "event_types": it.event_types,
        "filter": it.filter,
        "state": it.state.as_str(),
    })
);

audited!(crate::domain::view::View, AuditResource::View, |it| json!({
    "name": it.name,
    "filter": it.filter,
    "order_by": it.order_by,
    "columns": it.columns,
    "owner_agent_id": it.owner_agent_id,
}));

audited!(
    crate::domain::auto_response::AutoResponse,
    AuditResource::AutoResponse,
    |it| json!({
        "kind": it.kind.as_str(),
        "channel": it.channel.as_str(),
        "template_id": it.template_id,
        "calendar_id": it.calendar_id,
        "enabled": it.enabled,
        "for_agent_tickets": it.for_agent_tickets,
    })
);

audited!(
    crate::domain::template::Template,
    AuditResource::Template,
    |it| json!({
        "name": it.name,
        "channel": it.channel.as_str(),
        "subject": it.subject,
        "body": it.body,
    })
);

impl Audited for crate::domain::contact::ContactRecord {
    const RESOURCE: AuditResource = AuditResource::Contact;
    fn audit_id(&self) -> Uuid {
        self.contact.id
    }
    fn audit_fields(&self) -> Map<String, Value> {
        let c = &self.contact;
        fields(json!({
            "external_id": c.external_id,
            "name": c.name,
            "email": c.email,
            "phone": c.phone,
            "vip": c.vip,
            "emails": self.emails,
            "phones": self.phones,
        }))
    }
}
