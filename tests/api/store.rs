//! The store on its own, below gRPC: the guarantees the use cases build on, each checked
//! on both backends (lease claims and expiry, the exactly-once alert claim, the read
//! horizon, request-id claims, the capacity guard).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ticketd::domain::audit::AuditEntry;
use ticketd::domain::calendar::BusinessCalendar;
use ticketd::domain::delivery::{Acknowledgement, DeliveryOutcome, OutboundKind, OutboundMessage};
use ticketd::domain::event::{Actor, EventKind, EventPayload, NewEvent, Visibility};
use ticketd::domain::routing::{Agent, Availability, Queue, Strategy};
use ticketd::domain::sla::{Clock, Metric, Plan};
use ticketd::domain::ticket::{Channel, ContactInput, Priority, Status, Ticket, TicketType};
use ticketd::events::Bus;
use ticketd::store::{
    AssignmentGuard, Changeset, CreateOutcome, IdempotencyClaim, LeaseBatch, PoolSettings, Store,
    StoreError, TicketDraft, TicketKey, TicketUpdate,
};
use uuid::Uuid;

use crate::harness::{Backend, TestDatabase};

/// A migrated store over a fresh database, kept alive with it.
struct TestStore {
    store: Arc<dyn Store>,
    _database: TestDatabase,
}

async fn open(backend: &Backend) -> TestStore {
    let database = TestDatabase::create(backend).await;
    let settings = PoolSettings {
        max_connections: 5,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(30),
    };
    let store = ticketd::store::open(&database.url(), &settings, Bus::new())
        .await
        .expect("open store");
    store.migrate().await.expect("migrate");
    TestStore {
        store,
        _database: database,
    }
}

fn at(second: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap()
}

fn draft(subject: &str, created_at: DateTime<Utc>) -> TicketDraft {
    TicketDraft {
        id: Uuid::now_v7(),
        subject: subject.into(),
        description: String::new(),
        status: Status::Open,
        priority: Priority::Medium,
        ticket_type: TicketType::Question,
        tags: Vec::new(),
        custom_fields: BTreeMap::new(),
        contact: ContactInput {
            external_id: format!("crm-{}", Uuid::now_v7().simple()),
            name: "Ada".into(),
            email: "ada@example.com".into(),
            phone: String::new(),
            vip: None,
            fill_only: false,
        },
        assignee_id: None,
        queue_id: None,
        channel: Some(Channel::Email),
        follow_up_of_id: None,
        conversation: None,
        tier: 1,
        required_skills: Vec::new(),
        vip_handlers_only: false,
        created_at,
    }
}

async fn create(store: &dyn Store, draft: TicketDraft, changes: Changeset) -> Ticket {
    match store.create_ticket(draft, changes, None).await {
        Ok(CreateOutcome::Created { ticket, .. }) => *ticket,
        Ok(CreateOutcome::Replayed(id)) => panic!("replayed {id}"),
        Err(err) => panic!("create failed: {err:?}"),
    }
}

fn note(ticket: &Ticket, at: DateTime<Utc>) -> NewEvent {
    NewEvent::about(
        ticket,
        EventKind::NoteAdded,
        Actor::system("test"),
        Visibility::Internal,
        EventPayload::Note {
            body: "a note".into(),
        },
        at,
    )
}

/// A ticket with one outbound email queued for the `gw` consumer group.
async fn ticket_with_a_queued_message(store: &dyn Store) -> OutboundMessage {
    assert!(
        store
            .register_consumer(Channel::Email, "gw", at(0), 64)
            .await
            .unwrap()
    );
    let ticket = create(store, draft("Reply pending", at(0)), Changeset::default()).await;
    let event = note(&ticket, at(1));
    let message = OutboundMessage {
        id: Uuid::now_v7(),
        ticket_id: ticket.id,
        ticket_number: ticket.number,
        event_id: event.id,
        conversation_id: String::new(),
        channel: Channel::Email,
        recipient: "ada@example.com".into(),
        subject: "Re: Reply pending".into(),
        body: "Here you go".into(),
        attachments: Vec::new(),
        kind: OutboundKind::Reply,
        source: String::new(),
        created_at: at(1),
    };
    store
        .commit(Changeset {
            events: vec![event],
            outbound: vec![message.clone()],
            ..Changeset::default()
        })
        .await
        .expect("queue the message");
    message
}

