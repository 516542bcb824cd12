//! Starts a real ticketd on 127.0.0.1:0 over a fresh database and hands out clients.
//!
//! SQLite tests get a new database file in a temporary directory. PostgreSQL tests run
//! when `TICKETD_TEST_DATABASE_URL` names a server (any database on it): each test creates
//! its own database there and drops it afterwards. With `TICKETD_TEST_REQUIRE_POSTGRES=1`
//! (as CI sets) a missing URL fails the PostgreSQL tests instead of skipping them.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::Connection;
use ticketd::app::App;
use ticketd::clock::Clock;
use ticketd::config::Settings;
use ticketd::grpc::pb::{
    self, admin_service_client::AdminServiceClient,
    automation_service_client::AutomationServiceClient,
    contact_service_client::ContactServiceClient,
    escalation_service_client::EscalationServiceClient, report_service_client::ReportServiceClient,
    ticket_service_client::TicketServiceClient, view_service_client::ViewServiceClient,
    webhook_service_client::WebhookServiceClient,
};
use ticketd::service::StreamGauge;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// The URL of a server on which test databases may be created.
    Postgres(String),
}

impl Backend {
    /// The PostgreSQL backend when configured; `None` means "skip this test".
    pub fn postgres() -> Option<Backend> {
        match std::env::var("TICKETD_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(Backend::Postgres(url)),
            _ => {
                if std::env::var("TICKETD_TEST_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                    panic!(
                        "TICKETD_TEST_REQUIRE_POSTGRES=1 but TICKETD_TEST_DATABASE_URL is not set"
                    );
                }
                tell_postgres_skipped();
                None
            }
        }
    }
}

/// Says once per run, past the test harness's output capture, that the PostgreSQL half
/// of the suite did not run, and how to run it.
fn tell_postgres_skipped() {
    use std::io::Write;
    static TOLD: std::sync::Once = std::sync::Once::new();
    TOLD.call_once(|| {
        let _ = writeln!(
            std::io::stderr().lock(),
            "\nnote: the PostgreSQL half of the suite is skipped (its tests pass without \
             running). To run it:\n    \
             TICKETD_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo test\n"
        );
    });
}

/// Adds `authorization: Bearer <secret>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Tickets = TicketServiceClient<InterceptedService<Channel, Bearer>>;
pub type Admin = AdminServiceClient<InterceptedService<Channel, Bearer>>;
pub type Contacts = ContactServiceClient<InterceptedService<Channel, Bearer>>;
pub type Automation = AutomationServiceClient<InterceptedService<Channel, Bearer>>;
pub type Views = ViewServiceClient<InterceptedService<Channel, Bearer>>;
pub type Reports = ReportServiceClient<InterceptedService<Channel, Bearer>>;
pub type Webhooks = WebhookServiceClient<InterceptedService<Channel, Bearer>>;
pub type Escalation = EscalationServiceClient<InterceptedService<Channel, Bearer>>;

/// A database made for one test and removed after it.
pub enum TestDatabase {
    Sqlite(PathBuf),
    Postgres { server_url: String, name: String },
}

impl TestDatabase {
    pub async fn create(backend: &Backend) -> TestDatabase {
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("ticketd-test-{}", Uuid::new_v4()));
                std::fs::create_dir_all(&dir).expect("create temp dir");
                TestDatabase::Sqlite(dir)
            }
            Backend::Postgres(server_url) => {
                let name = format!("ticketd_test_{}", Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(server_url)
                    .await
                    .expect("connect to TICKETD_TEST_DATABASE_URL");
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                TestDatabase::Postgres {
                    server_url: server_url.clone(),
                    name,
                }
            }
        }
    }

    pub fn url(&self) -> String {
        match self {
            TestDatabase::Sqlite(dir) => format!("sqlite://{}", dir.join("ticketd.db").display()),
            TestDatabase::Postgres { server_url, name } => with_database(server_url, name),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match self {
            TestDatabase::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            TestDatabase::Postgres { server_url, name } => {
                let (url, name) = (server_url.clone(), name.clone());
                // Drop runs inside the test's runtime; a helper thread gets its own.
                let dropped = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    runtime.block_on(async {
                        let mut conn = sqlx::PgConnection::connect(&url).await.ok()?;
                        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut conn)
                        .await
                        .ok()
                    })
                });
                let _ = dropped.join();
            }
        }
    }
}

/// `server_url` with its database path replaced by `name`.
pub fn with_database(server_url: &str, name: &str) -> String {
    let (base, query) = match server_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (server_url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{base}/{name}{query}")
}

pub struct TestApp {
    pub admin_secret: String,
    pub addr: std::net::SocketAddr,
    pub channel: Channel,
    pub gauge: std::sync::Arc<StreamGauge>,
    /// The server's clock: the system clock, or one the test moves (see
    /// [`spawn_app_with_manual_clock`]).
    pub clock: Clock,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), ticketd::app::AppError>>>,
    // Declared last: dropped after the server has stopped. `None` for a second replica
    // over another app's database.
    pub database: Option<TestDatabase>,
}

