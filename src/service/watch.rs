//! `WatchTickets` and `WatchConversations`: replay the event log from a cursor, then follow
//! it live. Both are one producer over the tailer; they differ in what they want of the
//! log and how an event is rendered for the client.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OnceCell, watch};
use tracing::Instrument;
use uuid::Uuid;

use super::consistency::ReadConsistency;
use super::streams::{
    self, GaugeGuard, Sent, StreamEnd, StreamGauge, StreamKind, StreamOutput, StreamSender,
};
use super::{ServiceError, ServiceResult};
use crate::domain::auth::Principal;
use crate::domain::consistency::Lsn;
use crate::domain::conversation_update::{ConversationUpdate, conversation_update, update_kind};
use crate::domain::event::{Event, Visibility};
use crate::domain::filter::{AssigneeRef, TicketPredicate};
use crate::domain::ticket::Channel;
use crate::domain::watch::{WatchFilter, WatchPredicate, matches, only_ticket, parse_watch_filter};
use crate::events::{Bus, Ended, Interest, Subscription, Tailer, TailerSettings};
use crate::store::{Store, StoreResult};

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
    /// Where catch-up reads of the log may go.
    consistency: ReadConsistency,
    tailer: Tailer,
    shutdown: watch::Receiver<bool>,
    gauge: Arc<StreamGauge>,
    settings: StreamSettings,
    agent_names: Arc<AgentNames>,
}

impl WatchService {
    pub(crate) fn new(
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
            agent_names: Arc::new(AgentNames::new(store.clone())),
            consistency: ReadConsistency::of(store.as_ref()),
            store,
            reads: Arc::default(),
            tailer,
            shutdown,
            gauge,
            settings,
        }
    }

    /// The process's log tailer, for processors that follow the log too.
    pub fn tailer(&self) -> Tailer {
        self.tailer.clone()
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
        let only_ticket = filter.as_ref().and_then(only_ticket);
        let wants = Arc::new(Wants {
            filter,
            internal: principal.sees_internal(),
        });
        Ok(self.start(
            wants,
            AsIs,
            only_ticket,
            after_cursor,
            tracing::info_span!("watch_stream"),
        ))
    }

    /// Starts a stream of updates about the tickets of conversations, after
    /// `after_cursor`, narrowed to those `filter` names and to what the caller's key may
    /// see (a bot key its sources, a gateway key its channels).
    pub fn watch_conversations(
        &self,
        principal: &Principal,
        filter: ConversationFilter,
        after_cursor: i64,
    ) -> ServiceResult<StreamOutput<ConversationUpdateView>> {
        if after_cursor < 0 {
            return Err(ServiceError::invalid(
                "after_cursor",
                "must not be negative",
            ));
        }
        let mut v = crate::domain::validation::Violations::new();
        let longest = crate::domain::conversation::MAX_NAME_CHARS;
        v.line(
            "source",
            filter.source.as_deref().unwrap_or(""),
            false,
            longest,
        );
        v.line(
            "conversation_id",
            filter.conversation_id.as_deref().unwrap_or(""),
            false,
            longest,
        );
        v.finish()?;
        if let Some(source) = &filter.source
            && !principal.may_speak_for(source)
        {
            return Err(ServiceError::PermissionDenied(format!(
                "this key may not watch conversations of source {source:?}"
            )));
        }
        if let Some(channel) = filter.channel {
            crate::service::delivery::ensure_channel(principal, channel)?;
        }
        let wants = Arc::new(ConversationWants {
            filter,
            sources: principal.sources.clone(),
            channels: principal.channels.clone(),
        });
        let render = RenderUpdates {
            names: self.agent_names.clone(),
        };
        Ok(self.start(
            wants,
            render,
            None,
            after_cursor,
            tracing::info_span!("conversation_stream"),
        ))
    }

    fn start<R: Render>(
        &self,
        wants: Arc<dyn Interest>,
        render: R,
        only_ticket: Option<Uuid>,
        after_cursor: i64,
        span: tracing::Span,
    ) -> StreamOutput<R::Item> {
        let (sender, output) = streams::channel(self.settings.buffer, self.settings.stall);
        let producer = Producer {
            store: self.store.clone(),
            reads: self.reads.clone(),
            consistency: self.consistency.clone(),
            tailer: self.tailer.clone(),
            shutdown: self.shutdown.clone(),
            only_ticket,
            wants,
            render,
            cursor: after_cursor,
            queue: self.settings.buffer.max(1) * 4,
            _gauge: GaugeGuard::new(self.gauge.clone(), StreamKind::Watch),
        };
        tokio::spawn(producer.run(sender).instrument(span));
        output
    }
}

/// How a stream turns an event it wants into what it sends. Called once per delivery,
/// and dispatched statically, so no future is boxed for it.
trait Render: Send + Sync + 'static {
    type Item: Send + 'static;
    /// `None`: the event is skipped (its cursor still counts as read).
    fn render(&self, event: Arc<Event>) -> impl Future<Output = Option<Self::Item>> + Send;
}

/// `WatchTickets` sends the events themselves, shared with every other watcher.
struct AsIs;

impl Render for AsIs {
    type Item = Arc<Event>;
    async fn render(&self, event: Arc<Event>) -> Option<Arc<Event>> {
        Some(event)
    }
}

/// Which conversations' updates a `WatchConversations` call asks for; unset parts match
/// everything.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub source: Option<String>,
    pub channel: Option<Channel>,
    pub conversation_id: Option<String>,
}

