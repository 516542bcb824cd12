//! Satisfaction survey tokens: a resolved ticket's id and an expiry, signed (HMAC-SHA-256)
//! so that whoever holds the token may rate that one ticket until then, and nothing else.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// Bytes of the signature kept in a token.
const TAG_BYTES: usize = 16;
/// Ticket id, expiry (seconds since the epoch), signature.
const TOKEN_BYTES: usize = 16 + 8 + TAG_BYTES;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("is not a survey token this server issued")]
    Invalid,
    #[error("has expired")]
    Expired,
}

fn signature(secret: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).ok()?;
    mac.update(body);
    Some(mac.finalize().into_bytes()[..TAG_BYTES].to_vec())
}

/// A token for rating `ticket_id` until `expires_at`.
pub fn issue(secret: &[u8], ticket_id: Uuid, expires_at: DateTime<Utc>) -> String {
    let mut bytes = Vec::with_capacity(TOKEN_BYTES);
    bytes.extend_from_slice(ticket_id.as_bytes());
    bytes.extend_from_slice(&expires_at.timestamp().to_be_bytes());
    let tag = signature(secret, &bytes).unwrap_or_default();
    bytes.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The ticket a token is for, if it is genuine and not expired at `now`.
pub fn verify(secret: &[u8], token: &str, now: DateTime<Utc>) -> Result<Uuid, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| TokenError::Invalid)?;
    if bytes.len() != TOKEN_BYTES {
        return Err(TokenError::Invalid);
    }
    let (body, tag) = bytes.split_at(16 + 8);
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(|_| TokenError::Invalid)?;
    mac.update(body);
    mac.verify_truncated_left(tag)
        .map_err(|_| TokenError::Invalid)?;
    let ticket_id = Uuid::from_slice(&body[..16]).map_err(|_| TokenError::Invalid)?;
    let mut expiry = [0u8; 8];
    expiry.copy_from_slice(&body[16..]);
    if now.timestamp() > i64::from_be_bytes(expiry) {
        return Err(TokenError::Expired);
    }
    Ok(ticket_id)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn a_token_names_its_ticket_until_it_expires() {
        let now = Utc::now();
        let id = Uuid::now_v7();
        let token = issue(b"secret", id, now + TimeDelta::days(7));
        assert_eq!(verify(b"secret", &token, now), Ok(id));
        assert_eq!(
            verify(b"secret", &token, now + TimeDelta::days(8)),
            Err(TokenError::Expired)
        );
        assert_eq!(verify(b"other", &token, now), Err(TokenError::Invalid));
    }

    #[test]
    fn a_changed_token_is_refused() {
        let now = Utc::now();
        let token = issue(b"secret", Uuid::now_v7(), now + TimeDelta::days(7));
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[3] ^= 1;
        let forged = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(verify(b"secret", &forged, now), Err(TokenError::Invalid));
        assert_eq!(
            verify(b"secret", "not-a-token", now),
            Err(TokenError::Invalid)
        );
        assert_eq!(verify(b"secret", "", now), Err(TokenError::Invalid));
    }
}
