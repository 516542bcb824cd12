//! Saved views: personal ones for agents, shared ones from admins, and the four built-ins;
//! and how `ListTickets` and `CountTickets` read a view.

use std::sync::Arc;

use uuid::Uuid;

use super::tickets::TicketView;
use super::versioned::{Mask, Versioned, copy_masked, update_versioned};
use super::{ServiceError, ServiceResult};
use crate::clock::Clock;
use crate::domain::audit::AuditEntry;
use crate::domain::auth::{Principal, Role};
use crate::domain::filter::TicketFilter;
use crate::domain::validation::Violations;
use crate::domain::view::{self, BuiltIn, View, ViewId};
use crate::store::Store;

/// The paths `UpdateView` accepts in its `update_mask`.
pub const VIEW_PATHS: &[&str] = &["name", "filter", "order_by", "columns"];

/// A view's fields as a caller sends them.
#[derive(Debug, Clone, Default)]
pub struct ViewPatch {
    pub name: String,
    pub filter: String,
    pub order_by: String,
    pub columns: Vec<String>,
    pub owner_agent_id: Option<Uuid>,
}

/// A view as listed: a built-in or a saved one, with its count when asked for.
#[derive(Debug, Clone)]
pub enum Listed {
    BuiltIn(BuiltIn),
    Saved(View),
}

/// What a view adds to a listing: its filter, its order and its columns.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub view: Option<TicketView>,
    pub filter: Option<TicketFilter>,
    pub order_by: String,
    pub columns: Vec<String>,
}

impl Versioned for View {
    fn version(&self) -> i64 {
        self.version
    }
}

fn built_in_view(b: BuiltIn) -> TicketView {
    match b {
        BuiltIn::MyTickets => TicketView::MyTickets,
        BuiltIn::Unassigned => TicketView::Unassigned,
        BuiltIn::Overdue => TicketView::Overdue,
        BuiltIn::AllOpen => TicketView::AllOpen,
    }
}

/// A saved view the caller may use: shared ones and their own (admins: every one).
/// Another agent's personal view is NOT_FOUND, as if it did not exist.
fn visible(principal: &Principal, view: &View) -> bool {
    principal.role == Role::Admin
        || view.owner_agent_id.is_none()
        || view.owner_agent_id == principal.agent_id
}

/// What `view_id` selects, for `ListTickets` and `CountTickets`.
pub async fn selection(
    store: &dyn Store,
    principal: &Principal,
    view_id: &str,
) -> ServiceResult<Selection> {
    match ViewId::parse(view_id) {
        None => Err(ServiceError::invalid(
            "view_id",
            "must be a view's UUID or my-tickets, unassigned, overdue or all-open",
        )),
        Some(ViewId::BuiltIn(b)) => Ok(Selection {
            view: Some(built_in_view(b)),
            ..Selection::default()
        }),
        Some(ViewId::Saved(id)) => {
            let view = store
                .view(id)
                .await?
                .filter(|v| visible(principal, v))
                .ok_or_else(|| ServiceError::NotFound(format!("view {id}")))?;
            let filter = TicketFilter::parse_text(&view.filter).map_err(|e| {
                ServiceError::FailedPrecondition(format!("view {id} has a bad filter: {e}"))
            })?;
            Ok(Selection {
                view: None,
                filter,
                order_by: view.order_by,
                columns: view.columns,
            })
        }
    }
}

#[derive(Clone)]
pub struct ViewService {
    store: Arc<dyn Store>,
    clock: Clock,
}

impl ViewService {
    pub fn new(store: Arc<dyn Store>, clock: Clock) -> Self {
        Self { store, clock }
    }

    /// An agent's view is personal to its agent; an admin's is shared unless it names an
    /// owner.
    pub async fn create(&self, principal: &Principal, patch: ViewPatch) -> ServiceResult<View> {
        let owner = match principal.role {
            Role::Admin => patch.owner_agent_id,
            _ => match principal.agent_id {
                Some(agent) if patch.owner_agent_id.is_none_or(|o| o == agent) => Some(agent),
                Some(_) => {
                    return Err(ServiceError::PermissionDenied(
                        "an agent saves views for itself only".into(),
                    ));
                }
                None => {
                    return Err(ServiceError::PermissionDenied(
                        "views belong to agents: use a key bound to an agent".into(),
                    ));
                }
            },
        };
        if let Some(agent) = owner
            && self.store.agent(agent).await?.is_none()
        {
            return Err(ServiceError::invalid(
                "view.owner_agent_id",
                format!("no agent {agent}"),
            ));
        }
        let at = self.clock.now();
        let view = checked(Uuid::now_v7(), &patch, owner, at)?;
        let audit = AuditEntry::saved(principal.actor(), None, &view, at);
        if !self.store.save_view(&view, None, &audit).await? {
            return Err(ServiceError::Contended("view not saved".into()));
        }
        Ok(view)
    }