pub async fn a_lease_holds_until_it_expires_and_then_passes_on(backend: Backend) {
    let t = open(&backend).await;
    let store = &*t.store;
    let message = ticket_with_a_queued_message(store).await;
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());

    let leased = store
        .lease_messages(
            Channel::Email,
            "gw",
            first,
            at(10),
            at(40),
            LeaseBatch {
                limit: 10,
                inline_bytes: 1024,
            },
        )
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].message.id, message.id);
    assert_eq!((leased[0].attempt, leased[0].lease_id), (1, first));

    // Another subscriber finds nothing while the lease holds, even a second before it
    // runs out.
    let held = store
        .lease_messages(
            Channel::Email,
            "gw",
            second,
            at(39),
            at(69),
            LeaseBatch {
                limit: 10,
                inline_bytes: 1024,
            },
        )
        .await
        .unwrap();
    assert!(held.is_empty(), "{held:?}");
    let due = store.delivery_due(Channel::Email, "gw").await.unwrap();
    assert!(!due.ready);
    assert_eq!(due.next_expiry, Some(at(40)));

    // At the second it runs out, the message passes on, as a second attempt.
    let taken = store
        .lease_messages(
            Channel::Email,
            "gw",
            second,
            at(40),
            at(70),
            LeaseBatch {
                limit: 10,
                inline_bytes: 1024,
            },
        )
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].attempt, taken[0].lease_id), (2, second));

    // The first holder's acknowledgement no longer finishes it; the second's does.
    let ack = |lease_id| Acknowledgement {
        message_id: message.id,
        consumer_group: "gw".into(),
        lease_id,
        outcome: DeliveryOutcome::Delivered,
        provider_message_id: "p-1".into(),
        error: String::new(),
    };
    let ticket = store
        .ticket(TicketKey::Id(message.ticket_id))
        .await
        .unwrap()
        .unwrap();
    let receipt = |_| {
        let mut e = note(&ticket, at(50));
        e.kind = EventKind::DeliveryReceipt;
        e
    };
    let late = store
        .ack_delivery(&ack(first), receipt(message.ticket_id))
        .await
        .unwrap()
        .expect("the group received the message");
    assert!(late.receipt.is_none(), "a stale lease finishes nothing");
    let done = store
        .ack_delivery(&ack(second), receipt(message.ticket_id))
        .await
        .unwrap()
        .expect("the group received the message");
    assert!(done.receipt.is_some());
    let after = store
        .lease_messages(
            Channel::Email,
            "gw",
            first,
            at(500),
            at(530),
            LeaseBatch {
                limit: 10,
                inline_bytes: 1024,
            },
        )
        .await
        .unwrap();
    assert!(
        after.is_empty(),
        "a delivered message is never leased again"
    );
}

pub async fn concurrent_claimers_never_lease_one_message_twice(backend: Backend) {
    let t = open(&backend).await;
    let store = t.store.clone();
    for _ in 0..10 {
        ticket_with_a_queued_message(&*store).await;
    }
    let claimers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let lease = Uuid::now_v7();
                let mut mine = Vec::new();
                for _ in 0..10 {
                    let got = store
                        .lease_messages(
                            Channel::Email,
                            "gw",
                            lease,
                            at(10),
                            at(40),
                            LeaseBatch {
                                limit: 2,
                                inline_bytes: 1024,
                            },
                        )
                        .await
                        .unwrap();
                    mine.extend(got.into_iter().map(|l| l.message.id));
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let distinct: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 10, "every message leased: {all:?}");
    assert_eq!(distinct.len(), 10, "none twice");
}

/// A running first-response clock on a new ticket, due at `due`, warned at `warn`.
async fn ticket_with_a_clock(store: &dyn Store, due: i64) -> Ticket {
    let draft = draft("Clocked", at(0));
    let plan = Plan {
        policy_id: None,
        targets: Default::default(),
        calendar_id: None,
        warning: Default::default(),
    };
    let calendar = BusinessCalendar::always(Uuid::nil(), "24/7");
    let clock = Clock::start(
        draft.id,
        Metric::FirstResponse,
        due,
        &plan,
        &calendar,
        at(0),
    );
    create(
        store,
        draft,
        Changeset {
            clocks: vec![clock],
            ..Changeset::default()
        },
    )
    .await
}

