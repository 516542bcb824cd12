//! WatchTickets: replay, live updates, filters, resuming, shutdown and slow clients.

use std::collections::HashSet;
use std::time::Duration;

use ticketd::grpc::{RESUME_CURSOR, pb};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::codec::Streaming;

use crate::harness::{Backend, Tickets, create, new_ticket, spawn_app, spawn_app_with};

pub async fn watch(
    tickets: &mut Tickets,
    filter: &str,
    after: i64,
) -> Streaming<pb::WatchTicketsResponse> {
    tickets
        .watch_tickets(pb::WatchTicketsRequest {
            filter: filter.into(),
            after_cursor: after,
        })
        .await
        .expect("watch")
        .into_inner()
}

pub async fn next_event(
    stream: &mut Streaming<pb::WatchTicketsResponse>,
    within: Duration,
) -> Option<pb::ActivityEntry> {
    match tokio::time::timeout(within, stream.next()).await {
        Ok(Some(Ok(response))) => response.event,
        Ok(Some(Err(status))) => panic!("watch failed: {status:?}"),
        Ok(None) | Err(_) => None,
    }
}

async fn note(tickets: &mut Tickets, id: &str, body: &str) {
    tickets
        .add_note(pb::AddNoteRequest {
            ticket_id: id.into(),
            body: body.into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
}

pub async fn a_watch_replays_from_its_cursor_then_goes_live(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let first = create(&mut tickets, new_ticket("One")).await;
    create(&mut tickets, new_ticket("Two")).await;

    let mut stream = watch(&mut tickets, "", 0).await;
    let replayed: Vec<pb::ActivityEntry> = vec![
        next_event(&mut stream, Duration::from_secs(5))
            .await
            .unwrap(),
        next_event(&mut stream, Duration::from_secs(5))
            .await
            .unwrap(),
    ];
    assert!(
        replayed
            .iter()
            .all(|e| e.r#type() == pb::EventType::TicketCreated)
    );
    assert!(replayed[0].cursor < replayed[1].cursor);

    note(&mut tickets, &first.id, "live").await;
    let live = next_event(&mut stream, Duration::from_secs(5))
        .await
        .expect("live event");
    assert_eq!(live.r#type(), pb::EventType::NoteAdded);
    assert_eq!(live.ticket_id, first.id);
    assert!(live.cursor > replayed[1].cursor);

    // Resuming after the first event replays exactly what followed it.
    let mut resumed = watch(&mut tickets, "", replayed[0].cursor).await;
    let again = next_event(&mut resumed, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(again.id, replayed[1].id);
}

pub async fn watch_filters_select_by_event_ticket_and_assignee(backend: Backend) {
    let app = spawn_app(backend).await;
    let agent = app.agent("Ada").await;
    let agent_key = app.key(pb::Role::Agent, Some(agent)).await;
    let mut tickets = app.tickets();
    let mine = create(
        &mut tickets,
        pb::CreateTicketRequest {
            assignee_id: agent.to_string(),
            ..new_ticket("Mine")
        },
    )
    .await;
    let other = create(&mut tickets, new_ticket("Other")).await;

    let mut as_agent = app.tickets_as(&agent_key);
    let mut my_notes = watch(
        &mut as_agent,
        r#"assignee_id = "me" AND event_type = note_added"#,
        0,
    )
    .await;
    let mut one_ticket = watch(&mut tickets, &format!(r#"ticket_id = "{}""#, other.id), 0).await;

    note(&mut tickets, &other.id, "not for the agent").await;
    note(&mut tickets, &mine.id, "for the agent").await;

    let seen = next_event(&mut my_notes, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(seen.ticket_id, mine.id);
    assert_eq!(seen.r#type(), pb::EventType::NoteAdded);
    assert!(
        next_event(&mut my_notes, Duration::from_millis(500))
            .await
            .is_none()
    );

    let created = next_event(&mut one_ticket, Duration::from_secs(5))
        .await
        .unwrap();
    let noted = next_event(&mut one_ticket, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        (created.ticket_id.as_str(), noted.ticket_id.as_str()),
        (other.id.as_str(), other.id.as_str())
    );
    assert!(
        next_event(&mut one_ticket, Duration::from_millis(300))
            .await
            .is_none()
    );

    let bad = tickets
        .watch_tickets(pb::WatchTicketsRequest {
            filter: "event_type = exploded".into(),
            after_cursor: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let bot = app.key(pb::Role::Bot, None).await;
    let denied = app
        .tickets_as(&bot)
        .watch_tickets(pb::WatchTicketsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}

/// A watcher that disconnects 1,000 times while writers keep going, resuming each time from
/// the last cursor it saw, receives every event exactly once.
pub async fn reconnecting_watchers_miss_nothing_during_writes(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Busy")).await;
    const NOTES: usize = 510;

    let writer = {
        let mut tickets = app.tickets();
        let id = ticket.id.clone();
        tokio::spawn(async move {
            for i in 0..NOTES {
                note(&mut tickets, &id, &format!("note {i}")).await;
            }
        })
    };

    let filter = format!(r#"ticket_id = "{}" AND event_type = note_added"#, ticket.id);
    let mut cursor = 0;
    let mut bodies = Vec::new();
    let mut reconnects = 0;
    while bodies.len() < NOTES {
        let mut stream = watch(&mut tickets, &filter, cursor).await;
        reconnects += 1;
        // Read one event or none, then drop the stream mid-flight.
        let take = reconnects % 2;
        for _ in 0..take {
            match next_event(&mut stream, Duration::from_secs(10)).await {
                Some(event) => {
                    cursor = event.cursor;
                    if let Some(pb::activity_entry::Detail::Note(n)) = event.detail {
                        bodies.push(n.body);
                    }
                }
                None => panic!("no event within 10 s after {} of {NOTES}", bodies.len()),
            }
            if bodies.len() == NOTES {
                break;
            }
        }
    }
    writer.await.unwrap();
    assert!(reconnects >= 1000, "only {reconnects} reconnects");
    let expected: Vec<String> = (0..NOTES).map(|i| format!("note {i}")).collect();
    assert_eq!(bodies, expected, "every event once, in order");
}

pub async fn streams_end_with_their_resume_point_on_shutdown(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Before shutdown")).await;
    let mut stream = watch(&mut tickets, "", 0).await;
    let seen = next_event(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(seen.ticket_id, ticket.id);
    let mut deliveries = app
        .escalation()
        .subscribe_channel(pb::SubscribeChannelRequest {
            channel: pb::Channel::Sms as i32,
            consumer_group: String::new(),
        })
        .await
        .unwrap()
        .into_inner();

    let stopped = tokio::spawn(app.shutdown());
    let end = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the watch ends promptly");
    let status = match end {
        Some(Err(status)) => status,
        other => panic!("expected a status, got {other:?}"),
    };
    assert_eq!(status.code(), Code::Unavailable);
    let resume: i64 = status
        .metadata()
        .get(RESUME_CURSOR)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("resume cursor in the metadata");
    assert_eq!(resume, seen.cursor);

    let end = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
        .await
        .expect("the subscription ends promptly");
    assert!(
        matches!(end, Some(Err(ref s)) if s.code() == Code::Unavailable),
        "{end:?}"
    );
    let outcome = tokio::time::timeout(Duration::from_secs(10), stopped).await;
    assert!(
        matches!(outcome, Ok(Ok(Ok(())))),
        "the server stops within its grace period"
    );
}

pub async fn cancelled_streams_leave_nothing_behind(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let mut watchers = Vec::new();
    for _ in 0..5 {
        watchers.push(watch(&mut tickets, "", 0).await);
    }
    let subscriber = app
        .escalation()
        .subscribe_channel(pb::SubscribeChannelRequest {
            channel: pb::Channel::Chat as i32,
            consumer_group: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    wait_until(|| app.gauge.open(ticketd::service::StreamKind::Watch) == 5).await;
    wait_until(|| app.gauge.open(ticketd::service::StreamKind::Delivery) == 1).await;

    drop(watchers);
    drop(subscriber);
    wait_until(|| app.gauge.open(ticketd::service::StreamKind::Watch) == 0).await;
    wait_until(|| app.gauge.open(ticketd::service::StreamKind::Delivery) == 0).await;
}

async fn wait_until(condition: impl Fn() -> bool) {
    for _ in 0..100 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached within 5 s");
}

pub async fn a_watcher_that_stops_reading_is_told_where_to_resume(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.stream_buffer = 2;
        s.stream_stall_seconds = 1;
    })
    .await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Flood")).await;
    let mut stream = watch(&mut tickets, "", 0).await;
    // Large notes fill the transport's flow-control windows quickly.
    let body = "x".repeat(60_000);
    for _ in 0..80 {
        note(&mut tickets, &ticket.id, &body).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut last = 0;
    let mut received = 0;
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(response))) => {
                last = response.event.unwrap().cursor;
                received += 1;
            }
            Ok(Some(Err(status))) => break status,
            other => panic!("expected the stream to end with a status, got {other:?}"),
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted);
    let resume: i64 = status
        .metadata()
        .get(RESUME_CURSOR)
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(resume, last, "resume after the last event received");
    assert!(
        received < 81,
        "the stream ended before delivering everything ({received})"
    );

    let mut resumed = watch(&mut tickets, "", resume).await;
    let mut rest = 0;
    while next_event(&mut resumed, Duration::from_secs(2))
        .await
        .is_some()
    {
        rest += 1;
    }
    assert_eq!(received + rest, 81, "nothing is lost across the resume");
}

/// Counts distinct events of a ticket received by a watcher, for cross-replica tests.
pub async fn collect(
    stream: &mut Streaming<pb::WatchTicketsResponse>,
    want: usize,
    within: Duration,
) -> HashSet<String> {
    let mut ids = HashSet::new();
    let deadline = tokio::time::Instant::now() + within;
    while ids.len() < want {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next_event(stream, left).await {
            Some(event) => {
                ids.insert(event.id);
            }
            None => break,
        }
    }
    ids
}
