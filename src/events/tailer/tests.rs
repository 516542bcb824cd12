use super::*;
use crate::domain::event::{Actor, EventKind, EventPayload, NewEvent, Visibility};
use crate::domain::ticket::{Priority, Status, TicketType};
use std::sync::Mutex;

/// A log in memory: events at the positions given, the first `visible` of them
/// readable.
#[derive(Default)]
struct MemoryLog {
    events: Mutex<Vec<Event>>,
    reads: Mutex<u32>,
}

fn event(cursor: i64) -> Event {
    let ticket = uuid::Uuid::nil();
    Event {
        cursor,
        event: NewEvent {
            id: uuid::Uuid::now_v7(),
            ticket_id: ticket,
            ticket_number: 1,
            kind: EventKind::NoteAdded,
            actor: Actor::system("test"),
            visibility: Visibility::Internal,
            payload: EventPayload::Note {
                body: String::new(),
            },
            created_at: chrono::DateTime::UNIX_EPOCH,
            ticket: crate::domain::event::TicketSnapshot {
                status: Status::Open,
                priority: Priority::Low,
                ticket_type: TicketType::Other,
                assignee_id: None,
                queue_id: None,
                contact_id: ticket,
                channel: None,
                tags: Vec::new(),
                conversation: None,
            },
            depth: 0,
        },
        delivery: None,
    }
}

#[async_trait]
impl Log for MemoryLog {
    async fn read_after(&self, after: i64, limit: i64) -> Result<Vec<Event>, LogError> {
        *self.reads.lock().unwrap() += 1;
        let events = self.events.lock().unwrap();
        Ok(events
            .iter()
            .filter(|e| e.cursor > after)
            .take(limit as usize)
            .cloned()
            .collect())
    }
    async fn held_back(&self, _after: i64) -> Result<bool, LogError> {
        Ok(false)
    }
    async fn end(&self) -> Result<i64, LogError> {
        Ok(self.events.lock().unwrap().last().map_or(0, |e| e.cursor))
    }
}

fn settings(capacity: usize) -> TailerSettings {
    TailerSettings {
        capacity,
        poll: Duration::from_secs(60),
    }
}

async fn until_head(follower: &mut Follower, head: i64) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while follower.state().head < head {
            follower.changed().await;
        }
    })
    .await
    .expect("the tailer reads up to the head");
}

#[tokio::test]
async fn followers_share_one_read_of_each_new_event() {
    let log = Arc::new(MemoryLog::default());
    log.events.lock().unwrap().extend([event(3), event(7)]);
    let bus = Bus::new();
    let (_stop, shutdown) = watch::channel(false);
    let tailer = Tailer::spawn(log.clone(), &bus, settings(100), shutdown);
    let mut a = tailer.follow();
    let b = tailer.follow();
    until_head(&mut a, 7).await;
    // It started at the end of the log: older events are not held.
    assert!(a.after(0, 10).is_err());
    assert_eq!(a.after(7, 10).unwrap().len(), 0);

    log.events.lock().unwrap().extend([event(9), event(12)]);
    let reads_before = *log.reads.lock().unwrap();
    bus.publish_local();
    until_head(&mut a, 12).await;
    let from_a = a.after(7, 10).unwrap();
    let from_b = b.after(9, 10).unwrap();
    assert_eq!(from_a.iter().map(|e| e.cursor).collect::<Vec<_>>(), [9, 12]);
    assert_eq!(from_b.iter().map(|e| e.cursor).collect::<Vec<_>>(), [12]);
    assert!(
        Arc::ptr_eq(&from_a[1], &from_b[0]),
        "one decoded event, shared"
    );
    assert!(
        *log.reads.lock().unwrap() - reads_before <= 2,
        "one read per wake-up, not one per follower"
    );
}

