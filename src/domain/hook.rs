//! Inbound hooks and the Standard Webhooks signature (<https://www.standardwebhooks.com>):
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`
//! under the key a `whsec_` secret carries.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use uuid::Uuid;

use super::ticket::text_enum;

text_enum!(
    /// What a hook does with a payload.
    HookAction {
        CreateTicket = "create_ticket",
        PostCustomerMessage = "post_customer_message",
    }
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundHook {
    pub id: Uuid,
    pub name: String,
    pub action: HookAction,
    /// The conversation source the hook speaks for.
    pub source: String,
    /// `whsec_` and the base64 key.
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

/// How far a signed timestamp may be from now, either way.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;
/// The longest `webhook-id` taken.
pub const MAX_ID_CHARS: usize = 120;
/// The most `v1,` entries of one `webhook-signature` looked at (rotation needs two).
const MAX_SIGNATURES: usize = 8;
/// The longest `webhook-signature` header read.
const MAX_SIGNATURE_HEADER: usize = 1024;

/// A new secret: 24 random bytes.
pub fn new_secret() -> String {
    let key: [u8; 24] = super::random_bytes();
    format!("whsec_{}", STANDARD.encode(key))
}

/// Why a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("webhook-id, webhook-timestamp and webhook-signature are required")]
    Missing,
    #[error("webhook-id must be 1 to {MAX_ID_CHARS} characters")]
    BadId,
    #[error("webhook-timestamp is not within {TOLERANCE_SECONDS} seconds of now")]
    Stale,
    #[error("no webhook-signature matches")]
    Mismatch,
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn key_of(secret: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .ok()
}

/// The MAC of `id.timestamp.body` under the secret's key, ready to finalize or verify.
fn mac(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(&key_of(secret)?).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(mac)
}

/// The signature header value for `body` (used by tests and senders).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let mac = mac(secret, id, timestamp, body)?;
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Checks a request's `webhook-id`, `webhook-timestamp` and `webhook-signature` (a
/// space-separated list; any `v1` entry may match) against `secret` at `now`.
pub fn verify(
    secret: &str,
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let (Some(id), Some(timestamp), Some(signatures)) = (id, timestamp, signatures) else {
        return Err(SignatureError::Missing);
    };
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
        return Err(SignatureError::BadId);
    }
    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Stale)?;
    if now.timestamp().abs_diff(timestamp) > TOLERANCE_SECONDS as u64 {
        return Err(SignatureError::Stale);
    }
    if signatures.len() > MAX_SIGNATURE_HEADER {
        return Err(SignatureError::Mismatch);
    }
    // The body is hashed once, whatever the number of entries; each is compared in
    // constant time.
    let mac = mac(secret, id, timestamp, body).ok_or(SignatureError::Mismatch)?;
    let matches = signatures
        .split_whitespace()
        .take(MAX_SIGNATURES)
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .any(|given| mac.clone().verify_slice(&given).is_ok());
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_example_verifies() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        let timestamp = 1614265330;
        let signature = sign(secret, id, timestamp, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let at = DateTime::from_timestamp(timestamp + 60, 0).unwrap();
        assert_eq!(
            verify(
                secret,
                Some(id),
                Some("1614265330"),
                Some(&signature),
                body,
                at
            ),
            Ok(())
        );
        // Among others, after a rotation.
        let both = format!("v1,bm90IGl0 {signature}");
        assert!(verify(secret, Some(id), Some("1614265330"), Some(&both), body, at).is_ok());
    }

    #[test]
    fn tampering_staleness_and_missing_headers_are_refused() {
        let secret = new_secret();
        let now = Utc::now();
        let ts = now.timestamp();
        let sig = sign(&secret, "m1", ts, b"{}").unwrap();
        let check = |id: &str, ts: &str, sig: &str, body: &[u8], at| {
            verify(&secret, Some(id), Some(ts), Some(sig), body, at)
        };
        assert_eq!(check("m1", &ts.to_string(), &sig, b"{}", now), Ok(()));
        assert_eq!(
            check("m1", &ts.to_string(), &sig, b"{ }", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check("m2", &ts.to_string(), &sig, b"{}", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(
                "m1",
                &ts.to_string(),
                &sig,
                b"{}",
                now + chrono::Duration::minutes(6)
            ),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&secret, Some("m1"), None, Some(&sig), b"{}", now),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            check(
                &"x".repeat(MAX_ID_CHARS + 1),
                &ts.to_string(),
                &sig,
                b"{}",
                now
            ),
            Err(SignatureError::BadId)
        );
        // An extreme timestamp is stale, not an overflow.
        assert_eq!(
            check("m1", &i64::MIN.to_string(), &sig, b"{}", now),
            Err(SignatureError::Stale)
        );
        // A flood of entries is cut short.
        let flood = format!("{} {sig}", "v1, ".repeat(600));
        assert_eq!(
            check("m1", &ts.to_string(), &flood, b"{}", now),
            Err(SignatureError::Mismatch)
        );
    }
}
