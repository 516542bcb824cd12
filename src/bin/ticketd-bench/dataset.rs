//! Views, search and reports on a year of tickets: builds the data set of
//! `bench/dataset_postgres.sql` (queues, agents and a calendar through the API, the rest in
//! the database), then times the console's and the manager's calls against it, and
//! CreateTicket beside an empty database.

use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::Connection;
use ticketd::grpc::pb;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::*;

/// Calls per query measured (after a few to warm caches).
const RUNS: usize = 40;

type Reports = pb::report_service_client::ReportServiceClient<InterceptedService<Channel, Bearer>>;

fn bearer(secret: &str) -> Bearer {
    Bearer(format!("Bearer {secret}").parse().unwrap())
}

/// Times `call` [`RUNS`] times one after another: (p50, p99) in milliseconds.
async fn timed<F, Fut>(mut call: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..3 {
        call().await;
    }
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        call().await;
        samples.push(started.elapsed());
    }
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

fn row(scenario: String, (p50, p99): (f64, f64), target: &str) -> Row {
    Row {
        scenario,
        value: format!("p50 {p50:.1} ms, p99 {p99:.1} ms"),
        baseline: "-".into(),
        ratio: "-".into(),
        target: target.into(),
    }
}

/// Queues, agents and a business calendar, made as an admin would.
async fn administer(server: &Server) -> (Vec<String>, Vec<String>, String) {
    let mut admin = pb::admin_service_client::AdminServiceClient::with_interceptor(
        server.channel.clone(),
        bearer(&server.secret),
    );
    let mut queues = Vec::new();
    for q in 0..10 {
        let queue = admin
            .create_queue(pb::CreateQueueRequest {
                queue: Some(pb::Queue {
                    name: format!("Queue {q}"),
                    tier: 1,
                    strategy: pb::AssignmentStrategy::Manual as i32,
                    ..Default::default()
                }),
            })
            .await
            .expect("create queue");
        queues.push(queue.into_inner().queue.unwrap().id);
    }
    let mut agents = Vec::new();
    for a in 0..50 {
        let agent = admin
            .create_agent(pb::CreateAgentRequest {
                agent: Some(pb::Agent {
                    name: format!("Agent {a}"),
                    email: format!("agent{a}@example.com"),
                    tier: 1,
                    capacity: 1000,
                    ..Default::default()
                }),
            })
            .await
            .expect("create agent");
        agents.push(agent.into_inner().agent.unwrap().id);
    }
    let calendar = admin
        .create_calendar(pb::CreateCalendarRequest {
            calendar: Some(pb::Calendar {
                name: "Office".into(),
                time_zone: "Europe/Berlin".into(),
                weekly: ["MON", "TUE", "WED", "THU", "FRI"]
                    .iter()
                    .map(|d| pb::DayHours {
                        day: d.to_string(),
                        intervals: vec![pb::TimeInterval {
                            start: "09:00".into(),
                            end: "17:00".into(),
                        }],
                    })
                    .collect(),
                ..Default::default()
            }),
        })
        .await
        .expect("create calendar")
        .into_inner()
        .calendar
        .unwrap()
        .id;
    (queues, agents, calendar)
}

async fn agent_key(server: &Server, agent_id: &str) -> String {
    let mut admin = pb::admin_service_client::AdminServiceClient::with_interceptor(
        server.channel.clone(),
        bearer(&server.secret),
    );
    admin
        .create_api_key(pb::CreateApiKeyRequest {
            name: "console".into(),
            role: pb::Role::Agent as i32,
            agent_id: agent_id.into(),
            channels: Vec::new(),
            sources: Vec::new(),
        })
        .await
        .expect("agent key")
        .into_inner()
        .secret
}

fn uuid_array(ids: &[String]) -> String {
    let quoted: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
    format!("ARRAY[{}]::uuid[]", quoted.join(", "))
}

