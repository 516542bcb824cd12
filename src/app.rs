//! The application: opens the store, migrates, binds the listener, and serves gRPC until
//! a shutdown future resolves, then drains within a bounded grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codegen::http::header::{AUTHORIZATION, CONTENT_TYPE};
use tonic::codegen::http::{HeaderName, HeaderValue, Method};
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::consistency::TOKEN_METADATA;
use crate::events::Bus;
use crate::grpc::{self, ConsistencyLayer, EdgeLayer, GateLayer, GateSettings, GrpcLimits, pb};
use crate::service::consistency::ReadConsistency;
use crate::service::{ServiceError, Services, StreamGauge};
use crate::store::{self, PoolSettings, StoreError};
use crate::tls::TlsServer;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot open the database")]
    Store(#[from] StoreError),
    #[error("cannot install the bootstrap key")]
    Bootstrap(#[from] ServiceError),
    #[error("cannot listen on {0}")]
    Bind(String, #[source] std::io::Error),
    #[error("cannot build the reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the gRPC server failed")]
    Serve(#[from] tonic::transport::Error),
    #[error("telemetry")]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    #[error("TICKETD_SEARCH_CONFIG: {0} is not a text-search configuration of the database")]
    SearchConfig(String, #[source] StoreError),
    #[error("TICKETD_CORS_ORIGINS: {0:?} is not an origin such as https://console.example.com")]
    CorsOrigin(String),
    #[error("{0} is not an address to serve metrics on")]
    MetricsAddress(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot build the HTTP client webhooks are sent with")]
    WebhookClient(#[from] reqwest::Error),
}

pub struct App {
    settings: Settings,
    listener: TcpListener,
    services: Services,
    bootstrap_secret: Option<String>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tls: Option<TlsServer>,
}

/// Opens and migrates the store a settings object names.
pub async fn open_store(
    settings: &Settings,
    bus: Bus,
) -> Result<std::sync::Arc<dyn store::Store>, AppError> {
    let pool = PoolSettings {
        max_connections: settings.database_max_connections,
        acquire_timeout: settings.database_acquire_timeout(),
        statement_timeout: std::time::Duration::from_secs(
            settings.database_statement_timeout_seconds,
        ),
    };
    let read_urls: Vec<String> = (settings.database_read_url.iter())
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty())
        .collect();
    let store = store::open_with_standbys(&settings.database_url, &read_urls, &pool, bus).await?;
    store.migrate().await?;
    store
        .configure_search(&settings.search_config)
        .await
        .map_err(|e| match e {
            // The database refused the name (it reached it a moment ago to migrate).
            StoreError::Database(_) => AppError::SearchConfig(settings.search_config.clone(), e),
            other => AppError::Store(other),
        })?;
    Ok(store)
}

impl App {
    /// Binds the listener (port 0 picks a free one; see [`App::local_addr`]), opens the
    /// store, runs migrations and installs the bootstrap key.
    pub async fn build(settings: Settings) -> Result<App, AppError> {
        Self::build_with_clock(settings, Clock::system()).await
    }

    /// [`App::build`] with the clock every use case and timer reads (tests pass one
    /// they move by hand).
    pub async fn build_with_clock(settings: Settings, clock: Clock) -> Result<App, AppError> {
        crate::tls::install_crypto_provider();
        // Unreadable certificates and a taken port stop the start before anything is
        // written: a generated admin key is only ever made by a start that goes on to
        // print it.
        let tls = settings.tls().map(TlsServer::new).transpose()?;
        // A wrong origin stops the start here, before anything is written.
        let _ = cors_layer(&settings.cors_origins)?;
        let listener = TcpListener::bind(&settings.listen)
            .await
            .map_err(|e| AppError::Bind(settings.listen.clone(), e))?;
        let bus = Bus::new();
        let store = open_store(&settings, bus.clone()).await?;
        let (shutdown, streams_stop) = tokio::sync::watch::channel(false);
        let services = Services::new(
            store,
            bus,
            settings.service_settings(),
            streams_stop,
            clock,
            std::sync::Arc::new(crate::http::webhook_body),
        )?;
        let bootstrap_secret = services
            .api_keys
            .bootstrap(
                settings.bootstrap_key.as_ref().map(|s| s.expose()),
                settings.log_format != crate::config::LogFormat::Json,
            )
            .await?;
        if let Some(addr) = &settings.metrics_listen {
            let addr = addr
                .parse()
                .map_err(|_| AppError::MetricsAddress(addr.clone()))?;
            crate::telemetry::install_metrics(addr)?;
        }
        Ok(App {
            settings,
            listener,
            services,
            bootstrap_secret,
            shutdown,
            tls,
        })
    }

    /// Counts of open streams, live for as long as the app runs.
    pub fn stream_gauge(&self) -> std::sync::Arc<StreamGauge> {
        self.services.gauge.clone()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The admin secret generated at this start, if one was (shown once, never stored).
    pub fn bootstrap_secret(&self) -> Option<&str> {
        self.bootstrap_secret.as_deref()
    }

    /// Serves until `shutdown` resolves. Health then reports NOT_SERVING, the listener
    /// closes after the configured delay, and in-flight calls get the grace period to end.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), AppError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<pb::ticket_service_server::TicketServiceServer<grpc::TicketApi>>()
            .await;
        health
            .set_serving::<pb::admin_service_server::AdminServiceServer<grpc::AdminApi>>()
            .await;
        health
            .set_serving::<pb::escalation_service_server::EscalationServiceServer<grpc::EscalationApi>>()
            .await;
        health
            .set_serving::<pb::contact_service_server::ContactServiceServer<grpc::ContactApi>>()
            .await;
        health
            .set_serving::<pb::automation_service_server::AutomationServiceServer<grpc::AutomationApi>>()
            .await;
        health
            .set_serving::<pb::view_service_server::ViewServiceServer<grpc::ViewApi>>()
            .await;
        health
            .set_serving::<pb::report_service_server::ReportServiceServer<grpc::ReportApi>>()
            .await;
        health
            .set_serving::<pb::webhook_service_server::WebhookServiceServer<grpc::WebhookApi>>()
            .await;
        health.set_service_status("", ServingStatus::Serving).await;

        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // google.rpc error details, so clients can decode BadRequest violations.
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        let limits = GrpcLimits {
            max_message_bytes: self.settings.max_message_bytes,
            max_email_bytes: self.settings.max_email_bytes,
            request_timeout: self.settings.request_timeout(),
        };
        let timer = tokio::spawn(
            crate::service::SlaTimer::new(
                self.services.store.clone(),
                self.services.sla.deadline_hints(),
                Duration::from_millis(self.settings.stream_poll_millis.max(10)),
                self.services.clock.clone(),
            )
            .run(self.shutdown.subscribe()),
        );
        let poll = Duration::from_millis(self.settings.stream_poll_millis.max(10));
        let workflow_processor = tokio::spawn(
            crate::service::automation::WorkflowProcessor::new(
                self.services.store.clone(),
                self.services.workflows.clone(),
                self.services.runner.clone(),
                self.services.bus.clone(),
                self.services.clock.clone(),
                poll,
            )
            .run(self.shutdown.subscribe()),
        );
        let workflow_timer = tokio::spawn(
            crate::service::automation::WorkflowTimerTask::new(
                self.services.store.clone(),
                self.services.workflows.clone(),
                self.services.runner.clone(),
                self.services.workflow_hints.clone(),
                self.services.clock.clone(),
                poll,
            )
            .run(self.shutdown.subscribe()),
        );
        let webhooks = tokio::spawn(
            self.services
                .webhooks
                .dispatcher(self.services.watch.tailer(), poll)
                .run(self.shutdown.subscribe()),
        );
        let key_checks = tokio::spawn(self.services.api_keys.clone().check_stream_keys());
        let pool_gauges = tokio::spawn({
            let store = self.services.store.clone();
            async move {
                loop {
                    let (size, idle) = store.pool_stats();
                    metrics::gauge!("ticketd_db_connections", "state" => "idle")
                        .set(f64::from(idle));
                    metrics::gauge!("ticketd_db_connections", "state" => "in_use")
                        .set(f64::from(size.saturating_sub(idle)));
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        });
        let purge = tokio::spawn({
            let services = self.services.clone();
            let every = Duration::from_secs(self.settings.housekeeping_seconds.max(1));
            async move {
                loop {
                    services.request_ids.purge_expired().await;
                    services.delivery.expire_idle_groups().await;
                    tokio::time::sleep(every).await;
                }
            }
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let addr = self.local_addr().ok();
        let cors = cors_layer(&self.settings.cors_origins)?;
        let router = Server::builder()
            // gRPC-Web from browsers comes over HTTP/1.1 too.
            .accept_http1(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .max_concurrent_streams(Some(self.settings.max_concurrent_streams_per_connection))
            .layer(cors)
            .layer(crate::http::GrpcWebLayer)
            // Also the server's request timeout.
            .layer(EdgeLayer::new(limits.request_timeout))
            .layer(GateLayer::new(
                self.services.api_keys.clone(),
                GateSettings {
                    max_in_flight: self.settings.max_concurrent_requests,
                    rates: self.settings.rate_limits(),
                    max_message_bytes: self.settings.max_message_bytes,
                    max_email_bytes: self.settings.max_email_bytes,
                },
            ))
            .layer(ConsistencyLayer::new(ReadConsistency::of(
                self.services.store.as_ref(),
            )))
            .add_routes(routes(&self.services, &limits))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        let stopped = async {
            let _ = stopped.await;
        };
        let tls = self.tls.is_some();
        let mut server = match self.tls {
            Some(tls) => tokio::spawn(
                router.serve_with_incoming_shutdown(tls.incoming(self.listener), stopped),
            ),
            None => {
                // Small gRPC frames must not wait for Nagle's algorithm: with several
                // calls in flight on one connection it adds tens of milliseconds to each.
                let incoming =
                    tokio_stream::StreamExt::map(TcpListenerStream::new(self.listener), |conn| {
                        conn.and_then(|stream| stream.set_nodelay(true).map(|()| stream))
                    });
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped))
            }
        };
        tracing::info!(addr = ?addr, tls, database = %redact(&self.settings.database_url), "ticketd serving");

        tokio::select! {
            () = shutdown => {}
            result = &mut server => {
                // The server ended without being asked to: report why.
                return match result {
                    Ok(outcome) => outcome.map_err(AppError::from),
                    Err(join) => {
                        tracing::error!(error = %join, "server task failed");
                        Ok(())
                    }
                };
            }
        }

        tracing::info!("shutting down: health is NOT_SERVING");
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        health
            .set_not_serving::<pb::ticket_service_server::TicketServiceServer<grpc::TicketApi>>()
            .await;
        health
            .set_not_serving::<pb::admin_service_server::AdminServiceServer<grpc::AdminApi>>()
            .await;
        health
            .set_not_serving::<pb::escalation_service_server::EscalationServiceServer<grpc::EscalationApi>>()
            .await;
        health
            .set_not_serving::<pb::contact_service_server::ContactServiceServer<grpc::ContactApi>>()
            .await;
        health
            .set_not_serving::<pb::automation_service_server::AutomationServiceServer<grpc::AutomationApi>>()
            .await;
        health
            .set_not_serving::<pb::view_service_server::ViewServiceServer<grpc::ViewApi>>()
            .await;
        health
            .set_not_serving::<pb::report_service_server::ReportServiceServer<grpc::ReportApi>>()
            .await;
        health
            .set_not_serving::<pb::webhook_service_server::WebhookServiceServer<grpc::WebhookApi>>()
            .await;
        tokio::time::sleep(self.settings.shutdown_delay()).await;
        // Streams end first, each with its resume point, so the drain below is not held
        // open by clients that would otherwise stay connected forever.
        let _ = self.shutdown.send(true);
        let _ = stop.send(());
        match tokio::time::timeout(self.settings.shutdown_grace(), &mut server).await {
            Ok(Ok(outcome)) => outcome?,
            Ok(Err(join)) => tracing::error!(error = %join, "server task failed"),
            Err(_) => {
                tracing::warn!(
                    grace_seconds = self.settings.shutdown_grace_seconds,
                    "grace period over; abandoning calls still in flight"
                );
                server.abort();
            }
        }
        // The webhook workers write what they sent before they stop.
        let mut webhooks = webhooks;
        if tokio::time::timeout(Duration::from_secs(5), &mut webhooks)
            .await
            .is_err()
        {
            webhooks.abort();
        }
        timer.abort();
        workflow_processor.abort();
        workflow_timer.abort();
        pool_gauges.abort();
        key_checks.abort();
        purge.abort();
        tracing::info!("ticketd stopped");
        Ok(())
    }
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// ticketd's gRPC services, and beside them on the same server, layers and port the HTTP
/// routes that call them.
fn routes(services: &Services, limits: &GrpcLimits) -> tonic::service::Routes {
    let grpc = grpc::routes(services, limits);
    let http = crate::http::router(services, grpc.clone(), limits);
    tonic::service::Routes::from(grpc.into_axum_router().merge(http))
}

/// CORS for gRPC-Web from the browser pages of `origins` (none: no cross-origin page may
/// call). Callers send their key and gRPC-Web's headers; they may read the call's status
/// and a stream's resume cursor.
fn cors_layer(origins: &[String]) -> Result<tower_http::cors::CorsLayer, AppError> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins = origins
        .iter()
        .map(|origin| {
            let origin = origin.trim().trim_end_matches('/');
            // An origin is a scheme and a host (and port): no path, query or wildcard.
            let uri: Option<tonic::codegen::http::Uri> = origin.parse().ok();
            let valid = uri.is_some_and(|uri| {
                matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some()
                    && uri.path() == "/"
                    && uri.query().is_none()
                    && !origin.contains('*')
            });
            if !valid {
                return Err(AppError::CorsOrigin(origin.to_owned()));
            }
            HeaderValue::from_str(origin).map_err(|_| AppError::CorsOrigin(origin.to_owned()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            AUTHORIZATION,
            CONTENT_TYPE,
            HeaderName::from_static("x-grpc-web"),
            HeaderName::from_static("x-user-agent"),
            HeaderName::from_static("grpc-timeout"),
            HeaderName::from_static(TOKEN_METADATA),
        ])
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
            HeaderName::from_static(crate::grpc::RESUME_CURSOR),
            HeaderName::from_static(TOKEN_METADATA),
        ])
        .max_age(Duration::from_secs(600)))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_do_not_reach_the_logs() {
        assert_eq!(
            redact("postgres://app:hunter2@db:5432/ticketd"),
            "postgres://app:***@db:5432/ticketd"
        );
        assert_eq!(redact("sqlite://./ticketd.db"), "sqlite://./ticketd.db");
    }
}
