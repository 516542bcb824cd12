//! Typed settings. Each has a default, an environment variable (`TICKETD_*`) and a flag;
//! a flag beats the variable, which beats the default. Tests build [`Settings`] directly,
//! so nothing reads the process environment behind their back.

use std::fmt;
use std::time::Duration;

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Shortest secret accepted from configuration: anything shorter can be guessed.
pub const MIN_SECRET_CHARS: usize = 32;

impl std::str::FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.chars().count() < MIN_SECRET_CHARS {
            return Err(format!(
                "a secret must be at least {MIN_SECRET_CHARS} characters long"
            ));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("a secret must not contain spaces or control characters".into());
        }
        Ok(Secret(s.to_owned()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable, coloured when the output is a terminal.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Database URL: `sqlite://PATH` (embedded, the default) or `postgres://…`.
    #[arg(
        long,
        env = "TICKETD_DATABASE_URL",
        default_value = "sqlite://./ticketd.db"
    )]
    pub database_url: String,

    /// PostgreSQL streaming standbys, comma-separated, that take the reads callers ask
    /// for (lists, counts, search, feeds, reports, the audit log); writes stay on the
    /// database URL.
    #[arg(
        long,
        env = "TICKETD_DATABASE_READ_URL",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub database_read_url: Vec<String>,

    /// Address to serve gRPC on; port 0 picks a free port.
    #[arg(long, env = "TICKETD_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: String,

    #[arg(long, env = "TICKETD_LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,

    /// Installs this secret as an admin API key at start-up. Without it, a random admin
    /// key is created and printed once when the database has no admin key.
    #[arg(long, env = "TICKETD_BOOTSTRAP_KEY", hide_env_values = true)]
    pub bootstrap_key: Option<Secret>,

    /// Largest gRPC message accepted or sent, in bytes.
    #[arg(long, env = "TICKETD_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Deadline for unary calls, in seconds; at least 2 (the HTTP routes answer a second
    /// before it).
    #[arg(
        long,
        env = "TICKETD_REQUEST_TIMEOUT_SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(2..)
    )]
    pub request_timeout_seconds: u64,

    /// After SIGTERM: how long health reports NOT_SERVING before the listener closes,
    /// so load balancers stop routing here first.
    #[arg(long, env = "TICKETD_SHUTDOWN_DELAY_SECONDS", default_value_t = 0)]
    pub shutdown_delay_seconds: u64,

    /// After the listener closes: how long in-flight calls may take to finish.
    #[arg(long, env = "TICKETD_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,

    /// Most connections this process opens to the database (standbys have pools of the
    /// same size). On PostgreSQL one of them listens for other replicas' wake-ups, so a
    /// setting of 1 still opens two.
    #[arg(long, env = "TICKETD_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,

    /// How long a call waits for a database connection before failing with UNAVAILABLE.
    #[arg(
        long,
        env = "TICKETD_DATABASE_ACQUIRE_TIMEOUT_SECONDS",
        default_value_t = 5
    )]
    pub database_acquire_timeout_seconds: u64,

    /// PostgreSQL cancels a statement that runs longer, and the call fails with
    /// DEADLINE_EXCEEDED (0: no limit). Migrations are exempt.
    #[arg(
        long,
        env = "TICKETD_DATABASE_STATEMENT_TIMEOUT_SECONDS",
        default_value_t = 30
    )]
    pub database_statement_timeout_seconds: u64,

    /// How long a gateway holds an outbound message before it is offered again.
    #[arg(long, env = "TICKETD_DELIVERY_LEASE_SECONDS", default_value_t = 30)]
    pub delivery_lease_seconds: u64,

    /// How long a consumer group may go without any subscriber before it expires, in
    /// hours; its pending deliveries go with it.
    #[arg(long, env = "TICKETD_CONSUMER_GROUP_IDLE_HOURS", default_value_t = 168)]
    pub consumer_group_idle_hours: u64,

    /// The support mailbox: outbound email answers from it (plus-addressed with the
    /// ticket's reply token) and ticketd's Message-IDs use its domain. Set it to the
    /// address customers write to.
    #[arg(
        long,
        env = "TICKETD_EMAIL_ADDRESS",
        default_value = "support@ticketd.invalid"
    )]
    pub email_address: crate::domain::email::Mailbox,

    /// Largest raw email `IngestEmail` accepts, in bytes. The call's message limit grows
    /// to fit it.
    #[arg(long, env = "TICKETD_MAX_EMAIL_BYTES", default_value_t = 25 * 1024 * 1024)]
    pub max_email_bytes: usize,

    /// Attachments larger than this are sent to gateways by id and size (empty
    /// `content`) for them to fetch with `GetAttachment`, instead of inline.
    #[arg(long, env = "TICKETD_INLINE_ATTACHMENT_BYTES", default_value_t = 1024 * 1024)]
    pub inline_attachment_bytes: usize,

    /// Most workflow runs on one ticket in an hour; runs past it are stopped and recorded
    /// on the ticket (a guard against workflows that trigger each other).
    #[arg(
        long,
        env = "TICKETD_WORKFLOW_RUNS_PER_TICKET_HOUR",
        default_value_t = 50
    )]
    pub workflow_runs_per_ticket_hour: i64,

    /// Most auto-responses one contact gets in an hour; more are held back.
    #[arg(
        long,
        env = "TICKETD_AUTO_RESPONSES_PER_CONTACT_HOUR",
        default_value_t = 5
    )]
    pub auto_responses_per_contact_hour: i64,

    /// PostgreSQL text-search configuration for SearchTickets (`english`, `german`,
    /// `simple`, …; `SELECT cfgname FROM pg_ts_config` lists them). Changing it rebuilds
    /// every search document at the next start. SQLite always stems English words.
    #[arg(long, env = "TICKETD_SEARCH_CONFIG", default_value = "english")]
    pub search_config: String,

    /// How often expired request ids and idle consumer groups are cleaned up.
    #[arg(long, env = "TICKETD_HOUSEKEEPING_SECONDS", default_value_t = 600)]
    pub housekeeping_seconds: u64,

    /// How long a `request_id` is remembered, in hours: a retry within it returns the
    /// first result; after it the id may be used again.
    #[arg(long, env = "TICKETD_IDEMPOTENCY_HOURS", default_value_t = 24)]
    pub idempotency_hours: u64,

    /// Requests per second each API key may make (a token bucket with one second of
    /// burst); 0 is unlimited. Per role, `TICKETD_RATE_LIMIT_<ROLE>_PER_SECOND` overrides it.
    #[arg(long, env = "TICKETD_RATE_LIMIT_PER_SECOND", default_value_t = 200)]
    pub rate_limit_per_second: u32,

    #[arg(long, env = "TICKETD_RATE_LIMIT_ADMIN_PER_SECOND")]
    pub rate_limit_admin_per_second: Option<u32>,

    #[arg(long, env = "TICKETD_RATE_LIMIT_AGENT_PER_SECOND")]
    pub rate_limit_agent_per_second: Option<u32>,

    /// Bots escalate in bursts when an outage sends many customers to people at once.
    #[arg(long, env = "TICKETD_RATE_LIMIT_BOT_PER_SECOND", default_value_t = 500)]
    pub rate_limit_bot_per_second: u32,

    /// Gateways acknowledge every message they deliver.
    #[arg(
        long,
        env = "TICKETD_RATE_LIMIT_GATEWAY_PER_SECOND",
        default_value_t = 1000
    )]
    pub rate_limit_gateway_per_second: u32,

    /// Calls in flight at once over all keys; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "TICKETD_MAX_CONCURRENT_REQUESTS", default_value_t = 512)]
    pub max_concurrent_requests: usize,

    /// PEM certificate chain to serve gRPC over TLS with (with `TICKETD_TLS_KEY`). Read
    /// again when the file changes.
    #[arg(long, env = "TICKETD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// PEM private key of `TICKETD_TLS_CERT`.
    #[arg(long, env = "TICKETD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// PEM CA certificates: when set, clients must present a certificate one of them
    /// signed (mutual TLS).
    #[arg(long, env = "TICKETD_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<std::path::PathBuf>,

    /// How often the certificate and key files are checked for changes.
    #[arg(long, env = "TICKETD_TLS_RELOAD_SECONDS", default_value_t = 60)]
    pub tls_reload_seconds: u64,

    /// HTTP/2 streams (calls) one connection may have open at once.
    #[arg(
        long,
        env = "TICKETD_MAX_CONCURRENT_STREAMS_PER_CONNECTION",
        default_value_t = 256
    )]
    pub max_concurrent_streams_per_connection: u32,

    /// Web origins (`https://console.example.com`) whose browser pages may call the API
    /// with gRPC-Web, comma-separated; none by default.
    #[arg(long, env = "TICKETD_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Let webhooks reach loopback, private and link-local addresses (a receiver on the
    /// same host or network). Off by default: a webhook URL is chosen by an admin, and
    /// this keeps it from probing the network ticketd runs in.
    #[arg(long, env = "TICKETD_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,

    /// How long one webhook delivery attempt may take, from connecting to the end of the
    /// response, in seconds.
    #[arg(long, env = "TICKETD_WEBHOOK_TIMEOUT_SECONDS", default_value_t = 10)]
    pub webhook_timeout_seconds: u64,

    /// Open `WatchTickets` and `SubscribeChannel` streams per API key.
    #[arg(long, env = "TICKETD_MAX_STREAMS_PER_KEY", default_value_t = 100)]
    pub max_streams_per_key: usize,

    /// Open streams over all keys.
    #[arg(long, env = "TICKETD_MAX_STREAMS", default_value_t = 5_000)]
    pub max_streams: usize,

    /// Events buffered per watch stream for a slow client.
    #[arg(long, env = "TICKETD_STREAM_BUFFER", default_value_t = 1024)]
    pub stream_buffer: usize,

    /// How long a stream's buffer may stay full before the client is told it fell behind.
    #[arg(long, env = "TICKETD_STREAM_STALL_SECONDS", default_value_t = 30)]
    pub stream_stall_seconds: u64,

    /// Streams look for new events at least this often, in milliseconds, even without a
    /// wake-up (for example while the PostgreSQL listener reconnects).
    #[arg(long, env = "TICKETD_STREAM_POLL_MILLIS", default_value_t = 1000)]
    pub stream_poll_millis: u64,

    /// Serve Prometheus metrics on this address (`/metrics`); off when unset.
    #[arg(long, env = "TICKETD_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// Export traces over OTLP/gRPC to this collector; off when unset. The other standard
    /// variables (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`) apply too.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

