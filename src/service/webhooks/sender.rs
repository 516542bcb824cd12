//! One attempt to deliver one event: the signed POST, bounded in time and in what it
//! reads back, to a destination the settings allow.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::event::Event;
use crate::domain::webhook::{Webhook, parse_retry_after, private_address, signature_header};

/// Renders an event as the body a webhook receives (its canonical JSON); handed in at
/// start-up by the edge that knows the public message types.
pub type RenderEvent = Arc<dyn Fn(&Event) -> Vec<u8> + Send + Sync>;

/// The most of a response body read (kept, cut to text, in a failed attempt's error).
const MAX_RESPONSE_BYTES: usize = 4096;
/// The longest URL taken.
pub const MAX_URL_CHARS: usize = 2048;

#[derive(Debug, Clone)]
pub struct SenderSettings {
    /// Deliver to loopback, private and link-local destinations too.
    pub allow_private: bool,
    /// Each attempt's limit, from connecting to the end of the response.
    pub timeout: Duration,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// 0 when no response came.
    pub status_code: i32,
    pub latency: Duration,
    /// Empty on success.
    pub error: String,
    pub retry_after: Option<TimeDelta>,
}

impl Outcome {
    pub fn delivered(&self) -> bool {
        self.error.is_empty()
    }
}

pub struct Sender {
    client: reqwest::Client,
    settings: SenderSettings,
    render: RenderEvent,
}

/// Resolves names to their public addresses only, so a name cannot lead a delivery to a
/// private one (checked at every connection, not once when the URL was saved).
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| !private_address(addr.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "{host} has no public address (private destinations are not allowed)"
                )
                .into());
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// Why a URL cannot be a webhook's, if it cannot; `allow_private` lets loopback and
/// private destinations through.
pub fn url_problem(url: &str, allow_private: bool) -> Option<String> {
    if url.chars().count() > MAX_URL_CHARS {
        return Some(format!("must be at most {MAX_URL_CHARS} characters"));
    }
    let parsed = match reqwest::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(err) => return Some(format!("is not a URL: {err}")),
    };
    if !matches!(parsed.scheme(), "https" | "http") {
        return Some("must be an https:// or http:// URL".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Some("must not carry a user name or password".into());
    }
    let Some(host) = parsed.host() else {
        return Some("must name a host".into());
    };
    if allow_private {
        return None;
    }
    let private = match host {
        url::Host::Ipv4(ip) => private_address(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => private_address(IpAddr::V6(ip)),
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    };
    private.then(|| {
        "is a loopback, private or link-local destination (set TICKETD_WEBHOOK_ALLOW_PRIVATE \
         to allow them)"
            .to_owned()
    })
}

fn tls_config() -> tokio_rustls::rustls::ClientConfig {
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| ClientConfig::builder_with_protocol_versions(&[]));
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

impl Sender {
    pub fn new(settings: SenderSettings, render: RenderEvent) -> Result<Sender, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            // A redirect is a failed attempt: following one could lead anywhere.
            .redirect(reqwest::redirect::Policy::none())
            // Proxies from the environment would see past the destination check.
            .no_proxy()
            .user_agent(concat!("ticketd-webhooks/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(4)
            .tcp_nodelay(true)
            .tls_backend_preconfigured(tls_config());
        if !settings.allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Sender {
            client: builder.build()?,
            settings,
            render,
        })
    }

    /// POSTs `event` to `webhook`, signed at `now`; never fails, the outcome says how it
    /// went.
    pub async fn send(&self, webhook: &Webhook, event: &Event, now: DateTime<Utc>) -> Outcome {
        let started = Instant::now();
        let failed = |error: String| Outcome {
            status_code: 0,
            latency: started.elapsed(),
            error,
            retry_after: None,
        };
        if let Some(problem) = url_problem(&webhook.url, self.settings.allow_private) {
            return failed(format!("the URL {problem}"));
        }
        let body = (self.render)(event);
        let id = event.event.id.to_string();
        let timestamp = now.timestamp();
        let signature = signature_header(&webhook.signing_secrets(now), &id, timestamp, &body);
        let response = self
            .client
            .post(&webhook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let mut response = match response {
            Ok(response) => response,
            Err(err) => return failed(self.describe(&err)),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now));
        // Read a little of the body (for the log, and so the connection can be reused);
        // the rest is not waited for.
        let mut head = Vec::new();
        let mut read_error = None;
        while head.len() < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => head.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(err) => {
                    read_error = Some(self.describe(&err));
                    break;
                }
            }
        }
        head.truncate(MAX_RESPONSE_BYTES);
        let latency = started.elapsed();
        let error = if !status.is_success() {
            let text = String::from_utf8_lossy(&head);
            let text: String = text.trim().chars().take(500).collect();
            if text.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {text}")
            }
        } else {
            read_error.unwrap_or_default()
        };
        Outcome {
            status_code: i32::from(status.as_u16()),
            latency,
            error,
            retry_after,
        }
    }

    /// An error and its causes, in a line.
    fn describe(&self, err: &reqwest::Error) -> String {
        if err.is_timeout() {
            return format!(
                "no response within {} s",
                self.settings.timeout.as_secs_f64()
            );
        }
        let mut text = if err.is_connect() {
            "could not connect".to_owned()
        } else {
            "the request failed".to_owned()
        };
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_for_scheme_credentials_and_private_hosts() {
        assert_eq!(url_problem("https://hooks.example.com/in", false), None);
        assert_eq!(url_problem("http://93.184.216.34:8080/x", false), None);
        for (url, problem) in [
            ("ftp://example.com/", "https://"),
            ("not a url", "is not a URL"),
            ("https://user:pw@example.com/", "user name"),
            ("http://localhost:8080/", "private"),
            ("http://api.localhost/", "private"),
            ("http://127.0.0.1/", "private"),
            ("http://[::1]/", "private"),
            ("http://169.254.169.254/latest/meta-data", "private"),
            ("http://10.0.0.5/", "private"),
        ] {
            let found = url_problem(url, false).unwrap_or_default();
            assert!(found.contains(problem), "{url}: {found}");
        }
        assert_eq!(url_problem("http://127.0.0.1:9/", true), None);
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert!(url_problem(&long, true).is_some());
    }
}