/// The data set's rows, timings and CreateTicket beside an empty database.
pub(crate) async fn dataset_costs(args: &Args) -> Vec<Row> {
    let mut rows = Vec::new();
    // CreateTicket on an empty database first: the baseline.
    let (empty_name, empty_url) = fresh_database(args).await;
    let empty = start(&empty_url).await;
    create_throughput(&empty, args.clients, 2, None).await;
    let (empty_rate, _) = create_throughput(&empty, args.clients, args.seconds, None).await;
    // What the search and report indexes cost a create: the same load without them.
    {
        let mut db = sqlx::PgConnection::connect(&empty_url)
            .await
            .expect("connect");
        sqlx::raw_sql(
            "DROP INDEX ticket_search_doc_idx, ticket_search_number_idx, tickets_resolved_idx, \
             tickets_first_response_idx, tickets_rated_idx, sla_clocks_settled_idx, \
             sla_clocks_breached_idx, time_entries_created_idx",
        )
        .execute(&mut db)
        .await
        .expect("drop the indexes");
    }
    let (bare_rate, _) = create_throughput(&empty, args.clients, args.seconds, None).await;
    rows.push(Row {
        scenario: format!(
            "CreateTicket, {} clients, search and report indexes",
            args.clients
        ),
        value: format!("{empty_rate:.0}/s"),
        baseline: format!("{bare_rate:.0}/s without them"),
        ratio: format!("{:.2}x", empty_rate / bare_rate),
        target: "report".into(),
    });
    let _ = empty.app_stop.send(());
    drop_database(args, &empty_name).await;

    let (name, url) = fresh_database(args).await;
    let server = start(&url).await;
    let (queues, agents, calendar) = administer(&server).await;
    let started = Instant::now();
    let script = include_str!("../../../bench/dataset_postgres.sql")
        .replace("{tickets}", &args.dataset_tickets.to_string())
        .replace("{queues}", &uuid_array(&queues))
        .replace("{agents}", &uuid_array(&agents));
    {
        let mut db = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::raw_sql(sqlx::AssertSqlSafe(script))
            .execute(&mut db)
            .await
            .expect("build the data set");
        sqlx::raw_sql("VACUUM ANALYZE")
            .execute(&mut db)
            .await
            .expect("analyze");
    }
    let built = started.elapsed();
    let counts: (i64, i64, i64) = {
        let mut db = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM tickets), (SELECT count(*) FROM ticket_events), \
             (SELECT pg_database_size(current_database()) / 1048576)",
        )
        .fetch_one(&mut db)
        .await
        .unwrap()
    };
    rows.push(Row {
        scenario: "data set".into(),
        value: format!(
            "{} tickets, {} events, {} MiB, built in {:.0} s",
            counts.0,
            counts.1,
            counts.2,
            built.as_secs_f64()
        ),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "1,000,000 tickets, ~8 events each".into(),
    });

    let console = agent_key(&server, &agents[7]).await;
    rows.extend(time_queries(&server, &console, &queues, &calendar, "").await);
    // CreateTicket with the data set present, against the empty database above.
    create_throughput(&server, args.clients, 2, None).await;
    let (rate, _) = create_throughput(&server, args.clients, args.seconds, None).await;
    rows.push(Row {
        scenario: format!("CreateTicket, {} clients, with the data set", args.clients),
        value: format!("{rate:.0}/s"),
        baseline: format!("{empty_rate:.0}/s on an empty database"),
        ratio: format!("{:.2}x", rate / empty_rate),
        target: ">= 0.9x".into(),
    });
    let _ = server.app_stop.send(());
    tokio::time::sleep(Duration::from_millis(200)).await;
    rows.extend(sqlite_figures(&url, &calendar, &queues, &agents[7]).await);
    if !args.keep_dataset {
        drop_database(args, &name).await;
    } else {
        println!("data set kept in {url}");
    }
    rows
}

