//! Automation's costs, each against a server on a database of its own without it: 20
//! event workflows that match no ticket, 20 that all match (each adding a tag), a timer
//! workflow arming a timer with every create, and the firing lag of timers coming due
//! while 100,000 others wait.

use std::time::{Duration, Instant};

use sqlx::Connection;
use ticketd::grpc::pb;
use ticketd::grpc::pb::automation_service_client::AutomationServiceClient;

use crate::*;

/// A fresh database on the `--postgres` server: (name, URL).
pub(crate) async fn fresh_database(args: &Args) -> (String, String) {
    let name = format!("ticketd_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&args.postgres)
        .await
        .expect("connect to --postgres");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create the bench database");
    let base = args
        .postgres
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(args.postgres.clone());
    (name.clone(), format!("{base}/{name}"))
}

pub(crate) async fn drop_database(args: &Args, name: &str) {
    if let Ok(mut c) = sqlx::PgConnection::connect(&args.postgres).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut c)
        .await;
    }
}

fn automation(
    server: &Server,
) -> AutomationServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
> {
    AutomationServiceClient::with_interceptor(
        server.channel.clone(),
        Bearer(format!("Bearer {}", server.secret).parse().unwrap()),
    )
}

fn add_tag(tag: &str) -> pb::WorkflowAction {
    pb::WorkflowAction {
        action: Some(pb::workflow_action::Action::AddTags(pb::TagsAction {
            tags: vec![tag.into()],
        })),
    }
}

async fn on_created(server: &Server, name: &str, condition: &str, tag: &str) {
    automation(server)
        .create_workflow(pb::CreateWorkflowRequest {
            workflow: Some(pb::Workflow {
                name: name.into(),
                enabled: true,
                trigger: Some(pb::WorkflowTrigger {
                    kind: Some(pb::workflow_trigger::Kind::Event(pb::EventTrigger {
                        r#type: pb::WorkflowEvent::TicketCreated as i32,
                        ..Default::default()
                    })),
                }),
                condition: condition.into(),
                actions: vec![add_tag(tag)],
                ..Default::default()
            }),
        })
        .await
        .expect("create workflow");
}

async fn timer_since_created(server: &Server, name: &str, after_seconds: i64, tag: &str) -> String {
    automation(server)
        .create_workflow(pb::CreateWorkflowRequest {
            workflow: Some(pb::Workflow {
                name: name.into(),
                enabled: true,
                trigger: Some(pb::WorkflowTrigger {
                    kind: Some(pb::workflow_trigger::Kind::Timer(pb::TimerTrigger {
                        kind: pb::WorkflowTimerKind::SinceCreated as i32,
                        after: Some(prost_types::Duration {
                            seconds: after_seconds,
                            nanos: 0,
                        }),
                        ..Default::default()
                    })),
                }),
                actions: vec![add_tag(tag)],
                ..Default::default()
            }),
        })
        .await
        .expect("create timer workflow")
        .into_inner()
        .workflow
        .unwrap()
        .id
}

/// Waits until the processor has seen every event in the log (at most `limit`); returns
/// how long that took.
async fn drained(url: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    while started.elapsed() < limit {
        let behind: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM workflows w WHERE w.seen_through < \
             (SELECT COALESCE(MAX(position), 0) FROM ticket_events)",
        )
        .fetch_one(&mut c)
        .await
        .unwrap_or(0);
        if behind == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

async fn count(url: &str, sql: &str) -> i64 {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut c)
        .await
        .unwrap_or(0)
}

