//! What delivers webhooks: one dispatcher per process, which takes the `webhooks` lease
//! (one replica delivers at a time) and runs one worker per enabled endpoint, so a slow
//! or failing endpoint only ever delays itself.
//!
//! A worker follows the log from its endpoint's stored position: from the tailer's
//! memory when it is live, from the log when it is behind. Attempts and the position
//! they reach are written together, a stretch at a time (at most every
//! [`FLUSH_EVERY`] or [`FLUSH_AFTER`] attempts), so after a crash the events since the
//! last write are sent again: delivery is at least once, and receivers drop repeats by
//! `webhook-id`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::sender::Sender;
use crate::clock::Clock;
use crate::domain::event::Event;
use crate::domain::watch::{WatchFilter, parse_watch_filter};
use crate::domain::webhook::{AfterFailure, Webhook, WebhookDelivery, WebhookState, after_failure};
use crate::events::{Follower, Tailer};
use crate::store::{Store, StoreResult, WebhookProgress};

const LEASE: &str = "webhooks";
/// Events read at a time.
const BATCH: usize = 500;
/// Attempts gathered before they are written…
const FLUSH_AFTER: usize = 200;
/// …or this long after the first unwritten one.
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// The delivery log is trimmed once in this many writes.
const TRIM_EVERY: u32 = 50;

/// Webhooks changed in this process: the dispatcher is woken, and a worker delivering
/// for an older version stops before its next attempt (changes made on other replicas
/// are seen at the dispatcher's next poll, and what their old workers sent after them
/// goes again: see `ADVANCE` in the store).
#[derive(Default)]
pub struct Changes {
    woken: Notify,
    /// The latest version of each webhook saved here; `i64::MAX` once deleted.
    versions: std::sync::Mutex<HashMap<Uuid, i64>>,
}

impl Changes {
    pub(super) fn saved(&self, id: Uuid, version: i64) {
        if let Ok(mut versions) = self.versions.lock() {
            let latest = versions.entry(id).or_insert(version);
            *latest = (*latest).max(version);
        }
        self.woken.notify_one();
    }

    pub(super) fn deleted(&self, id: Uuid) {
        self.saved(id, i64::MAX);
    }

    /// Whether a newer version than `version` was saved here.
    fn supersedes(&self, id: Uuid, version: i64) -> bool {
        self.versions
            .lock()
            .is_ok_and(|versions| versions.get(&id).is_some_and(|v| *v > version))
    }
}

/// Runs the workers while this replica holds the lease.
pub struct Dispatcher {
    pub(super) store: Arc<dyn Store>,
    pub(super) sender: Arc<Sender>,
    pub(super) tailer: Tailer,
    pub(super) clock: Clock,
    pub(super) changes: Arc<Changes>,
    pub(super) poll: Duration,
}

struct Running {
    version: i64,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Dispatcher {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let owner = Uuid::now_v7();
        let lease = TimeDelta::from_std(self.poll * 10)
            .unwrap_or(TimeDelta::seconds(10))
            .max(TimeDelta::seconds(5));
        // Until when the lease is held: workers stop sending once it has passed.
        let (held_until, _) = watch::channel(DateTime::<Utc>::MIN_UTC);
        let mut running: HashMap<Uuid, Running> = HashMap::new();
        loop {
            // With no webhook to deliver, the lease is not even claimed.
            let webhooks = match self.store.webhooks().await {
                Ok(webhooks) => Some(webhooks),
                Err(err) => {
                    tracing::warn!(error = %err, "webhook dispatcher could not read the webhooks");
                    None
                }
            };
            let idle = webhooks
                .as_ref()
                .is_some_and(|w| w.iter().all(|w| w.state == WebhookState::Disabled))
                && running.is_empty();
            let now = self.clock.now();
            let held = match webhooks {
                Some(_) if idle => Ok(false),
                Some(_) => {
                    self.store
                        .claim_processor(LEASE, owner, now, now + lease)
                        .await
                }
                None => Ok(false),
            };
            match (held, webhooks) {
                (Ok(true), Some(webhooks)) => {
                    held_until.send_replace(now + lease);
                    if let Err(err) = self
                        .reconcile(webhooks, owner, &held_until, &mut running)
                        .await
                    {
                        tracing::warn!(error = %err, "webhook dispatcher could not read the webhooks");
                    }
                }
                (Ok(_), _) => stop_all(&mut running).await,
                (Err(err), _) => {
                    tracing::warn!(error = %err, "webhook dispatcher could not renew its lease");
                    stop_all(&mut running).await;
                }
            }
            tokio::select! {
                () = self.changes.woken.notified() => {}
                _ = tokio::time::sleep(self.poll) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                stop_all(&mut running).await;
                return;
            }
        }
    }