pub async fn each_alert_is_claimed_exactly_once_by_racing_timers(backend: Backend) {
    let t = open(&backend).await;
    let ticket = ticket_with_a_clock(&*t.store, 600).await;
    assert_eq!(
        t.store.next_sla_deadline().await.unwrap(),
        t.store.clocks(&[ticket.id]).await.unwrap()[0].warn_at,
        "the warning comes first"
    );
    assert!(t.store.fire_sla_alerts(at(599), 100).await.unwrap().len() <= 1);

    let timers: Vec<_> = (0..4)
        .map(|_| {
            let store = t.store.clone();
            tokio::spawn(async move { store.fire_sla_alerts(at(600), 100).await.unwrap() })
        })
        .collect();
    let mut fired = Vec::new();
    for timer in timers {
        fired.extend(timer.await.unwrap());
    }
    let breaches: Vec<_> = fired
        .iter()
        .filter(|e| e.event.kind == EventKind::SlaBreached)
        .collect();
    assert_eq!(breaches.len(), 1, "{fired:?}");
    assert_eq!(breaches[0].event.ticket_id, ticket.id);
    assert!(
        t.store
            .fire_sla_alerts(at(9_999), 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(t.store.next_sla_deadline().await.unwrap(), None);
}

/// The log once `count` events are readable. On PostgreSQL the read horizon is the whole
/// cluster's, so other tests' transactions on the same server may hold it a moment.
async fn settled_events(store: &dyn Store, count: usize) -> Vec<ticketd::domain::event::Event> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = store.events_after(0, 100).await.unwrap();
        if events.len() >= count || tokio::time::Instant::now() >= deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn stream_reads_see_every_committed_event_in_log_order(backend: Backend) {
    let t = open(&backend).await;
    let store = &*t.store;
    let ticket = create(store, draft("Logged", at(0)), Changeset::default()).await;
    for i in 1..=3 {
        store
            .commit(Changeset {
                events: vec![note(&ticket, at(i))],
                ..Changeset::default()
            })
            .await
            .unwrap();
    }
    let events = settled_events(store, 3).await;
    assert_eq!(
        events.len(),
        3,
        "created events come from the service, not the store"
    );
    assert!(events.windows(2).all(|w| w[0].cursor < w[1].cursor));
    let rest = store.events_after(events[0].cursor, 100).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert!(!store.events_held_back(events[2].cursor).await.unwrap());
}

pub async fn a_request_id_is_claimed_once_per_body_until_it_expires(backend: Backend) {
    let t = open(&backend).await;
    let store = &*t.store;
    let claim = |fingerprint: &str, resource_id, at_second, expired_before| IdempotencyClaim {
        scope: "create:key-1".into(),
        request_id: "form-42".into(),
        fingerprint: fingerprint.into(),
        resource_id,
        at: at(at_second),
        expired_before: at(expired_before),
    };
    let first = draft("Once", at(0));
    let first_id = first.id;
    let made = store
        .create_ticket(
            first,
            Changeset::default(),
            Some(claim("a", first_id, 0, -100)),
        )
        .await
        .unwrap();
    assert!(matches!(made, CreateOutcome::Created { .. }));

    let again = draft("Once", at(5));
    let replay = store
        .create_ticket(
            again,
            Changeset::default(),
            Some(claim("a", Uuid::now_v7(), 5, -100)),
        )
        .await
        .unwrap();
    assert!(
        matches!(replay, CreateOutcome::Replayed(id) if id == first_id),
        "{replay:?}"
    );

    let other = store
        .create_ticket(
            draft("Other body", at(6)),
            Changeset::default(),
            Some(claim("b", Uuid::now_v7(), 6, -100)),
        )
        .await;
    assert!(
        matches!(other, Err(StoreError::IdempotencyMismatch(_))),
        "{other:?}"
    );
    assert_eq!(
        store
            .claimed_request(&claim("a", Uuid::now_v7(), 7, -100))
            .await
            .unwrap(),
        Some(first_id)
    );

    // Once the window has passed, the id is free for a new request.
    let later = draft("Much later", at(10_000));
    let later_id = later.id;
    let fresh = store
        .create_ticket(
            later,
            Changeset::default(),
            Some(claim("b", later_id, 10_000, 9_000)),
        )
        .await
        .unwrap();
    assert!(matches!(fresh, CreateOutcome::Created { .. }), "{fresh:?}");
    assert_eq!(store.purge_request_ids(at(20_000)).await.unwrap(), 1);
}

async fn agent_with_capacity(store: &dyn Store, capacity: i32) -> (Agent, Queue) {
    let queue = Queue {
        id: Uuid::now_v7(),
        name: format!("q-{}", Uuid::now_v7().simple()),
        tier: 1,
        strategy: Strategy::Manual,
        version: 1,
        created_at: at(0),
        updated_at: at(0),
    };
    let actor = Actor::system("test");
    store
        .save_queue(
            &queue,
            None,
            &AuditEntry::saved(actor.clone(), None, &queue, at(0)),
        )
        .await
        .unwrap();
    let agent = Agent {
        id: Uuid::now_v7(),
        name: "Grace".into(),
        email: format!("grace-{}@example.com", Uuid::now_v7().simple()),
        skills: Vec::new(),
        tier: 1,
        capacity,
        availability: Availability::Online,
        queue_ids: vec![queue.id],
        vip_handler: false,
        version: 1,
        created_at: at(0),
        updated_at: at(0),
    };
    store
        .save_agent(&agent, None, &AuditEntry::saved(actor, None, &agent, at(0)))
        .await
        .unwrap();
    (agent, queue)
}

/// Assigns `ticket` to `agent` under the capacity guard.
async fn assign_guarded(
    store: &dyn Store,
    ticket: &Ticket,
    agent: &Agent,
    queue: &Queue,
) -> Result<(), StoreError> {
    let mut assigned = ticket.clone();
    assigned.assignee_id = Some(agent.id);
    assigned.queue_id = Some(queue.id);
    store
        .commit(Changeset {
            guard: Some(AssignmentGuard {
                agent_id: agent.id,
                ticket_id: ticket.id,
                queue_id: queue.id,
                at: at(1),
            }),
            updates: vec![TicketUpdate::fields_only(assigned, ticket.version)],
            ..Changeset::default()
        })
        .await
        .map(|_| ())
}

pub async fn the_capacity_guard_admits_one_of_two_racing_assignments(backend: Backend) {
    let t = open(&backend).await;
    let (agent, queue) = agent_with_capacity(&*t.store, 1).await;
    let a = create(&*t.store, draft("A", at(0)), Changeset::default()).await;
    let b = create(&*t.store, draft("B", at(0)), Changeset::default()).await;
    let race = |ticket: Ticket| {
        let (store, agent, queue) = (t.store.clone(), agent.clone(), queue.clone());
        tokio::spawn(async move { assign_guarded(&*store, &ticket, &agent, &queue).await })
    };
    let (first, second) = (race(a.clone()), race(b.clone()));
    let results = [first.await.unwrap(), second.await.unwrap()];
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(admitted, 1, "{results:?}");
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(StoreError::AgentUnavailable(id)) if *id == agent.id)),
        "{results:?}"
    );

    // Full stays full; re-assigning the ticket the agent holds is fine.
    let held = if results[0].is_ok() { &a } else { &b };
    let held = t
        .store
        .ticket(TicketKey::Id(held.id))
        .await
        .unwrap()
        .unwrap();
    assign_guarded(&*t.store, &held, &agent, &queue)
        .await
        .expect("a ticket the agent holds does not count against it");
}

