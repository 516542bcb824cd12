//! SLA: default targets, policies on calendars, pause and resume, reopen, re-targeting,
//! warnings and breaches on the watch stream, the Overdue view, restarts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ticketd::grpc::pb;
use tonic::Code;

use crate::harness::{
    Admin, Backend, TestDatabase, Tickets, create, feed, get_ticket as get, manual_clock,
    new_ticket, set_status, settings_for, spawn_app, spawn_app_with_manual_clock, start,
    start_with_clock,
};
use crate::watch::{next_event, watch};

fn time(ts: &prost_types::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(ts.seconds, ts.nanos as u32).unwrap()
}

fn clock(ticket: &pb::Ticket, metric: pb::SlaMetric) -> pb::SlaClock {
    ticket
        .sla_clocks
        .iter()
        .find(|c| c.metric() == metric)
        .cloned()
        .unwrap_or_else(|| panic!("no {metric:?} clock on {:?}", ticket.sla_clocks))
}

/// A policy for every ticket, round the clock, with short targets (seconds).
async fn fast_policy(
    admin: &mut Admin,
    first: i64,
    resolution: i64,
    warn_percent: i32,
) -> pb::SlaPolicy {
    admin
        .create_sla_policy(pb::CreateSlaPolicyRequest {
            policy: Some(pb::SlaPolicy {
                name: "fast".into(),
                first_response: Some(prost_types::Duration {
                    seconds: first,
                    nanos: 0,
                }),
                resolution: Some(prost_types::Duration {
                    seconds: resolution,
                    nanos: 0,
                }),
                warning: Some(pb::sla_policy::Warning::WarningPercent(warn_percent)),
                ..Default::default()
            }),
        })
        .await
        .expect("create policy")
        .into_inner()
        .policy
        .unwrap()
}

/// The moment of the last status change to `status` in the feed.
async fn changed_at(tickets: &mut Tickets, id: &str, status: &str) -> DateTime<Utc> {
    feed(tickets, id)
        .await
        .into_iter()
        .rev()
        .find(|e| {
            matches!(&e.detail, Some(pb::activity_entry::Detail::FieldsChanged(f))
                if f.changes.iter().any(|c| c.field == "status" && c.new_value == status))
        })
        .map(|e| time(e.created_at.as_ref().unwrap()))
        .unwrap()
}

fn whole_second(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap()
}

pub async fn new_tickets_get_the_default_targets_of_their_priority(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let urgent = create(
        &mut tickets,
        pb::CreateTicketRequest {
            priority: pb::Priority::Urgent as i32,
            ..new_ticket("Site down")
        },
    )
    .await;
    let first = clock(&urgent, pb::SlaMetric::FirstResponse);
    let resolution = clock(&urgent, pb::SlaMetric::Resolution);
    assert_eq!(first.target.unwrap().seconds, 3600);
    assert_eq!(resolution.target.unwrap().seconds, 4 * 3600);
    assert_eq!(first.state(), pb::SlaClockState::Running);
    let created = whole_second(time(urgent.created_at.as_ref().unwrap()));
    assert_eq!(
        time(first.due_at.as_ref().unwrap()),
        created + chrono::Duration::hours(1)
    );
    assert!(
        urgent
            .sla_clocks
            .iter()
            .all(|c| c.metric() != pb::SlaMetric::NextResponse),
        "no default next-response target"
    );

    let low = create(
        &mut tickets,
        pb::CreateTicketRequest {
            priority: pb::Priority::Low as i32,
            ..new_ticket("Typo")
        },
    )
    .await;
    assert_eq!(
        clock(&low, pb::SlaMetric::FirstResponse)
            .target
            .unwrap()
            .seconds,
        48 * 3600
    );
}

