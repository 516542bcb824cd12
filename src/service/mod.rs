//! Use cases: what each action means, which rules it checks and what it writes. The
//! service layer owns the meaning of transactions; the store only makes them atomic.

pub mod api_keys;
pub mod audit;
pub mod automation;
mod cache;
pub mod consistency;
pub mod contacts;
pub mod delivery;
pub mod escalation;
pub mod hooks;
mod paging;
pub mod reports;
pub mod request_ids;
pub mod routing;
pub mod satisfaction;
mod shared_reads;
pub mod sla;
mod sla_timer;
pub mod streams;
pub mod tickets;
mod versioned;
pub mod views;
pub mod watch;
pub mod webhooks;

use std::sync::Arc;

use crate::clock::Clock;
use crate::domain::validation::FieldViolation;
use crate::events::Bus;
use crate::store::{Store, StoreError};

pub use api_keys::{ApiKeyService, StreamLimitSettings, StreamPermit};
pub use audit::AuditService;
pub use delivery::{AckInput, DeliveryService, DeliverySettings};
pub use escalation::EscalationService;
pub use request_ids::RequestIds;
pub use routing::RoutingService;
pub use sla::{SlaService, Writer};
pub use sla_timer::{DeadlineHints, SlaTimer};
pub use streams::{StreamEnd, StreamGauge, StreamKind, StreamOutput};
pub use tickets::TicketService;
pub use watch::{StreamSettings, WatchService};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid request: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldViolation>),
    #[error("{0} not found")]
    NotFound(String),
    /// The caller's etag is not the current one.
    #[error("etag {given} is stale; it is now {current}")]
    StaleEtag { given: String, current: String },
    /// Concurrent writers kept winning; the caller may retry.
    #[error("{0}")]
    Contended(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// A limit of the caller's or of the server's is reached.
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("the database is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("the database took too long")]
    TimedOut(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl ServiceError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        ServiceError::Invalid(vec![FieldViolation::new(field, description)])
    }
}

impl From<Vec<FieldViolation>> for ServiceError {
    fn from(violations: Vec<FieldViolation>) -> Self {
        ServiceError::Invalid(violations)
    }
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => ServiceError::Unavailable(err),
            StoreError::TimedOut(_) => ServiceError::TimedOut(err),
            StoreError::IdempotencyMismatch(id) => ServiceError::invalid(
                "request_id",
                format!("{id:?} was already used for a different request"),
            ),
            StoreError::Conflict(id) => {
                ServiceError::Contended(format!("ticket {id} is being changed concurrently"))
            }
            StoreError::ConversationExists(_)
            | StoreError::DuplicateInbound(_)
            | StoreError::AgentUnavailable(_) => ServiceError::Contended(err.to_string()),
            StoreError::AlreadyExists(what) => {
                ServiceError::AlreadyExists(format!("{what} already exists"))
            }
            other => ServiceError::Internal(other),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// How many times an action re-reads and re-applies itself when a concurrent writer
/// changed the ticket between its read and its write.
const MAX_ATTEMPTS: usize = 12;

/// Runs `attempt` until it is not [`ServiceError::Contended`] (a concurrent writer changed
/// what it read, so it reads again and re-applies itself), at most [`MAX_ATTEMPTS`] times;
/// then the caller gets `gave_up`. Every try after the first waits a random moment first.
///
/// `attempt` is a closure returning a fresh `async move` block each time; what the block
/// uses from outside is borrowed (`&`), so every try starts from the same inputs. (An
/// async closure would do, but its future is not provably `Send`.)
pub(crate) async fn retry_contended<T, Fut>(
    gave_up: ServiceError,
    mut attempt: impl FnMut() -> Fut,
) -> ServiceResult<T>
where
    Fut: Future<Output = ServiceResult<T>>,
{
    for n in 0..MAX_ATTEMPTS {
        back_off(n).await;
        match attempt().await {
            Err(ServiceError::Contended(_)) => {}
            other => return other,
        }
    }
    Err(gave_up)
}

/// Waits before retry number `attempt` (0 = the first try, no wait): a random pause of up
/// to 2^attempt ms, at most 100 ms, so writers racing for one ticket spread out instead
/// of colliding again in lockstep.
async fn back_off(attempt: usize) {
    if attempt > 0 {
        let ceiling = (1u64 << attempt.min(7)).min(100);
        tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(1..=ceiling))).await;
    }
}

/// Settings the use cases need.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub streams: StreamSettings,
    pub delivery: DeliverySettings,
    pub email: escalation::EmailSettings,
    /// What one page of tickets or audit entries may hold, in bytes: pages end early
    /// past it.
    pub page_bytes: usize,
    /// How long a request id is remembered.
    pub idempotency_window: std::time::Duration,
    pub stream_limits: StreamLimitSettings,
    pub workflows: automation::RunnerSettings,
    /// Most auto-responses one contact gets in an hour.
    pub auto_responses_per_contact_hour: i64,
    pub webhooks: webhooks::SenderSettings,
}

