//! ReportService: volume, backlog, response and resolution times (wall-clock and business
//! hours), SLA compliance, CSAT and time logged; buckets in a time zone, groups, filters
//! and the CSV export. Times come from the test's clock.

use chrono::{DateTime, Duration, TimeZone, Utc};
use ticketd::grpc::pb;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::bridge::{escalate, escalation};
use crate::harness::{
    Backend, TestApp, create, new_ticket, set_status, spawn_app_with_manual_clock, violated_fields,
};
use crate::routing::{AgentSpec, agent, queue};

fn ts(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

/// A report over `[start, end)`.
fn report(
    metric: pb::ReportMetric,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    interval: pb::ReportInterval,
) -> pb::RunReportRequest {
    pb::RunReportRequest {
        metric: metric as i32,
        start_time: Some(ts(start)),
        end_time: Some(ts(end)),
        interval: interval as i32,
        ..Default::default()
    }
}

async fn run(app: &TestApp, request: pb::RunReportRequest) -> Vec<pb::ReportRow> {
    app.reports()
        .run_report(request)
        .await
        .unwrap_or_else(|e| panic!("report: {e}"))
        .into_inner()
        .rows
}

/// `(bucket start, group, count)` of each row.
fn counts(rows: &[pb::ReportRow]) -> Vec<(i64, String, i64)> {
    rows.iter()
        .map(|r| {
            (
                r.bucket_start.as_ref().unwrap().seconds,
                r.group.clone(),
                r.count,
            )
        })
        .collect()
}

async fn reply(app: &TestApp, ticket_id: &str) {
    app.tickets()
        .add_reply(pb::AddReplyRequest {
            ticket_id: ticket_id.into(),
            body: "On it.".into(),
            channel: pb::Channel::Email as i32,
            ..Default::default()
        })
        .await
        .unwrap();
}

pub async fn a_manager_reports_volume_backlog_and_response_times(backend: Backend) {
    let app = spawn_app_with_manual_clock(backend).await;
    let mut tickets = app.tickets();
    let calendar = app.office_calendar().await;
    let ticket = |subject: &str, priority: pb::Priority, tag: &str| pb::CreateTicketRequest {
        priority: priority as i32,
        tags: vec![tag.into()],
        ..new_ticket(subject)
    };
    // Monday 2 November 2026, 09:00 UTC (10:00 in Berlin).
    app.clock.set(utc(2026, 11, 2, 9, 0));
    let t1 = create(&mut tickets, ticket("T1", pb::Priority::High, "billing")).await;
    app.clock.advance(Duration::hours(2));
    reply(&app, &t1.id).await;
    let t2 = create(&mut tickets, ticket("T2", pb::Priority::Low, "bug")).await;
    // 23:30 UTC is already Tuesday in Berlin.
    app.clock.set(utc(2026, 11, 2, 23, 30));
    create(&mut tickets, ticket("T3", pb::Priority::High, "billing")).await;
    app.clock.set(utc(2026, 11, 3, 10, 0));
    set_status(&mut tickets, &t1.id, pb::TicketStatus::Resolved)
        .await
        .unwrap();
    reply(&app, &t2.id).await;
    // T2 is resolved on Wednesday and reopened an hour later: not resolved any more.
    app.clock.set(utc(2026, 11, 4, 12, 0));
    set_status(&mut tickets, &t2.id, pb::TicketStatus::Resolved)
        .await
        .unwrap();
    app.clock.advance(Duration::hours(1));
    set_status(&mut tickets, &t2.id, pb::TicketStatus::Open)
        .await
        .unwrap();
    app.clock.set(utc(2026, 11, 6, 12, 0));

    // Monday to Wednesday in Berlin (UTC+1).
    let (start, end) = (utc(2026, 11, 1, 23, 0), utc(2026, 11, 4, 23, 0));
    let days: Vec<i64> = (0..3)
        .map(|d| (start + Duration::days(d)).timestamp())
        .collect();
    let in_berlin = |metric| pb::RunReportRequest {
        time_zone: "Europe/Berlin".into(),
        ..report(metric, start, end, pb::ReportInterval::Day)
    };
    let created = run(&app, in_berlin(pb::ReportMetric::TicketsCreated)).await;
    assert_eq!(
        counts(&created),
        vec![
            (days[0], String::new(), 2),
            (days[1], String::new(), 1),
            (days[2], String::new(), 0),
        ]
    );
    let by_priority = run(
        &app,
        pb::RunReportRequest {
            group_by: pb::ReportDimension::Priority as i32,
            ..in_berlin(pb::ReportMetric::TicketsCreated)
        },
    )
    .await;
    assert_eq!(
        counts(&by_priority),
        vec![
            (days[0], "HIGH".into(), 1),
            (days[0], "LOW".into(), 1),
            (days[1], "HIGH".into(), 1),
        ]
    );
    let billing = run(
        &app,
        pb::RunReportRequest {
            group_by: pb::ReportDimension::Tag as i32,
            filter: "tag = \"billing\"".into(),
            ..in_berlin(pb::ReportMetric::TicketsCreated)
        },
    )
    .await;
    assert_eq!(
        counts(&billing),
        vec![
            (days[0], "billing".into(), 1),
            (days[1], "billing".into(), 1)
        ]
    );
    // A period from mid-morning: the tickets of its first hours count.
    let from_mid_morning = run(
        &app,
        report(
            pb::ReportMetric::TicketsCreated,
            utc(2026, 11, 2, 8, 30),
            end,
            pb::ReportInterval::None,
        ),
    )
    .await;
    assert_eq!(
        counts(&from_mid_morning),
        vec![(utc(2026, 11, 2, 8, 30).timestamp(), String::new(), 3)]
    );
    let resolved = run(&app, in_berlin(pb::ReportMetric::TicketsResolved)).await;
    assert_eq!(
        resolved.iter().map(|r| r.count).collect::<Vec<_>>(),
        vec![0, 1, 0],
        "T1 on Tuesday; T2 was reopened"
    );
    let backlog = run(&app, in_berlin(pb::ReportMetric::Backlog)).await;
    assert_eq!(
        backlog.iter().map(|r| r.count).collect::<Vec<_>>(),
        vec![2, 2, 2],
        "open at each day's end"
    );

    // First response: T1 after 2 hours, T2 after 23 (7 of them business hours).
    let whole = |metric| report(metric, start, end, pb::ReportInterval::None);
    let first = run(&app, whole(pb::ReportMetric::FirstResponseTime)).await;
    assert_eq!(first.len(), 1);
    let f = &first[0];
    assert_eq!(
        (f.count, f.mean, f.median, f.p90),
        (2, 45_000.0, 7_200.0, 82_800.0)
    );
    let business = run(
        &app,
        pb::RunReportRequest {
            calendar_id: calendar.clone(),
            ..whole(pb::ReportMetric::FirstResponseTime)
        },
    )
    .await;
    assert_eq!((business[0].median, business[0].p90), (7_200.0, 25_200.0));
    // Resolution: T1 after 25 hours, 9 of them business hours.
    let resolution = run(
        &app,
        pb::RunReportRequest {
            calendar_id: calendar,
            ..whole(pb::ReportMetric::ResolutionTime)
        },
    )
    .await;
    assert_eq!((resolution[0].count, resolution[0].mean), (1, 32_400.0));

    // The same rows as CSV, times in the report's zone.
    let asked = in_berlin(pb::ReportMetric::TicketsCreated);
    let mut stream = app
        .reports()
        .export_report(pb::ExportReportRequest {
            metric: asked.metric,
            start_time: asked.start_time,
            end_time: asked.end_time,
            time_zone: asked.time_zone,
            interval: asked.interval,
            group_by: asked.group_by,
            filter: asked.filter,
            calendar_id: asked.calendar_id,
        })
        .await
        .unwrap()
        .into_inner();
    let mut csv = Vec::new();
    while let Some(chunk) = stream.next().await {
        csv.extend(chunk.unwrap().chunk);
    }
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines,
        vec![
            "bucket_start,group,group_label,series,count,value,mean,median,p90",
            "2026-11-02T00:00:00+01:00,,,,2,2,0,0,0",
            "2026-11-03T00:00:00+01:00,,,,1,1,0,0,0",
            "2026-11-04T00:00:00+01:00,,,,0,0,0,0,0",
        ]
    );
}

