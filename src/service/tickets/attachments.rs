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
        if a.name.trim().is_empty()
            || a.name.chars().count() > 255
            || a.name.contains(['/', '\\'])
            || a.name.contains(char::is_control)
        {
            v.add(
                format!("{field}[{i}].name"),
                "must be 1 to 255 characters without path separators",
            );
        }
        let valid_type = a.content_type.len() <= 255
            && a.content_type.split_once('/').is_some_and(|(top, sub)| {
                !top.is_empty()
                    && !sub.is_empty()
                    && !a
                        .content_type
                        .contains(|c: char| c.is_whitespace() || c.is_control())
            });
        if !valid_type {
            v.add(
                format!("{field}[{i}].content_type"),
                "must be a MIME type such as application/pdf",
            );
        }
    }
}
