//! The log tailer: one per process, it reads each new stretch of the event log once and
//! keeps the most recent events in memory, decoded, behind shared references. Streams
//! follow it instead of the database: a woken stream takes the events after its own
//! cursor from memory, filters them, and sends the same `Arc<Event>` every other stream
//! sends. Only a stream whose cursor lies before what memory holds (a replay, or one
//! that fell far behind) reads the database itself, until it catches up.
//!
//! The tailer reads only while someone follows it. Started, it begins at the current end
//! of the log; stopped (nobody left), it forgets what it held.
//!
//! Positions may have gaps (PostgreSQL), and a transaction still in flight may yet fill
//! a position below the last one read: the [`Log`] only ever returns events below the
//! horizon of transactions in flight, so everything the tailer holds is final and in
//! order. After a wake-up whose events are still held back, it looks again a few times,
//! then at growing intervals, rather than wait for another wake-up.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Notify, mpsc, watch};

use super::Bus;
use crate::domain::event::Event;

/// Why the log could not be read; the stream that asked ends as unavailable.
#[derive(Debug, thiserror::Error)]
#[error("the event log cannot be read")]
pub struct LogError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// The event log as the tailer reads it (the store implements it).
#[async_trait]
pub trait Log: Send + Sync + 'static {
    /// Up to `limit` events after position `after` in log order, only below the horizon
    /// of transactions still in flight.
    async fn read_after(&self, after: i64, limit: i64) -> Result<Vec<Event>, LogError>;

    /// Whether committed events after `after` are held back behind a transaction in
    /// flight.
    async fn held_back(&self, after: i64) -> Result<bool, LogError>;

    /// The position of the last event readable now (0 for an empty log).
    async fn end(&self) -> Result<i64, LogError>;
}

/// Events read per query.
const BATCH: i64 = 500;

/// How the tailer is tuned.
#[derive(Debug, Clone, Copy)]
pub struct TailerSettings {
    /// Most events held in memory; streams further behind read the database.
    pub capacity: usize,
    /// Fallback poll when no wake-up arrives (wake-ups from other replicas can be lost).
    pub poll: Duration,
}

/// What followers see change: how far the tailer has read, and how many reads failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TailState {
    pub head: i64,
    pub failures: u64,
}

/// The events in memory: every event after `start`, up to `head`, in order; and the
/// subscribers the tailer hands new events to.
#[derive(Default)]
struct Window {
    active: bool,
    start: i64,
    head: i64,
    events: VecDeque<Arc<Event>>,
    subscribers: Vec<Subscriber>,
    /// Subscribers that can only want one ticket's events, by ticket: an event is looked
    /// at by its own ticket's subscribers only, however many others watch other tickets.
    pinned: HashMap<uuid::Uuid, Vec<Subscriber>>,
    /// Pinned subscribers that arrived since the last sweep, and how many were left
    /// after it: the next sweep comes once as many have arrived as were left (at least
    /// [`SWEEP_AFTER`]), so departed ones never outnumber live ones for long, whether
    /// or not the log moves.
    pinned_arrivals: usize,
    pinned_after_sweep: usize,
    /// The same for `subscribers`, which each batch also sweeps: a quiet log must not
    /// keep the departed ones either.
    arrivals: usize,
    after_sweep: usize,
}

/// The fewest pinned arrivals between two sweeps of departed pinned subscribers (those
/// of a ticket without new events are not otherwise looked at).
const SWEEP_AFTER: usize = 64;

/// Decides, in the tailer, whether a subscriber wants an event: a subscriber is woken only
/// for events it wants.
pub trait Interest: Send + Sync + 'static {
    fn wants(&self, event: &Event) -> bool;

    /// The one ticket whose events this interest can want, if it is limited to one.
    fn only_ticket(&self) -> Option<uuid::Uuid> {
        None
    }
}