pub async fn reports_measure_sla_compliance_csat_and_time_logged(backend: Backend) {
    let app = spawn_app_with_manual_clock(backend).await;
    app.clock.set(utc(2026, 11, 2, 9, 0));
    let mut admin = app.admin();
    admin
        .create_sla_policy(pb::CreateSlaPolicyRequest {
            policy: Some(pb::SlaPolicy {
                name: "one hour".into(),
                first_response: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                resolution: Some(prost_types::Duration {
                    seconds: 30 * 86_400,
                    nanos: 0,
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let billing = queue(&mut admin, "Billing", 1, pb::AssignmentStrategy::Manual).await;
    let ada = agent(
        &mut admin,
        AgentSpec {
            name: "Ada",
            ..AgentSpec::default()
        },
    )
    .await;
    let mut tickets = app.tickets();
    let on_time = create(
        &mut tickets,
        pb::CreateTicketRequest {
            queue_id: billing.id.clone(),
            ..new_ticket("Answered in time")
        },
    )
    .await;
    let late = create(&mut tickets, new_ticket("Answered late")).await;
    app.clock.advance(Duration::minutes(30));
    reply(&app, &on_time.id).await;
    app.clock.advance(Duration::hours(2));
    reply(&app, &late.id).await;
    for (ticket, minutes) in [(&on_time, 30), (&late, 45), (&late, 15)] {
        tickets
            .log_time(pb::LogTimeRequest {
                ticket_id: ticket.id.clone(),
                agent_id: ada.id.clone(),
                duration: Some(prost_types::Duration {
                    seconds: minutes * 60,
                    nanos: 0,
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    // Two conversations rated by their customers: 5 and 2.
    let gateway = app.key(pb::Role::Gateway, None).await;
    for (conversation, score) in [("csat-1", 5), ("csat-2", 2)] {
        let (ticket, _) = escalate(&mut app.escalation(), escalation(conversation, 1)).await;
        set_status(&mut tickets, &ticket.id, pb::TicketStatus::Resolved)
            .await
            .unwrap();
        app.escalation_as(&gateway)
            .record_satisfaction(pb::RecordSatisfactionRequest {
                ticket_id: ticket.id.clone(),
                score,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    // Not long enough for the rated tickets' first-response clocks to fall due.
    app.clock.advance(Duration::minutes(30));

    let (start, end) = (utc(2026, 11, 2, 0, 0), utc(2026, 11, 3, 0, 0));
    let whole = |metric| report(metric, start, end, pb::ReportInterval::None);
    let sla = run(&app, whole(pb::ReportMetric::SlaCompliance)).await;
    let first: Vec<_> = sla
        .iter()
        .filter(|r| r.series == "FIRST_RESPONSE")
        .collect();
    assert_eq!(first.len(), 1, "{sla:?}");
    assert_eq!((first[0].count, first[0].value), (2, 50.0));

    let csat = run(&app, whole(pb::ReportMetric::Csat)).await;
    assert_eq!((csat[0].count, csat[0].value, csat[0].mean), (2, 50.0, 3.5));

    let logged = run(
        &app,
        pb::RunReportRequest {
            group_by: pb::ReportDimension::Assignee as i32,
            ..whole(pb::ReportMetric::TimeLogged)
        },
    )
    .await;
    assert_eq!(logged.len(), 1);
    assert_eq!(
        (
            logged[0].group.as_str(),
            logged[0].group_label.as_str(),
            logged[0].count,
            logged[0].value
        ),
        (ada.id.as_str(), "Ada", 3, 5_400.0)
    );

    let by_queue = run(
        &app,
        pb::RunReportRequest {
            group_by: pb::ReportDimension::Queue as i32,
            ..whole(pb::ReportMetric::TicketsCreated)
        },
    )
    .await;
    let labelled: Vec<(&str, i64)> = by_queue
        .iter()
        .map(|r| (r.group_label.as_str(), r.count))
        .collect();
    assert_eq!(labelled, vec![("", 3), ("Billing", 1)]);
}

pub async fn reports_are_checked(backend: Backend) {
    let app = spawn_app_with_manual_clock(backend).await;
    let now = app.clock.now();
    let week = report(
        pb::ReportMetric::TicketsCreated,
        now - Duration::days(7),
        now,
        pb::ReportInterval::Day,
    );
    let refused = |request: pb::RunReportRequest| {
        let mut reports = app.reports();
        async move { reports.run_report(request).await.unwrap_err() }
    };
    for (request, field) in [
        (
            pb::RunReportRequest {
                metric: 0,
                ..week.clone()
            },
            "metric",
        ),
        (
            pb::RunReportRequest {
                end_time: week.start_time,
                ..week.clone()
            },
            "end_time",
        ),
        (
            pb::RunReportRequest {
                start_time: Some(ts(now - Duration::days(3 * 365))),
                ..week.clone()
            },
            "end_time",
        ),
        (
            pb::RunReportRequest {
                time_zone: "Mars/Olympus".into(),
                ..week.clone()
            },
            "time_zone",
        ),
        (
            pb::RunReportRequest {
                filter: "status = SIDEWAYS".into(),
                ..week.clone()
            },
            "filter",
        ),
        (
            pb::RunReportRequest {
                calendar_id: uuid::Uuid::new_v4().to_string(),
                ..week.clone()
            },
            "calendar_id",
        ),
        (
            pb::RunReportRequest {
                start_time: None,
                ..week.clone()
            },
            "start_time",
        ),
        (
            pb::RunReportRequest {
                start_time: Some(ts(utc(1960, 1, 1, 0, 0))),
                ..week.clone()
            },
            "start_time",
        ),
    ] {
        let status = refused(request).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert_eq!(violated_fields(&status), vec![field.to_string()]);
    }
    let unknown_calendar = refused(pb::RunReportRequest {
        metric: pb::ReportMetric::ResolutionTime as i32,
        calendar_id: uuid::Uuid::new_v4().to_string(),
        ..week.clone()
    })
    .await;
    assert_eq!(unknown_calendar.code(), Code::NotFound);

    let bot = app.key(pb::Role::Bot, None).await;
    let denied = app.reports_as(&bot).run_report(week).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}