    /// Starts a worker for each enabled webhook without a current one, and stops those
    /// of webhooks changed, disabled or deleted.
    async fn reconcile(
        &self,
        mut webhooks: Vec<Webhook>,
        owner: Uuid,
        held_until: &watch::Sender<DateTime<Utc>>,
        running: &mut HashMap<Uuid, Running>,
    ) -> StoreResult<()> {
        let wanted = |webhooks: &[Webhook]| -> HashMap<Uuid, Webhook> {
            webhooks
                .iter()
                .filter(|w| w.state != WebhookState::Disabled)
                .map(|w| (w.id, w.clone()))
                .collect()
        };
        let stale: Vec<Running> = {
            let wanted = wanted(&webhooks);
            let ids: Vec<Uuid> = running
                .iter()
                .filter(|(id, r)| {
                    r.task.is_finished() || wanted.get(id).is_none_or(|w| w.version != r.version)
                })
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| running.remove(id)).collect()
        };
        if !stale.is_empty() {
            // What they wrote on the way out is read back.
            stop(stale).await;
            webhooks = self.store.webhooks().await?;
        }
        for (id, webhook) in wanted(&webhooks) {
            if running.contains_key(&id) {
                continue;
            }
            let filter = match parse_watch_filter(&webhook.filter) {
                Ok(filter) => filter,
                Err(err) => {
                    tracing::warn!(webhook = %id, error = %err, "webhook filter does not parse; not delivering");
                    continue;
                }
            };
            let (stop, stopped) = watch::channel(false);
            let worker = Worker {
                owner,
                held_until: held_until.subscribe(),
                changes: self.changes.clone(),
                store: self.store.clone(),
                sender: self.sender.clone(),
                follower: self.tailer.follow(),
                clock: self.clock.clone(),
                poll: self.poll,
                filter,
                webhook: webhook.clone(),
                saved_through: webhook.delivered_through,
                pending: Vec::new(),
                oldest_pending: None,
                writes: 0,
                stopped,
            };
            running.insert(
                id,
                Running {
                    version: webhook.version,
                    stop,
                    task: tokio::spawn(worker.run()),
                },
            );
        }
        Ok(())
    }
}

/// Asks workers to write what they have and stop, and waits a little for them (together).
async fn stop(workers: Vec<Running>) {
    for worker in &workers {
        let _ = worker.stop.send(true);
    }
    // Well inside the shortest lease (5 s), renewed just before the dispatcher stops them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    for worker in workers {
        let mut task = worker.task;
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            task.abort();
        }
    }
}

async fn stop_all(running: &mut HashMap<Uuid, Running>) {
    stop(running.drain().map(|(_, worker)| worker).collect()).await;
}

/// Delivers one endpoint's events in log order.
struct Worker {
    /// The dispatcher's lease, and until when it is held.
    owner: Uuid,
    held_until: watch::Receiver<DateTime<Utc>>,
    changes: Arc<Changes>,
    store: Arc<dyn Store>,
    sender: Arc<Sender>,
    follower: Follower,
    clock: Clock,
    poll: Duration,
    filter: Option<WatchFilter>,
    /// The endpoint as this worker has taken it: its position and head-of-line state
    /// move as it delivers.
    webhook: Webhook,
    /// The position last written.
    saved_through: i64,
    pending: Vec<WebhookDelivery>,
    oldest_pending: Option<Instant>,
    writes: u32,
    stopped: watch::Receiver<bool>,
}

/// Whether a worker goes on.
enum Go {
    On,
    Stop,
}

impl Worker {
    async fn run(mut self) {
        let result = self.deliver().await;
        if let Err(err) = result {
            tracing::warn!(webhook = %self.webhook.id, error = %err, "webhook worker stopped");
        }
        // What was sent is written before the worker ends (a stop, a change).
        if let Err(err) = self.flush().await {
            tracing::warn!(webhook = %self.webhook.id, error = %err, "webhook progress not written; those events go again");
        }
    }

    /// Whether this worker must stop: told to (or its dispatcher is gone), the lease has
    /// run out, or the webhook changed.
    fn must_stop(&self) -> bool {
        *self.stopped.borrow()
            || self.stopped.has_changed().is_err()
            || self.clock.now() >= *self.held_until.borrow()
            || self
                .changes
                .supersedes(self.webhook.id, self.webhook.version)
    }

    async fn deliver(&mut self) -> StoreResult<()> {
        loop {
            if self.must_stop() || self.webhook.state == WebhookState::Disabled {
                return Ok(());
            }
            // The head event failed: wait for its retry.
            if let Some(at) = self.webhook.next_attempt_at
                && at > self.clock.now()
            {
                if let Go::Stop = self.flush().await? {
                    return Ok(());
                }
                tokio::select! {
                    () = self.clock.sleep_until(at) => {}
                    _ = self.stopped.changed() => {}
                }
                continue;
            }
            let events = match self.follower.after(self.webhook.delivered_through, BATCH) {
                Ok(events) => events,
                Err(_) => self
                    .store
                    .events_after(self.webhook.delivered_through, BATCH as i64)
                    .await?
                    .into_iter()
                    .map(Arc::new)
                    .collect(),
            };
            if events.is_empty() {
                if let Go::Stop = self.flush_if_due(true).await? {
                    return Ok(());
                }
                let wait = match self.oldest_pending {
                    Some(since) => FLUSH_EVERY.saturating_sub(since.elapsed()),
                    None => self.poll,
                };
                tokio::select! {
                    _ = self.follower.changed() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.stopped.changed() => {}
                }
                continue;
            }
            for event in events {
                if self.must_stop() {
                    return Ok(());
                }
                if !self.webhook.wants(self.filter.as_ref(), &event.event) {
                    self.webhook.delivered_through = event.cursor;
                    continue;
                }
                let failed = match self.attempt(&event).await {
                    Some(delivered) => !delivered,
                    // Stopped mid-attempt: the event goes again under the next worker.
                    None => return Ok(()),
                };
                if let Go::Stop = self.flush_if_due(failed).await? {
                    return Ok(());
                }
                if failed {
                    break;
                }
            }
        }
    }