/// Times the console's and the manager's calls; `label` follows each scenario's name.
async fn time_queries(
    server: &Server,
    console: &str,
    queues: &[String],
    calendar: &str,
    label: &str,
) -> Vec<Row> {
    let mut rows = Vec::new();
    let tickets = pb::ticket_service_client::TicketServiceClient::with_interceptor(
        server.channel.clone(),
        bearer(console),
    );
    for view in ["my-tickets", "unassigned", "overdue", "all-open"] {
        let client = tickets.clone();
        let times = timed(|| {
            let mut c = client.clone();
            async move {
                c.list_tickets(pb::ListTicketsRequest {
                    view_id: view.into(),
                    page_size: 50,
                    ..Default::default()
                })
                .await
                .expect("list a view");
            }
        })
        .await;
        rows.push(row(
            format!("ListTickets view {view}, 50{label}"),
            times,
            "p99 <= 20 ms",
        ));
    }
    let filters = [
        "status = OPEN".to_owned(),
        "priority >= HIGH AND status != CLOSED".to_owned(),
        "tags:billing AND status = RESOLVED".to_owned(),
        format!("queue_id = \"{}\" AND status = WAITING", queues[3]),
        "created_at > \"now-7d\" AND channel = CHAT".to_owned(),
    ];
    for filter in &filters {
        let client = tickets.clone();
        let times = timed(|| {
            let mut c = client.clone();
            let filter = filter.clone();
            async move {
                c.list_tickets(pb::ListTicketsRequest {
                    filter,
                    page_size: 50,
                    ..Default::default()
                })
                .await
                .expect("list a filter");
            }
        })
        .await;
        rows.push(row(
            format!("ListTickets `{filter}`, 50{label}"),
            times,
            "p99 <= 20 ms",
        ));
    }
    for view in ["my-tickets", "unassigned", "overdue", "all-open"] {
        let client = tickets.clone();
        let times = timed(|| {
            let mut c = client.clone();
            async move {
                c.count_tickets(pb::CountTicketsRequest {
                    view_id: view.into(),
                    ..Default::default()
                })
                .await
                .expect("count a view");
            }
        })
        .await;
        rows.push(row(
            format!("CountTickets view {view}{label}"),
            times,
            "p99 <= 50 ms",
        ));
    }
    for (word, kind) in [("refund", "common"), ("w4999", "rare")] {
        let client = tickets.clone();
        let times = timed(|| {
            let mut c = client.clone();
            async move {
                c.search_tickets(pb::SearchTicketsRequest {
                    query: word.into(),
                    ..Default::default()
                })
                .await
                .expect("search");
            }
        })
        .await;
        rows.push(row(
            format!("SearchTickets a {kind} word ({word}), 20{label}"),
            times,
            "p99 <= 100 ms",
        ));
    }

    let reports: Reports = pb::report_service_client::ReportServiceClient::with_interceptor(
        server.channel.clone(),
        bearer(console),
    );
    let now = ticketd::clock::Clock::system().now();
    let period = |days: i64| {
        (
            Some(prost_types::Timestamp {
                seconds: (now - chrono::Duration::days(days)).timestamp(),
                nanos: 0,
            }),
            Some(prost_types::Timestamp {
                seconds: now.timestamp(),
                nanos: 0,
            }),
        )
    };
    let (start_90, end) = period(90);
    let report_cases = [
        (
            "RunReport created per day by queue, 90 days",
            pb::RunReportRequest {
                metric: pb::ReportMetric::TicketsCreated as i32,
                interval: pb::ReportInterval::Day as i32,
                group_by: pb::ReportDimension::Queue as i32,
                ..Default::default()
            },
            "<= 300 ms",
        ),
        (
            "RunReport resolved per day by queue, 90 days",
            pb::RunReportRequest {
                metric: pb::ReportMetric::TicketsResolved as i32,
                interval: pb::ReportInterval::Day as i32,
                group_by: pb::ReportDimension::Queue as i32,
                ..Default::default()
            },
            "<= 300 ms",
        ),
        (
            "RunReport first response (median, p90) per week, business hours, 90 days",
            pb::RunReportRequest {
                metric: pb::ReportMetric::FirstResponseTime as i32,
                interval: pb::ReportInterval::Week as i32,
                calendar_id: calendar.to_owned(),
                ..Default::default()
            },
            "<= 1 s",
        ),
        (
            "RunReport resolution time (median, p90) per week, business hours, 90 days",
            pb::RunReportRequest {
                metric: pb::ReportMetric::ResolutionTime as i32,
                interval: pb::ReportInterval::Week as i32,
                calendar_id: calendar.to_owned(),
                ..Default::default()
            },
            "<= 1 s",
        ),
    ];
    for (scenario, request, target) in report_cases {
        let request = pb::RunReportRequest {
            start_time: start_90,
            end_time: end,
            time_zone: "Europe/Berlin".into(),
            ..request
        };
        let client = reports.clone();
        let times = timed(|| {
            let mut c = client.clone();
            let request = request.clone();
            async move {
                c.run_report(request).await.expect("run a report");
            }
        })
        .await;
        rows.push(row(format!("{scenario}{label}"), times, target));
    }

    rows
}