impl Settings {
    /// The defaults, for a given database URL. Used by tests and embedders.
    pub fn with_database(database_url: impl Into<String>) -> Self {
        Settings {
            database_url: database_url.into(),
            database_read_url: Vec::new(),
            listen: "127.0.0.1:50051".into(),
            log_format: LogFormat::Pretty,
            bootstrap_key: None,
            max_message_bytes: 16 * 1024 * 1024,
            request_timeout_seconds: 30,
            shutdown_delay_seconds: 0,
            shutdown_grace_seconds: 20,
            database_max_connections: 16,
            database_acquire_timeout_seconds: 5,
            database_statement_timeout_seconds: 30,
            delivery_lease_seconds: 30,
            consumer_group_idle_hours: 168,
            email_address: "support@ticketd.invalid"
                .parse()
                .expect("the default mailbox is valid"),
            max_email_bytes: 25 * 1024 * 1024,
            inline_attachment_bytes: 1024 * 1024,
            workflow_runs_per_ticket_hour: 50,
            auto_responses_per_contact_hour: 5,
            search_config: "english".into(),
            housekeeping_seconds: 600,
            idempotency_hours: 24,
            rate_limit_per_second: 200,
            rate_limit_admin_per_second: None,
            rate_limit_agent_per_second: None,
            rate_limit_bot_per_second: 500,
            rate_limit_gateway_per_second: 1000,
            max_concurrent_requests: 512,
            max_concurrent_streams_per_connection: 256,
            cors_origins: Vec::new(),
            webhook_allow_private: false,
            webhook_timeout_seconds: 10,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_reload_seconds: 60,
            max_streams_per_key: 100,
            max_streams: 5_000,
            stream_buffer: 1024,
            stream_stall_seconds: 30,
            stream_poll_millis: 1000,
            metrics_listen: None,
            otlp_endpoint: None,
        }
    }

