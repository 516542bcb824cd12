//! Outbound webhooks: which events an endpoint wants, how a failed delivery is retried,
//! when an endpoint is given up on, and which destinations are refused.
//!
//! An endpoint receives the events of the log in cursor order. When the event at its head
//! fails, later ones wait behind it (the receiver is not flooded while it is down, and a
//! ticket's events never arrive out of order) and the head is retried with exponential
//! back-off and jitter: seconds at first, growing to hours. A `Retry-After` longer than
//! the back-off is honoured. When the head has failed for the whole retry window, the
//! endpoint is disabled; its events keep their place until an admin enables it again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::event::{EventKind, NewEvent};
use super::ticket::text_enum;
use super::watch::{WatchFilter, matches};

text_enum!(
    /// Where an endpoint stands; see the module documentation.
    WebhookState {
        Healthy = "healthy",
        Failing = "failing",
        Disabled = "disabled",
    }
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    pub description: String,
    /// Empty: every type.
    pub event_types: Vec<EventKind>,
    /// In the watch-filter language; empty: every event.
    pub filter: String,
    pub state: WebhookState,
    /// `whsec_` and the base64 key.
    pub secret: String,
    /// The secret before the last rotation, and until when it still signs.
    pub previous_secret: Option<(String, DateTime<Utc>)>,
    /// Every event up to this cursor is delivered or did not match.
    pub delivered_through: i64,
    /// Failed attempts at the head event (the first after `delivered_through`).
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Since when the head event has been failing.
    pub failing_since: Option<DateTime<Utc>>,
    pub last_error: String,
    /// Raised by every change an admin makes; the etag.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Webhook {
    /// Whether the endpoint wants `event`, given its parsed filter.
    pub fn wants(&self, filter: Option<&WatchFilter>, event: &NewEvent) -> bool {
        (self.event_types.is_empty() || self.event_types.contains(&event.kind))
            && filter.is_none_or(|f| matches(f, event))
    }

    /// The secrets that sign a delivery at `now`: the current one, and the previous one
    /// during its overlap.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let Some((previous, until)) = &self.previous_secret
            && now < *until
        {
            secrets.push(previous);
        }
        secrets
    }
}

/// One attempt to deliver one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub event_cursor: i64,
    pub event_id: Uuid,
    pub event_type: EventKind,
    /// 1 for the first attempt at the event.
    pub attempt: i32,
    /// 0 when no response came.
    pub status_code: i32,
    pub latency: std::time::Duration,
    /// Empty on success.
    pub error: String,
    pub attempted_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// Sent by an admin's redelivery.
    pub manual: bool,
}

/// The `webhook-signature` header: one `v1,…` entry per secret, space-separated.
pub fn signature_header(secrets: &[&str], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .filter_map(|secret| super::hook::sign(secret, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How long the head event is retried before the endpoint is disabled.
pub const RETRY_WINDOW: TimeDelta = TimeDelta::hours(24);
/// The pause after the first failure; each later one is four times longer…
const FIRST_DELAY_SECONDS: f64 = 5.0;
const GROWTH: f64 = 4.0;
/// …up to this.
const LONGEST_DELAY_SECONDS: f64 = 6.0 * 3600.0;
/// The longest `Retry-After` taken as it is.
const LONGEST_RETRY_AFTER: TimeDelta = TimeDelta::hours(24);

/// The pause after the `attempts`-th failed attempt (1 for the first), before jitter:
/// 5 s, 20 s, 80 s, 5 min, 21 min, 85 min, 5.7 h, then 6 h.
pub fn backoff(attempts: i32) -> TimeDelta {
    let exponent = (attempts.max(1) - 1).min(16);
    let seconds = (FIRST_DELAY_SECONDS * GROWTH.powi(exponent)).min(LONGEST_DELAY_SECONDS);
    TimeDelta::milliseconds((seconds * 1000.0) as i64)
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(DateTime<Utc>),
    /// The retry window is over: disable the endpoint.
    GiveUp,
}

/// After the `attempts`-th failed attempt at the head event at `now`, which began
/// failing at `since`: when to try again, or to give up. `jitter` in `[0, 1)` spreads
/// retries by ±20 %; a `Retry-After` longer than the pause replaces it. The last retry
/// falls at the end of the window, so an endpoint gets the whole window to recover.
pub fn after_failure(
    attempts: i32,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    retry_after: Option<TimeDelta>,
    jitter: f64,
) -> AfterFailure {
    let end = since + RETRY_WINDOW;
    if now >= end {
        return AfterFailure::GiveUp;
    }
    let pause = backoff(attempts);
    let spread = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
    let pause = TimeDelta::milliseconds((pause.num_milliseconds() as f64 * spread) as i64);
    let pause = match retry_after {
        Some(asked) => pause.max(asked.min(LONGEST_RETRY_AFTER)),
        None => pause,
    };
    AfterFailure::RetryAt((now + pause).min(end))
}

/// A `Retry-After` value (delay-seconds or an HTTP date) as a pause from `now`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<TimeDelta> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u32>() {
        return Some(TimeDelta::seconds(i64::from(seconds)));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&Utc) - now).max(TimeDelta::zero()))
}

/// Whether a destination address is one a webhook may not reach unless settings allow
/// it: loopback, private, link-local, shared (carrier-grade NAT), unspecified,
/// broadcast, multicast, benchmarking and reserved ranges, and their IPv6 kin
/// (unique-local, link-local, IPv4-mapped and -compatible forms of the above).
pub fn private_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => private_v6(v6),
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Shared address space (RFC 6598).
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments (RFC 6890).
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        // Benchmarking (RFC 2544).
        || (a == 198 && (b == 18 || b == 19))
        // Reserved (240.0.0.0/4).
        || a >= 240
}