/// Every tenth ticket of the PostgreSQL data set (with its contacts, tags, events, clocks
/// and search text, and every queue, agent and calendar), copied into a fresh SQLite
/// database under a ticketd, and the same calls timed there.
async fn sqlite_figures(pg_url: &str, calendar: &str, queues: &[String], agent: &str) -> Vec<Row> {
    let dir = std::env::temp_dir().join(format!("ticketd-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("dataset.db").display());
    let server = start(&url).await;
    let started = Instant::now();
    let mut pg = sqlx::PgConnection::connect(pg_url).await.expect("connect");
    let mut lite = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("open SQLite");
    let sampled = "ticket_id IN (SELECT id FROM tickets WHERE number % 10 = 0)";
    let mut copied = 0;
    for (table, filter) in [
        ("queues", "true"),
        ("agents", "true"),
        ("calendars", "true"),
        ("contacts", "true"),
        ("tickets", "number % 10 = 0"),
        ("ticket_tags", sampled),
        ("ticket_events", "ticket_number % 10 = 0"),
        ("sla_clocks", sampled),
    ] {
        let n = copy_table(&mut pg, &mut lite, table, filter).await;
        if table == "tickets" {
            copied = n;
        }
    }
    copy_search(&mut pg, &mut lite).await;
    sqlx::raw_sql("ANALYZE")
        .execute(&mut lite)
        .await
        .expect("analyze");
    drop(lite);
    let built = started.elapsed();
    let mut rows = vec![Row {
        scenario: "data set, SQLite".into(),
        value: format!(
            "{copied} tickets (every tenth), copied in {:.0} s",
            built.as_secs_f64()
        ),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "100,000 tickets".into(),
    }];
    let console = agent_key(&server, agent).await;
    rows.extend(time_queries(&server, &console, queues, calendar, ", SQLite").await);
    let _ = server.app_stop.send(());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = std::fs::remove_dir_all(&dir);
    rows
}

/// Copies the rows of `table` that `filter` selects from PostgreSQL into the same table
/// in SQLite, by column name; returns how many.
async fn copy_table(
    pg: &mut sqlx::PgConnection,
    lite: &mut sqlx::SqliteConnection,
    table: &str,
    filter: &str,
) -> u64 {
    use sqlx::{Column, Row as _, TypeInfo};
    use tokio_stream::StreamExt;
    let select = format!("SELECT * FROM {table} WHERE {filter}");
    let mut stream = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&mut *pg);
    let mut tx = sqlx::Connection::begin(&mut *lite).await.expect("begin");
    let mut batch: Vec<sqlx::postgres::PgRow> = Vec::new();
    let mut total = 0u64;
    loop {
        let next = stream.next().await.map(|r| r.expect("read a row"));
        let done = next.is_none();
        batch.extend(next);
        if batch.len() < 500 && !done {
            continue;
        }
        if let Some(first) = batch.first() {
            let columns: Vec<(String, String)> = first
                .columns()
                .iter()
                .map(|c| (c.name().to_owned(), c.type_info().name().to_owned()))
                .collect();
            let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
                "INSERT INTO {table} ({}) ",
                names.join(", ")
            ));
            insert.push_values(&batch, |mut b, row| {
                for (i, (_, ty)) in columns.iter().enumerate() {
                    match ty.as_str() {
                        "UUID" => b.push_bind(row.get::<Option<uuid::Uuid>, _>(i)),
                        "TEXT" => b.push_bind(row.get::<Option<String>, _>(i)),
                        "INT8" => b.push_bind(row.get::<Option<i64>, _>(i)),
                        "INT4" => b.push_bind(row.get::<Option<i32>, _>(i)),
                        "INT2" => b.push_bind(row.get::<Option<i16>, _>(i).map(i32::from)),
                        "BOOL" => b.push_bind(row.get::<Option<bool>, _>(i)),
                        "TIMESTAMPTZ" => {
                            b.push_bind(row.get::<Option<chrono::DateTime<Utc>>, _>(i))
                        }
                        "JSONB" | "JSON" => b.push_bind(
                            row.get::<Option<serde_json::Value>, _>(i)
                                .map(|v| v.to_string()),
                        ),
                        "BYTEA" => b.push_bind(row.get::<Option<Vec<u8>>, _>(i)),
                        other => panic!("cannot copy a {other} column of {table}"),
                    };
                }
            });
            insert
                .build()
                .execute(&mut *tx)
                .await
                .unwrap_or_else(|e| panic!("copy into {table}: {e}"));
            total += batch.len() as u64;
            batch.clear();
        }
        if done {
            break;
        }
    }
    tx.commit().await.expect("commit");
    total
}

/// The sampled tickets' search text, into SQLite's FTS5 table.
async fn copy_search(pg: &mut sqlx::PgConnection, lite: &mut sqlx::SqliteConnection) {
    let docs: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT s.number, t.subject, s.public_text, s.internal_text FROM ticket_search s \
         JOIN tickets t ON t.id = s.ticket_id WHERE s.number % 10 = 0",
    )
    .fetch_all(&mut *pg)
    .await
    .expect("read search text");
    let mut tx = sqlx::Connection::begin(&mut *lite).await.expect("begin");
    for chunk in docs.chunks(500) {
        let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO ticket_search (rowid, subject, public_text, internal_text) ",
        );
        insert.push_values(chunk, |mut b, (number, subject, public, internal)| {
            b.push_bind(number)
                .push_bind(subject)
                .push_bind(public)
                .push_bind(internal);
        });
        insert
            .build()
            .execute(&mut *tx)
            .await
            .expect("copy search text");
    }
    tx.commit().await.expect("commit");
}