    /// Sends the head event once; `Some(true)` when it was delivered, `None` when the
    /// worker was stopped before the receiver answered.
    async fn attempt(&mut self, event: &Event) -> Option<bool> {
        let now = self.clock.now();
        let outcome = tokio::select! {
            outcome = self.sender.send(&self.webhook, event, now) => outcome,
            _ = self.stopped.changed() => return None,
        };
        let attempt = self.webhook.attempts + 1;
        let done_at = self.clock.now();
        let mut delivery = WebhookDelivery {
            id: Uuid::now_v7(),
            webhook_id: self.webhook.id,
            event_cursor: event.cursor,
            event_id: event.event.id,
            event_type: event.event.kind,
            attempt,
            status_code: outcome.status_code,
            latency: outcome.latency,
            error: outcome.error.clone(),
            attempted_at: now,
            next_attempt_at: None,
            delivered_at: None,
            manual: false,
        };
        let w = &mut self.webhook;
        let delivered = outcome.delivered();
        if delivered {
            metrics::counter!("ticketd_webhook_deliveries_total", "outcome" => "delivered")
                .increment(1);
            delivery.delivered_at = Some(done_at);
            w.delivered_through = event.cursor;
            w.state = WebhookState::Healthy;
            w.attempts = 0;
            w.next_attempt_at = None;
            w.failing_since = None;
            w.last_error.clear();
        } else {
            metrics::counter!("ticketd_webhook_deliveries_total", "outcome" => "failed")
                .increment(1);
            let since = w.failing_since.unwrap_or(now);
            w.attempts = attempt;
            w.failing_since = Some(since);
            w.last_error = outcome.error;
            match after_failure(
                attempt,
                since,
                done_at,
                outcome.retry_after,
                fastrand::f64(),
            ) {
                AfterFailure::RetryAt(at) => {
                    w.state = WebhookState::Failing;
                    w.next_attempt_at = Some(at);
                    delivery.next_attempt_at = Some(at);
                }
                AfterFailure::GiveUp => {
                    tracing::warn!(webhook = %w.id, url = %w.url, "webhook disabled after a day of failed retries");
                    w.state = WebhookState::Disabled;
                    w.next_attempt_at = None;
                }
            }
        }
        metrics::histogram!("ticketd_webhook_attempt_seconds")
            .record(outcome.latency.as_secs_f64());
        self.pending.push(delivery);
        self.oldest_pending.get_or_insert_with(Instant::now);
        Some(delivered)
    }

    /// Writes what is pending if there is much of it, it has waited long enough, or
    /// `now` says so.
    async fn flush_if_due(&mut self, now: bool) -> StoreResult<Go> {
        let due = now
            || self.pending.len() >= FLUSH_AFTER
            || self
                .oldest_pending
                .is_some_and(|since| since.elapsed() >= FLUSH_EVERY);
        if due { self.flush().await } else { Ok(Go::On) }
    }

    /// Writes the attempts made and the position reached; [`Go::Stop`] when the webhook
    /// changed meanwhile (its new version gets a new worker).
    async fn flush(&mut self) -> StoreResult<Go> {
        if self.pending.is_empty() && self.webhook.delivered_through == self.saved_through {
            return Ok(Go::On);
        }
        self.writes = self.writes.wrapping_add(1);
        let w = &self.webhook;
        let progress = WebhookProgress {
            lease: (LEASE, self.owner, self.clock.now()),
            webhook_id: w.id,
            version: w.version,
            deliveries: std::mem::take(&mut self.pending),
            delivered_through: w.delivered_through,
            state: w.state,
            attempts: w.attempts,
            next_attempt_at: w.next_attempt_at,
            failing_since: w.failing_since,
            last_error: w.last_error.clone(),
            trim: self.writes.is_multiple_of(TRIM_EVERY),
        };
        match self.store.record_webhook_progress(&progress).await {
            Ok(current) => {
                self.saved_through = progress.delivered_through;
                self.oldest_pending = None;
                metrics::gauge!("ticketd_webhook_position", "webhook" => w.id.to_string())
                    .set(progress.delivered_through as f64);
                Ok(if current { Go::On } else { Go::Stop })
            }
            Err(err) => {
                // Kept for the next write.
                self.pending = progress.deliveries;
                Err(err)
            }
        }
    }
}