#[tokio::test]
async fn memory_is_bounded_and_older_cursors_are_sent_to_the_log() {
    let log = Arc::new(MemoryLog::default());
    let bus = Bus::new();
    let (_stop, shutdown) = watch::channel(false);
    let tailer = Tailer::spawn(log.clone(), &bus, settings(3), shutdown);
    let mut follower = tailer.follow();
    tokio::time::timeout(Duration::from_secs(5), async {
        while follower.after(0, 0).is_err() {
            follower.changed().await;
        }
    })
    .await
    .expect("the tailer starts");
    log.events.lock().unwrap().extend((1..=5).map(event));
    bus.publish_local();
    until_head(&mut follower, 5).await;
    assert!(follower.after(1, 10).is_err(), "evicted");
    let held = follower.after(2, 10).unwrap();
    assert_eq!(held.iter().map(|e| e.cursor).collect::<Vec<_>>(), [3, 4, 5]);
}

#[tokio::test(start_paused = true)]
async fn an_unfollowed_tailer_reads_nothing() {
    let log = Arc::new(MemoryLog::default());
    let bus = Bus::new();
    let (_stop, shutdown) = watch::channel(false);
    let tailer = Tailer::spawn(log.clone(), &bus, settings(10), shutdown);
    let follower = tailer.follow();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(follower);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let reads = *log.reads.lock().unwrap();
    for _ in 0..5 {
        bus.publish_local();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        *log.reads.lock().unwrap(),
        reads,
        "no reads without followers"
    );
}

struct Even;
impl Interest for Even {
    fn wants(&self, event: &Event) -> bool {
        event.cursor % 2 == 0
    }
}

#[tokio::test]
async fn a_subscriber_is_handed_only_what_it_wants_after_it_subscribed() {
    let log = Arc::new(MemoryLog::default());
    log.events.lock().unwrap().push(event(2));
    let bus = Bus::new();
    let (_stop, shutdown) = watch::channel(false);
    let tailer = Tailer::spawn(log.clone(), &bus, settings(100), shutdown);
    let mut subscription = tailer.subscribe(Box::new(Even), 10).await.unwrap();
    assert_eq!(subscription.from, 2, "it starts at the end of the log");

    log.events.lock().unwrap().extend((3..=6).map(event));
    bus.publish_local();
    let got = [
        subscription.next().await.unwrap().cursor,
        subscription.next().await.unwrap().cursor,
    ];
    assert_eq!(got, [4, 6]);
    assert_eq!(subscription.settled(6), 6);
}

#[tokio::test]
async fn a_subscriber_whose_queue_fills_is_told_to_catch_up_itself() {
    let log = Arc::new(MemoryLog::default());
    let bus = Bus::new();
    let (_stop, shutdown) = watch::channel(false);
    let tailer = Tailer::spawn(log.clone(), &bus, settings(100), shutdown);
    let mut subscription = tailer.subscribe(Box::new(Even), 2).await.unwrap();
    log.events.lock().unwrap().extend((1..=10).map(event));
    bus.publish_local();
    let mut taken = Vec::new();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), subscription.next())
            .await
            .expect("the queue ends")
        {
            Ok(event) => taken.push(event.cursor),
            Err(ended) => break ended,
        }
    };
    assert_eq!(ended, Ended::Overflowed);
    assert_eq!(taken, [2, 4], "what fitted, then the end");
    assert_eq!(
        subscription.settled(4),
        4,
        "a dropped subscriber resumes after what it took, not at the head"
    );
    // Memory still holds the rest for it.
    let rest = subscription.follower().after(4, 10).unwrap();
    assert_eq!(rest.first().map(|e| e.cursor), Some(5));
}

#[tokio::test]
async fn subscribing_to_a_stopped_tailer_fails_at_once() {
    let log = Arc::new(MemoryLog::default());
    let bus = Bus::new();
    let (stop, shutdown) = watch::channel(false);
    let tailer = Tailer::spawn(log, &bus, settings(10), shutdown);
    stop.send_replace(true);
    let subscribed =
        tokio::time::timeout(Duration::from_secs(5), tailer.subscribe(Box::new(Even), 10))
            .await
            .expect("no wait on a stopped tailer");
    assert!(subscribed.is_err());
}

/// Wants every event of one ticket.
struct OfTicket(uuid::Uuid);
impl Interest for OfTicket {
    fn wants(&self, event: &Event) -> bool {
        event.event.ticket_id == self.0
    }
    fn only_ticket(&self) -> Option<uuid::Uuid> {
        Some(self.0)
    }
}