/// A stream keeps its interest to check what it reads itself while the tailer holds a
/// copy for live events.
impl<T: Interest + ?Sized> Interest for Arc<T> {
    fn wants(&self, event: &Event) -> bool {
        T::wants(self, event)
    }

    fn only_ticket(&self) -> Option<uuid::Uuid> {
        T::only_ticket(self)
    }
}

struct Subscriber {
    interest: Box<dyn Interest>,
    queue: mpsc::Sender<Arc<Event>>,
    /// Set when the queue was full: the subscriber was dropped and must catch up itself.
    overflowed: Arc<AtomicBool>,
}

struct Shared {
    window: RwLock<Window>,
    state: watch::Sender<TailState>,
    /// Rung when a follower arrives, to start an idle tailer.
    followed: Notify,
    /// The tailer's task has ended (shutdown): nothing will be read any more.
    stopped: AtomicBool,
}

/// A handle on the process's tailer; cheap to clone.
#[derive(Clone)]
pub struct Tailer {
    shared: Arc<Shared>,
}

/// The tailer could not read the log (or stopped) while a subscriber depended on it.
#[derive(Debug, thiserror::Error)]
#[error("the event log cannot be read")]
pub struct TailerFailed;

/// A subscriber's queue of the new events it wants, after [`Subscription::from`].
pub struct Subscription {
    /// The tailer's head when the subscription began: every wanted event after it is
    /// queued; events up to it are the subscriber's to read (from memory or the log).
    pub from: i64,
    follower: Follower,
    queue: mpsc::Receiver<Arc<Event>>,
    overflowed: Arc<AtomicBool>,
    failures: u64,
}

/// Why a subscription's queue ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The subscriber fell too far behind: it reads on from its cursor and subscribes
    /// again.
    Overflowed,
    /// The log could not be read, or the tailer stopped.
    Failed,
}

impl Subscription {
    /// The next queued event.
    pub async fn next(&mut self) -> Result<Arc<Event>, Ended> {
        match self.queue.recv().await {
            Some(event) => Ok(event),
            None if self.overflowed.load(Ordering::Acquire) => Err(Ended::Overflowed),
            None => Err(Ended::Failed),
        }
    }

    /// Memory and the tailer's state, for catching up to [`Subscription::from`].
    pub fn follower(&mut self) -> &mut Follower {
        &mut self.follower
    }

    /// The position this subscriber has seen everything up to, given the last event it
    /// took: the tailer's head when nothing is queued for it (its events up to the head
    /// were queued before the head was announced), else `cursor`.
    pub fn settled(&mut self, cursor: i64) -> i64 {
        let state = self.follower.state();
        // A subscriber dropped for overflowing has not been queued what came after.
        let dropped = self.overflowed.load(Ordering::Acquire) || self.queue.is_closed();
        if self.queue.is_empty() && !dropped && state.failures == self.failures {
            cursor.max(state.head)
        } else {
            cursor
        }
    }
}

/// Events after a cursor could not be served from memory: read them from the log.
#[derive(Debug, PartialEq, Eq)]
pub struct NotHeld;

impl Tailer {
    /// Starts the tailer's task; it reads while followed, until `shutdown` turns true.
    pub fn spawn(
        log: Arc<dyn Log>,
        bus: &Bus,
        settings: TailerSettings,
        shutdown: watch::Receiver<bool>,
    ) -> Tailer {
        let shared = Arc::new(Shared {
            window: RwLock::new(Window::default()),
            state: watch::Sender::new(TailState::default()),
            followed: Notify::new(),
            stopped: AtomicBool::new(false),
        });
        let task = Task {
            log,
            shared: shared.clone(),
            commits: bus.subscribe(),
            settings,
            shutdown,
        };
        tokio::spawn(task.run());
        Tailer { shared }
    }