pub async fn only_a_public_reply_meets_first_response(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Question")).await;
    tickets
        .add_note(pb::AddNoteRequest {
            ticket_id: ticket.id.clone(),
            body: "looking".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        clock(
            &get(&mut tickets, &ticket.id).await,
            pb::SlaMetric::FirstResponse
        )
        .state(),
        pb::SlaClockState::Running
    );
    tickets
        .add_reply(pb::AddReplyRequest {
            ticket_id: ticket.id.clone(),
            body: "Here is how".into(),
            channel: pb::Channel::Email as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let after = get(&mut tickets, &ticket.id).await;
    assert_eq!(
        clock(&after, pb::SlaMetric::FirstResponse).state(),
        pb::SlaClockState::Met
    );
    assert_eq!(
        clock(&after, pb::SlaMetric::Resolution).state(),
        pb::SlaClockState::Running
    );
}

pub async fn waiting_pauses_the_clocks_and_keeps_the_time_left(backend: Backend) {
    let app = spawn_app_with_manual_clock(backend).await;
    fast_policy(&mut app.admin(), 600, 3600, 80).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Need logs")).await;
    app.clock.advance(chrono::Duration::seconds(90));
    set_status(&mut tickets, &ticket.id, pb::TicketStatus::Waiting)
        .await
        .unwrap();
    let paused = clock(
        &get(&mut tickets, &ticket.id).await,
        pb::SlaMetric::FirstResponse,
    );
    assert_eq!(paused.state(), pb::SlaClockState::Paused);
    assert!(paused.due_at.is_none());
    let used = paused.used.unwrap().seconds;
    assert_eq!(used, 90);

    app.clock.advance(chrono::Duration::days(3));
    let still = clock(
        &get(&mut tickets, &ticket.id).await,
        pb::SlaMetric::FirstResponse,
    );
    assert_eq!(
        still.used.unwrap().seconds,
        used,
        "paused, not running: no time is used"
    );
    assert_eq!(still.remaining.unwrap().seconds, 600 - used);

    set_status(&mut tickets, &ticket.id, pb::TicketStatus::Open)
        .await
        .unwrap();
    let resumed_at = whole_second(changed_at(&mut tickets, &ticket.id, "OPEN").await);
    let resumed = clock(
        &get(&mut tickets, &ticket.id).await,
        pb::SlaMetric::FirstResponse,
    );
    assert_eq!(resumed.state(), pb::SlaClockState::Running);
    assert_eq!(
        time(resumed.due_at.as_ref().unwrap()),
        resumed_at + chrono::Duration::seconds(600 - used),
        "the remaining time counts from the moment it resumed"
    );
}

pub async fn reopening_resumes_resolution_and_a_new_priority_retargets(backend: Backend) {
    let app = spawn_app_with_manual_clock(backend).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Flaky login")).await;
    app.clock.advance(chrono::Duration::minutes(30));
    set_status(&mut tickets, &ticket.id, pb::TicketStatus::Resolved)
        .await
        .unwrap();
    let resolved = clock(
        &get(&mut tickets, &ticket.id).await,
        pb::SlaMetric::Resolution,
    );
    assert_eq!(resolved.state(), pb::SlaClockState::Met);
    let used = resolved.used.unwrap().seconds;
    assert_eq!(used, 30 * 60);
    // Resolved for a day: the clock does not run.
    app.clock.advance(chrono::Duration::days(1));

    set_status(&mut tickets, &ticket.id, pb::TicketStatus::Open)
        .await
        .unwrap();
    let reopened = clock(
        &get(&mut tickets, &ticket.id).await,
        pb::SlaMetric::Resolution,
    );
    assert_eq!(reopened.state(), pb::SlaClockState::Running);
    assert_eq!(
        reopened.used.unwrap().seconds,
        used,
        "time already used is kept, the day resolved is not counted"
    );

    // MEDIUM -> URGENT: the 72 h resolution target becomes 4 h, keeping what was used.
    let urgent = tickets
        .update_ticket(pb::UpdateTicketRequest {
            ticket: Some(pb::Ticket {
                id: ticket.id.clone(),
                priority: pb::Priority::Urgent as i32,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["priority".into()],
            }),
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    let retargeted = clock(&urgent, pb::SlaMetric::Resolution);
    assert_eq!(retargeted.target.unwrap().seconds, 4 * 3600);
    assert_eq!(retargeted.used.unwrap().seconds, used);
    assert_eq!(
        clock(&urgent, pb::SlaMetric::FirstResponse)
            .target
            .unwrap()
            .seconds,
        3600
    );
}

/// The timer does not poll for deadlines this process writes: a new ticket's deadline
/// wakes it when the clock reaches it, though its fallback poll is a minute away.
pub async fn a_new_deadline_wakes_the_timer_before_its_next_poll(backend: Backend) {
    let database = TestDatabase::create(&backend).await;
    let mut settings = settings_for(&database);
    settings.stream_poll_millis = 60_000;
    let app = start_with_clock(settings, database, manual_clock()).await;
    fast_policy(&mut app.admin(), 3600, 8 * 3600, 90).await;
    let mut tickets = app.tickets();
    let mut breaches = watch(&mut tickets, "event_type = sla_breached", 0).await;
    let ticket = create(&mut tickets, new_ticket("Due in an hour")).await;
    let due = time(
        clock(&ticket, pb::SlaMetric::FirstResponse)
            .due_at
            .as_ref()
            .unwrap(),
    );

    app.clock.advance(chrono::Duration::minutes(59));
    assert!(
        next_event(&mut breaches, Duration::from_millis(500))
            .await
            .is_none(),
        "a minute early nothing fires"
    );
    app.clock.advance(chrono::Duration::minutes(1));
    let breach = next_event(&mut breaches, Duration::from_secs(10))
        .await
        .expect("the breach fires long before the poll");
    let Some(pb::activity_entry::Detail::SlaAlert(alert)) = breach.detail else {
        panic!("sla alert detail expected");
    };
    assert_eq!(time(alert.due_at.as_ref().unwrap()), due);
    assert_eq!(
        time(breach.created_at.as_ref().unwrap()),
        due,
        "fired at its due second"
    );
}

pub async fn warning_and_breach_fire_once_each_on_the_watch_stream(backend: Backend) {
    let app = spawn_app_with_manual_clock(backend).await;
    // First response within an hour, warned at 80 %: 48 minutes in.
    fast_policy(&mut app.admin(), 3600, 8 * 3600, 80).await;
    let mut tickets = app.tickets();
    let mut alerts = watch(
        &mut tickets,
        "event_type = sla_warning OR event_type = sla_breached",
        0,
    )
    .await;
    let ticket = create(&mut tickets, new_ticket("Waiting for a human")).await;
    let created = time(ticket.created_at.as_ref().unwrap());

    app.clock.advance(chrono::Duration::minutes(48));
    let warning = next_event(&mut alerts, Duration::from_secs(10))
        .await
        .expect("warning");
    assert_eq!(warning.r#type(), pb::EventType::SlaWarning);
    assert_eq!(
        time(warning.created_at.as_ref().unwrap()),
        created + chrono::Duration::minutes(48)
    );
    assert!(
        next_event(&mut alerts, Duration::from_millis(300))
            .await
            .is_none(),
        "no breach before the hour is up"
    );
    app.clock.advance(chrono::Duration::minutes(12));
    let breach = next_event(&mut alerts, Duration::from_secs(10))
        .await
        .expect("breach");
    assert_eq!(breach.r#type(), pb::EventType::SlaBreached);
    assert_eq!(breach.ticket_id, ticket.id);
    let Some(pb::activity_entry::Detail::SlaAlert(alert)) = breach.detail else {
        panic!("sla alert detail expected");
    };
    assert_eq!(alert.metric(), pb::SlaMetric::FirstResponse);
    let due = time(alert.due_at.as_ref().unwrap());
    assert_eq!(due, created + chrono::Duration::hours(1));
    assert_eq!(time(breach.created_at.as_ref().unwrap()), due, "on time");
    app.clock.advance(chrono::Duration::hours(2));
    assert!(
        next_event(&mut alerts, Duration::from_millis(1000))
            .await
            .is_none(),
        "each fires once"
    );

    let now = get(&mut tickets, &ticket.id).await;
    assert_eq!(
        clock(&now, pb::SlaMetric::FirstResponse).state(),
        pb::SlaClockState::Breached
    );
    let list = |filter: &str, view: pb::TicketView| pb::ListTicketsRequest {
        filter: filter.into(),
        view: view as i32,
        ..Default::default()
    };
    let overdue = tickets
        .list_tickets(list("", pb::TicketView::Overdue))
        .await
        .unwrap()
        .into_inner()
        .tickets;
    assert_eq!(overdue.len(), 1);
    let breached = tickets
        .list_tickets(list("sla_breached = true", pb::TicketView::Unspecified))
        .await
        .unwrap()
        .into_inner()
        .tickets;
    assert_eq!(breached.len(), 1);
    let later = (app.clock.now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let due_soon = tickets
        .list_tickets(list(
            &format!(r#"sla_due_at < "{later}""#),
            pb::TicketView::Unspecified,
        ))
        .await
        .unwrap()
        .into_inner()
        .tickets;
    assert_eq!(due_soon.len(), 1);

    // Replying late stops the clock as BREACHED, and the ticket leaves the Overdue view.
    tickets
        .add_reply(pb::AddReplyRequest {
            ticket_id: ticket.id.clone(),
            body: "Sorry!".into(),
            channel: pb::Channel::Email as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let replied = get(&mut tickets, &ticket.id).await;
    assert_eq!(
        clock(&replied, pb::SlaMetric::FirstResponse).state(),
        pb::SlaClockState::Breached
    );
    assert!(
        tickets
            .list_tickets(list("", pb::TicketView::Overdue))
            .await
            .unwrap()
            .into_inner()
            .tickets
            .is_empty()
    );
}

pub async fn a_breach_that_passed_while_down_fires_after_a_restart(backend: Backend) {
    let database = TestDatabase::create(&backend).await;
    let settings = settings_for(&database);
    let time_now = manual_clock();
    let app = start_with_clock(settings.clone(), database, time_now.clone()).await;
    fast_policy(&mut app.admin(), 3600, 8 * 3600, 90).await;
    let ticket = create(&mut app.tickets(), new_ticket("Nobody home")).await;
    let database = {
        let mut app = app;
        let database = app.database.take();
        app.shutdown().await.unwrap();
        database.unwrap()
    };
    // Down for two hours; the first-response breach came due an hour in (resolution,
    // eight hours, is not due yet).
    time_now.advance(chrono::Duration::hours(2));

    let app = start_with_clock(settings, database, time_now).await;
    let mut tickets = app.tickets();
    let mut alerts = watch(
        &mut tickets,
        &format!(
            r#"ticket_id = "{}" AND event_type = sla_breached"#,
            ticket.id
        ),
        0,
    )
    .await;
    let breach = next_event(&mut alerts, Duration::from_secs(10))
        .await
        .expect("breach after restart");
    assert_eq!(breach.r#type(), pb::EventType::SlaBreached);
    assert!(
        next_event(&mut alerts, Duration::from_millis(1500))
            .await
            .is_none()
    );
}

pub async fn policies_use_business_hours_calendars(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let calendar = admin
        .create_calendar(pb::CreateCalendarRequest {
            calendar: Some(pb::Calendar {
                name: "Berlin office".into(),
                time_zone: "Europe/Berlin".into(),
                weekly: ["MON", "TUE", "WED", "THU", "FRI"]
                    .iter()
                    .map(|d| pb::DayHours {
                        day: d.to_string(),
                        intervals: vec![
                            pb::TimeInterval {
                                start: "08:30".into(),
                                end: "12:30".into(),
                            },
                            pb::TimeInterval {
                                start: "13:30".into(),
                                end: "17:00".into(),
                            },
                        ],
                    })
                    .collect(),
                holidays: vec!["2026-12-24".into(), "2026-12-25".into()],
                yearly_holidays: vec!["01-01".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .calendar
        .unwrap();
    let policy = admin
        .create_sla_policy(pb::CreateSlaPolicyRequest {
            policy: Some(pb::SlaPolicy {
                name: "Urgent in office hours".into(),
                conditions: Some(pb::SlaConditions {
                    priorities: vec![pb::Priority::Urgent as i32],
                    ..Default::default()
                }),
                first_response: Some(prost_types::Duration {
                    seconds: 2 * 3600,
                    nanos: 0,
                }),
                calendar_id: calendar.id.clone(),
                warning: Some(pb::sla_policy::Warning::WarningLead(
                    prost_types::Duration {
                        seconds: 600,
                        nanos: 0,
                    },
                )),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();

    let mut tickets = app.tickets();
    let urgent = create(
        &mut tickets,
        pb::CreateTicketRequest {
            priority: pb::Priority::Urgent as i32,
            ..new_ticket("Payroll stuck")
        },
    )
    .await;
    let first = clock(&urgent, pb::SlaMetric::FirstResponse);
    assert_eq!(first.policy_id, policy.id);
    assert!(
        urgent
            .sla_clocks
            .iter()
            .all(|c| c.metric() != pb::SlaMetric::Resolution),
        "the policy sets no resolution target"
    );
    // The due time is two business hours on the Berlin calendar from creation.
    let weekly: Vec<(String, Vec<(String, String)>)> = ["MON", "TUE", "WED", "THU", "FRI"]
        .iter()
        .map(|d| {
            (
                d.to_string(),
                vec![
                    ("08:30".into(), "12:30".into()),
                    ("13:30".into(), "17:00".into()),
                ],
            )
        })
        .collect();
    let cal = ticketd::domain::calendar::BusinessCalendar::parse(
        uuid::Uuid::nil(),
        "check",
        "Europe/Berlin",
        &weekly,
        ["2026-12-24".parse().unwrap(), "2026-12-25".parse().unwrap()].into(),
        [(1, 1)].into(),
    )
    .unwrap();
    let created = whole_second(time(urgent.created_at.as_ref().unwrap()));
    assert_eq!(
        Some(time(first.due_at.as_ref().unwrap())),
        cal.add(created, 7200)
    );

    // Opening round the clock keeps the time used and moves the due time.
    admin
        .update_calendar(pb::UpdateCalendarRequest {
            calendar: Some(pb::Calendar {
                id: calendar.id.clone(),
                name: "Berlin office".into(),
                time_zone: "Europe/Berlin".into(),
                weekly: ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
                    .iter()
                    .map(|d| pb::DayHours {
                        day: d.to_string(),
                        intervals: vec![pb::TimeInterval {
                            start: "00:00".into(),
                            end: "24:00".into(),
                        }],
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let moved = clock(
        &get(&mut tickets, &urgent.id).await,
        pb::SlaMetric::FirstResponse,
    );
    let due = time(moved.due_at.as_ref().unwrap());
    let remaining = chrono::Duration::seconds(moved.remaining.unwrap().seconds);
    assert_eq!(
        moved.used.unwrap().seconds + moved.remaining.unwrap().seconds,
        7200
    );
    assert!(
        ((due - remaining) - Utc::now()).num_seconds().abs() <= 5,
        "due = now + remaining on the 24/7 hours"
    );

    // A MEDIUM ticket matches no policy and keeps the defaults.
    let medium = create(&mut tickets, new_ticket("Later")).await;
    assert_eq!(clock(&medium, pb::SlaMetric::FirstResponse).policy_id, "");

    let in_use = admin
        .delete_calendar(pb::DeleteCalendarRequest {
            id: calendar.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(in_use.code(), Code::FailedPrecondition);
    let bad = admin
        .create_calendar(pb::CreateCalendarRequest {
            calendar: Some(pb::Calendar {
                name: "Mars".into(),
                time_zone: "Mars/Olympus".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let no_target = admin
        .create_sla_policy(pb::CreateSlaPolicyRequest {
            policy: Some(pb::SlaPolicy {
                name: "empty".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(
        crate::harness::violated_fields(&no_target),
        vec!["policy.targets"]
    );
}

/// Two replicas race to announce the same breach: it is announced once.
pub async fn two_replicas_fire_each_breach_once(backend: Backend) {
    let database = TestDatabase::create(&backend).await;
    let settings = settings_for(&database);
    let a = start(settings.clone(), database).await;
    let b = crate::harness::start_replica(settings).await;
    fast_policy(&mut a.admin(), 2, 3600, 50).await;
    let mut tickets = a.tickets();
    let mut alerts = watch(&mut tickets, "event_type = sla_breached", 0).await;
    for i in 0..5 {
        let client = if i % 2 == 0 { &a } else { &b };
        create(&mut client.tickets(), new_ticket(&format!("Race {i}"))).await;
    }
    let mut seen = std::collections::HashSet::new();
    while let Some(event) = next_event(&mut alerts, Duration::from_secs(8)).await {
        assert!(
            seen.insert(event.ticket_id.clone()),
            "breach announced twice for {}",
            event.ticket_id
        );
        if seen.len() == 5 {
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    assert!(
        next_event(&mut alerts, Duration::from_secs(2))
            .await
            .is_none()
    );
}

pub async fn next_response_restarts_per_customer_message_and_merges_stop_clocks(backend: Backend) {
    let app = spawn_app(backend).await;
    app.admin()
        .create_sla_policy(pb::CreateSlaPolicyRequest {
            policy: Some(pb::SlaPolicy {
                name: "chat".into(),
                first_response: Some(prost_types::Duration {
                    seconds: 600,
                    nanos: 0,
                }),
                next_response: Some(prost_types::Duration {
                    seconds: 300,
                    nanos: 0,
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut escalation = app.escalation();
    let (ticket, _) =
        crate::bridge::escalate(&mut escalation, crate::bridge::escalation("conv-sla", 2)).await;
    assert!(
        ticket
            .sla_clocks
            .iter()
            .all(|c| c.metric() != pb::SlaMetric::NextResponse)
    );

    let message = escalation
        .post_customer_message(crate::bridge::customer_message(
            "conv-sla", "Hello?", "sla-1",
        ))
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    let next = clock(&message, pb::SlaMetric::NextResponse);
    assert_eq!(
        (next.state(), next.target.unwrap().seconds),
        (pb::SlaClockState::Running, 300)
    );

    let mut tickets = app.tickets();
    let replied = tickets
        .add_reply(pb::AddReplyRequest {
            ticket_id: ticket.id.clone(),
            body: "Hi!".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(
        clock(&replied, pb::SlaMetric::NextResponse).state(),
        pb::SlaClockState::Met
    );
    assert_eq!(
        clock(&replied, pb::SlaMetric::FirstResponse).state(),
        pb::SlaClockState::Met
    );

    let again = escalation
        .post_customer_message(crate::bridge::customer_message(
            "conv-sla",
            "One more thing",
            "sla-2",
        ))
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(
        clock(&again, pb::SlaMetric::NextResponse).state(),
        pb::SlaClockState::Running,
        "a new cycle"
    );

    // Merged away: the source's clocks stop where they are; the target keeps its own.
    let target = create(&mut tickets, new_ticket("Main ticket")).await;
    tickets
        .merge_tickets(pb::MergeTicketsRequest {
            target_ticket_id: target.id.clone(),
            source_ticket_ids: vec![ticket.id.clone()],
            request_id: String::new(),
        })
        .await
        .unwrap();
    let merged = get(&mut tickets, &ticket.id).await;
    assert!(
        merged
            .sla_clocks
            .iter()
            .all(|c| c.state() != pb::SlaClockState::Running),
        "{:?}",
        merged.sla_clocks
    );
    assert_eq!(
        clock(
            &get(&mut tickets, &target.id).await,
            pb::SlaMetric::FirstResponse
        )
        .state(),
        pb::SlaClockState::Running
    );
}