pub async fn a_stale_version_writes_nothing(backend: Backend) {
    let t = open(&backend).await;
    let ticket = create(&*t.store, draft("Versioned", at(0)), Changeset::default()).await;
    let mut first = ticket.clone();
    first.subject = "First".into();
    t.store
        .commit(Changeset {
            updates: vec![TicketUpdate::fields_only(first, ticket.version)],
            events: vec![note(&ticket, at(1))],
            ..Changeset::default()
        })
        .await
        .unwrap();
    let mut stale = ticket.clone();
    stale.subject = "Stale".into();
    let before = settled_events(&*t.store, 1).await.len();
    let err = t
        .store
        .commit(Changeset {
            updates: vec![TicketUpdate::fields_only(stale, ticket.version)],
            events: vec![note(&ticket, at(2))],
            ..Changeset::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(id) if id == ticket.id),
        "{err:?}"
    );
    let now = t
        .store
        .ticket(TicketKey::Id(ticket.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.subject, "First");
    assert_eq!(
        t.store.events_after(0, 100).await.unwrap().len(),
        before,
        "the events of a failed changeset are not written either"
    );
}

/// Writes abandoned at every point of their transaction (the caller gave up: a deadline,
/// a client that left) on a pool with one connection for them (PostgreSQL's listener
/// holds the other; SQLite has one writer): each is all or nothing, and the
/// connection that comes back dirty is never reused inside the abandoned transaction —
/// the next write commits on its own, and a second pool sees the same.
pub async fn an_abandoned_write_leaves_nothing_and_a_clean_connection(backend: Backend) {
    let database = TestDatabase::create(&backend).await;
    let one = PoolSettings {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(30),
    };
    let store = ticketd::store::open(&database.url(), &one, Bus::new())
        .await
        .expect("open store");
    store.migrate().await.expect("migrate");
    let ticket = create(
        &*store,
        draft("Abandoned writes", at(0)),
        Changeset::default(),
    )
    .await;
    let body_of = |event: &ticketd::domain::event::Event| match &event.event.payload {
        EventPayload::Note { body } => Some(body.clone()),
        _ => None,
    };
    let mut abandoned = 0;
    for k in 0..60u64 {
        let current = store
            .ticket(TicketKey::Id(ticket.id))
            .await
            .expect("the next read works")
            .unwrap();
        let mut next = current.clone();
        next.subject = format!("v{k}");
        let mut event = note(&current, at(1 + k as i64));
        event.payload = EventPayload::Note {
            body: format!("v{k}"),
        };
        let write = store.commit(Changeset {
            updates: vec![TicketUpdate::fields_only(next, current.version)],
            events: vec![event],
            ..Changeset::default()
        });
        // From well before the first statement to after the commit.
        let deadline = Duration::from_micros(k * k * 8);
        if tokio::time::timeout(deadline, write).await.is_err() {
            abandoned += 1;
        }
        // A write given up on may still be finishing in the background (its COMMIT
        // sent): look until the ticket and the feed agree. A write torn in two would
        // disagree for good.
        let mut looks = 0;
        let (subject, written) = loop {
            let now = store
                .ticket(TicketKey::Id(ticket.id))
                .await
                .unwrap()
                .unwrap();
            let notes: Vec<String> = store
                .activity(ticket.id, 0, true, 1000)
                .await
                .unwrap()
                .iter()
                .filter_map(body_of)
                .collect();
            let subject_written = now.subject == format!("v{k}");
            let note_written = notes.contains(&format!("v{k}"));
            looks += 1;
            if subject_written == note_written || looks == 100 {
                break (now.subject, (subject_written, note_written));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(
            written.0, written.1,
            "write {k} is all or nothing (subject {subject:?})"
        );
    }
    assert!(abandoned > 0, "some writes were abandoned midway");
    // A final write commits by itself, and another pool sees exactly what this one does.
    let current = store
        .ticket(TicketKey::Id(ticket.id))
        .await
        .unwrap()
        .unwrap();
    let mut last = current.clone();
    last.subject = "Final".into();
    store
        .commit(Changeset {
            updates: vec![TicketUpdate::fields_only(last, current.version)],
            ..Changeset::default()
        })
        .await
        .expect("a write after the abandoned ones");
    drop(store);
    let other = ticketd::store::open(&database.url(), &one, Bus::new())
        .await
        .expect("a second pool");
    let seen = other
        .ticket(TicketKey::Id(ticket.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.subject, "Final");
    assert_eq!(seen.version, current.version + 1);
}

/// PostgreSQL: a transaction that took its id before a later one committed holds the
/// later one's events back from stream reads until it ends, so no reader can pass a
/// position it may still fill.
pub async fn a_transaction_in_flight_holds_back_later_events(backend: Backend) {
    use sqlx::Connection;
    let t = open(&backend).await;
    let ticket = create(&*t.store, draft("Held", at(0)), Changeset::default()).await;
    let mut early = sqlx::PgConnection::connect(&t._database.url())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut early).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut early)
        .await
        .unwrap();

    t.store
        .commit(Changeset {
            events: vec![note(&ticket, at(1))],
            ..Changeset::default()
        })
        .await
        .unwrap();
    assert!(t.store.events_after(0, 100).await.unwrap().is_empty());
    assert!(t.store.events_held_back(0).await.unwrap());

    sqlx::query("COMMIT").execute(&mut early).await.unwrap();
    // The horizon is the whole cluster's: other tests' transactions on the same server
    // may hold it a moment longer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while t.store.events_after(0, 100).await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "released with it");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(t.store.events_after(0, 100).await.unwrap().len(), 1);
}

/// Data written before migrations 0009–0012 comes through them: tickets learn the
/// conversation they answer (with its own channel), their events carry it, contacts are
/// found by their addresses (a shared one stays with the older contact), outbound messages
/// learn their source, and attachment bytes stay readable.
pub async fn data_from_before_the_bridge_migrations_is_carried_over(backend: Backend) {
    let database = TestDatabase::create(&backend).await;
    let url = database.url();
    let postgres = matches!(backend, Backend::Postgres(_));
    let id = |n: u8| {
        let hex = format!("{:032x}", n);
        if postgres {
            format!("'{}'", Uuid::parse_str(&hex).unwrap())
        } else {
            format!("x'{hex}'")
        }
    };
    let t = |s: u8| {
        if postgres {
            format!("'2026-01-01T00:00:{s:02}Z'")
        } else {
            format!("'2026-01-01T00:00:{s:02}+00:00'")
        }
    };
    let abc = if postgres {
        "'\\x616263'::bytea"
    } else {
        "x'616263'"
    };
    let legacy = format!(
        "INSERT INTO contacts (id, external_id, name, email, phone, vip, created_at, updated_at) \
         VALUES ({c1}, 'crm-a', 'Ada', ' Ada@X.org', '', false, {t1}, {t1}), \
                ({c2}, 'crm-b', 'Bea', 'ada@x.org', '+1', false, {t2}, {t2});
         INSERT INTO tickets (id, number, subject, description, status, priority, priority_rank, \
           ticket_type, tags, custom_fields, contact_id, version, created_at, updated_at) \
         VALUES ({tk}, 1, 'Legacy', '', 'OPEN', 'MEDIUM', 2, 'QUESTION', '[]', '{{}}', {c1}, 1, \
           {t1}, {t1});
         INSERT INTO conversations (id, source, external_id, channel, ticket_id, summary, intent, \
           metadata, created_at, updated_at) \
         VALUES ({v1}, 'bot', 'c1', 'CHAT', {tk}, '', '', '{{}}', {t1}, {t1}), \
                ({v2}, 'bot', 'c2', 'SMS', {tk}, '', '', '{{}}', {t2}, {t2});
         INSERT INTO ticket_events (position, id, ticket_id, ticket_number, event_type, \
           actor_kind, actor_id, actor_name, visibility, payload, created_at, ticket_status, \
           priority, ticket_type, assignee_id, queue_id, contact_id, channel, tags) \
         VALUES (1, {ev}, {tk}, 1, 'note_added', 'api_key', NULL, 'x', 'internal', \
           '{{\"kind\": \"note\", \"body\": \"hi\"}}', {t1}, 'OPEN', 'MEDIUM', 'QUESTION', NULL, \
           NULL, {c1}, NULL, '[]');
         INSERT INTO attachments (id, ticket_id, event_id, name, content_type, size_bytes, \
           content, created_at) \
         VALUES ({a1}, {tk}, {ev}, 'a.txt', 'text/plain', 3, {abc}, {t1}), \
                ({a2}, {tk}, {ev}, 'b.txt', 'text/plain', 3, {abc}, {t1});
         INSERT INTO outbound_messages (id, ticket_id, event_id, conversation_id, channel, \
           recipient, subject, body, attachments, status, created_at, updated_at) \
         VALUES ({om}, {tk}, {ev}, 'c2', 'SMS', '+1', '', 'hi', '[]', 'QUEUED', {t1}, {t1});",
        c1 = id(1),
        c2 = id(2),
        tk = id(10),
        v1 = id(20),
        v2 = id(21),
        ev = id(30),
        a1 = id(40),
        a2 = id(41),
        om = id(50),
        t1 = t(1),
        t2 = t(2),
    );
    // The schema as it stood before, and the data written then.
    if postgres {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::migrate!("./migrations/postgres")
            .run_to(8, &mut conn)
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(legacy))
            .execute(&mut conn)
            .await
            .unwrap();
    } else {
        use sqlx::ConnectOptions;
        use std::str::FromStr;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        sqlx::migrate!("./migrations/sqlite")
            .run_to(8, &mut conn)
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(legacy))
            .execute(&mut conn)
            .await
            .unwrap();
    }

    let settings = PoolSettings {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(30),
    };
    let store = ticketd::store::open(&url, &settings, Bus::new())
        .await
        .expect("open store");
    store.migrate().await.expect("the later migrations apply");

    let ticket_id = Uuid::from_u128(10);
    let latest = ticketd::domain::ticket::ConversationRef {
        source: "bot".into(),
        external_id: "c2".into(),
        channel: Channel::Sms,
    };
    let ticket = store
        .ticket(TicketKey::Id(ticket_id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ticket.conversation,
        Some(latest.clone()),
        "the latest conversation, on its own channel"
    );
    let events = store.activity(ticket_id, 0, true, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.ticket.conversation, Some(latest));

    let by_email = store.contact_by_address("ADA@x.org", "").await.unwrap();
    assert_eq!(by_email.map(|c| c.external_id).as_deref(), Some("crm-a"));
    let by_phone = store.contact_by_address("", "+1").await.unwrap();
    assert_eq!(by_phone.map(|c| c.external_id).as_deref(), Some("crm-b"));

    let message = store
        .outbound_message(Uuid::from_u128(50))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (message.kind, message.source.as_str()),
        (OutboundKind::Reply, "bot")
    );

    for attachment in [40, 41] {
        let file = store
            .attachment(Uuid::from_u128(attachment))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(file.content, b"abc");
        if postgres {
            // Moved into one blob for both; SQLite keeps bytes stored before inline.
            assert_eq!(
                file.sha256,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            );
        }
    }

    // Text written before search existed is searchable: the subject by anyone, the note
    // by agents only.
    let search = |text: &str, internal: bool| ticketd::store::SearchQuery {
        text: ticketd::domain::search::SearchText::parse(text).unwrap(),
        scope: ticketd::store::TicketQuery {
            filter: None,
            sort: ticketd::store::SortField::Number,
            descending: true,
            after: None,
            limit: 0,
            now: Utc::now(),
            sources: Vec::new(),
        },
        internal,
        offset: 0,
        limit: 10,
    };
    let found = |hits: Vec<ticketd::store::SearchHit>| -> Vec<Uuid> {
        hits.into_iter().map(|h| h.ticket_id).collect()
    };
    for (text, internal, expected) in [
        ("legacy", false, vec![ticket_id]),
        ("hi", true, vec![ticket_id]),
        ("hi", false, vec![]),
    ] {
        let hits = store.search_tickets(&search(text, internal)).await.unwrap();
        assert_eq!(found(hits), expected, "{text:?}, internal {internal}");
    }
}

