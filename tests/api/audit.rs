//! The audit trail: every administrative change is recorded with who, what and when,
//! readable by admins only, and kept after the object is gone.

use tonic::Code;

use ticketd::grpc::pb;

use crate::harness::{Admin, Backend, create, new_ticket, spawn_app, violated_fields};
use crate::routing::{AgentSpec, agent, queue};

async fn entries(admin: &mut Admin, filter: &str) -> Vec<pb::AuditEntry> {
    admin
        .list_audit_entries(pb::ListAuditEntriesRequest {
            filter: filter.into(),
            ..Default::default()
        })
        .await
        .expect("list audit entries")
        .into_inner()
        .entries
}

fn change<'a>(entry: &'a pb::AuditEntry, field: &str) -> Option<&'a pb::FieldChange> {
    entry.changes.iter().find(|c| c.field == field)
}

pub async fn admin_changes_are_audited_and_outlive_their_objects(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let me = admin
        .list_api_keys(pb::ListApiKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .api_keys
        .into_iter()
        .find(|k| k.name == "bootstrap")
        .expect("the test's admin key");

    // An agent's whole life: created, changed, deleted.
    let ada = agent(
        &mut admin,
        AgentSpec {
            name: "Ada",
            ..Default::default()
        },
    )
    .await;
    admin
        .update_agent(pb::UpdateAgentRequest {
            agent: Some(pb::Agent {
                id: ada.id.clone(),
                tier: 2,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["tier".into()],
            }),
            etag: String::new(),
        })
        .await
        .unwrap();
    admin
        .delete_agent(pb::DeleteAgentRequest { id: ada.id.clone() })
        .await
        .unwrap();

    let life = entries(
        &mut admin,
        &format!(r#"resource = "agent" AND resource_id = "{}""#, ada.id),
    )
    .await;
    let actions: Vec<&str> = life.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["delete", "update", "create"], "newest first");
    for entry in &life {
        let actor = entry.actor.as_ref().unwrap();
        assert_eq!(actor.kind(), pb::ActorKind::ApiKey);
        assert_eq!(actor.id, me.id, "recorded as the calling key");
        assert!(entry.created_at.is_some());
    }
    let [deleted, updated, created] = &life[..] else {
        unreachable!()
    };
    assert_eq!(
        updated.changes.len(),
        1,
        "only what changed: {:?}",
        updated.changes
    );
    let tier = change(updated, "tier").unwrap();
    assert_eq!(
        (tier.old_value.as_str(), tier.new_value.as_str()),
        ("1", "2")
    );
    assert_eq!(change(created, "name").unwrap().new_value, r#""Ada""#);
    assert!(created.changes.iter().all(|c| c.old_value.is_empty()));
    let name = change(deleted, "name").expect("a deletion keeps what was deleted");
    assert_eq!(
        (name.old_value.as_str(), name.new_value.as_str()),
        (r#""Ada""#, "")
    );

    // Keys: created and revoked once; no secret is ever recorded.
    let key = admin
        .create_api_key(pb::CreateApiKeyRequest {
            name: "sms gateway".into(),
            role: pb::Role::Gateway as i32,
            channels: vec![pb::Channel::Sms as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let key_id = key.api_key.unwrap().id;
    for _ in 0..2 {
        admin
            .revoke_api_key(pb::RevokeApiKeyRequest { id: key_id.clone() })
            .await
            .unwrap();
    }
    let key_life = entries(&mut admin, &format!(r#"resource_id = "{key_id}""#)).await;
    let actions: Vec<&str> = key_life.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["revoke", "create"],
        "a second revocation changes nothing"
    );
    let revoked = change(&key_life[0], "revoked").unwrap();
    assert_eq!(
        (revoked.old_value.as_str(), revoked.new_value.as_str()),
        ("false", "true")
    );
    for entry in &key_life {
        for c in &entry.changes {
            assert!(
                !c.field.contains("secret") && !c.field.contains("hash"),
                "{c:?}"
            );
            assert!(!c.new_value.contains(&key.secret) && !c.old_value.contains(&key.secret));
        }
    }

    // A change that is refused records nothing.
    let billing = queue(&mut admin, "Billing", 1, pb::AssignmentStrategy::Manual).await;
    let mut ticket = new_ticket("in billing");
    ticket.queue_id = billing.id.clone();
    create(&mut app.tickets(), ticket).await;
    let refused = admin
        .delete_queue(pb::DeleteQueueRequest {
            id: billing.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let queue_life = entries(&mut admin, &format!(r#"resource_id = "{}""#, billing.id)).await;
    assert_eq!(queue_life.len(), 1, "{queue_life:?}");
    assert_eq!(queue_life[0].resource, "queue");

    // Paging walks every entry once; a token works only with its own filter.
    let all = entries(&mut admin, "").await;
    let mut walked = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .list_audit_entries(pb::ListAuditEntriesRequest {
                filter: String::new(),
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 2);
        walked.extend(page.entries.into_iter().map(|e| e.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let all_ids: Vec<String> = all.iter().map(|e| e.id.clone()).collect();
    assert_eq!(walked, all_ids);
    assert!(all.len() >= 6);
    let first_page = admin
        .list_audit_entries(pb::ListAuditEntriesRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let other_filter = admin
        .list_audit_entries(pb::ListAuditEntriesRequest {
            filter: r#"resource = "agent""#.into(),
            page_size: 1,
            page_token: first_page.next_page_token,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&other_filter), vec!["page_token"]);

    let bad = admin
        .list_audit_entries(pb::ListAuditEntriesRequest {
            filter: r#"resource = "agent" OR action = "delete""#.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), vec!["filter"]);

    let agent_key = app.key(pb::Role::Agent, None).await;
    let denied = app
        .admin_as(&agent_key)
        .list_audit_entries(pb::ListAuditEntriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}

pub async fn routing_and_sla_settings_are_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let rule = admin
        .create_routing_rule(pb::CreateRoutingRuleRequest {
            rule: Some(pb::RoutingRule {
                name: "urgent first".into(),
                enabled: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .rule
        .unwrap();
    admin
        .delete_routing_rule(pb::DeleteRoutingRuleRequest {
            id: rule.id.clone(),
        })
        .await
        .unwrap();
    let calendar = admin
        .create_calendar(pb::CreateCalendarRequest {
            calendar: Some(pb::Calendar {
                name: "Berlin office".into(),
                time_zone: "Europe/Berlin".into(),
                weekly: vec![pb::DayHours {
                    day: "MON".into(),
                    intervals: vec![pb::TimeInterval {
                        start: "09:00".into(),
                        end: "17:00".into(),
                    }],
                }],
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
                name: "office hours".into(),
                calendar_id: calendar.id.clone(),
                first_response: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();
    admin
        .delete_sla_policy(pb::DeleteSlaPolicyRequest {
            id: policy.id.clone(),
        })
        .await
        .unwrap();
    admin
        .delete_calendar(pb::DeleteCalendarRequest {
            id: calendar.id.clone(),
        })
        .await
        .unwrap();

    let recorded: Vec<(String, String, String)> = entries(&mut admin, r#"action = "delete""#)
        .await
        .into_iter()
        .map(|e| (e.resource, e.resource_id, e.action))
        .collect();
    assert_eq!(
        recorded,
        vec![
            ("calendar".into(), calendar.id.clone(), "delete".into()),
            ("sla_policy".into(), policy.id.clone(), "delete".into()),
            ("routing_rule".into(), rule.id.clone(), "delete".into()),
        ]
    );
    let created = entries(
        &mut admin,
        r#"resource = "sla_policy" AND action = "create""#,
    )
    .await;
    assert_eq!(created.len(), 1);
    let calendar_id = change(&created[0], "calendar_id").unwrap();
    assert_eq!(calendar_id.new_value, format!("{:?}", calendar.id));

    let since_now = entries(
        &mut admin,
        &format!(r#"created_at > "{}""#, chrono::Utc::now().to_rfc3339()),
    )
    .await;
    assert!(since_now.is_empty(), "{since_now:?}");
}