impl TestApp {
    pub fn tickets(&self) -> Tickets {
        self.tickets_as(&self.admin_secret)
    }

    pub fn tickets_as(&self, secret: &str) -> Tickets {
        TicketServiceClient::with_interceptor(self.channel.clone(), bearer(Some(secret)))
    }

    pub fn tickets_anonymous(&self) -> Tickets {
        TicketServiceClient::with_interceptor(self.channel.clone(), bearer(None))
    }

    pub fn escalation(&self) -> Escalation {
        self.escalation_as(&self.admin_secret)
    }

    pub fn escalation_as(&self, secret: &str) -> Escalation {
        EscalationServiceClient::with_interceptor(self.channel.clone(), bearer(Some(secret)))
    }

    pub fn automation(&self) -> Automation {
        self.automation_as(&self.admin_secret)
    }

    pub fn views(&self) -> Views {
        self.views_as(&self.admin_secret)
    }

    pub fn views_as(&self, secret: &str) -> Views {
        ViewServiceClient::with_interceptor(self.channel.clone(), bearer(Some(secret)))
    }

    pub fn reports(&self) -> Reports {
        self.reports_as(&self.admin_secret)
    }

    pub fn reports_as(&self, secret: &str) -> Reports {
        ReportServiceClient::with_interceptor(self.channel.clone(), bearer(Some(secret)))
    }

    pub fn webhooks(&self) -> Webhooks {
        self.webhooks_as(&self.admin_secret)
    }

    pub fn webhooks_as(&self, secret: &str) -> Webhooks {
        WebhookServiceClient::with_interceptor(self.channel.clone(), bearer(Some(secret)))
    }

    /// Saves the calendar "Office", Monday to Friday 09:00 to 17:00 UTC, and returns its id.
    pub async fn office_calendar(&self) -> String {
        let office = pb::Calendar {
            name: "Office".into(),
            time_zone: "UTC".into(),
            weekly: ["MON", "TUE", "WED", "THU", "FRI"]
                .iter()
                .map(|d| pb::DayHours {
                    day: d.to_string(),
                    intervals: vec![pb::TimeInterval {
                        start: "09:00".into(),
                        end: "17:00".into(),
                    }],
                })
                .collect(),
            ..Default::default()
        };
        self.admin()
            .create_calendar(pb::CreateCalendarRequest {
                calendar: Some(office),
            })
            .await
            .expect("create the office calendar")
            .into_inner()
            .calendar
            .expect("calendar")
            .id
    }

    /// Saves a template for `channel` and returns its id; an email one gets the subject
    /// `Re: #{{ ticket.number }}`.
    pub async fn template(&self, name: &str, channel: pb::Channel, body: &str) -> String {
        let subject = if channel == pb::Channel::Email {
            "Re: #{{ ticket.number }}"
        } else {
            ""
        };
        self.automation()
            .create_template(pb::CreateTemplateRequest {
                template: Some(pb::Template {
                    name: name.into(),
                    channel: channel as i32,
                    subject: subject.into(),
                    body: body.into(),
                    ..Default::default()
                }),
            })
            .await
            .expect("template")
            .into_inner()
            .template
            .expect("template")
            .id
    }

    pub fn automation_as(&self, secret: &str) -> Automation {
        AutomationServiceClient::with_interceptor(self.channel.clone(), bearer(Some(secret)))
    }

    pub fn contacts(&self) -> Contacts {
        self.contacts_as(&self.admin_secret)
    }

    pub fn contacts_as(&self, secret: &str) -> Contacts {
        ContactServiceClient::with_interceptor(self.channel.clone(), bearer(Some(secret)))
    }

    pub fn admin(&self) -> Admin {
        self.admin_as(&self.admin_secret)
    }

    pub fn admin_as(&self, secret: &str) -> Admin {
        AdminServiceClient::with_interceptor(self.channel.clone(), bearer(Some(secret)))
    }

    /// Creates an API key and returns its secret.
    pub async fn key(&self, role: pb::Role, agent_id: Option<Uuid>) -> String {
        self.admin()
            .create_api_key(pb::CreateApiKeyRequest {
                name: format!("{role:?} key"),
                role: role as i32,
                agent_id: agent_id.map(|id| id.to_string()).unwrap_or_default(),
                channels: Vec::new(),
                sources: vec![],
            })
            .await
            .expect("create api key")
            .into_inner()
            .secret
    }