/// The keys of open streams are checked together: the lookup tells active keys from
/// revoked and unknown ones, also past the first statement's worth of ids.
pub async fn active_keys_are_told_from_revoked_and_unknown_ones(backend: Backend) {
    use ticketd::domain::auth::Role;
    use ticketd::store::ApiKeyRecord;
    let t = open(&backend).await;
    let actor = Actor::system("test");
    let key = |n: u8| ApiKeyRecord {
        id: Uuid::now_v7(),
        name: format!("key {n}"),
        role: Role::Gateway,
        agent_id: None,
        channels: Vec::new(),
        sources: Vec::new(),
        prefix: format!("tkd_{n}"),
        secret_hash: vec![n; 32],
        created_at: at(0),
        revoked_at: None,
    };
    let (kept, revoked, late) = (key(1), key(2), key(3));
    for k in [&kept, &revoked, &late] {
        let audit = AuditEntry::saved(actor.clone(), None, k, at(0));
        assert!(t.store.insert_api_key(k, &audit).await.unwrap());
    }
    let audit = AuditEntry::saved(actor.clone(), None, &revoked, at(1));
    t.store
        .revoke_api_key(revoked.id, at(1), &audit)
        .await
        .unwrap()
        .expect("revoked");
    // More ids than one statement takes, with an active key among the last ones.
    let mut ids: Vec<Uuid> = (0..700).map(|_| Uuid::new_v4()).collect();
    ids[3] = kept.id;
    ids[4] = revoked.id;
    ids[650] = late.id;
    let mut active = t.store.active_api_keys(&ids).await.unwrap();
    active.sort();
    let mut expected = vec![kept.id, late.id];
    expected.sort();
    assert_eq!(active, expected);
    assert!(t.store.active_api_keys(&[]).await.unwrap().is_empty());
}
