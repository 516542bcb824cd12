//! Outbound webhooks against a real HTTP receiver: matching events arrive signed (Standard
//! Webhooks) and in log order; a failing receiver is retried with back-off until it
//! recovers or the retry window ends; a slow one delays nobody else; secrets rotate with
//! an overlap; nothing is lost while an endpoint is down or disabled.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ticketd::domain::hook::verify;
use ticketd::grpc::pb;
use tonic::Code;

use crate::harness::{
    Backend, TestApp, TestDatabase, create, manual_clock, new_ticket, set_status, settings_for,
    spawn_app, spawn_app_with, start_with_clock, violated_fields,
};
use crate::receiver::{Answer, Received, Receiver};

const PATIENCE: Duration = Duration::from_secs(20);

fn accept() -> Answer {
    Answer::Accept {
        delay: Duration::ZERO,
    }
}

async fn make_webhook(
    app: &TestApp,
    url: &str,
    event_types: &[pb::EventType],
    filter: &str,
) -> pb::Webhook {
    app.webhooks()
        .create_webhook(pb::CreateWebhookRequest {
            webhook: Some(pb::Webhook {
                url: url.into(),
                event_types: event_types.iter().map(|t| *t as i32).collect(),
                filter: filter.into(),
                description: "CRM sync".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("create a webhook")
        .into_inner()
        .webhook
        .unwrap()
}

async fn get(app: &TestApp, id: &str) -> pb::Webhook {
    app.webhooks()
        .get_webhook(pb::GetWebhookRequest { id: id.into() })
        .await
        .expect("get the webhook")
        .into_inner()
        .webhook
        .unwrap()
}

/// Creates a ticket and has `webhook_id` attempt its creation event at once: the
/// attempt's log entry.
async fn redeliver_a_creation(
    app: &TestApp,
    webhook_id: &str,
    subject: &str,
) -> pb::WebhookDelivery {
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket(subject)).await;
    let cursor = crate::harness::feed(&mut tickets, &ticket.id).await[0].cursor;
    app.webhooks()
        .redeliver_webhook(pb::RedeliverWebhookRequest {
            webhook_id: webhook_id.into(),
            event_cursor: cursor,
        })
        .await
        .expect("a redelivery")
        .into_inner()
        .delivery
        .unwrap()
}

/// The webhook once `check` holds for it (read again until it does).
async fn until(app: &TestApp, id: &str, check: impl Fn(&pb::Webhook) -> bool) -> pb::Webhook {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let webhook = get(app, id).await;
        if check(&webhook) {
            return webhook;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the webhook never got there: {webhook:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn deliveries(app: &TestApp, id: &str) -> Vec<pb::WebhookDelivery> {
    app.webhooks()
        .list_webhook_deliveries(pb::ListWebhookDeliveriesRequest {
            webhook_id: id.into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("list deliveries")
        .into_inner()
        .deliveries
}

fn time(t: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let t = t.as_ref().expect("a time");
    DateTime::from_timestamp(t.seconds, t.nanos as u32).unwrap()
}

/// Whether the request carries a signature `secret` makes, checked as a receiver would.
fn signed_by(got: &Received, secret: &str, now: DateTime<Utc>) -> bool {
    verify(
        secret,
        Some(&got.id),
        Some(&got.timestamp),
        Some(&got.signature),
        &got.body,
        now,
    )
    .is_ok()
}

fn state(webhook: &pb::Webhook) -> pb::WebhookState {
    pb::WebhookState::try_from(webhook.state).unwrap()
}

pub async fn matching_events_arrive_signed_and_in_log_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let receiver = Receiver::start(accept()).await;
    let hook = make_webhook(
        &app,
        &receiver.url,
        &[pb::EventType::TicketCreated, pb::EventType::StatusChanged],
        "priority >= HIGH",
    )
    .await;
    assert!(
        hook.secret.starts_with("whsec_"),
        "the secret is shown once"
    );
    assert_eq!(state(&hook), pb::WebhookState::Healthy);

    let mut tickets = app.tickets();
    let high = create(
        &mut tickets,
        pb::CreateTicketRequest {
            priority: pb::Priority::High as i32,
            ..new_ticket("Checkout fails")
        },
    )
    .await;
    create(&mut tickets, new_ticket("Question about invoices")).await;
    let urgent = create(
        &mut tickets,
        pb::CreateTicketRequest {
            priority: pb::Priority::Urgent as i32,
            ..new_ticket("Site down")
        },
    )
    .await;
    set_status(&mut tickets, &high.id, pb::TicketStatus::Resolved)
        .await
        .unwrap();

    let got = receiver.wait_for(3, PATIENCE).await;
    let bodies: Vec<serde_json::Value> = got.iter().map(Received::json).collect();
    let seen: Vec<(&str, &str)> = bodies
        .iter()
        .map(|b| {
            (
                b["type"].as_str().unwrap(),
                b["data"]["ticketId"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("ticket_created", high.id.as_str()),
            ("ticket_created", urgent.id.as_str()),
            ("status_changed", high.id.as_str()),
        ],
        "only matching events, in log order"
    );
    let mut last = 0;
    for (got, body) in got.iter().zip(&bodies) {
        assert!(
            signed_by(got, &hook.secret, Utc::now()),
            "signature of {got:?}"
        );
        assert!(!signed_by(
            got,
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            Utc::now()
        ));
        assert_eq!(got.id, body["data"]["id"], "webhook-id is the event's id");
        assert_eq!(got.content_type, "application/json");
        let cursor: i64 = body["data"]["cursor"].as_str().unwrap().parse().unwrap();
        assert!(cursor > last, "cursors increase");
        last = cursor;
    }

    // The log shows each attempt; the position follows once it is written.
    let hook = until(&app, &hook.id, |w| w.delivered_through >= last).await;
    assert!(hook.secret.is_empty(), "never shown again");
    let log = deliveries(&app, &hook.id).await;
    assert_eq!(log.len(), 3);
    for d in &log {
        assert_eq!((d.status_code, d.attempt, d.error.as_str()), (204, 1, ""));
        assert!(d.delivered_at.is_some() && d.next_attempt_at.is_none());
        assert!(d.latency.is_some());
        assert!(!d.manual);
    }
    assert_eq!(log[0].event_cursor, last, "newest first");
}

pub async fn a_failing_receiver_is_retried_with_backoff_and_events_wait_in_order(backend: Backend) {
    let database = TestDatabase::create(&backend).await;
    let mut settings = settings_for(&database);
    settings.webhook_timeout_seconds = 1;
    let app = start_with_clock(settings, database, manual_clock()).await;
    let receiver = Receiver::start(Answer::Fail {
        status: 503,
        retry_after: Some("120".into()),
    })
    .await;
    let hook = make_webhook(&app, &receiver.url, &[pb::EventType::TicketCreated], "").await;
    let mut tickets = app.tickets();
    let first = create(&mut tickets, new_ticket("First")).await;
    let second = create(&mut tickets, new_ticket("Second")).await;

    // The first attempt fails; the second ticket waits behind the first.
    receiver.wait_for(1, PATIENCE).await;
    let failing = until(&app, &hook.id, |w| state(w) == pb::WebhookState::Failing).await;
    assert!(failing.last_error.contains("503"), "{}", failing.last_error);
    assert_eq!(time(&failing.failing_since), app.clock.now());
    let log = deliveries(&app, &hook.id).await;
    assert_eq!((log[0].attempt, log[0].status_code), (1, 503));
    assert!(log[0].delivered_at.is_none());
    assert_eq!(
        time(&log[0].next_attempt_at) - time(&log[0].attempt_time),
        TimeDelta::seconds(120),
        "Retry-After is longer than the first pause, and is honoured"
    );

    // Nothing goes out before the retry is due.
    app.clock.advance(TimeDelta::seconds(100));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1);

    // The retry times out.
    receiver.answer(Answer::Hang);
    app.clock.advance(TimeDelta::seconds(21));
    receiver.wait_for(2, PATIENCE).await;
    let log = written(&app, &hook.id, 2).await;
    assert_eq!((log[0].attempt, log[0].status_code), (2, 0));
    assert!(
        log[0].error.contains("no response within 1 s"),
        "{}",
        log[0].error
    );
    let pause = time(&log[0].next_attempt_at) - time(&log[0].attempt_time);
    assert!(
        pause >= TimeDelta::seconds(16) && pause <= TimeDelta::seconds(24),
        "the second pause is 20 s give or take a fifth: {pause}"
    );

    // The receiver recovers: the first event goes, then the one behind it.
    receiver.answer(accept());
    app.clock.advance(TimeDelta::seconds(25));
    let got = receiver.wait_for(4, PATIENCE).await;
    let subjects: Vec<String> = got
        .iter()
        .map(|g| g.json()["data"]["ticketId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        subjects,
        vec![
            first.id.clone(),
            first.id.clone(),
            first.id.clone(),
            second.id.clone()
        ]
    );
    assert_eq!(got[0].id, got[2].id, "a retry keeps its webhook-id");
    let healthy = until(&app, &hook.id, |w| state(w) == pb::WebhookState::Healthy).await;
    assert!(healthy.failing_since.is_none() && healthy.last_error.is_empty());
    let failed = app
        .webhooks()
        .list_webhook_deliveries(pb::ListWebhookDeliveriesRequest {
            webhook_id: hook.id.clone(),
            failed_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    assert_eq!(failed.len(), 2);
}

pub async fn a_receiver_failing_for_a_day_is_disabled_and_loses_nothing(backend: Backend) {
    let database = TestDatabase::create(&backend).await;
    let app = start_with_clock(settings_for(&database), database, manual_clock()).await;
    let receiver = Receiver::start(Answer::Fail {
        status: 500,
        retry_after: None,
    })
    .await;
    let hook = make_webhook(&app, &receiver.url, &[pb::EventType::TicketCreated], "").await;
    let mut tickets = app.tickets();
    let first = create(&mut tickets, new_ticket("Before the outage")).await;
    let started = app.clock.now();

    // Follow each retry to its due time until the endpoint is given up on.
    let mut attempts = 0;
    loop {
        attempts += 1;
        receiver.wait_for(attempts, PATIENCE).await;
        let log = written(&app, &hook.id, attempts).await;
        assert_eq!(log[0].attempt as usize, attempts);
        match &log[0].next_attempt_at {
            Some(_) => app.clock.set(time(&log[0].next_attempt_at)),
            None => break,
        }
        assert!(attempts < 40, "it gives up");
    }
    let disabled = until(&app, &hook.id, |w| state(w) == pb::WebhookState::Disabled).await;
    assert!(
        app.clock.now() - started >= TimeDelta::hours(24),
        "retried for a whole day"
    );
    assert!(
        (8..=20).contains(&attempts),
        "{attempts} attempts, from seconds apart to hours apart"
    );
    assert!(disabled.last_error.contains("500"));

    // Disabled: new events wait.
    let second = create(&mut tickets, new_ticket("During the outage")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), attempts);

    // Enabled again: everything not delivered arrives, in order.
    receiver.answer(accept());
    let mut webhooks = app.webhooks();
    let resumed = webhooks
        .update_webhook(pb::UpdateWebhookRequest {
            webhook: Some(pb::Webhook {
                id: hook.id.clone(),
                state: pb::WebhookState::Healthy as i32,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["state".into()],
            }),
            etag: disabled.etag.clone(),
        })
        .await
        .expect("enable")
        .into_inner()
        .webhook
        .unwrap();
    assert_eq!(state(&resumed), pb::WebhookState::Healthy);
    assert_ne!(resumed.etag, disabled.etag);
    let got = receiver.wait_for(attempts + 2, PATIENCE).await;
    let delivered: Vec<String> = got
        .iter()
        .filter(|g| g.accepted)
        .map(|g| g.json()["data"]["ticketId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(delivered, vec![first.id, second.id]);
}

/// The delivery log once it holds `count` attempts (it is written a moment after the
/// receiver answers).
async fn written(app: &TestApp, id: &str, count: usize) -> Vec<pb::WebhookDelivery> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let log = deliveries(app, id).await;
        if log.len() >= count {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} attempts logged, not {count}",
            log.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn a_slow_receiver_delays_no_other(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.webhook_timeout_seconds = 30).await;
    let slow = Receiver::start(Answer::Hang).await;
    let fast = Receiver::start(accept()).await;
    make_webhook(&app, &slow.url, &[], "event_type = ticket_created").await;
    make_webhook(&app, &fast.url, &[], "event_type = ticket_created").await;
    let mut tickets = app.tickets();
    for i in 0..5 {
        create(&mut tickets, new_ticket(&format!("Ticket {i}"))).await;
    }
    // All five reach the fast receiver while the slow one still holds the first.
    fast.wait_for(5, Duration::from_secs(10)).await;
    assert_eq!(
        slow.received().len(),
        1,
        "the slow receiver holds the first event; the rest wait behind it"
    );
}

pub async fn a_rotated_secret_keeps_signing_until_the_overlap_ends(backend: Backend) {
    let app = crate::harness::spawn_app_with_manual_clock(backend).await;
    let receiver = Receiver::start(accept()).await;
    let hook = make_webhook(&app, &receiver.url, &[pb::EventType::TicketCreated], "").await;
    let rotated = app
        .webhooks()
        .rotate_webhook_secret(pb::RotateWebhookSecretRequest {
            id: hook.id.clone(),
            overlap: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
        })
        .await
        .expect("rotate")
        .into_inner();
    let new = rotated.webhook.unwrap();
    assert!(new.secret.starts_with("whsec_") && new.secret != hook.secret);
    assert_eq!(
        time(&rotated.previous_secret_expire_time),
        app.clock.now() + TimeDelta::hours(1)
    );

    let mut tickets = app.tickets();
    create(&mut tickets, new_ticket("During the overlap")).await;
    let got = receiver.wait_for(1, PATIENCE).await;
    let now = app.clock.now();
    assert_eq!(got[0].signature.split(' ').count(), 2);
    assert!(signed_by(&got[0], &new.secret, now));
    assert!(signed_by(&got[0], &hook.secret, now));

    app.clock.advance(TimeDelta::hours(2));
    create(&mut tickets, new_ticket("After the overlap")).await;
    let got = receiver.wait_for(2, PATIENCE).await;
    let now = app.clock.now();
    assert_eq!(got[1].signature.split(' ').count(), 1);
    assert!(signed_by(&got[1], &new.secret, now));
    assert!(!signed_by(&got[1], &hook.secret, now));
}

pub async fn an_event_is_redelivered_on_request_over_rest(backend: Backend) {
    let app = spawn_app(backend).await;
    let receiver = Receiver::start(accept()).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", app.addr);
    let post = |url: String, body: serde_json::Value| {
        http.post(url)
            .bearer_auth(&app.admin_secret)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let read = |text: String| -> serde_json::Value { serde_json::from_str(&text).unwrap() };
    let made = post(
        format!("{base}/v1/webhooks"),
        serde_json::json!({
            "url": receiver.url,
            "eventTypes": ["EVENT_TYPE_TICKET_CREATED"],
        }),
    )
    .await
    .unwrap();
    let made = read(made.text().await.unwrap());
    let made = &made["webhook"];
    let id = made["id"].as_str().expect("a webhook").to_owned();
    assert_eq!(made["state"], "WEBHOOK_STATE_HEALTHY");
    create(&mut app.tickets(), new_ticket("Sent twice")).await;
    let got = receiver.wait_for(1, PATIENCE).await;
    let cursor = got[0].json()["data"]["cursor"].as_str().unwrap().to_owned();
    // Once the first attempt is logged, a redelivery is the second.
    let position: i64 = cursor.parse().unwrap();
    until(&app, &id, |w| w.delivered_through >= position).await;

    let response = post(
        format!("{base}/v1/webhooks/{id}:redeliver"),
        serde_json::json!({ "eventCursor": cursor }),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let delivery = read(response.text().await.unwrap());
    let delivery = &delivery["delivery"];
    assert_eq!(delivery["manual"], true);
    assert_eq!(delivery["attempt"], 2);
    assert_eq!(delivery["statusCode"], 204);
    let got = receiver.wait_for(2, PATIENCE).await;
    assert_eq!(got[0].id, got[1].id, "the same message again");
    assert_eq!(got[0].body, got[1].body);

    let listed = http
        .get(format!("{base}/v1/webhooks/{id}/deliveries?pageSize=1"))
        .bearer_auth(&app.admin_secret)
        .send()
        .await
        .unwrap();
    let listed = read(listed.text().await.unwrap());
    assert_eq!(listed["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(listed["deliveries"][0]["manual"], true);
    assert!(
        listed["nextPageToken"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
}

pub async fn webhook_arguments_are_checked(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.webhook_allow_private = false).await;
    let mut webhooks = app.webhooks();
    let attempt = |webhook: pb::Webhook| {
        let mut webhooks = webhooks.clone();
        async move {
            webhooks
                .create_webhook(pb::CreateWebhookRequest {
                    webhook: Some(webhook),
                })
                .await
                .expect_err("refused")
        }
    };
    let url = |url: &str| pb::Webhook {
        url: url.into(),
        ..Default::default()
    };
    for (webhook, field, words) in [
        (url(""), "webhook.url", "required"),
        (url("ftp://example.com/in"), "webhook.url", "https://"),
        (url("http://localhost:9000/in"), "webhook.url", "private"),
        (url("http://127.0.0.1:9000/in"), "webhook.url", "private"),
        (url("http://[::1]/in"), "webhook.url", "private"),
        (
            url("http://169.254.169.254/latest"),
            "webhook.url",
            "private",
        ),
        (url("http://10.2.3.4/in"), "webhook.url", "private"),
        (
            url("https://user:pw@example.com/in"),
            "webhook.url",
            "password",
        ),
        (
            pb::Webhook {
                filter: "priority >>".into(),
                ..url("https://example.com/in")
            },
            "webhook.filter",
            "",
        ),
        (
            pb::Webhook {
                filter: "assignee_id = \"me\"".into(),
                ..url("https://example.com/in")
            },
            "webhook.filter",
            "me",
        ),
        (
            pb::Webhook {
                event_types: vec![999],
                ..url("https://example.com/in")
            },
            "webhook.event_types[0]",
            "EventType",
        ),
        (
            pb::Webhook {
                description: "x".repeat(501),
                ..url("https://example.com/in")
            },
            "webhook.description",
            "",
        ),
        (
            pb::Webhook {
                state: pb::WebhookState::Disabled as i32,
                ..url("https://example.com/in")
            },
            "webhook.state",
            "output only",
        ),
    ] {
        let status = attempt(webhook.clone()).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{webhook:?}");
        assert_eq!(
            violated_fields(&status),
            vec![field.to_owned()],
            "{webhook:?}"
        );
        assert!(status.message().contains(words), "{}", status.message());
    }

    let hook = webhooks
        .create_webhook(pb::CreateWebhookRequest {
            webhook: Some(url("https://hooks.example.com/in")),
        })
        .await
        .unwrap()
        .into_inner()
        .webhook
        .unwrap();
    let update = |paths: Vec<&str>, etag: &str, webhook: pb::Webhook| pb::UpdateWebhookRequest {
        webhook: Some(pb::Webhook {
            id: hook.id.clone(),
            ..webhook
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.into_iter().map(str::to_owned).collect(),
        }),
        etag: etag.into(),
    };
    let empty_mask = webhooks
        .update_webhook(update(vec![], "", url("https://b.example.com/")))
        .await
        .unwrap_err();
    assert_eq!(empty_mask.code(), Code::InvalidArgument);
    let unknown = webhooks
        .update_webhook(update(vec!["secret"], "", url("")))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    let failing = webhooks
        .update_webhook(update(
            vec!["state"],
            "",
            pb::Webhook {
                state: pb::WebhookState::Failing as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&failing), vec!["webhook.state".to_owned()]);
    let moved = webhooks
        .update_webhook(update(
            vec!["url"],
            &hook.etag,
            url("https://b.example.com/"),
        ))
        .await
        .unwrap()
        .into_inner()
        .webhook
        .unwrap();
    assert_eq!(moved.url, "https://b.example.com/");
    let stale = webhooks
        .update_webhook(update(
            vec!["url"],
            &hook.etag,
            url("https://c.example.com/"),
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    let missing = uuid::Uuid::now_v7().to_string();
    let not_found = webhooks
        .get_webhook(pb::GetWebhookRequest { id: missing })
        .await
        .unwrap_err();
    assert_eq!(not_found.code(), Code::NotFound);
    let bad_id = webhooks
        .get_webhook(pb::GetWebhookRequest { id: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(bad_id.code(), Code::InvalidArgument);
    let too_long = webhooks
        .rotate_webhook_secret(pb::RotateWebhookSecretRequest {
            id: hook.id.clone(),
            overlap: Some(prost_types::Duration {
                seconds: 8 * 86_400,
                nanos: 0,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&too_long), vec!["overlap".to_owned()]);
    let no_cursor = webhooks
        .redeliver_webhook(pb::RedeliverWebhookRequest {
            webhook_id: hook.id.clone(),
            event_cursor: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_cursor), vec!["event_cursor".to_owned()]);
    let no_event = webhooks
        .redeliver_webhook(pb::RedeliverWebhookRequest {
            webhook_id: hook.id.clone(),
            event_cursor: 1_000_000,
        })
        .await
        .unwrap_err();
    assert_eq!(no_event.code(), Code::NotFound);

    // A name that leads to a private address is refused when the delivery connects
    // (this machine's own name, where it resolves to its private or loopback address).
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let hostname = hostname.trim().to_owned();
    let addresses: Vec<std::net::IpAddr> =
        std::net::ToSocketAddrs::to_socket_addrs(&(hostname.as_str(), 9))
            .map(|found| found.map(|a| a.ip()).collect())
            .unwrap_or_default();
    if !addresses.is_empty()
        && addresses
            .iter()
            .all(|ip| ticketd::domain::webhook::private_address(*ip))
    {
        let local = webhooks
            .create_webhook(pb::CreateWebhookRequest {
                webhook: Some(url(&format!("http://{hostname}:9/in"))),
            })
            .await
            .expect("a name passes when saved")
            .into_inner()
            .webhook
            .unwrap();
        let delivery = redeliver_a_creation(&app, &local.id, "For the redelivery").await;
        assert_eq!(delivery.status_code, 0);
        assert!(
            delivery.error.contains("no public address"),
            "{}",
            delivery.error
        );
    }

    let agent = app.agent("Ana").await;
    let agent_key = app.key(pb::Role::Agent, Some(agent)).await;
    let denied = app
        .webhooks_as(&agent_key)
        .list_webhooks(pb::ListWebhooksRequest {})
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let listed = webhooks
        .list_webhooks(pb::ListWebhooksRequest {})
        .await
        .unwrap()
        .into_inner()
        .webhooks;
    assert!(listed.iter().all(|w| w.secret.is_empty()));
    webhooks
        .delete_webhook(pb::DeleteWebhookRequest {
            id: hook.id.clone(),
        })
        .await
        .unwrap();
    let gone = webhooks
        .delete_webhook(pb::DeleteWebhookRequest { id: hook.id })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

/// `kill -9` of ticketd in the middle of a webhook backlog: after a restart every event
/// reaches the receiver (some twice: delivery is at least once).
pub async fn a_killed_server_resumes_its_webhook_backlog_losing_nothing(backend: Backend) {
    use crate::harness::{tickets_at, webhooks_at};
    use crate::lifecycle::spawn_binary_with;

    let database = TestDatabase::create(&backend).await;
    let key = format!("tkd_kill_{}", uuid::Uuid::new_v4().simple());
    let args = ["--webhook-allow-private"];
    let (mut child, addr) = spawn_binary_with(&database.url(), &key, &args);
    // A receiver far slower than the creates below, so a backlog builds.
    let receiver = Receiver::start(Answer::Accept {
        delay: Duration::from_millis(50),
    })
    .await;
    webhooks_at(&addr, &key)
        .await
        .create_webhook(pb::CreateWebhookRequest {
            webhook: Some(pb::Webhook {
                url: receiver.url.clone(),
                event_types: vec![pb::EventType::TicketCreated as i32],
                ..Default::default()
            }),
        })
        .await
        .expect("create the webhook");
    let mut tickets = tickets_at(&addr, &key).await;
    let mut order = Vec::new();
    for i in 0..150 {
        order.push(
            create(&mut tickets, new_ticket(&format!("Backlog {i}")))
                .await
                .id,
        );
    }
    let created: std::collections::HashSet<String> = order.iter().cloned().collect();
    receiver.wait_for(10, PATIENCE).await;
    child.kill().expect("kill -9");
    let _ = child.wait();
    let before = receiver.received().len();
    assert!(
        before < created.len(),
        "killed mid-backlog ({before} delivered)"
    );

    let (mut child, _addr) = spawn_binary_with(&database.url(), &key, &args);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let delivered: std::collections::HashSet<String> = receiver
            .received()
            .iter()
            .map(|g| g.json()["data"]["ticketId"].as_str().unwrap().to_owned())
            .collect();
        if delivered.is_superset(&created) {
            // In creation order, counting each ticket where it first arrived.
            let mut seen = std::collections::HashSet::new();
            let firsts: Vec<String> = receiver
                .received()
                .iter()
                .map(|g| g.json()["data"]["ticketId"].as_str().unwrap().to_owned())
                .filter(|id| seen.insert(id.clone()))
                .collect();
            assert_eq!(firsts, order, "log order");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} tickets delivered after the restart",
            delivered.intersection(&created).count(),
            created.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Two replicas on one database: one delivers (each event once), and when it stops the
/// other takes over once its lease has run out.
pub async fn one_of_two_replicas_delivers_and_the_other_takes_over(backend: Backend) {
    use std::collections::HashSet;

    let database = TestDatabase::create(&backend).await;
    let settings = settings_for(&database);
    // Both over a database the test keeps, so that either may stop.
    let first = crate::harness::start_replica(settings.clone()).await;
    let second = crate::harness::start_replica(settings).await;
    let receiver = Receiver::start(accept()).await;
    // Made on the first replica, whose dispatcher wakes at once and takes the lease (the
    // second only looks at its next poll): stopping the first below is a takeover.
    make_webhook(&first, &receiver.url, &[pb::EventType::TicketCreated], "").await;
    let mut made = HashSet::new();
    for i in 0..30 {
        let app = if i % 2 == 0 { &first } else { &second };
        made.insert(
            create(&mut app.tickets(), new_ticket(&format!("Replica {i}")))
                .await
                .id,
        );
    }
    let ids = |got: &[Received]| -> Vec<String> {
        got.iter()
            .map(|g| g.json()["data"]["ticketId"].as_str().unwrap().to_owned())
            .collect()
    };
    let got = ids(&receiver.wait_for(30, PATIENCE).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 30, "each event once: {got:?}");
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), made);

    // The replica that delivered stops; the other takes the lease over once it runs out.
    first.shutdown().await.expect("the first replica stops");
    let mut later = HashSet::new();
    for i in 0..5 {
        later.insert(
            create(&mut second.tickets(), new_ticket(&format!("Later {i}")))
                .await
                .id,
        );
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let delivered: HashSet<String> = ids(&receiver.received()).into_iter().collect();
        if delivered.is_superset(&later) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second replica took over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pausing keeps a webhook's events waiting; moving a failing webhook to a new URL sends
/// its head event there at once, without waiting out the old URL's back-off.
pub async fn a_paused_webhook_waits_and_a_new_url_starts_afresh(backend: Backend) {
    let app = crate::harness::spawn_app_with_manual_clock(backend).await;
    let broken = Receiver::start(Answer::Fail {
        status: 503,
        retry_after: Some("3600".into()),
    })
    .await;
    let working = Receiver::start(accept()).await;
    let hook = make_webhook(&app, &broken.url, &[pb::EventType::TicketCreated], "").await;
    let mut tickets = app.tickets();
    let first = create(&mut tickets, new_ticket("Sent to the broken URL")).await;
    broken.wait_for(1, PATIENCE).await;
    let failing = until(&app, &hook.id, |w| state(w) == pb::WebhookState::Failing).await;

    let mut webhooks = app.webhooks();
    let update = |paths: &[&str], webhook: pb::Webhook, etag: &str| pb::UpdateWebhookRequest {
        webhook: Some(pb::Webhook {
            id: hook.id.clone(),
            ..webhook
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }),
        etag: etag.into(),
    };
    let paused = webhooks
        .update_webhook(update(
            &["state"],
            pb::Webhook {
                state: pb::WebhookState::Disabled as i32,
                ..Default::default()
            },
            &failing.etag,
        ))
        .await
        .expect("pause")
        .into_inner()
        .webhook
        .unwrap();
    assert_eq!(state(&paused), pb::WebhookState::Disabled);
    assert!(
        paused.last_error.contains("503") && paused.failing_since.is_some(),
        "a pause keeps the failure record"
    );
    let second = create(&mut tickets, new_ticket("While paused")).await;

    // A new URL while paused, then resumed: both events go to it, at once, in order (the
    // clock has not moved, so the old back-off of an hour would still hold).
    webhooks
        .update_webhook(update(
            &["url"],
            pb::Webhook {
                url: working.url.clone(),
                ..Default::default()
            },
            &paused.etag,
        ))
        .await
        .expect("move");
    let resumed = webhooks
        .update_webhook(update(
            &["state"],
            pb::Webhook {
                state: pb::WebhookState::Healthy as i32,
                ..Default::default()
            },
            "",
        ))
        .await
        .expect("resume")
        .into_inner()
        .webhook
        .unwrap();
    assert!(resumed.failing_since.is_none() && resumed.last_error.is_empty());
    let got = working.wait_for(2, PATIENCE).await;
    let ids: Vec<String> = got
        .iter()
        .map(|g| g.json()["data"]["ticketId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec![first.id, second.id]);
    assert_eq!(broken.received().len(), 1, "nothing more to the old URL");

    // Moving a failing webhook (not paused) also starts afresh.
    working.answer(Answer::Fail {
        status: 500,
        retry_after: Some("3600".into()),
    });
    let third = create(&mut tickets, new_ticket("Fails at the second URL")).await;
    working.wait_for(3, PATIENCE).await;
    let failing = until(&app, &hook.id, |w| state(w) == pb::WebhookState::Failing).await;
    let moved = webhooks
        .update_webhook(update(
            &["url"],
            pb::Webhook {
                url: broken.url.clone(),
                ..Default::default()
            },
            &failing.etag,
        ))
        .await
        .expect("move back")
        .into_inner()
        .webhook
        .unwrap();
    assert_eq!(state(&moved), pb::WebhookState::Healthy);
    broken.answer(accept());
    let got = broken.wait_for(2, PATIENCE).await;
    assert_eq!(got[1].json()["data"]["ticketId"], third.id.as_str());
}

/// An `https://` receiver is reached over TLS and its certificate is checked: one signed
/// by an authority outside the public roots is refused, and the attempt says why.
pub async fn an_https_receiver_must_present_a_trusted_certificate(backend: Backend) {
    use std::sync::Arc;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{ServerConfig, crypto::ring};

    let app = spawn_app(backend).await;
    let issued = crate::certs::TestCa::new("Not a public CA").issue(&["127.0.0.1"]);
    let certs = vec![CertificateDer::from_pem_slice(issued.cert.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(issued.key.as_bytes()).unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let completed = handshakes.clone();
    let server = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            if acceptor.accept(socket).await.is_ok() {
                completed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });

    let hook = make_webhook(
        &app,
        &format!("https://{addr}/hooks"),
        &[pb::EventType::TicketCreated],
        "",
    )
    .await;
    let delivery = redeliver_a_creation(&app, &hook.id, "Over TLS").await;
    assert_eq!(delivery.status_code, 0);
    assert!(
        delivery.error.to_lowercase().contains("certificate"),
        "{}",
        delivery.error
    );
    assert_eq!(
        handshakes.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no handshake completed"
    );
    server.abort();
}

/// Every change to a webhook is in the audit trail, its secrets in none; a deleted
/// webhook stops receiving at once.
pub async fn webhook_changes_are_audited_and_a_deleted_webhook_stops(backend: Backend) {
    let app = spawn_app(backend).await;
    let receiver = Receiver::start(accept()).await;
    let hook = make_webhook(&app, &receiver.url, &[pb::EventType::TicketCreated], "").await;
    let mut tickets = app.tickets();
    create(&mut tickets, new_ticket("Before the changes")).await;
    receiver.wait_for(1, PATIENCE).await;

    let mut webhooks = app.webhooks();
    webhooks
        .update_webhook(pb::UpdateWebhookRequest {
            webhook: Some(pb::Webhook {
                id: hook.id.clone(),
                description: "ERP sync".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["description".into()],
            }),
            etag: hook.etag.clone(),
        })
        .await
        .expect("update");
    let rotated = webhooks
        .rotate_webhook_secret(pb::RotateWebhookSecretRequest {
            id: hook.id.clone(),
            overlap: None,
        })
        .await
        .expect("rotate")
        .into_inner();
    // Unset, the overlap is a day.
    let until = time(&rotated.previous_secret_expire_time);
    let day = until - Utc::now();
    assert!(
        day > TimeDelta::hours(23) && day <= TimeDelta::hours(24),
        "{day}"
    );
    webhooks
        .delete_webhook(pb::DeleteWebhookRequest {
            id: hook.id.clone(),
        })
        .await
        .expect("delete");
    create(&mut tickets, new_ticket("After the delete")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Delivery is at least once, so the first event may come again; nothing else may.
    let received = receiver.received();
    let ids: std::collections::HashSet<_> = received.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 1, "nothing after the delete");
    assert!(
        received
            .iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains("After the delete"))
    );

    let entries = app
        .admin()
        .list_audit_entries(pb::ListAuditEntriesRequest {
            filter: format!(r#"resource = "webhook" AND resource_id = "{}""#, hook.id),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let mut actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    actions.sort();
    assert_eq!(actions, vec!["create", "delete", "update", "update"]);
    let recorded = format!("{entries:?}");
    assert!(recorded.contains("ERP sync"), "{recorded}");
    let new_secret = rotated.webhook.unwrap().secret;
    assert!(
        !recorded.contains(&hook.secret) && !recorded.contains(&new_secret),
        "secrets are never recorded"
    );
}

pub async fn the_number_of_webhooks_is_bounded(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut webhooks = app.webhooks();
    let new = |i: usize| pb::CreateWebhookRequest {
        webhook: Some(pb::Webhook {
            url: format!("http://127.0.0.1:9/hook/{i}"),
            ..Default::default()
        }),
    };
    let mut first = String::new();
    for i in 0..ticketd::service::webhooks::MAX_WEBHOOKS {
        let made = webhooks
            .create_webhook(new(i))
            .await
            .expect("under the bound");
        if i == 0 {
            first = made.into_inner().webhook.unwrap().id;
        }
    }
    let refused = webhooks
        .create_webhook(new(1000))
        .await
        .expect_err("one too many");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("100 webhooks"), "{refused:?}");
    // Deleting one makes room for one.
    webhooks
        .delete_webhook(pb::DeleteWebhookRequest { id: first })
        .await
        .expect("delete");
    webhooks
        .create_webhook(new(1001))
        .await
        .expect("room again");
    let refused = webhooks
        .create_webhook(new(1002))
        .await
        .expect_err("full again");
    assert_eq!(refused.code(), Code::ResourceExhausted);
}