    /// Subscribes to the events `interest` wants from the tailer's current head on; each is
    /// queued for the subscriber as it is read (at most `queue` waiting). Starts an idle
    /// tailer and waits for it; an error if the log cannot be read meanwhile.
    pub async fn subscribe(
        &self,
        interest: Box<dyn Interest>,
        queue: usize,
    ) -> Result<Subscription, TailerFailed> {
        let mut follower = self.follow();
        let failures = follower.state().failures;
        let (sender, receiver) = mpsc::channel(queue.max(1));
        let overflowed = Arc::new(AtomicBool::new(false));
        let mut interest = Some(interest);
        loop {
            if self.shared.stopped.load(Ordering::Acquire) {
                return Err(TailerFailed);
            }
            if let Ok(mut window) = self.shared.window.write()
                && window.active
                && let Some(interest) = interest.take()
            {
                let pinned_to = interest.only_ticket();
                let subscriber = Subscriber {
                    interest,
                    queue: sender,
                    overflowed: overflowed.clone(),
                };
                match pinned_to {
                    Some(ticket) => pin(&mut window, ticket, subscriber),
                    None => follow_all(&mut window, subscriber),
                }
                return Ok(Subscription {
                    from: window.head,
                    follower,
                    queue: receiver,
                    overflowed,
                    failures,
                });
            }
            if !follower.changed().await || follower.state().failures != failures {
                return Err(TailerFailed);
            }
        }
    }

    /// Follows the tailer: the follower is told whenever new events are in memory.
    pub fn follow(&self) -> Follower {
        let changes = self.shared.state.subscribe();
        self.shared.followed.notify_one();
        Follower {
            shared: self.shared.clone(),
            changes,
        }
    }
}

/// One stream's view of the tailer.
pub struct Follower {
    shared: Arc<Shared>,
    changes: watch::Receiver<TailState>,
}

impl Follower {
    /// Up to `limit` events after `cursor` from memory, sharing them with every other
    /// follower; [`NotHeld`] when memory does not reach back to `cursor`.
    pub fn after(&self, cursor: i64, limit: usize) -> Result<Vec<Arc<Event>>, NotHeld> {
        let window = self.shared.window.read().map_err(|_| NotHeld)?;
        if !window.active || cursor < window.start {
            return Err(NotHeld);
        }
        let first = window.events.partition_point(|e| e.cursor <= cursor);
        Ok(window.events.range(first..).take(limit).cloned().collect())
    }

    /// The tailer's state as last seen, marking it seen.
    pub fn state(&mut self) -> TailState {
        *self.changes.borrow_and_update()
    }

    /// Waits for the tailer to read more (or fail); `false` if the tailer is gone.
    pub async fn changed(&mut self) -> bool {
        self.changes.changed().await.is_ok()
    }

    /// The signal [`Follower::changed`] waits on, for waiting on it beside others.
    pub fn changes(&mut self) -> &mut watch::Receiver<TailState> {
        &mut self.changes
    }
}

/// The shortest time between two reads of the log (bounds reads to 500 a second; adds at
/// most this much to a live event's way to its streams).
const READ_GAP: Duration = Duration::from_millis(2);
/// After a wake-up that found nothing new, quick looks before the slower held-back checks.
const EAGER_LOOKS: u32 = 10;
const EAGER_PAUSE: Duration = Duration::from_millis(20);
/// The first pause before looking again at events held back behind a transaction in
/// flight; it doubles up to the poll interval.
const HELD_BACK_FIRST_WAIT: Duration = Duration::from_millis(50);
/// After a failed read, the pause before the next; it doubles up to the poll interval.
const RETRY_FIRST_WAIT: Duration = Duration::from_millis(100);

struct Task {
    log: Arc<dyn Log>,
    shared: Arc<Shared>,
    commits: watch::Receiver<u64>,
    settings: TailerSettings,
    shutdown: watch::Receiver<bool>,
}

impl Task {
    fn followed(&self) -> bool {
        self.shared.state.receiver_count() > 0
    }