    /// Creates an agent (online, no queues) and returns its id: for tickets that name an
    /// assignee, which must exist.
    pub async fn agent(&self, name: &str) -> Uuid {
        let agent = self
            .admin()
            .create_agent(pb::CreateAgentRequest {
                agent: Some(pb::Agent {
                    name: name.into(),
                    email: format!("{}@example.com", Uuid::new_v4().simple()),
                    capacity: 100,
                    availability: pb::AgentAvailability::Online as i32,
                    ..Default::default()
                }),
            })
            .await
            .expect("create agent")
            .into_inner()
            .agent
            .expect("agent");
        agent.id.parse().expect("agent id")
    }

    /// Runs one statement on the app's database: for setting up what no call can, such
    /// as a request id claimed long ago.
    pub async fn execute_sql(&self, sql: &str) {
        let url = self
            .database
            .as_ref()
            .expect("the app owns its database")
            .url();
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        if url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&url)
                .await
                .expect("connect");
            sqlx::raw_sql(sql)
                .execute(&mut conn)
                .await
                .expect("execute");
        } else {
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
            sqlx::raw_sql(sql)
                .execute(&mut conn)
                .await
                .expect("execute");
        }
    }

    /// Asks the server to stop and waits for `run` to return.
    pub async fn shutdown(mut self) -> Result<(), ticketd::app::AppError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.server.take() {
            Some(server) => server.await.expect("server task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// `ticket` with its clocks' readings (time used and left) cleared: they move with the
/// clock, so two responses a second apart differ there and nowhere else.
pub fn without_clock_readings(mut ticket: pb::Ticket) -> pb::Ticket {
    for clock in &mut ticket.sla_clocks {
        clock.used = None;
        clock.remaining = None;
    }
    ticket
}

/// The ids of every ticket the server lists, page by page.
pub async fn all_ticket_ids(client: &mut Tickets) -> std::collections::HashSet<String> {
    let mut ids = std::collections::HashSet::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_tickets(pb::ListTicketsRequest {
                page_size: 500,
                page_token: token,
                ..Default::default()
            })
            .await
            .expect("list tickets")
            .into_inner();
        ids.extend(page.tickets.into_iter().map(|t| t.id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        token = page.next_page_token;
    }
}

/// A TicketService client for a server that something else started (the binary, say).
pub async fn tickets_at(addr: &str, secret: &str) -> Tickets {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect to the server");
    TicketServiceClient::with_interceptor(channel, bearer(Some(secret)))
}

/// A WebhookService client of the server at `addr`.
pub async fn webhooks_at(addr: &str, secret: &str) -> Webhooks {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect to the server");
    WebhookServiceClient::with_interceptor(channel, bearer(Some(secret)))
}

/// An AutomationService client of the server at `addr`.
pub async fn automation_at(addr: &str, secret: &str) -> Automation {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect to the server");
    AutomationServiceClient::with_interceptor(channel, bearer(Some(secret)))
}

fn bearer(secret: Option<&str>) -> Bearer {
    Bearer(secret.map(|s| format!("Bearer {s}").parse().expect("ascii secret")))
}

/// Settings for a test server over `database`; adjust before [`start`].
pub fn settings_for(database: &TestDatabase) -> Settings {
    let mut settings = Settings::with_database(database.url());
    settings.listen = "127.0.0.1:0".into();
    settings.bootstrap_key = Some(
        format!("tkd_test_{}", Uuid::new_v4().simple())
            .parse()
            .unwrap(),
    );
    settings.shutdown_grace_seconds = 5;
    settings.database_max_connections = 5;
    // Streams poll a little faster than in production so that tests that wait on a
    // fallback path stay quick.
    settings.stream_poll_millis = 200;
    // Tests hammer one key far faster than a caller should; the rate-limit test sets
    // its own limit.
    settings.rate_limit_per_second = 0;
    settings.rate_limit_bot_per_second = 0;
    settings.rate_limit_gateway_per_second = 0;
    // Webhook receivers in tests listen on loopback.
    settings.webhook_allow_private = true;
    settings
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Like [`spawn_app`], with settings adjusted first.
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let database = TestDatabase::create(&backend).await;
    let mut settings = settings_for(&database);
    adjust(&mut settings);
    start(settings, database).await
}

/// Like [`spawn_app`], on a clock that stands still (at the current whole second) until
/// the test moves it with `app.clock.advance(…)`.
pub async fn spawn_app_with_manual_clock(backend: Backend) -> TestApp {
    let database = TestDatabase::create(&backend).await;
    let settings = settings_for(&database);
    start_with_clock(settings, database, manual_clock()).await
}

/// A manual clock reading the current whole second.
pub fn manual_clock() -> Clock {
    let now = chrono::Utc::now();
    Clock::manual(chrono::DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now))
}

/// Builds and runs an app that owns `database`, returning once it accepts calls.
pub async fn start(settings: Settings, database: TestDatabase) -> TestApp {
    start_with_clock(settings, database, Clock::system()).await
}

/// Like [`start`], on `clock`.
pub async fn start_with_clock(settings: Settings, database: TestDatabase, clock: Clock) -> TestApp {
    let mut app = launch(settings, None, clock).await;
    app.database = Some(database);
    app
}

/// Builds and runs an app over a database that something else owns.
pub async fn start_replica(settings: Settings) -> TestApp {
    launch(settings, None, Clock::system()).await
}

/// Like [`start_replica`], on `clock`.
pub async fn start_replica_with_clock(settings: Settings, clock: Clock) -> TestApp {
    launch(settings, None, clock).await
}

/// Like [`start`] for a server that speaks TLS: clients connect with `client`.
pub async fn start_tls(
    settings: Settings,
    database: TestDatabase,
    client: tonic::transport::ClientTlsConfig,
) -> TestApp {
    let mut app = launch(settings, Some(client), Clock::system()).await;
    app.database = Some(database);
    app
}

async fn launch(
    settings: Settings,
    tls: Option<tonic::transport::ClientTlsConfig>,
    clock: Clock,
) -> TestApp {
    let admin_secret = settings
        .bootstrap_key
        .as_ref()
        .map(|s| s.expose().to_owned())
        .expect("test settings carry a bootstrap key");
    let app = App::build_with_clock(settings, clock.clone())
        .await
        .expect("build app");
    let addr = app.local_addr().expect("local addr");
    let gauge = app.stream_gauge();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://{addr}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).expect("client TLS");
    }
    let channel = endpoint.connect().await.expect("connect to test server");
    TestApp {
        admin_secret,
        addr,
        channel,
        gauge,
        clock,
        stop: Some(stop),
        server: Some(server),
        database: None,
    }
}

/// A CreateTicketRequest with a fresh contact; tweak fields with struct update syntax.
pub fn new_ticket(subject: &str) -> pb::CreateTicketRequest {
    pb::CreateTicketRequest {
        subject: subject.into(),
        description: format!("{subject}, in detail"),
        contact: Some(pb::Contact {
            external_id: format!("crm-{}", Uuid::new_v4().simple()),
            name: "Ada Lovelace".into(),
            email: "ada@example.com".into(),
            phone: "+441234567890".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub async fn create(client: &mut Tickets, request: pb::CreateTicketRequest) -> pb::Ticket {
    client
        .create_ticket(request)
        .await
        .expect("create ticket")
        .into_inner()
        .ticket
        .expect("ticket in response")
}

/// A ticket by id.
pub async fn get_ticket(tickets: &mut Tickets, id: &str) -> pb::Ticket {
    tickets
        .get_ticket(pb::GetTicketRequest {
            key: Some(pb::get_ticket_request::Key::Id(id.into())),
        })
        .await
        .expect("get ticket")
        .into_inner()
        .ticket
        .expect("ticket")
}

/// Moves a ticket to `status` through UpdateTicket.
pub async fn set_status(
    tickets: &mut Tickets,
    id: &str,
    status: pb::TicketStatus,
) -> Result<pb::Ticket, Status> {
    tickets
        .update_ticket(pb::UpdateTicketRequest {
            ticket: Some(pb::Ticket {
                id: id.into(),
                status: status as i32,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["status".into()],
            }),
            etag: String::new(),
        })
        .await
        .map(|r| r.into_inner().ticket.expect("ticket"))
}

/// A ticket's whole activity feed, every page.
pub async fn feed(tickets: &mut Tickets, id: &str) -> Vec<pb::ActivityEntry> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = tickets
            .list_activity(pb::ListActivityRequest {
                ticket_id: id.into(),
                page_size: 500,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.entries);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

/// The field names of a status's `google.rpc.BadRequest` violations.
pub use ticketd::grpc::error_chain;

pub fn violated_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Runs each listed test against SQLite, and against PostgreSQL when configured.
macro_rules! conformance {
    ($($module:ident : [$($test:ident),* $(,)?]),* $(,)?) => {
        mod sqlite {
            $(mod $module {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::$module::$test(crate::harness::Backend::Sqlite).await;
                })*
            })*
        }
        mod postgres {
            $(mod $module {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(backend) = crate::harness::Backend::postgres() {
                        crate::$module::$test(backend).await;
                    }
                })*
            })*
        }
    };
}
pub(crate) use conformance;

#[test]
fn database_names_replace_the_url_path() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:5432/t1"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "t2"),
        "postgres://u:p@h/t2?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "t3"),
        "postgres://h:5432/t3"
    );
}
