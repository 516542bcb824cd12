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
use crate::events::{Bus, Follower, Tailer, TailerSettings};
use crate::store::{Store, StoreError};

use super::shared_reads::SharedReads;

/// Events read per query.
const BATCH: i64 = 500;

/// Events the tailer keeps in memory for streams; one further behind reads the log.
const TAIL_CAPACITY: usize = 4096;

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
    tailer: Tailer,
    shutdown: watch::Receiver<bool>,
    gauge: Arc<StreamGauge>,
    settings: StreamSettings,
}

impl WatchService {
    pub fn new(
        store: Arc<dyn Store>,
        bus: &Bus,
        shutdown: watch::Receiver<bool>,
        gauge: Arc<StreamGauge>,
        settings: StreamSettings,
    ) -> Self {
        let tailer = Tailer::spawn(
            store.clone(),
            bus,
            TailerSettings {
                capacity: TAIL_CAPACITY,
                poll: settings.poll,
            },
            shutdown.clone(),
        );
        Self {
            store,
            reads: Arc::default(),
            tailer,
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
    ) -> ServiceResult<StreamOutput<Arc<Event>>> {
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
            follower: self.tailer.follow(),
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

struct Producer {
    store: Arc<dyn Store>,
    reads: Arc<SharedReads>,
    follower: Follower,
    shutdown: watch::Receiver<bool>,
    filter: Option<WatchFilter>,
    only_ticket: Option<Uuid>,
    internal: bool,
    /// The position of the last event read (sent or filtered out).
    cursor: i64,
    poll: Duration,
    _gauge: GaugeGuard,
}

/// Where a batch of events came from.
enum Source {
    /// The tailer's memory: everything after the cursor it holds, up to `BATCH`.
    Memory,
    /// The log itself, read because memory does not reach back to the cursor;
    /// `head` is how far the tailer had read before the query started.
    Log { head: i64 },
}

impl Producer {
    fn wanted(&self, event: &Event) -> bool {
        (self.internal || event.event.visibility == Visibility::Public)
            && self
                .filter
                .as_ref()
                .is_none_or(|f| matches(f, &event.event))
    }

    /// The next events after the cursor: from the tailer's memory when it reaches back
    /// that far, else from the log (a replay, or a stream far behind).
    async fn next_batch(&mut self) -> Result<(Vec<Arc<Event>>, Source), StoreError> {
        if let Ok(events) = self.follower.after(self.cursor, BATCH as usize) {
            return Ok((events, Source::Memory));
        }
        let head = self.follower.state().head;
        let events = self
            .reads
            .events_after(self.store.as_ref(), self.cursor, self.only_ticket, BATCH)
            .await?;
        Ok((events.as_ref().clone(), Source::Log { head }))
    }

    async fn run(mut self, sender: streams::StreamSender<Arc<Event>>) {
        let failures = self.follower.state().failures;
        loop {
            let (batch, source) = match self.next_batch().await {
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
            for event in batch {
                let cursor = event.cursor;
                if self.wanted(&event) {
                    match sender.send(event).await {
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
            if let Source::Log { head } = source {
                // Everything up to the tailer's head was final before the read began, so
                // the read saw all of it that this stream wants (it may have filtered by
                // ticket and stopped short of the head).
                self.cursor = self.cursor.max(head);
                if self.follower.after(self.cursor, 0).is_ok() {
                    continue;
                }
            }
            let changes = self.follower.changes();
            match streams::wait(
                changes,
                &mut self.shutdown,
                &sender,
                self.poll,
                std::future::pending(),
            )
            .await
            {
                Wake::Look => {
                    if self.follower.state().failures != failures {
                        sender.finish(StreamEnd::Unavailable {
                            cursor: self.cursor,
                        });
                        return;
                    }
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