    /// Shutdown was asked for, or whoever could ask is gone.
    fn stopping(&self) -> bool {
        *self.shutdown.borrow() || self.shutdown.has_changed().is_err()
    }

    async fn run(mut self) {
        let mut retry_wait = RETRY_FIRST_WAIT;
        while !self.stopping() {
            if !self.followed() {
                self.deactivate_if_unfollowed();
                tokio::select! {
                    () = self.shared.followed.notified() => {}
                    _ = self.shutdown.changed() => {}
                }
                continue;
            }
            match self.tail().await {
                Ok(()) => retry_wait = RETRY_FIRST_WAIT,
                Err(err) => {
                    tracing::warn!(error = %err, "event log read failed; retrying");
                    self.shared.state.send_modify(|s| s.failures += 1);
                    // Memory may have missed events meanwhile: start afresh once the log
                    // answers again.
                    self.deactivate();
                    tokio::select! {
                        () = tokio::time::sleep(retry_wait) => {}
                        _ = self.shutdown.changed() => {}
                    }
                    retry_wait = (retry_wait * 2).min(self.settings.poll);
                }
            }
        }
        // Stopped: whoever still waits on the tailer learns it, rather than wait forever.
        self.shared.stopped.store(true, Ordering::Release);
        self.deactivate();
        self.shared.state.send_modify(|s| s.failures += 1);
    }

    fn deactivate(&self) {
        if let Ok(mut window) = self.shared.window.write() {
            *window = Window::default();
        }
    }

    /// Forgets memory if still nobody follows (checked under the lock: a subscriber counts
    /// as a follower before it takes the lock to register).
    fn deactivate_if_unfollowed(&self) {
        if let Ok(mut window) = self.shared.window.write()
            && !self.followed()
        {
            *window = Window::default();
        }
    }

    /// Whether events are held back; a failed check counts as no (the next wake-up or
    /// poll looks again).
    async fn held_back(&self, head: i64) -> bool {
        match self.log.held_back(head).await {
            Ok(held) => held,
            Err(err) => {
                tracing::debug!(error = %err, "held-back check failed");
                false
            }
        }
    }

    /// Reads while followed: up to the end of the log, then waits for a wake-up.
    async fn tail(&mut self) -> Result<(), LogError> {
        let active = self.shared.window.read().map(|w| w.active).unwrap_or(false);
        if !active {
            let end = self.log.end().await?;
            if let Ok(mut window) = self.shared.window.write() {
                *window = Window {
                    active: true,
                    start: end,
                    head: end,
                    ..Window::default()
                };
            }
            self.shared.state.send_modify(|s| s.head = end);
        }
        let mut eager = 0;
        let mut held_back_wait = self.settings.poll + Duration::from_millis(1);
        let mut last_read = tokio::time::Instant::now() - READ_GAP;
        while self.followed() && !self.stopping() {
            // Under a steady stream of commits, one read per short gap gathers many of
            // them, instead of one read per commit.
            tokio::time::sleep_until(last_read + READ_GAP).await;
            last_read = tokio::time::Instant::now();
            self.commits.mark_unchanged();
            let head = self.shared.state.borrow().head;
            let batch = self.log.read_after(head, BATCH).await?;
            let full = batch.len() as i64 == BATCH;
            if !batch.is_empty() {
                self.hold(batch);
                eager = 0;
                if full {
                    continue;
                }
            } else if eager > 0 {
                eager -= 1;
                tokio::time::sleep(EAGER_PAUSE).await;
                continue;
            } else if held_back_wait <= self.settings.poll && self.held_back(head).await {
                // A transaction in flight keeps committed events below the horizon:
                // keep looking, slower each time, rather than wait for a wake-up that
                // already came.
                tokio::time::sleep(held_back_wait).await;
                held_back_wait *= 2;
                continue;
            }
            tokio::select! {
                _ = self.commits.changed() => {
                    eager = EAGER_LOOKS;
                    held_back_wait = HELD_BACK_FIRST_WAIT;
                }
                () = tokio::time::sleep(self.settings.poll) => {}
                // A follower's arrival needs nothing read; listening keeps the signal
                // from piling up.
                () = self.shared.followed.notified() => {}
                _ = self.shutdown.changed() => {}
            }
        }
        Ok(())
    }

