//! Pure types and rules of the helpdesk: tickets, their lifecycle, the activity feed,
//! callers and the filter language. No I/O lives here.

pub mod audit;
pub mod auth;
pub mod auto_response;
pub mod calendar;
pub mod contact;
pub mod conversation;
pub mod conversation_update;
pub mod delivery;
pub mod email;
pub mod event;
pub mod filter;
pub mod hook;
pub mod inbound_email;
pub mod notification;
pub mod report;
pub mod routing;
pub mod search;
pub mod sla;
pub mod survey;
pub mod template;
pub mod ticket;
pub mod validation;
pub mod view;
pub mod watch;
pub mod workflow;

/// Bytes as lower-case hexadecimal, for digests shown as text.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}
