//! Saved views of tickets: a filter, an order and columns, personal or shared; and the
//! four built-in views, which have fixed ids and cannot change.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::filter::TicketFilter;
use super::validation::Violations;

/// Longest view name.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest view filter.
pub const MAX_FILTER_CHARS: usize = 4_096;
/// Most columns one view shows.
pub const MAX_COLUMNS: usize = 40;

/// The ticket fields a read mask or a view's columns may name (the `Ticket` message's).
pub const TICKET_COLUMNS: &[&str] = &[
    "id",
    "number",
    "subject",
    "description",
    "status",
    "priority",
    "type",
    "tags",
    "custom_fields",
    "contact",
    "assignee_id",
    "queue_id",
    "merged_into_id",
    "etag",
    "created_at",
    "updated_at",
    "time_spent",
    "channel",
    "follow_up_of_id",
    "tier",
    "required_skills",
    "sla_clocks",
    "satisfaction",
];

/// The predefined views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltIn {
    MyTickets,
    Unassigned,
    Overdue,
    AllOpen,
}

impl BuiltIn {
    pub const ALL: [BuiltIn; 4] = [
        BuiltIn::MyTickets,
        BuiltIn::Unassigned,
        BuiltIn::Overdue,
        BuiltIn::AllOpen,
    ];

    pub fn id(self) -> &'static str {
        match self {
            BuiltIn::MyTickets => "my-tickets",
            BuiltIn::Unassigned => "unassigned",
            BuiltIn::Overdue => "overdue",
            BuiltIn::AllOpen => "all-open",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BuiltIn::MyTickets => "My tickets",
            BuiltIn::Unassigned => "Unassigned",
            BuiltIn::Overdue => "Overdue",
            BuiltIn::AllOpen => "All open",
        }
    }

    /// What the view selects, in the filter language.
    pub fn filter_text(self) -> &'static str {
        match self {
            BuiltIn::MyTickets => {
                "assignee_id = \"me\" AND (status = OPEN OR status = IN_PROGRESS OR status = WAITING)"
            }
            BuiltIn::Unassigned => {
                "assignee_id = \"\" AND (status = OPEN OR status = IN_PROGRESS OR status = WAITING)"
            }
            BuiltIn::Overdue => {
                "sla_due_at <= \"now\" AND (status = OPEN OR status = IN_PROGRESS OR status = WAITING)"
            }
            BuiltIn::AllOpen => "status = OPEN OR status = IN_PROGRESS OR status = WAITING",
        }
    }

    pub fn parse(id: &str) -> Option<BuiltIn> {
        BuiltIn::ALL.into_iter().find(|b| b.id() == id)
    }
}

/// A saved view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub id: Uuid,
    pub name: String,
    pub filter: String,
    pub order_by: String,
    pub columns: Vec<String>,
    /// The agent a personal view belongs to; `None` for a shared view.
    pub owner_agent_id: Option<Uuid>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which view a call names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewId {
    BuiltIn(BuiltIn),
    Saved(Uuid),
}

impl ViewId {
    /// A built-in's fixed id or a saved view's UUID; `None` for anything else.
    pub fn parse(text: &str) -> Option<ViewId> {
        BuiltIn::parse(text)
            .map(ViewId::BuiltIn)
            .or_else(|| Uuid::parse_str(text).ok().map(ViewId::Saved))
    }
}

/// Checks read-mask paths or columns against the ticket's fields.
pub fn check_columns(field: &str, columns: &[String], v: &mut Violations) {
    if columns.len() > MAX_COLUMNS {
        v.add(field, format!("must name at most {MAX_COLUMNS} fields"));
        return;
    }
    for (i, column) in columns.iter().enumerate() {
        if !TICKET_COLUMNS.contains(&column.as_str()) {
            v.add(
                format!("{field}[{i}]"),
                format!(
                    "{column:?} is not a ticket field; known: {}",
                    TICKET_COLUMNS.join(", ")
                ),
            );
        }
    }
}

/// Checks a view's name, filter and columns (its order is checked as ListTickets does).
pub fn check(name: &str, filter: &str, columns: &[String], v: &mut Violations) {
    v.line("view.name", name, true, MAX_NAME_CHARS);
    v.text("view.filter", filter, false, MAX_FILTER_CHARS);
    if let Err(e) = TicketFilter::parse_text(filter) {
        v.add("view.filter", e.to_string());
    }
    check_columns("view.columns", columns, v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_ids_are_built_in_names_or_uuids() {
        assert_eq!(
            ViewId::parse("overdue"),
            Some(ViewId::BuiltIn(BuiltIn::Overdue))
        );
        let id = Uuid::now_v7();
        assert_eq!(ViewId::parse(&id.to_string()), Some(ViewId::Saved(id)));
        assert_eq!(ViewId::parse("Overdue"), None);
        assert_eq!(ViewId::parse(""), None);
    }

    #[test]
    fn built_in_filters_are_filters() {
        for b in BuiltIn::ALL {
            assert!(TicketFilter::parse_text(b.filter_text()).is_ok(), "{b:?}");
        }
    }

    #[test]
    fn columns_must_be_ticket_fields() {
        let mut v = Violations::new();
        check_columns("read_mask", &["subject".into(), "nope".into()], &mut v);
        let fields: Vec<String> = v
            .finish()
            .unwrap_err()
            .into_iter()
            .map(|f| f.field)
            .collect();
        assert_eq!(fields, vec!["read_mask[1]".to_string()]);
    }
}
