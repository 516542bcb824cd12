//! UpdateTicket: field masks, etags and the status table.

use super::*;

/// New values for the fields an update names; other fields are ignored.
#[derive(Debug, Clone, Default)]
pub struct TicketPatch {
    pub subject: String,
    pub description: String,
    pub status: Option<Status>,
    pub priority: Option<Priority>,
    pub ticket_type: Option<TicketType>,
    pub tags: Vec<String>,
    pub custom_fields: BTreeMap<String, String>,
    pub contact: Option<ContactInput>,
    pub assignee_id: Option<Uuid>,
    pub queue_id: Option<Uuid>,
}

/// The paths `UpdateTicket` accepts in its `update_mask`.
pub const UPDATABLE_PATHS: &[&str] = &[
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
];

impl TicketService {
    /// Applies the fields named in `mask`. With an etag the update applies only to that
    /// version; without one it is re-applied on top of concurrent changes.
    #[instrument(skip_all, fields(ticket_id = %id))]
    pub async fn update(
        &self,
        principal: &Principal,
        id: Uuid,
        patch: TicketPatch,
        mask: Vec<String>,
        etag: Option<String>,
    ) -> ServiceResult<Ticket> {
        check_update_mask(&mask, UPDATABLE_PATHS)?;
        let mut v = Violations::new();
        let names = |p: &str| mask.iter().any(|m| m == p);
        if names("subject") {
            v.line("ticket.subject", &patch.subject, true, MAX_SUBJECT_CHARS);
        }
        if names("description") {
            v.text(
                "ticket.description",
                &patch.description,
                false,
                MAX_DESCRIPTION_CHARS,
            );
        }
        let tags = if names("tags") {
            ticket::normalize_tags("ticket.tags", &patch.tags, &mut v)
        } else {
            Vec::new()
        };
        if names("custom_fields") {
            ticket::validate_custom_fields("ticket.custom_fields", &patch.custom_fields, &mut v);
        }
        for (path, missing) in [
            ("status", patch.status.is_none()),
            ("priority", patch.priority.is_none()),
            ("type", patch.ticket_type.is_none()),
            ("contact", patch.contact.is_none()),
        ] {
            if names(path) && missing {
                v.add(
                    format!("ticket.{path}"),
                    "must be set when named in update_mask",
                );
            }
        }
        if let (true, Some(contact)) = (names("contact"), &patch.contact) {
            contact.validate("ticket.contact", &mut v);
        }
        let expected = match &etag {
            Some(etag) => match ticket::version_from_etag(etag) {
                Some(version) => Some(version),
                None => {
                    v.add("etag", "is not an etag this server issued");
                    None
                }
            },
            None => None,
        };
        v.finish()?;
        self.routing
            .ensure_targets(
                patch.assignee_id.filter(|_| names("assignee_id")),
                patch.queue_id.filter(|_| names("queue_id")),
            )
            .await?;
        if patch.status == Some(Status::Merged) && names("status") {
            return Err(ServiceError::FailedPrecondition(
                "a ticket becomes MERGED only through MergeTickets".into(),
            ));
        }

        let tags = &tags;
        let mask = &mask;
        let etag = &etag;
        let patch = &patch;
        retry_contended(contended(id), || async move {
            let current = self.get(TicketKey::Id(id)).await?;
            if let (Some(expected), Some(given)) = (expected, &etag)
                && expected != current.version
            {
                return Err(ServiceError::StaleEtag {
                    given: given.clone(),
                    current: current.etag(),
                });
            }
            ensure_not_final(&current)?;
            let mut next = current.clone();
            let mut changes: Vec<FieldChange> = Vec::new();
            let mut status_change = None;
            let mut assignment: Vec<FieldChange> = Vec::new();
            let mut contact = None;
            for path in mask {
                match path.as_str() {
                    "subject" => {
                        next.subject = patch.subject.trim().to_owned();
                        push_change(&mut changes, "subject", &current.subject, &next.subject);
                    }
                    "description" => {
                        next.description = patch.description.clone();
                        push_change(
                            &mut changes,
                            "description",
                            &current.description,
                            &next.description,
                        );
                    }
                    "status" => {
                        if let Some(status) = patch.status {
                            if !current.status.can_become(status) {
                                return Err(ServiceError::FailedPrecondition(format!(
                                    "ticket #{} cannot go from {} to {}",
                                    current.number, current.status, status
                                )));
                            }
                            next.status = status;
                            let mut one = Vec::new();
                            push_change(
                                &mut one,
                                "status",
                                current.status.as_str(),
                                status.as_str(),
                            );
                            status_change = one.pop();
                        }
                    }
                    "priority" => {
                        if let Some(priority) = patch.priority {
                            next.priority = priority;
                            push_change(
                                &mut changes,
                                "priority",
                                current.priority.as_str(),
                                priority.as_str(),
                            );
                        }
                    }
                    "type" => {
                        if let Some(ticket_type) = patch.ticket_type {
                            next.ticket_type = ticket_type;
                            push_change(
                                &mut changes,
                                "type",
                                current.ticket_type.as_str(),
                                ticket_type.as_str(),
                            );
                        }
                    }
                    "tags" => {
                        next.tags = tags.clone();
                        push_change(
                            &mut changes,
                            "tags",
                            &current.tags.join(","),
                            &next.tags.join(","),
                        );
                    }
                    "custom_fields" => {
                        next.custom_fields = patch.custom_fields.clone();
                        for key in current
                            .custom_fields
                            .keys()
                            .chain(next.custom_fields.keys())
                        {
                            let old = current.custom_fields.get(key).cloned().unwrap_or_default();
                            let new = next.custom_fields.get(key).cloned().unwrap_or_default();
                            if !changes
                                .iter()
                                .any(|c| c.field == format!("custom_fields.{key}"))
                            {
                                push_change(
                                    &mut changes,
                                    &format!("custom_fields.{key}"),
                                    &old,
                                    &new,
                                );
                            }
                        }
                    }
                    "contact" => {
                        if let Some(input) = &patch.contact {
                            let before = changes.len();
                            contact_changes(&mut changes, &current.contact, input);
                            if changes.len() > before {
                                contact = Some(input.clone());
                            }
                        }
                    }
                    "assignee_id" => {
                        next.assignee_id = patch.assignee_id;
                        push_change(
                            &mut assignment,
                            "assignee_id",
                            &optional_id(current.assignee_id),
                            &optional_id(next.assignee_id),
                        );
                    }
                    "queue_id" => {
                        next.queue_id = patch.queue_id;
                        push_change(
                            &mut assignment,
                            "queue_id",
                            &optional_id(current.queue_id),
                            &optional_id(next.queue_id),
                        );
                    }
                    _ => {}
                }
            }
            if changes.is_empty() && status_change.is_none() && assignment.is_empty() {
                return Ok(current);
            }
            let at = self.clock.now();
            next.updated_at = at;
            let actor = principal.actor();
            let mut events = Vec::new();
            let event = |kind, changes: Vec<FieldChange>| {
                NewEvent::about(
                    &next,
                    kind,
                    actor.clone(),
                    Visibility::Internal,
                    EventPayload::FieldsChanged { changes },
                    at,
                )
            };
            if let Some(change) = status_change {
                events.push(event(EventKind::StatusChanged, vec![change]));
            }
            let reassigned = next.assignee_id != current.assignee_id;
            if !assignment.is_empty() {
                events.push(event(EventKind::Assigned, assignment));
            }
            if !changes.is_empty() {
                events.push(event(EventKind::TicketUpdated, changes));
            }
            if reassigned {
                events.extend(crate::domain::notification::assigned(&next, &actor, at));
            }
            let tags_changed = next.tags != current.tags;
            let changeset = Changeset {
                updates: vec![TicketUpdate {
                    ticket: next,
                    expected_version: current.version,
                    contact,
                    tags_changed,
                }],
                events,
                ..Changeset::default()
            };
            match self.writer.commit(changeset).await {
                Ok(mut committed) => {
                    let after = committed
                        .tickets
                        .pop()
                        .ok_or_else(|| not_found(TicketKey::Id(id)))?;
                    return Ok(self.routing.after_change(&current, after).await);
                }
                // Without an etag, a concurrent change is Contended (below): re-apply.
                Err(StoreError::Conflict(_)) if etag.is_some() => {
                    let latest = self.get(TicketKey::Id(id)).await?;
                    Err(ServiceError::StaleEtag {
                        given: etag.clone().unwrap_or_default(),
                        current: latest.etag(),
                    })
                }
                Err(other) => Err(other.into()),
            }
        })
        .await
    }
}

fn push_change(changes: &mut Vec<FieldChange>, field: &str, old: &str, new: &str) {
    if old != new {
        changes.push(FieldChange {
            field: field.to_owned(),
            old: old.to_owned(),
            new: new.to_owned(),
        });
    }
}

/// What upserting `input` would change about the ticket's contact. A different external id
/// names another contact; empty fields and an unset `vip` keep the stored values.
fn contact_changes(changes: &mut Vec<FieldChange>, current: &Contact, input: &ContactInput) {
    if input.external_id != current.external_id {
        push_change(
            changes,
            "contact.external_id",
            &current.external_id,
            &input.external_id,
        );
        return;
    }
    for (field, old, new) in [
        ("contact.name", &current.name, &input.name),
        ("contact.email", &current.email, &input.email),
        ("contact.phone", &current.phone, &input.phone),
    ] {
        if !new.is_empty() {
            push_change(changes, field, old, new);
        }
    }
    if let Some(vip) = input.vip {
        push_change(
            changes,
            "contact.vip",
            &current.vip.to_string(),
            &vip.to_string(),
        );
    }
}

fn optional_id(id: Option<Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}
