//! `WatchTickets`: replay the event log from a cursor, then follow it live.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use super::streams::{
    self, GaugeGuard, Sent, StreamEnd, StreamGauge, StreamKind, StreamOutput, Wake,
};
use super::{ServiceError, ServiceResult};
use crate::domain::auth::Principal;
use crate::domain::event::{Event, Visibility};
use crate::domain::filter::{AssigneeRef, TicketPredicate};
use crate::domain::watch::{WatchFilter, WatchPredicate, matches, only_ticket, parse_watch_filter};
use crate::events::Bus;
use crate::store::Store;

use super::shared_reads::SharedReads;

/// Events read per query.
const BATCH: i64 = 500;

/// Stream tuning, from the settings.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Items buffered per stream before the producer waits for the client.
    pub buffer: usize,
    /// How long a full buffer may stay full before the stream ends as fallen behind.
    pub stall: Duration,
    /// Fallback poll when no wake-up arrives.
    pub poll: Duration,
}

#[derive(Clone)]
pub struct WatchService {
    store: Arc<dyn Store>,
    reads: Arc<SharedReads>,
    bus: Bus,
    shutdown: watch::Receiver<bool>,
    gauge: Arc<StreamGauge>,
    settings: StreamSettings,
}

impl WatchService {
    pub fn new(
        store: Arc<dyn Store>,
        bus: Bus,
        shutdown: watch::Receiver<bool>,
        gauge: Arc<StreamGauge>,
        settings: StreamSettings,
    ) -> Self {
        Self {
            store,
            reads: Arc::default(),
            bus,
            shutdown,
            gauge,
            settings,
        }
    }

    /// Starts a watch. Events after `after_cursor` that pass `filter` arrive in log
    /// order; the stream ends only when the client leaves or with a [`StreamEnd`].
    pub fn watch(
        &self,
        principal: &Principal,
        filter: &str,
        after_cursor: i64,
    ) -> ServiceResult<StreamOutput<Event>> {
        if after_cursor < 0 {
            return Err(ServiceError::invalid(
                "after_cursor",
                "must not be negative",
            ));
        }
        let filter = parse_watch_filter(filter)
            .map_err(|e| ServiceError::invalid("filter", e.to_string()))?
            .map(|f| resolve_me(f, principal))
            .transpose()?;
        let (sender, output) = streams::channel(self.settings.buffer, self.settings.stall);
        let producer = Producer {
            store: self.store.clone(),
            reads: self.reads.clone(),
            commits: self.bus.subscribe(),
            shutdown: self.shutdown.clone(),
            only_ticket: filter.as_ref().and_then(only_ticket),
            filter,
            internal: principal.sees_internal(),
            cursor: after_cursor,
            poll: self.settings.poll,
            _gauge: GaugeGuard::new(self.gauge.clone(), StreamKind::Watch),
        };
        tokio::spawn(
            producer
                .run(sender)
                .instrument(tracing::info_span!("watch_stream")),
        );
        Ok(output)
    }
}

fn resolve_me(filter: WatchFilter, principal: &Principal) -> ServiceResult<WatchFilter> {
    filter.try_map(&mut |p| match p {
        WatchPredicate::Ticket(TicketPredicate::Assignee(op, AssigneeRef::Me)) => {
            match principal.agent_id {
                Some(agent) => Ok(WatchPredicate::Ticket(TicketPredicate::Assignee(
                    op,
                    AssigneeRef::Agent(agent),
                ))),
                None => Err(ServiceError::invalid(
                    "filter",
                    "assignee_id = \"me\" needs an API key bound to an agent",
                )),
            }
        }
        other => Ok(other),
    })
}

/// The first pause before looking again at events held back behind a transaction in
/// flight; it doubles up to the stream's poll interval.
const HELD_BACK_FIRST_WAIT: Duration = Duration::from_millis(50);

struct Producer {
    store: Arc<dyn Store>,
    reads: Arc<SharedReads>,
    commits: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    filter: Option<WatchFilter>,
    only_ticket: Option<Uuid>,
    internal: bool,
    /// The position of the last event read (sent or filtered out).
    cursor: i64,
    poll: Duration,
    _gauge: GaugeGuard,
}

impl Producer {
    fn wanted(&self, event: &Event) -> bool {
        (self.internal || event.event.visibility == Visibility::Public)
            && self
                .filter
                .as_ref()
                .is_none_or(|f| matches(f, &event.event))
    }

    async fn run(mut self, sender: streams::StreamSender<Event>) {
        // After a wake-up, rows of a transaction that committed may still be held back
        // behind an older one in flight (PostgreSQL); look again a few times, quickly.
        let mut eager = 0u32;
        // Only after a wake-up: a stream just opened leaves held-back events to its poll,
        // rather than add a query to every open.
        let mut held_back_wait = self.poll + Duration::from_millis(1);
        loop {
            self.commits.mark_unchanged();
            let batch = match self
                .reads
                .events_after(self.store.as_ref(), self.cursor, self.only_ticket, BATCH)
                .await
            {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::warn!(error = %err, cursor = self.cursor, "watch stream read failed");
                    sender.finish(StreamEnd::Unavailable {
                        cursor: self.cursor,
                    });
                    return;
                }
            };
            let full = batch.len() as i64 == BATCH;
            let found = !batch.is_empty();
            for event in batch.iter() {
                let cursor = event.cursor;
                if self.wanted(event) {
                    match sender.send(event.clone()).await {
                        Sent::Ok => {}
                        Sent::Closed => return,
                        Sent::Stalled => {
                            tracing::info!(cursor = self.cursor, "watcher fell behind");
                            sender.finish(StreamEnd::FellBehind {
                                cursor: self.cursor,
                            });
                            return;
                        }
                    }
                }
                self.cursor = cursor;
            }
            if full {
                continue;
            }
            if !found && eager > 0 {
                eager -= 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            // Still held back: a transaction in flight somewhere in the cluster keeps the
            // horizon below committed events. Keep looking, slower each time, rather than
            // wait for a wake-up that already came.
            if !found && held_back_wait <= self.poll {
                match self.store.events_held_back(self.cursor).await {
                    Ok(true) => {
                        tokio::time::sleep(held_back_wait).await;
                        held_back_wait *= 2;
                        continue;
                    }
                    Ok(false) => {}
                    Err(err) => tracing::debug!(error = %err, "held-back check failed"),
                }
            }
            match streams::wait(
                &mut self.commits,
                &mut self.shutdown,
                &sender,
                self.poll,
                std::future::pending(),
            )
            .await
            {
                Wake::Look => {
                    eager = 10;
                    held_back_wait = HELD_BACK_FIRST_WAIT;
                }
                Wake::ShuttingDown => {
                    sender.finish(StreamEnd::ShuttingDown {
                        cursor: self.cursor,
                    });
                    return;
                }
                Wake::ClientGone => return,
            }
        }
    }
}