    pub async fn get(&self, principal: &Principal, id: &str) -> ServiceResult<Listed> {
        match ViewId::parse(id) {
            Some(ViewId::BuiltIn(b)) => Ok(Listed::BuiltIn(b)),
            Some(ViewId::Saved(id)) => Ok(Listed::Saved(self.saved(principal, id).await?)),
            None => Err(ServiceError::invalid("id", "is not a view id")),
        }
    }

    async fn saved(&self, principal: &Principal, id: Uuid) -> ServiceResult<View> {
        self.store
            .view(id)
            .await?
            .filter(|v| visible(principal, v))
            .ok_or_else(|| ServiceError::NotFound(format!("view {id}")))
    }

    /// A view the caller may change: its own, or any for an admin.
    async fn changeable(&self, principal: &Principal, id: &str) -> ServiceResult<View> {
        let id = match ViewId::parse(id) {
            Some(ViewId::Saved(id)) => id,
            Some(ViewId::BuiltIn(b)) => {
                return Err(ServiceError::FailedPrecondition(format!(
                    "{} is built in and cannot change",
                    b.id()
                )));
            }
            None => return Err(ServiceError::invalid("view.id", "is not a view id")),
        };
        let view = self.saved(principal, id).await?;
        if principal.role != Role::Admin && view.owner_agent_id != principal.agent_id {
            return Err(ServiceError::PermissionDenied(
                "shared views are changed by admins".into(),
            ));
        }
        Ok(view)
    }

    pub async fn update(
        &self,
        principal: &Principal,
        id: &str,
        patch: ViewPatch,
        mask: Vec<String>,
        etag: Option<String>,
    ) -> ServiceResult<View> {
        let mask = Mask::new(mask, VIEW_PATHS)?;
        let (mask, patch) = (&mask, &patch);
        let first = self.changeable(principal, id).await?;
        let view_id = first.id;
        update_versioned(
            &format!("view {view_id}"),
            etag.as_deref(),
            || self.changeable(principal, id),
            |current| async move {
                let mut next = ViewPatch {
                    name: current.name.clone(),
                    filter: current.filter.clone(),
                    order_by: current.order_by.clone(),
                    columns: current.columns.clone(),
                    owner_agent_id: current.owner_agent_id,
                };
                copy_masked!(mask, next, patch, [name, filter, order_by, columns]);
                let at = self.clock.now();
                let view = View {
                    version: current.version + 1,
                    created_at: current.created_at,
                    ..checked(view_id, &next, current.owner_agent_id, at)?
                };
                let audit = AuditEntry::saved(principal.actor(), Some(&current), &view, at);
                if audit.changes_nothing() {
                    return Ok(current);
                }
                if self
                    .store
                    .save_view(&view, Some(current.version), &audit)
                    .await?
                {
                    Ok(view)
                } else {
                    Err(ServiceError::Contended(format!(
                        "view {view_id} changed concurrently"
                    )))
                }
            },
        )
        .await
    }

    /// The built-ins, then the saved views the caller may use, by name.
    pub async fn list(&self, principal: &Principal) -> ServiceResult<Vec<Listed>> {
        let owner = match principal.role {
            Role::Admin => None,
            _ => Some(principal.agent_id.unwrap_or(Uuid::nil())),
        };
        let saved = self.store.views(owner).await?;
        Ok(BuiltIn::ALL
            .into_iter()
            .map(Listed::BuiltIn)
            .chain(saved.into_iter().map(Listed::Saved))
            .collect())
    }

    pub async fn delete(&self, principal: &Principal, id: &str) -> ServiceResult<()> {
        let view = self.changeable(principal, id).await?;
        let audit = AuditEntry::deleted(principal.actor(), &view, self.clock.now());
        if self.store.delete_view(view.id, &audit).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!("view {}", view.id)))
        }
    }
}

/// A view from the caller's fields, checked whole (its order as ListTickets reads it).
fn checked(
    id: Uuid,
    patch: &ViewPatch,
    owner: Option<Uuid>,
    at: chrono::DateTime<chrono::Utc>,
) -> ServiceResult<View> {
    let mut v = Violations::new();
    let name = patch.name.trim().to_owned();
    view::check(&name, &patch.filter, &patch.columns, &mut v);
    if let Err(ServiceError::Invalid(violations)) = super::tickets::check_order_by(&patch.order_by)
    {
        for violation in violations {
            v.add("view.order_by", violation.description);
        }
    }
    v.finish()?;
    Ok(View {
        id,
        name,
        filter: patch.filter.trim().to_owned(),
        order_by: patch.order_by.trim().to_owned(),
        columns: patch.columns.clone(),
        owner_agent_id: owner,
        version: 1,
        created_at: at,
        updated_at: at,
    })
}
