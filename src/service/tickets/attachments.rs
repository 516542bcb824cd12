//! Files sent with replies and messages: checks, storage records, feed metadata.

use super::*;

/// Attachments as stored, tied to the event that carries them.
pub(crate) fn stored_attachments(
    ticket_id: Uuid,
    event_id: Uuid,
    files: &[AttachmentInput],
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<NewAttachment> {
    files
        .iter()
        .map(|a| NewAttachment {
            id: Uuid::now_v7(),
            ticket_id,
            event_id,
            name: a.name.clone(),
            content_type: a.content_type.clone(),
            content: a.content.clone(),
            created_at: at,
        })
        .collect()
}

pub(crate) fn attachment_meta(files: &[NewAttachment]) -> Vec<AttachmentMeta> {
    files
        .iter()
        .map(|f| AttachmentMeta {
            id: f.id,
            name: f.name.clone(),
            content_type: f.content_type.clone(),
            size_bytes: f.content.len() as i64,
        })
        .collect()
}

/// 1 to 255 characters, no path separators or control characters, not `.` or `..`.
pub(crate) fn valid_file_name(name: &str) -> bool {
    !name.trim().is_empty()
        && !matches!(name.trim(), "." | "..")
        && name.chars().count() <= 255
        && !name.contains(['/', '\\'])
        && !name.contains(char::is_control)
}

/// A MIME type such as `application/pdf`.
pub(crate) fn valid_content_type(content_type: &str) -> bool {
    content_type.len() <= 255
        && content_type.split_once('/').is_some_and(|(top, sub)| {
            !top.is_empty()
                && !sub.is_empty()
                && !content_type.contains(|c: char| c.is_whitespace() || c.is_control())
        })
}

/// Checks names, types, count and total size of the files of one message.
pub(crate) fn validate_attachments(
    field: &str,
    attachments: &[AttachmentInput],
    v: &mut Violations,
) {
    if attachments.len() > MAX_ATTACHMENTS {
        v.add(field, format!("must hold at most {MAX_ATTACHMENTS} files"));
        return;
    }
    let total: usize = attachments.iter().map(|a| a.content.len()).sum();
    if total > MAX_ATTACHMENT_BYTES_TOTAL {
        v.add(
            field,
            format!("must total at most {MAX_ATTACHMENT_BYTES_TOTAL} bytes; got {total}"),
        );
    }
    for (i, a) in attachments.iter().enumerate() {
        if !valid_file_name(&a.name) {
            v.add(
                format!("{field}[{i}].name"),
                "must be 1 to 255 characters without path separators",
            );
        }
        if !valid_content_type(&a.content_type) {
            v.add(
                format!("{field}[{i}].content_type"),
                "must be a MIME type such as application/pdf",
            );
        }
    }
}

/// How many merges deep an attachment's ticket is followed to the one asked for.
const MAX_MERGE_HOPS: usize = 64;

impl TicketService {
    /// An attachment of ticket `ticket_id` (or of a ticket merged into it), with its
    /// bytes, if the caller may read it: agents and admins any; bots the attachments of
    /// public entries on conversations of their sources; gateways the attachments of
    /// messages that went out to them.
    pub async fn attachment(
        &self,
        principal: &Principal,
        ticket_id: Uuid,
        attachment_id: Uuid,
    ) -> ServiceResult<crate::store::StoredAttachment> {
        let not_found =
            || ServiceError::NotFound(format!("attachment {attachment_id} of ticket {ticket_id}"));
        let attachment = self
            .store
            .attachment(attachment_id)
            .await?
            .ok_or_else(not_found)?;
        let owner = self
            .store
            .ticket(TicketKey::Id(attachment.ticket_id))
            .await?
            .ok_or_else(not_found)?;
        let mut at = owner.clone();
        for _ in 0..MAX_MERGE_HOPS {
            if at.id == ticket_id {
                break;
            }
            let next = at.merged_into_id.ok_or_else(not_found)?;
            at = self
                .store
                .ticket(TicketKey::Id(next))
                .await?
                .ok_or_else(not_found)?;
        }
        if at.id != ticket_id {
            return Err(not_found());
        }
        let allowed = match principal.role {
            Role::Admin | Role::Agent => true,
            Role::Bot => {
                // Tickets of other sources look absent to a bot, as in GetTicket.
                let sees_ticket = principal.sources.is_empty()
                    || owner
                        .conversation
                        .as_ref()
                        .is_some_and(|c| principal.may_speak_for(&c.source));
                if !sees_ticket {
                    return Err(not_found());
                }
                attachment.public
            }
            Role::Gateway => self
                .store
                .leased_channel(attachment.event_id)
                .await?
                .is_some_and(|channel| principal.may_use(channel)),
        };
        if allowed {
            let mut attachment = attachment;
            if attachment.sha256.is_empty() {
                // Stored inline before contents were hashed.
                use sha2::Digest;
                attachment.sha256 = crate::domain::hex(&sha2::Sha256::digest(&attachment.content));
            }
            Ok(attachment)
        } else {
            Err(ServiceError::PermissionDenied(format!(
                "this key may not read attachment {attachment_id}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_plain_names() {
        for good in ["report.pdf", "a b.txt", "ü.png", ".profile"] {
            assert!(valid_file_name(good), "{good}");
        }
        for bad in [
            "",
            "  ",
            ".",
            "..",
            "a/b",
            "a\\b",
            "a\u{0}b",
            &"x".repeat(256),
        ] {
            assert!(!valid_file_name(bad), "{bad:?}");
        }
        assert!(valid_content_type("application/pdf"));
        assert!(!valid_content_type("pdf") && !valid_content_type("text/ plain"));
    }
}