#[tokio::test]
async fn departed_subscribers_of_every_ticket_are_swept_while_the_log_is_quiet() {
    let log = Arc::new(MemoryLog::default());
    let bus = Bus::new();
    let (_stop, shutdown) = watch::channel(false);
    let tailer = Tailer::spawn(log.clone(), &bus, settings(1000), shutdown);
    let mut live = Vec::new();
    // Watchers that come and go with no event in between: only the live ones stay.
    for round in 0..10 {
        for _ in 0..SWEEP_AFTER {
            let gone = tailer.subscribe(Box::new(Even), 10).await.unwrap();
            drop(gone);
        }
        live.push(tailer.subscribe(Box::new(Even), 10).await.unwrap());
        let held = tailer.shared.window.read().unwrap().subscribers.len();
        assert!(
            held <= 2 * (SWEEP_AFTER + round + 1),
            "round {round}: {held} subscribers held for {} live",
            round + 1
        );
    }
    // The live ones still get events.
    log.events.lock().unwrap().push(event(2));
    bus.publish_local();
    for subscription in &mut live {
        assert_eq!(subscription.next().await.unwrap().cursor, 2);
    }
}

fn event_of(cursor: i64, ticket: uuid::Uuid) -> Event {
    let mut e = event(cursor);
    e.event.ticket_id = ticket;
    e
}

#[tokio::test]
async fn subscribers_of_one_ticket_get_its_events_and_departed_ones_are_swept() {
    let log = Arc::new(MemoryLog::default());
    let bus = Bus::new();
    let (_stop, shutdown) = watch::channel(false);
    let tailer = Tailer::spawn(log.clone(), &bus, settings(1000), shutdown);
    let (a, b) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
    let mut of_a = tailer.subscribe(Box::new(OfTicket(a)), 10).await.unwrap();
    let mut everything = tailer.subscribe(Box::new(Even), 10).await.unwrap();
    let gone = tailer.subscribe(Box::new(OfTicket(b)), 10).await.unwrap();
    drop(gone);
    log.events.lock().unwrap().extend([
        event_of(1, a),
        event_of(2, b),
        event_of(3, a),
        event_of(4, a),
    ]);
    bus.publish_local();
    let got: Vec<i64> = [
        of_a.next().await.unwrap().cursor,
        of_a.next().await.unwrap().cursor,
        of_a.next().await.unwrap().cursor,
    ]
    .into();
    assert_eq!(got, [1, 3, 4], "only its own ticket's events");
    assert_eq!(everything.next().await.unwrap().cursor, 2);
    assert_eq!(everything.next().await.unwrap().cursor, 4);
    // The departed subscriber of `b` was dropped when `b`'s event came. Ones that leave
    // without another event of their ticket are swept as new ones arrive.
    drop(of_a);
    let mut others = Vec::new();
    for n in 0..SWEEP_AFTER {
        let ticket = uuid::Uuid::from_u128(1000 + n as u128);
        others.push(
            tailer
                .subscribe(Box::new(OfTicket(ticket)), 10)
                .await
                .unwrap(),
        );
    }
    others.truncate(SWEEP_AFTER / 2);
    let mut more = Vec::new();
    for n in 0..SWEEP_AFTER {
        let ticket = uuid::Uuid::from_u128(5000 + n as u128);
        more.push(
            tailer
                .subscribe(Box::new(OfTicket(ticket)), 10)
                .await
                .unwrap(),
        );
    }
    let window = tailer.shared.window.read().unwrap();
    let held: usize = window.pinned.values().map(Vec::len).sum();
    assert!(
        !window.pinned.contains_key(&a),
        "the departed subscriber of a is swept"
    );
    assert!(
        !window.pinned.contains_key(&b),
        "b's departed subscriber was dropped"
    );
    // The second sweep (once as many arrived as were live after the first) dropped the
    // 32 that left; only the live ones remain.
    assert_eq!(
        held,
        others.len() + more.len(),
        "departed ones do not pile up"
    );
}