    pub fn service_settings(&self) -> crate::service::ServiceSettings {
        let streams = crate::service::StreamSettings {
            buffer: self.stream_buffer.max(1),
            stall: Duration::from_secs(self.stream_stall_seconds.max(1)),
            poll: Duration::from_millis(self.stream_poll_millis.max(10)),
        };
        crate::service::ServiceSettings {
            delivery: crate::service::DeliverySettings {
                streams: streams.clone(),
                lease: Duration::from_secs(self.delivery_lease_seconds.max(1)),
                group_idle: Duration::from_secs(self.consumer_group_idle_hours.max(1) * 3600),
                mailbox: self.email_address.clone(),
                inline_attachment_bytes: self.inline_attachment_bytes,
            },
            email: crate::service::escalation::EmailSettings {
                mailbox: self.email_address.clone(),
                max_bytes: self.max_email_bytes.max(1024),
            },
            streams,
            // Half the message limit leaves room for encoding overhead the estimate
            // does not count.
            page_bytes: self.max_message_bytes / 2,
            stream_limits: crate::service::StreamLimitSettings {
                per_key: self.max_streams_per_key.max(1),
                total: self.max_streams.max(1),
            },
            idempotency_window: Duration::from_secs(self.idempotency_hours.max(1) * 3600),
            auto_responses_per_contact_hour: self.auto_responses_per_contact_hour.max(1),
            workflows: crate::service::automation::RunnerSettings {
                max_runs_per_ticket_hour: self.workflow_runs_per_ticket_hour.max(1),
            },
            webhooks: crate::service::webhooks::SenderSettings {
                allow_private: self.webhook_allow_private,
                timeout: Duration::from_secs(self.webhook_timeout_seconds.clamp(1, 60)),
            },
        }
    }