    /// Puts a batch in memory (dropping the oldest past capacity) and tells followers.
    fn hold(&self, batch: Vec<Event>) {
        let Some(head) = batch.last().map(|e| e.cursor) else {
            return;
        };
        let batch: Vec<Arc<Event>> = batch.into_iter().map(Arc::new).collect();
        if let Ok(mut window) = self.shared.window.write() {
            // Under the lock: a subscriber that registers sees either all of this batch in
            // memory (up to its `from`) or all of it queued, never part of it.
            window.subscribers.retain(|s| dispatch(s, &batch));
            if !window.pinned.is_empty() {
                dispatch_pinned(&mut window, &batch);
            }
            window.events.extend(batch);
            while window.events.len() > self.settings.capacity {
                if let Some(oldest) = window.events.pop_front() {
                    window.start = oldest.cursor;
                }
            }
            window.head = head;
        }
        self.shared.state.send_modify(|s| s.head = head);
    }
}

/// Adds a subscriber that may want any ticket's events; departed ones are swept out as
/// [`pin`] sweeps its own.
fn follow_all(window: &mut Window, subscriber: Subscriber) {
    window.subscribers.push(subscriber);
    window.arrivals += 1;
    if window.arrivals >= window.after_sweep.max(SWEEP_AFTER) {
        window.subscribers.retain(|s| !s.queue.is_closed());
        window.arrivals = 0;
        window.after_sweep = window.subscribers.len();
    }
}

/// Files a subscriber under its ticket (dropping that ticket's departed ones), and sweeps
/// every ticket's departed ones when enough have arrived since the last sweep.
fn pin(window: &mut Window, ticket: uuid::Uuid, subscriber: Subscriber) {
    let list = window.pinned.entry(ticket).or_default();
    list.retain(|s| !s.queue.is_closed());
    list.push(subscriber);
    window.pinned_arrivals += 1;
    if window.pinned_arrivals >= window.pinned_after_sweep.max(SWEEP_AFTER) {
        window.pinned.retain(|_, list| {
            list.retain(|s| !s.queue.is_closed());
            !list.is_empty()
        });
        window.pinned_arrivals = 0;
        window.pinned_after_sweep = window.pinned.values().map(Vec::len).sum();
    }
}

/// Hands each event of `batch` to the subscribers pinned to its ticket.
fn dispatch_pinned(window: &mut Window, batch: &[Arc<Event>]) {
    let mut by_ticket: HashMap<uuid::Uuid, Vec<Arc<Event>>> = HashMap::new();
    for event in batch {
        if window.pinned.contains_key(&event.event.ticket_id) {
            by_ticket
                .entry(event.event.ticket_id)
                .or_default()
                .push(event.clone());
        }
    }
    for (ticket, events) in by_ticket {
        if let Some(subscribers) = window.pinned.get_mut(&ticket) {
            subscribers.retain(|s| dispatch(s, &events));
            if subscribers.is_empty() {
                window.pinned.remove(&ticket);
            }
        }
    }
}

/// Queues the events of `batch` that `subscriber` wants; `false` drops the subscriber
/// (it went away, or its queue is full and it must catch up by itself).
fn dispatch(subscriber: &Subscriber, batch: &[Arc<Event>]) -> bool {
    if subscriber.queue.is_closed() {
        return false;
    }
    for event in batch {
        if subscriber.interest.wants(event) {
            match subscriber.queue.try_send(event.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    subscriber.overflowed.store(true, Ordering::Release);
                    return false;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests;
