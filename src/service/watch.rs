//! `WatchTickets`: replay the event log from a cursor, then follow it live.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use super::streams::{
    self, GaugeGuard, Sent, StreamEnd, StreamGauge, StreamKind, StreamOutput, StreamSender,
};
use super::{ServiceError, ServiceResult};
use crate::domain::auth::Principal;
use crate::domain::event::{Event, Visibility};
use crate::domain::filter::{AssigneeRef, TicketPredicate};
use crate::domain::watch::{WatchFilter, WatchPredicate, matches, only_ticket, parse_watch_filter};
use crate::events::{Bus, Ended, Interest, Subscription, Tailer, TailerSettings};
use crate::store::Store;

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
            tailer: self.tailer.clone(),
            shutdown: self.shutdown.clone(),
            only_ticket: filter.as_ref().and_then(only_ticket),
            wants: Arc::new(Wants {
                filter,
                internal: principal.sees_internal(),
            }),
            cursor: after_cursor,
            queue: self.settings.buffer.max(1) * 4,
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

/// What one watch stream wants: decided in the tailer for live events, so a stream is
/// woken only for its own.
struct Wants {
    filter: Option<WatchFilter>,
    internal: bool,
}

impl Interest for Arc<Wants> {
    fn wants(&self, event: &Event) -> bool {
        (self.internal || event.event.visibility == Visibility::Public)
            && self
                .filter
                .as_ref()
                .is_none_or(|f| matches(f, &event.event))
    }
}

struct Producer {
    store: Arc<dyn Store>,
    reads: Arc<SharedReads>,
    tailer: Tailer,
    shutdown: watch::Receiver<bool>,
    wants: Arc<Wants>,
    only_ticket: Option<Uuid>,
    /// The position of the last event read (sent or filtered out).
    cursor: i64,
    /// Most live events queued for this stream in the tailer before it must catch up by
    /// itself.
    queue: usize,
    _gauge: GaugeGuard,
}

/// How a stream's catch-up or live phase ended.
enum Next {
    /// Read on from the cursor and subscribe again.
    Resubscribe,
    Stop,
}

impl Producer {
    async fn run(mut self, sender: StreamSender<Arc<Event>>) {
        loop {
            let mut subscription = match self
                .tailer
                .subscribe(Box::new(self.wants.clone()), self.queue)
                .await
            {
                Ok(subscription) => subscription,
                Err(_) if *self.shutdown.borrow() => {
                    sender.finish(StreamEnd::ShuttingDown {
                        cursor: self.cursor,
                    });
                    return;
                }
                Err(err) => {
                    tracing::warn!(error = %err, cursor = self.cursor, "watch stream cannot follow the log");
                    sender.finish(StreamEnd::Unavailable {
                        cursor: self.cursor,
                    });
                    return;
                }
            };
            if let Next::Stop = self.catch_up(&mut subscription, &sender).await {
                return;
            }
            if let Next::Stop = self.live(&mut subscription, &sender).await {
                return;
            }
        }
    }

    /// Sends what this stream wants up to the subscription's start, from the tailer's
    /// memory where it reaches back far enough, else from the log.
    async fn catch_up(
        &mut self,
        subscription: &mut Subscription,
        sender: &StreamSender<Arc<Event>>,
    ) -> Next {
        let from = subscription.from;
        while self.cursor < from {
            if *self.shutdown.borrow() {
                sender.finish(StreamEnd::ShuttingDown {
                    cursor: self.cursor,
                });
                return Next::Stop;
            }
            let memory = subscription.follower().after(self.cursor, BATCH as usize);
            let batch = match memory {
                Ok(events) => events,
                Err(_) => match self
                    .reads
                    .events_after(
                        self.store.as_ref(),
                        self.cursor,
                        self.only_ticket,
                        BATCH,
                        from,
                    )
                    .await
                {
                    Ok(events) => events.as_ref().clone(),
                    Err(err) => {
                        tracing::warn!(error = %err, cursor = self.cursor, "watch stream read failed");
                        sender.finish(StreamEnd::Unavailable {
                            cursor: self.cursor,
                        });
                        return Next::Stop;
                    }
                },
            };
            let full = batch.len() as i64 == BATCH;
            let mut reached = !full;
            for event in batch {
                if event.cursor > from {
                    // Queued for this stream already.
                    reached = true;
                    break;
                }
                let cursor = event.cursor;
                if self.wants.wants(&event) && !self.send(sender, event).await {
                    return Next::Stop;
                }
                self.cursor = cursor;
            }
            if reached {
                // Everything up to `from` was final before this read began, and the read
                // went past it or to the end: nothing this stream wants lies between its
                // cursor and `from` any more. (A read of one ticket's events skips the
                // positions of others, so the cursor may not have reached `from` itself.)
                self.cursor = self.cursor.max(from);
            }
        }
        Next::Resubscribe
    }

    /// Sends queued events as the tailer reads them, until the stream ends or falls too
    /// far behind for its queue.
    async fn live(
        &mut self,
        subscription: &mut Subscription,
        sender: &StreamSender<Arc<Event>>,
    ) -> Next {
        loop {
            if *self.shutdown.borrow() {
                sender.finish(StreamEnd::ShuttingDown {
                    cursor: subscription.settled(self.cursor),
                });
                return Next::Stop;
            }
            tokio::select! {
                next = subscription.next() => match next {
                    // (A stream that resumed from a cursor ahead of the tailer has these.)
                    Ok(event) if event.cursor <= self.cursor => {}
                    Ok(event) => {
                        let cursor = event.cursor;
                        if !self.send(sender, event).await {
                            return Next::Stop;
                        }
                        self.cursor = cursor;
                    }
                    Err(Ended::Overflowed) => return Next::Resubscribe,
                    Err(Ended::Failed) => {
                        sender.finish(StreamEnd::Unavailable {
                            cursor: self.cursor,
                        });
                        return Next::Stop;
                    }
                },
                _ = self.shutdown.changed() => {
                    sender.finish(StreamEnd::ShuttingDown {
                        cursor: subscription.settled(self.cursor),
                    });
                    return Next::Stop;
                }
                () = sender.closed() => return Next::Stop,
            }
        }
    }

    /// Sends one event; `false` when the stream is over (the client left, or fell behind
    /// and was told where to resume).
    async fn send(&self, sender: &StreamSender<Arc<Event>>, event: Arc<Event>) -> bool {
        match sender.send(event).await {
            Sent::Ok => true,
            Sent::Closed => false,
            Sent::Stalled => {
                tracing::info!(cursor = self.cursor, "watcher fell behind");
                sender.finish(StreamEnd::FellBehind {
                    cursor: self.cursor,
                });
                false
            }
        }
    }
}