/// Every use case, built once per process over one store.
#[derive(Clone)]
pub struct Services {
    pub tickets: TicketService,
    pub api_keys: ApiKeyService,
    pub audit: AuditService,
    pub automation: automation::AutomationService,
    pub contacts: contacts::ContactService,
    pub escalation: EscalationService,
    pub delivery: DeliveryService,
    pub watch: WatchService,
    pub routing: RoutingService,
    pub views: views::ViewService,
    pub reports: reports::ReportService,
    pub hooks: hooks::HookService,
    pub webhooks: webhooks::WebhookService,
    pub satisfaction: satisfaction::SatisfactionService,
    pub sla: SlaService,
    /// What runs workflows: the runner, and the cache and timer hints its tasks share.
    pub workflows: automation::WorkflowCache,
    pub runner: automation::WorkflowRunner,
    pub workflow_hints: DeadlineHints,
    pub bus: Bus,
    pub store: Arc<dyn Store>,
    pub gauge: Arc<StreamGauge>,
    pub request_ids: RequestIds,
    /// Where every use case reads the time.
    pub clock: Clock,
}

impl Services {
    /// `shutdown` turning true ends every open stream with its resume point; `render`
    /// makes the body a webhook receives from an event. Fails only if the HTTP client for
    /// webhooks cannot be built.
    pub fn new(
        store: Arc<dyn Store>,
        bus: Bus,
        settings: ServiceSettings,
        shutdown: tokio::sync::watch::Receiver<bool>,
        clock: Clock,
        render: webhooks::RenderEvent,
    ) -> Result<Self, reqwest::Error> {
        let gauge = Arc::new(StreamGauge::default());
        let sla = SlaService::new(store.clone(), clock.clone());
        let workflows = automation::WorkflowCache::new(store.clone());
        let timers = automation::TimerPlanner::new(workflows.clone(), sla.clone());
        let workflow_hints = timers.hints.clone();
        let survey = satisfaction::SurveyTokens::new(store.clone());
        let responder = automation::AutoResponder::new(
            store.clone(),
            (sla.clone(), survey.clone()),
            clock.clone(),
            settings.auto_responses_per_contact_hour,
        );
        let writer = Writer::new(store.clone(), sla.clone(), timers, responder.clone());
        let routing = RoutingService::new(store.clone(), writer.clone(), clock.clone());
        let runner = automation::WorkflowRunner::new(
            store.clone(),
            writer.clone(),
            routing.clone(),
            survey.clone(),
            clock.clone(),
            settings.workflows,
        );
        let request_ids =
            RequestIds::new(store.clone(), settings.idempotency_window, clock.clone());
        let tickets = TicketService::new(
            store.clone(),
            writer.clone(),
            routing.clone(),
            request_ids.clone(),
            settings.page_bytes,
            clock.clone(),
        );
        Ok(Self {
            reports: reports::ReportService::new(store.clone(), tickets.clone(), clock.clone()),
            hooks: hooks::HookService::new(store.clone(), clock.clone()),
            webhooks: webhooks::WebhookService::new(
                store.clone(),
                settings.webhooks,
                render,
                clock.clone(),
            )?,
            tickets,
            api_keys: ApiKeyService::new(store.clone(), settings.stream_limits, clock.clone()),
            audit: AuditService::new(store.clone(), settings.page_bytes),
            automation: automation::AutomationService::new(
                store.clone(),
                routing.clone(),
                (workflows.clone(), runner.clone(), responder),
                survey.clone(),
                clock.clone(),
            ),
            contacts: contacts::ContactService::new(store.clone(), clock.clone()),
            escalation: EscalationService::new(
                store.clone(),
                writer.clone(),
                routing.clone(),
                request_ids.clone(),
                clock.clone(),
                settings.email.clone(),
            ),
            delivery: DeliveryService::new(
                store.clone(),
                bus.clone(),
                shutdown.clone(),
                gauge.clone(),
                settings.delivery.clone(),
                clock.clone(),
            ),
            watch: WatchService::new(
                store.clone(),
                &bus,
                shutdown,
                gauge.clone(),
                settings.streams,
            ),
            routing,
            views: views::ViewService::new(store.clone(), clock.clone()),
            satisfaction: satisfaction::SatisfactionService::new(
                store.clone(),
                writer.clone(),
                survey,
                clock.clone(),
            ),
            sla,
            workflows,
            runner,
            workflow_hints,
            bus,
            store,
            gauge,
            request_ids,
            clock,
        })
    }
}
