//! Routing: queues, agents, rules, automatic assignment, manual assignment, tiers, views.

use std::collections::HashMap;
use std::time::Duration;

use ticketd::grpc::pb;
use tonic::Code;
use uuid::Uuid;

use crate::bridge::{escalate, escalation};
use crate::harness::{Admin, Backend, TestApp, Tickets, create, feed, new_ticket, spawn_app};

pub async fn queue(
    admin: &mut Admin,
    name: &str,
    tier: i32,
    strategy: pb::AssignmentStrategy,
) -> pb::Queue {
    admin
        .create_queue(pb::CreateQueueRequest {
            queue: Some(pb::Queue {
                name: name.into(),
                tier,
                strategy: strategy as i32,
                ..Default::default()
            }),
        })
        .await
        .expect("create queue")
        .into_inner()
        .queue
        .unwrap()
}

pub struct AgentSpec<'a> {
    pub name: &'a str,
    pub queues: Vec<&'a str>,
    pub capacity: i32,
    pub skills: Vec<&'a str>,
    pub tier: i32,
    pub online: bool,
    pub vip: bool,
}

impl Default for AgentSpec<'_> {
    fn default() -> Self {
        AgentSpec {
            name: "agent",
            queues: Vec::new(),
            capacity: 10,
            skills: Vec::new(),
            tier: 1,
            online: true,
            vip: false,
        }
    }
}

pub async fn agent(admin: &mut Admin, spec: AgentSpec<'_>) -> pb::Agent {
    admin
        .create_agent(pb::CreateAgentRequest {
            agent: Some(pb::Agent {
                name: spec.name.into(),
                email: format!("{}@example.com", spec.name.to_lowercase().replace(' ', ".")),
                skills: spec.skills.into_iter().map(String::from).collect(),
                tier: spec.tier,
                capacity: spec.capacity,
                availability: if spec.online {
                    pb::AgentAvailability::Online
                } else {
                    pb::AgentAvailability::Offline
                } as i32,
                queue_ids: spec.queues.into_iter().map(String::from).collect(),
                vip_handler: spec.vip,
                ..Default::default()
            }),
        })
        .await
        .expect("create agent")
        .into_inner()
        .agent
        .unwrap()
}

fn in_queue(queue_id: &str, subject: &str) -> pb::CreateTicketRequest {
    pb::CreateTicketRequest {
        queue_id: queue_id.into(),
        ..new_ticket(subject)
    }
}

async fn routed(tickets: &mut Tickets, id: &str) -> Vec<pb::Routed> {
    feed(tickets, id)
        .await
        .into_iter()
        .filter_map(|e| match e.detail {
            Some(pb::activity_entry::Detail::Routed(r)) => Some(r),
            _ => None,
        })
        .collect()
}