fn private_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return private_v4(v4);
    }
    let seg = ip.segments();
    let embedded =
        |high: u16, low: u16| private_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local (fc00::/7), link-local (fe80::/10), site-local (fec0::/10).
        || (seg[0] & 0xfe00) == 0xfc00
        || (seg[0] & 0xffc0) == 0xfe80
        || (seg[0] & 0xffc0) == 0xfec0
        // IPv4-compatible (::a.b.c.d, deprecated).
        || seg[..6].iter().all(|s| *s == 0)
        // Discard-only (100::/64), documentation (2001:db8::/32), Teredo (2001::/32).
        || (seg[0] == 0x100 && seg[1..4].iter().all(|s| *s == 0))
        || (seg[0] == 0x2001 && (seg[1] == 0xdb8 || seg[1] == 0))
        // NAT64: the well-known prefix carrying a private IPv4, and local-use prefixes.
        || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6].iter().all(|s| *s == 0)
            && embedded(seg[6], seg[7]))
        || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1)
        // 6to4 (2002::/16) of a private IPv4.
        || (seg[0] == 0x2002 && embedded(seg[1], seg[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn the_backoff_starts_in_seconds_and_grows_to_hours() {
        assert_eq!(backoff(1), TimeDelta::seconds(5));
        assert_eq!(backoff(2), TimeDelta::seconds(20));
        assert_eq!(backoff(3), TimeDelta::seconds(80));
        assert!(backoff(7) > TimeDelta::hours(5));
        assert_eq!(backoff(8), TimeDelta::hours(6));
        assert_eq!(backoff(500), TimeDelta::hours(6));
    }

    #[test]
    fn jitter_spreads_a_retry_by_a_fifth_either_way() {
        let early = after_failure(2, at(0), at(0), None, 0.0);
        let late = after_failure(2, at(0), at(0), None, 0.999);
        assert_eq!(early, AfterFailure::RetryAt(at(16)));
        assert!(matches!(late, AfterFailure::RetryAt(t) if t > at(23) && t <= at(24)));
    }

    #[test]
    fn a_longer_retry_after_is_honoured_and_a_shorter_one_is_not() {
        let asked = after_failure(1, at(0), at(0), Some(TimeDelta::seconds(600)), 0.5);
        assert_eq!(asked, AfterFailure::RetryAt(at(600)));
        let shorter = after_failure(3, at(0), at(0), Some(TimeDelta::seconds(1)), 0.5);
        assert_eq!(shorter, AfterFailure::RetryAt(at(80)));
    }

    #[test]
    fn retries_run_to_the_end_of_the_window_then_give_up() {
        let window = RETRY_WINDOW.num_seconds();
        let mut now = at(0);
        let mut attempts = 1;
        while let AfterFailure::RetryAt(next) = after_failure(attempts, at(0), now, None, 0.5) {
            assert!(next > now && next <= at(window));
            now = next;
            attempts += 1;
        }
        assert_eq!(now, at(window), "the last retry falls at the window's end");
        assert!((8..=20).contains(&attempts), "{attempts} attempts");
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        let now = DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("120", now), Some(TimeDelta::seconds(120)));
        assert_eq!(
            parse_retry_after("Mon, 30 Nov 2026 12:01:30 GMT", now),
            Some(TimeDelta::seconds(90))
        );
        assert_eq!(
            parse_retry_after("Mon, 30 Nov 2026 11:00:00 GMT", now),
            Some(TimeDelta::zero())
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn private_and_special_addresses_are_refused_and_public_ones_pass() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::808:808",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "fec0::1",
            "2001::1",
            "2001:db8::1",
            "100::1",
            "ff02::1",
        ] {
            assert!(private_address(refused.parse().unwrap()), "{refused}");
        }
        for allowed in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:4860::8888",
        ] {
            assert!(!private_address(allowed.parse().unwrap()), "{allowed}");
        }
    }

    #[test]
    fn both_secrets_sign_during_the_overlap_and_only_the_new_one_after() {
        let mut hook = Webhook {
            id: Uuid::nil(),
            url: String::new(),
            description: String::new(),
            event_types: Vec::new(),
            filter: String::new(),
            state: WebhookState::Healthy,
            secret: "whsec_bmV3LXNlY3JldC1rZXktYnl0ZXM=".into(),
            previous_secret: Some(("whsec_b2xkLXNlY3JldC1rZXktYnl0ZXM=".into(), at(100))),
            delivered_through: 0,
            attempts: 0,
            next_attempt_at: None,
            failing_since: None,
            last_error: String::new(),
            version: 1,
            created_at: at(0),
            updated_at: at(0),
        };
        let both = signature_header(&hook.signing_secrets(at(99)), "m1", 5, b"{}");
        assert_eq!(both.split(' ').count(), 2);
        for secret in [&hook.secret, &hook.previous_secret.as_ref().unwrap().0] {
            assert!(
                super::super::hook::verify(
                    secret,
                    Some("m1"),
                    Some("5"),
                    Some(&both),
                    b"{}",
                    DateTime::from_timestamp(5, 0).unwrap()
                )
                .is_ok()
            );
        }
        assert_eq!(hook.signing_secrets(at(100)).len(), 1);
        hook.previous_secret = None;
        assert_eq!(hook.signing_secrets(at(0)), vec![hook.secret.as_str()]);
    }
}