/// A conversation update with the agent's display name looked up.
#[derive(Debug, Clone)]
pub struct ConversationUpdateView {
    pub update: ConversationUpdate,
    /// Empty when no agent is named, or the agent is gone.
    pub agent_name: String,
}

struct ConversationWants {
    filter: ConversationFilter,
    /// The key's sources and channels; empty means any.
    sources: Vec<String>,
    channels: Vec<Channel>,
}

impl Interest for ConversationWants {
    fn wants(&self, event: &Event) -> bool {
        let Some(c) = &event.event.ticket.conversation else {
            return false;
        };
        let f = &self.filter;
        f.source.as_ref().is_none_or(|s| *s == c.source)
            && f.channel.is_none_or(|ch| ch == c.channel)
            && f.conversation_id
                .as_ref()
                .is_none_or(|id| *id == c.external_id)
            && (self.sources.is_empty() || self.sources.contains(&c.source))
            && (self.channels.is_empty() || self.channels.contains(&c.channel))
            && update_kind(&event.event).is_some()
    }
}

struct RenderUpdates {
    names: Arc<AgentNames>,
}

impl Render for RenderUpdates {
    type Item = ConversationUpdateView;
    async fn render(&self, event: Arc<Event>) -> Option<ConversationUpdateView> {
        let update = conversation_update(&event)?;
        let agent_name = match update.agent_id {
            Some(id) => self.names.name(id).await,
            None => String::new(),
        };
        Some(ConversationUpdateView { update, agent_name })
    }
}

/// Agents' display names, shared by every conversation stream and kept a minute.
struct AgentNames {
    store: Arc<dyn Store>,
    cache: moka::sync::Cache<Uuid, String>,
}

impl AgentNames {
    fn new(store: Arc<dyn Store>) -> Self {
        AgentNames {
            store,
            cache: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        }
    }

    /// The agent's name; empty if the agent is gone or the database cannot say now (an
    /// update without a name beats a stream that stops).
    async fn name(&self, id: Uuid) -> String {
        if let Some(name) = self.cache.get(&id) {
            return name;
        }
        match self.store.agent(id).await {
            Ok(agent) => {
                let name = agent.map(|a| a.name).unwrap_or_default();
                self.cache.insert(id, name.clone());
                name
            }
            Err(err) => {
                tracing::warn!(agent_id = %id, error = %err, "agent name not read for a conversation update");
                String::new()
            }
        }
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
        WatchPredicate::Recipient(op, AssigneeRef::Me) => match principal.agent_id {
            Some(agent) => Ok(WatchPredicate::Recipient(op, AssigneeRef::Agent(agent))),
            None => Err(ServiceError::invalid(
                "filter",
                "recipient = \"me\" needs an API key bound to an agent",
            )),
        },
        other => Ok(other),
    })
}

/// What one watch stream wants: decided in the tailer for live events, so a stream is
/// woken only for its own.
struct Wants {
    filter: Option<WatchFilter>,
    internal: bool,
}

impl Interest for Wants {
    fn wants(&self, event: &Event) -> bool {
        (self.internal || event.event.visibility == Visibility::Public)
            && self
                .filter
                .as_ref()
                .is_none_or(|f| matches(f, &event.event))
    }

    fn only_ticket(&self) -> Option<Uuid> {
        self.filter.as_ref().and_then(only_ticket)
    }
}

struct Producer<R> {
    store: Arc<dyn Store>,
    reads: Arc<SharedReads>,
    /// Where catch-up reads of the log may go.
    consistency: ReadConsistency,
    tailer: Tailer,
    shutdown: watch::Receiver<bool>,
    wants: Arc<dyn Interest>,
    render: R,
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

impl<R: Render> Producer<R> {
    async fn run(mut self, sender: StreamSender<R::Item>) {
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
        sender: &StreamSender<R::Item>,
    ) -> Next {
        let from = subscription.from;
        // Where the primary's commits were once `from` was fixed, taken at the first read
        // of the log.
        let replayed = OnceCell::new();
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
                Err(_) => match self.read_log(from, &replayed).await {
                    Ok(events) => events,
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
                // went past it or read all up to it: nothing this stream wants lies between its
                // cursor and `from` any more. (A read of one ticket's events skips the
                // positions of others, so the cursor may not have reached `from` itself.)
                self.cursor = self.cursor.max(from);
            }
        }
        Next::Resubscribe
    }

    /// The events after the cursor up to `from` from the log: on a standby once it has
    /// replayed every commit the primary showed after `from` was fixed (`replayed`, asked
    /// for once per catch-up), else on the primary.
    async fn read_log(
        &self,
        from: i64,
        replayed: &OnceCell<Option<Lsn>>,
    ) -> StoreResult<Vec<Arc<Event>>> {
        let replayed = *replayed.get_or_init(|| self.consistency.committed()).await;
        let events = self
            .reads
            .events_until(
                self.store.as_ref(),
                self.cursor,
                from,
                self.only_ticket,
                BATCH,
                replayed,
            )
            .await?;
        Ok(events.as_ref().clone())
    }

    /// Sends queued events as the tailer reads them, until the stream ends or falls too
    /// far behind for its queue.
    async fn live(
        &mut self,
        subscription: &mut Subscription,
        sender: &StreamSender<R::Item>,
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
    async fn send(&self, sender: &StreamSender<R::Item>, event: Arc<Event>) -> bool {
        let Some(item) = self.render.render(event).await else {
            return true;
        };
        match sender.send(item).await {
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