pub async fn round_robin_shares_tickets_evenly(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let support = queue(&mut admin, "Support", 1, pb::AssignmentStrategy::RoundRobin).await;
    let mut ids = Vec::new();
    for name in ["Ann", "Bob", "Cy"] {
        ids.push(
            agent(
                &mut admin,
                AgentSpec {
                    name,
                    queues: vec![&support.id],
                    capacity: 20,
                    ..AgentSpec::default()
                },
            )
            .await
            .id,
        );
    }
    let mut tickets = app.tickets();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for i in 0..30 {
        let t = create(
            &mut tickets,
            in_queue(&support.id, &format!("Question {i}")),
        )
        .await;
        *counts.entry(t.assignee_id).or_default() += 1;
    }
    for id in &ids {
        assert_eq!(counts.get(id), Some(&10), "{counts:?}");
    }

    let last = tickets
        .list_tickets(pb::ListTicketsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tickets
        .remove(0);
    let decision = routed(&mut tickets, &last.id).await.remove(0);
    assert_eq!(decision.strategy, "ROUND_ROBIN");
    assert_eq!(decision.assignee_id, last.assignee_id);
    assert_eq!(
        decision.candidates.len(),
        3,
        "every candidate considered is in the feed"
    );
    assert!(
        decision.reason.starts_with("round robin"),
        "{}",
        decision.reason
    );
}

pub async fn skill_based_routing_never_assigns_without_the_skills(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let tech = queue(
        &mut admin,
        "Technical",
        1,
        pb::AssignmentStrategy::SkillBased,
    )
    .await;
    let linux = agent(
        &mut admin,
        AgentSpec {
            name: "Linus",
            queues: vec![&tech.id],
            skills: vec!["linux"],
            ..AgentSpec::default()
        },
    )
    .await;
    let rule = |skill: &str, tag: &str| pb::CreateRoutingRuleRequest {
        rule: Some(pb::RoutingRule {
            name: format!("{tag} needs {skill}"),
            position: 1,
            enabled: true,
            conditions: Some(pb::RuleConditions {
                any_tags: vec![tag.into()],
                ..Default::default()
            }),
            actions: Some(pb::RuleActions {
                queue_id: tech.id.clone(),
                required_skills: vec![skill.into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    admin
        .create_routing_rule(rule("windows", "win"))
        .await
        .unwrap();
    admin
        .create_routing_rule(pb::CreateRoutingRuleRequest {
            rule: Some(pb::RoutingRule {
                position: 2,
                ..rule("linux", "tux").rule.unwrap()
            }),
        })
        .await
        .unwrap();

    let mut tickets = app.tickets();
    let windows = create(
        &mut tickets,
        pb::CreateTicketRequest {
            tags: vec!["win".into()],
            ..new_ticket("BSOD")
        },
    )
    .await;
    assert_eq!(windows.queue_id, tech.id, "the rule routes to the queue");
    assert_eq!(windows.required_skills, vec!["windows"]);
    assert_eq!(
        windows.assignee_id, "",
        "nobody has the skill: the ticket waits"
    );
    let waiting = routed(&mut tickets, &windows.id).await.remove(0);
    assert_eq!(waiting.rule, "win needs windows");
    assert_eq!(waiting.candidates[0].excluded_because, "lacks windows");

    let tux = create(
        &mut tickets,
        pb::CreateTicketRequest {
            tags: vec!["tux".into()],
            ..new_ticket("Kernel panic")
        },
    )
    .await;
    assert_eq!(tux.assignee_id, linux.id);
}

pub async fn capacity_holds_and_the_backlog_drains_by_priority_then_age(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let billing = queue(
        &mut admin,
        "Billing",
        1,
        pb::AssignmentStrategy::LoadBalanced,
    )
    .await;
    let ann = agent(
        &mut admin,
        AgentSpec {
            name: "Ann",
            queues: vec![&billing.id],
            capacity: 2,
            ..AgentSpec::default()
        },
    )
    .await;
    let mut tickets = app.tickets();
    let priorities = [
        pb::Priority::Low,
        pb::Priority::Low,
        pb::Priority::Low,
        pb::Priority::Urgent,
        pb::Priority::Medium,
        pb::Priority::Urgent,
    ];
    let mut created = Vec::new();
    for (i, p) in priorities.iter().enumerate() {
        created.push(
            create(
                &mut tickets,
                pb::CreateTicketRequest {
                    priority: *p as i32,
                    ..in_queue(&billing.id, &format!("Invoice {i}"))
                },
            )
            .await,
        );
    }
    let assigned: Vec<&pb::Ticket> = created.iter().filter(|t| t.assignee_id == ann.id).collect();
    assert_eq!(assigned.len(), 2, "capacity 2 is never exceeded");

    // A second agent comes online: the backlog goes to her, most urgent first, then oldest.
    let bea = agent(
        &mut admin,
        AgentSpec {
            name: "Bea",
            queues: vec![&billing.id],
            capacity: 3,
            online: false,
            ..AgentSpec::default()
        },
    )
    .await;
    admin
        .set_agent_availability(pb::SetAgentAvailabilityRequest {
            agent_id: bea.id.clone(),
            availability: pb::AgentAvailability::Online as i32,
        })
        .await
        .unwrap();
    let mut got = Vec::new();
    for t in &created[2..] {
        let now = crate::harness::get_ticket(&mut tickets, &t.id).await;
        if now.assignee_id == bea.id {
            got.push(now.subject);
        }
    }
    got.sort();
    assert_eq!(
        got,
        vec!["Invoice 3", "Invoice 4", "Invoice 5"],
        "urgent ones and then the medium one"
    );
    let left = crate::harness::get_ticket(&mut tickets, &created[2].id).await;
    assert_eq!(left.assignee_id, "", "the oldest low one still waits");

    // Resolving one of Ann's tickets frees room for the last one.
    crate::harness::set_status(&mut tickets, &assigned[0].id, pb::TicketStatus::Resolved)
        .await
        .unwrap();
    assert_eq!(
        crate::harness::get_ticket(&mut tickets, &created[2].id)
            .await
            .assignee_id,
        ann.id
    );
}

pub async fn vip_contacts_go_to_the_vip_queue_with_a_priority_bump(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let vip_queue = queue(&mut admin, "VIP", 1, pb::AssignmentStrategy::LoadBalanced).await;
    let regular = agent(
        &mut admin,
        AgentSpec {
            name: "Reg",
            queues: vec![&vip_queue.id],
            ..AgentSpec::default()
        },
    )
    .await;
    let handler = agent(
        &mut admin,
        AgentSpec {
            name: "Vera",
            queues: vec![&vip_queue.id],
            capacity: 5,
            vip: true,
            ..AgentSpec::default()
        },
    )
    .await;
    admin
        .create_routing_rule(pb::CreateRoutingRuleRequest {
            rule: Some(pb::RoutingRule {
                name: "VIPs".into(),
                enabled: true,
                conditions: Some(pb::RuleConditions {
                    contact_vip: Some(true),
                    ..Default::default()
                }),
                actions: Some(pb::RuleActions {
                    queue_id: vip_queue.id.clone(),
                    raise_priority: true,
                    add_tags: vec!["vip".into()],
                    vip_handlers_only: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();

    let mut request = escalation("conv-vip", 2);
    request.priority = pb::Priority::High as i32;
    request.contact.as_mut().unwrap().vip = Some(true);
    let (ticket, _) = escalate(&mut app.escalation(), request).await;
    assert_eq!(ticket.queue_id, vip_queue.id);
    assert_eq!(
        ticket.priority(),
        pb::Priority::Urgent,
        "HIGH raised one step"
    );
    assert!(ticket.tags.contains(&"vip".to_string()));
    assert_eq!(
        ticket.assignee_id, handler.id,
        "only VIP handlers take VIP tickets"
    );
    assert_ne!(ticket.assignee_id, regular.id);

    // The same contact later, without saying it is a VIP: the stored flag still routes it.
    let mut again = escalation("conv-vip-2", 1);
    again.contact.as_mut().unwrap().external_id = "crm-conv-vip".into();
    let (second, _) = escalate(&mut app.escalation(), again).await;
    assert_eq!(second.queue_id, vip_queue.id);
}

pub async fn escalating_a_ticket_moves_it_up_a_tier_and_reroutes_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let first = queue(&mut admin, "Support", 1, pb::AssignmentStrategy::RoundRobin).await;
    let second = queue(
        &mut admin,
        "Technical",
        2,
        pb::AssignmentStrategy::RoundRobin,
    )
    .await;
    let junior = agent(
        &mut admin,
        AgentSpec {
            name: "Junior",
            queues: vec![&first.id],
            ..AgentSpec::default()
        },
    )
    .await;
    let senior = agent(
        &mut admin,
        AgentSpec {
            name: "Senior",
            queues: vec![&second.id],
            tier: 2,
            ..AgentSpec::default()
        },
    )
    .await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, in_queue(&first.id, "Database corrupted")).await;
    assert_eq!(
        (ticket.tier, ticket.assignee_id.as_str()),
        (1, junior.id.as_str())
    );

    let escalated = tickets
        .escalate_ticket(pb::EscalateTicketRequest {
            ticket_id: ticket.id.clone(),
            reason: "needs DBA skills".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(escalated.tier, 2);
    assert_eq!(escalated.queue_id, second.id);
    assert_eq!(escalated.assignee_id, senior.id);
    let entry = feed(&mut tickets, &ticket.id)
        .await
        .into_iter()
        .find_map(|e| match e.detail {
            Some(pb::activity_entry::Detail::TierEscalated(t)) => Some(t),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (entry.from_tier, entry.to_tier, entry.reason.as_str()),
        (1, 2, "needs DBA skills")
    );

    let no_queue = tickets
        .escalate_ticket(pb::EscalateTicketRequest {
            ticket_id: ticket.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        no_queue.code(),
        Code::FailedPrecondition,
        "nothing serves tier 3"
    );
    let too_high = tickets
        .escalate_ticket(pb::EscalateTicketRequest {
            ticket_id: ticket.id.clone(),
            target_tier: Some(4),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(too_high.code(), Code::InvalidArgument);
    queue(&mut admin, "Engineering", 3, pb::AssignmentStrategy::Manual).await;
    tickets
        .escalate_ticket(pb::EscalateTicketRequest {
            ticket_id: ticket.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let past_top = tickets
        .escalate_ticket(pb::EscalateTicketRequest {
            ticket_id: ticket.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(past_top.code(), Code::FailedPrecondition);
    assert!(
        past_top.message().contains("top tier"),
        "{}",
        past_top.message()
    );
}

pub async fn manual_assignment_overrides_and_auto_returns_to_the_queue(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let support = queue(&mut admin, "Support", 1, pb::AssignmentStrategy::RoundRobin).await;
    let ann = agent(
        &mut admin,
        AgentSpec {
            name: "Ann",
            queues: vec![&support.id],
            capacity: 1,
            ..AgentSpec::default()
        },
    )
    .await;
    let boss = agent(
        &mut admin,
        AgentSpec {
            name: "Boss",
            capacity: 0,
            online: false,
            ..AgentSpec::default()
        },
    )
    .await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, in_queue(&support.id, "Escalated by phone")).await;
    assert_eq!(ticket.assignee_id, ann.id);

    let manual = tickets
        .assign_ticket(pb::AssignTicketRequest {
            ticket_id: ticket.id.clone(),
            target: Some(pb::assign_ticket_request::Target::AssigneeId(
                boss.id.clone(),
            )),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(
        manual.assignee_id, boss.id,
        "a person may assign past capacity and availability"
    );
    let decision = routed(&mut tickets, &ticket.id).await.pop().unwrap();
    assert_eq!(decision.strategy, "MANUAL");
    assert!(decision.reason.starts_with("assigned manually"));

    let auto = tickets
        .assign_ticket(pb::AssignTicketRequest {
            ticket_id: ticket.id.clone(),
            target: Some(pb::assign_ticket_request::Target::Auto(true)),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(auto.assignee_id, ann.id, "back in the queue, routed again");

    let unknown = tickets
        .assign_ticket(pb::AssignTicketRequest {
            ticket_id: ticket.id.clone(),
            target: Some(pb::assign_ticket_request::Target::AssigneeId(
                Uuid::new_v4().to_string(),
            )),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

pub async fn queues_and_agents_are_administered_with_guards(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let support = queue(&mut admin, "Support", 1, pb::AssignmentStrategy::RoundRobin).await;
    let duplicate = admin
        .create_queue(pb::CreateQueueRequest {
            queue: Some(pb::Queue {
                name: "Support".into(),
                strategy: pb::AssignmentStrategy::Manual as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    let bad = admin
        .create_queue(pb::CreateQueueRequest {
            queue: Some(pb::Queue {
                name: "".into(),
                tier: 7,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    let mut fields = crate::harness::violated_fields(&bad);
    fields.sort();
    assert_eq!(fields, vec!["name", "strategy", "tier"]);

    let ann = agent(
        &mut admin,
        AgentSpec {
            name: "Ann",
            queues: vec![&support.id],
            ..AgentSpec::default()
        },
    )
    .await;
    let mut tickets = app.tickets();
    create(&mut tickets, in_queue(&support.id, "Keeps the queue busy")).await;
    let in_use = admin
        .delete_queue(pb::DeleteQueueRequest {
            id: support.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(in_use.code(), Code::FailedPrecondition);
    let busy = admin
        .delete_agent(pb::DeleteAgentRequest { id: ann.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(busy.code(), Code::FailedPrecondition);

    // A key acts as an agent that exists, and an agent goes only once no key acts as them.
    let ghost = admin
        .create_api_key(pb::CreateApiKeyRequest {
            name: "ghost".into(),
            role: pb::Role::Agent as i32,
            agent_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(ghost.code(), Code::InvalidArgument);
    assert_eq!(crate::harness::violated_fields(&ghost), vec!["agent_id"]);
    let bo = agent(
        &mut admin,
        AgentSpec {
            name: "Bo",
            ..AgentSpec::default()
        },
    )
    .await;
    let bo_key = admin
        .create_api_key(pb::CreateApiKeyRequest {
            name: "Bo's console".into(),
            role: pb::Role::Agent as i32,
            agent_id: bo.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    let keyed = admin
        .delete_agent(pb::DeleteAgentRequest { id: bo.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(
        keyed.code(),
        Code::FailedPrecondition,
        "{}",
        keyed.message()
    );
    admin
        .revoke_api_key(pb::RevokeApiKeyRequest { id: bo_key.id })
        .await
        .unwrap();
    admin
        .delete_agent(pb::DeleteAgentRequest { id: bo.id.clone() })
        .await
        .unwrap();

    let updated = admin
        .update_agent(pb::UpdateAgentRequest {
            agent: Some(pb::Agent {
                id: ann.id.clone(),
                capacity: 3,
                skills: vec!["Billing".into()],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["capacity".into(), "skills".into()],
            }),
            etag: ann.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .agent
        .unwrap();
    assert_eq!(
        (updated.capacity, updated.skills.clone()),
        (3, vec!["billing".to_string()])
    );
    assert_eq!(
        updated.queue_ids,
        vec![support.id.clone()],
        "fields outside the mask stay"
    );
    let stale = admin
        .update_agent(pb::UpdateAgentRequest {
            agent: Some(pb::Agent {
                id: ann.id.clone(),
                capacity: 4,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["capacity".into()],
            }),
            etag: ann.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    // Agents set their own availability, not anyone else's.
    let ann_key = app
        .key(pb::Role::Agent, Some(Uuid::parse_str(&ann.id).unwrap()))
        .await;
    let mut as_ann = app.admin_as(&ann_key);
    let away = as_ann
        .set_agent_availability(pb::SetAgentAvailabilityRequest {
            agent_id: ann.id.clone(),
            availability: pb::AgentAvailability::Away as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .agent
        .unwrap();
    assert_eq!(away.availability(), pb::AgentAvailability::Away);
    let other = agent(
        &mut admin,
        AgentSpec {
            name: "Other",
            ..AgentSpec::default()
        },
    )
    .await;
    let denied = as_ann
        .set_agent_availability(pb::SetAgentAvailabilityRequest {
            agent_id: other.id.clone(),
            availability: pb::AgentAvailability::Away as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let not_admin = as_ann
        .create_queue(pb::CreateQueueRequest::default())
        .await
        .unwrap_err();
    assert_eq!(not_admin.code(), Code::PermissionDenied);
    assert_eq!(
        as_ann
            .list_queues(pb::ListQueuesRequest {})
            .await
            .unwrap()
            .into_inner()
            .queues
            .len(),
        1
    );
}

pub async fn views_show_my_tickets_and_unassigned_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let manual = queue(&mut admin, "Manual", 1, pb::AssignmentStrategy::Manual).await;
    let ann = agent(
        &mut admin,
        AgentSpec {
            name: "Ann",
            ..AgentSpec::default()
        },
    )
    .await;
    let ann_key = app
        .key(pb::Role::Agent, Some(Uuid::parse_str(&ann.id).unwrap()))
        .await;
    let mut tickets = app.tickets();
    create(
        &mut tickets,
        pb::CreateTicketRequest {
            assignee_id: ann.id.clone(),
            ..new_ticket("Ann's")
        },
    )
    .await;
    create(&mut tickets, in_queue(&manual.id, "Nobody's")).await;
    let closed = create(&mut tickets, new_ticket("Done")).await;
    crate::harness::set_status(&mut tickets, &closed.id, pb::TicketStatus::Closed)
        .await
        .unwrap();

    let view = |view: pb::TicketView| pb::ListTicketsRequest {
        view: view as i32,
        ..Default::default()
    };
    let subjects = |r: pb::ListTicketsResponse| {
        let mut s: Vec<String> = r.tickets.into_iter().map(|t| t.subject).collect();
        s.sort();
        s
    };
    let mut as_ann = app.tickets_as(&ann_key);
    assert_eq!(
        subjects(
            as_ann
                .list_tickets(view(pb::TicketView::MyTickets))
                .await
                .unwrap()
                .into_inner()
        ),
        vec!["Ann's"]
    );
    assert_eq!(
        subjects(
            tickets
                .list_tickets(view(pb::TicketView::Unassigned))
                .await
                .unwrap()
                .into_inner()
        ),
        vec!["Nobody's"]
    );
    assert_eq!(
        subjects(
            tickets
                .list_tickets(view(pb::TicketView::AllOpen))
                .await
                .unwrap()
                .into_inner()
        ),
        vec!["Ann's", "Nobody's"]
    );
    let overdue = tickets
        .list_tickets(view(pb::TicketView::Overdue))
        .await
        .unwrap()
        .into_inner();
    assert!(overdue.tickets.is_empty(), "default targets are hours away");
}

pub async fn agents_watch_their_new_assignments_live(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let support = queue(&mut admin, "Support", 1, pb::AssignmentStrategy::RoundRobin).await;
    let ann = agent(
        &mut admin,
        AgentSpec {
            name: "Ann",
            queues: vec![&support.id],
            ..AgentSpec::default()
        },
    )
    .await;
    let ann_key = app
        .key(pb::Role::Agent, Some(Uuid::parse_str(&ann.id).unwrap()))
        .await;
    let mut watcher = crate::watch::watch(
        &mut app.tickets_as(&ann_key),
        r#"assignee_id = "me" AND event_type = assigned"#,
        0,
    )
    .await;

    let ticket = create(&mut app.tickets(), in_queue(&support.id, "For Ann")).await;
    let event = crate::watch::next_event(&mut watcher, Duration::from_secs(5))
        .await
        .expect("Ann hears of it at once");
    assert_eq!(event.ticket_id, ticket.id);
}

/// Fifty escalations at once over two replicas never push an agent past capacity.
pub async fn capacity_holds_under_concurrent_escalations_on_two_replicas(backend: Backend) {
    let database = crate::harness::TestDatabase::create(&backend).await;
    let settings = crate::harness::settings_for(&database);
    let a = crate::harness::start(settings.clone(), database).await;
    let b = crate::harness::start_replica(settings).await;
    let mut admin = a.admin();
    let support = queue(
        &mut admin,
        "Support",
        1,
        pb::AssignmentStrategy::LoadBalanced,
    )
    .await;
    let mut agents = Vec::new();
    for (name, capacity) in [("Ann", 7), ("Bob", 5), ("Cy", 3)] {
        agents.push((
            agent(
                &mut admin,
                AgentSpec {
                    name,
                    queues: vec![&support.id],
                    capacity,
                    ..AgentSpec::default()
                },
            )
            .await
            .id,
            capacity,
        ));
    }
    let mut handles = Vec::new();
    for i in 0..50 {
        let mut client = if i % 2 == 0 {
            a.escalation()
        } else {
            b.escalation()
        };
        let queue_id = support.id.clone();
        handles.push(tokio::spawn(async move {
            let mut request = escalation(&format!("conv-cap-{i}"), 1);
            request.queue_id = queue_id;
            escalate(&mut client, request).await.0
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    assert_loads(&a, &agents, &support.id, 15).await;
}

async fn assert_loads(app: &TestApp, agents: &[(String, i32)], queue_id: &str, total: usize) {
    let mut tickets = app.tickets();
    let all = tickets
        .list_tickets(pb::ListTicketsRequest {
            page_size: 500,
            filter: format!(r#"queue_id = "{queue_id}""#),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tickets;
    let mut assigned = 0;
    for (id, capacity) in agents {
        let load = all.iter().filter(|t| &t.assignee_id == id).count();
        assert!(
            load <= *capacity as usize,
            "agent {id} holds {load} > {capacity}"
        );
        assert_eq!(
            load, *capacity as usize,
            "every agent is filled to capacity"
        );
        assigned += load;
    }
    assert_eq!(assigned, total);
    assert_eq!(
        all.iter().filter(|t| t.assignee_id.is_empty()).count(),
        all.len() - total,
        "the rest waits"
    );
}

pub async fn a_queue_update_changes_the_masked_fields_and_a_stale_etag_is_aborted(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let support = queue(&mut admin, "Support", 1, pb::AssignmentStrategy::RoundRobin).await;
    assert_eq!(support.etag, "1");
    let update = |queue: pb::Queue, paths: &[&str], etag: &str| pb::UpdateQueueRequest {
        queue: Some(queue),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
        etag: etag.into(),
    };
    // Only the tier changes: the name and strategy sent along are not named.
    let tier_two = admin
        .update_queue(update(
            pb::Queue {
                id: support.id.clone(),
                name: "ignored".into(),
                tier: 2,
                ..Default::default()
            },
            &["tier"],
            "1",
        ))
        .await
        .unwrap()
        .into_inner()
        .queue
        .unwrap();
    assert_eq!(tier_two.name, "Support");
    assert_eq!(tier_two.tier, 2);
    assert_eq!(tier_two.strategy(), pb::AssignmentStrategy::RoundRobin);
    assert_eq!(tier_two.etag, "2");

    // The etag read before that change is stale now, and changes nothing.
    let stale = admin
        .update_queue(update(
            pb::Queue {
                id: support.id.clone(),
                name: "Helpdesk".into(),
                ..Default::default()
            },
            &["name"],
            "1",
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");

    // No mask replaces every field, as before masks existed; an unknown path is refused.
    let replaced = admin
        .update_queue(update(
            pb::Queue {
                id: support.id.clone(),
                name: "Helpdesk".into(),
                tier: 1,
                strategy: pb::AssignmentStrategy::Manual as i32,
                ..Default::default()
            },
            &[],
            "",
        ))
        .await
        .unwrap()
        .into_inner()
        .queue
        .unwrap();
    assert_eq!(
        (replaced.name.as_str(), replaced.tier, replaced.strategy()),
        ("Helpdesk", 1, pb::AssignmentStrategy::Manual)
    );
    let unknown = admin
        .update_queue(update(
            pb::Queue {
                id: support.id.clone(),
                ..Default::default()
            },
            &["members"],
            "",
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
}
