//! Pure types and rules of the helpdesk: tickets, their lifecycle, the activity feed,
//! callers and the filter language. No I/O lives here.

pub mod audit;
pub mod auth;
pub mod auto_response;
pub mod calendar;
pub mod consistency;
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
pub mod webhook;
pub mod workflow;

/// `N` bytes from the operating system's random source (through v4 UUIDs, whose random
/// bits come from it), for secrets and keys.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    for chunk in bytes.chunks_mut(16) {
        let fresh = uuid::Uuid::new_v4();
        chunk.copy_from_slice(&fresh.as_bytes()[..chunk.len()]);
    }
    bytes
}

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

#[cfg(test)]
mod random_tests {
    #[test]
    fn random_bytes_fill_any_length_and_differ() {
        let a: [u8; 24] = super::random_bytes();
        let b: [u8; 24] = super::random_bytes();
        assert_ne!(a, b);
        // The last chunk (8 of a UUID's 16 bytes) is filled too.
        assert_ne!(a[16..], [0u8; 8]);
    }
}