pub(crate) async fn workflow_costs(args: &Args) -> Vec<Row> {
    let mut rows = Vec::new();
    let (plain_name, plain_url) = fresh_database(args).await;
    let plain = start(&plain_url).await;

    // 20 workflows fired by every create whose condition no ticket passes.
    let (idle_name, idle_url) = fresh_database(args).await;
    let idle = start(&idle_url).await;
    for i in 0..20 {
        on_created(
            &idle,
            &format!("never {i}"),
            &format!("tag = \"never-{i}\""),
            "x",
        )
        .await;
    }
    let (with, without, low, high) = in_turns(&idle, &plain, args).await;
    rows.push(Row {
        scenario: "CreateTicket with 20 event workflows, none matching".into(),
        value: format!("{with:.0}/s"),
        baseline: format!("{without:.0}/s without workflows (runs {low:.0} to {high:.0})"),
        ratio: format!("{:.2}x", with / without),
        target: ">= 0.9x".into(),
    });
    let _ = idle.app_stop.send(());
    drop_database(args, &idle_name).await;

    // 20 workflows that all match, each adding a tag: the processor's backlog is drained
    // after each turn so that it never runs beside the baseline.
    let (busy_name, busy_url) = fresh_database(args).await;
    let busy = start(&busy_url).await;
    for i in 0..20 {
        on_created(&busy, &format!("tag {i}"), "", &format!("wf-{i}")).await;
    }
    let mut withs = Vec::new();
    let mut withouts = Vec::new();
    let mut drain = Duration::ZERO;
    withouts.push(
        create_throughput(&plain, args.clients, args.seconds, None)
            .await
            .0,
    );
    for _ in 0..2 {
        withs.push(
            create_throughput(&busy, args.clients, args.seconds, None)
                .await
                .0,
        );
        drain += drained(&busy_url, Duration::from_secs(300)).await;
        withouts.push(
            create_throughput(&plain, args.clients, args.seconds, None)
                .await
                .0,
        );
    }
    let runs = count(
        &busy_url,
        "SELECT COUNT(*) FROM ticket_events WHERE event_type = 'workflow_applied'",
    )
    .await;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (with, without) = (mean(&withs), mean(&withouts));
    let busy_seconds = 2.0 * args.seconds as f64 + drain.as_secs_f64();
    rows.push(Row {
        scenario: "CreateTicket with 20 event workflows, all matching (each adds a tag)".into(),
        value: format!(
            "{with:.0}/s; {runs} runs applied at {:.0}/s (backlog drained in {:.1} s)",
            runs as f64 / busy_seconds,
            drain.as_secs_f64()
        ),
        baseline: format!("{without:.0}/s without workflows"),
        ratio: format!("{:.2}x", with / without),
        target: ">= 0.6x".into(),
    });
    let _ = busy.app_stop.send(());
    drop_database(args, &busy_name).await;

    rows.extend(timer_costs(args, &plain).await);
    let _ = plain.app_stop.send(());
    drop_database(args, &plain_name).await;
    rows
}

async fn timer_costs(args: &Args, plain: &Server) -> Vec<Row> {
    let mut rows = Vec::new();
    let (name, url) = fresh_database(args).await;
    let timed = start(&url).await;
    // A day away: every create arms a timer that does not fire during the bench.
    let mut far = vec![timer_since_created(&timed, "a day after", 86_400, "late").await];
    let (with, without, low, high) = in_turns(&timed, plain, args).await;
    rows.push(Row {
        scenario: "CreateTicket arming a workflow timer".into(),
        value: format!("{with:.0}/s"),
        baseline: format!("{without:.0}/s without timers (runs {low:.0} to {high:.0})"),
        ratio: format!("{:.2}x", with / without),
        target: ">= 0.9x".into(),
    });

    // Up to 100,000 armed timers: more far-away workflows on the tickets just created.
    const ARMED: i64 = 100_000;
    let tickets = count(&url, "SELECT COUNT(*) FROM tickets").await.max(1);
    for i in 0..(ARMED / tickets + 1) {
        far.push(timer_since_created(&timed, &format!("a day after {i}"), 86_400, "late").await);
    }
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    let _ = sqlx::query(
        "INSERT INTO workflow_timers (workflow_id, ticket_id, due_at, started_at) \
         SELECT w.id, t.id, now() + interval '1 day', now() FROM tickets t CROSS JOIN workflows w \
         ON CONFLICT DO NOTHING",
    )
    .execute(&mut c)
    .await;
    let _ = sqlx::query(
        "DELETE FROM workflow_timers WHERE ctid IN (SELECT ctid FROM workflow_timers \
         OFFSET $1)",
    )
    .bind(ARMED)
    .execute(&mut c)
    .await;
    let armed = count(&url, "SELECT COUNT(*) FROM workflow_timers").await;

    // Timers coming due at 200/s, 5 s after their tickets were created.
    let firing = timer_since_created(&timed, "five seconds after", 5, "due").await;
    let client = timed.client();
    let (rate, _) = load(4, args.seconds, Some(50.0), move |i| {
        let mut c = client.clone();
        async move { c.create_ticket(ticket(i)).await.is_ok() }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let lags: Vec<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM e.created_at - (t.created_at + interval '5 seconds'))::float8 \
         FROM ticket_events e JOIN tickets t ON t.id = e.ticket_id \
         WHERE e.event_type = 'workflow_applied' AND e.actor_id = $1 ORDER BY 1",
    )
    .bind(uuid::Uuid::parse_str(&firing).unwrap_or_default())
    .fetch_all(&mut c)
    .await
    .unwrap_or_default();
    let pick = |p: f64| {
        lags.get(((lags.len() as f64 * p) as usize).min(lags.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    rows.push(Row {
        scenario: format!("workflow timers firing at {rate:.0}/s among {armed} armed"),
        value: format!(
            "lag after the due time: p50 {:.2} s, p99 {:.2} s ({} fired)",
            pick(0.5),
            pick(0.99),
            lags.len()
        ),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "p99 <= 1 s".into(),
    });
    let _ = timed.app_stop.send(());
    drop(far);
    drop_database(args, &name).await;
    rows
}