    /// TLS for the gRPC listener, if a certificate is configured.
    pub fn tls(&self) -> Option<crate::tls::TlsSettings> {
        Some(crate::tls::TlsSettings {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
            reload_every: Duration::from_secs(self.tls_reload_seconds.max(1)),
        })
    }

    /// Requests per second per key, by role.
    pub fn rate_limits(&self) -> crate::grpc::RateLimits {
        crate::grpc::RateLimits {
            admin: self
                .rate_limit_admin_per_second
                .unwrap_or(self.rate_limit_per_second),
            agent: self
                .rate_limit_agent_per_second
                .unwrap_or(self.rate_limit_per_second),
            bot: self.rate_limit_bot_per_second,
            gateway: self.rate_limit_gateway_per_second,
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }

    pub fn shutdown_delay(&self) -> Duration {
        Duration::from_secs(self.shutdown_delay_seconds)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }

    pub fn database_acquire_timeout(&self) -> Duration {
        Duration::from_secs(self.database_acquire_timeout_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::{MIN_SECRET_CHARS, Secret, Settings};
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        settings: Settings,
    }

    #[test]
    fn a_request_timeout_leaves_the_http_routes_their_second() {
        let parse = |value: &str| {
            Command::try_parse_from(["ticketd", "--request-timeout-seconds", value])
                .map(|c| c.settings.request_timeout_seconds)
        };
        assert_eq!(parse("2").unwrap(), 2);
        for too_short in ["0", "1"] {
            let err = parse(too_short).expect_err("refused");
            assert!(
                err.to_string().contains("--request-timeout-seconds"),
                "{err}"
            );
        }
    }

    #[test]
    fn configured_secrets_must_be_long_and_plain() {
        assert!("short".parse::<Secret>().is_err());
        assert!("x".repeat(MIN_SECRET_CHARS - 1).parse::<Secret>().is_err());
        assert!(
            format!("{} ", "x".repeat(MIN_SECRET_CHARS))
                .parse::<Secret>()
                .is_err()
        );
        let secret: Secret = "x".repeat(MIN_SECRET_CHARS).parse().unwrap();
        assert_eq!(format!("{secret:?}"), "Secret(***)");
    }
}
