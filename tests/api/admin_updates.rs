//! UpdateRoutingRule, UpdateCalendar and UpdateSlaPolicy: field masks and etags, as
//! UpdateAgent and UpdateQueue take them.

use ticketd::grpc::pb;
use tonic::Code;

use crate::harness::{Backend, spawn_app, violated_fields};

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

fn seconds(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

fn weekdays(start: &str, end: &str) -> Vec<pb::DayHours> {
    ["MON", "TUE", "WED", "THU", "FRI"]
        .iter()
        .map(|day| pb::DayHours {
            day: day.to_string(),
            intervals: vec![pb::TimeInterval {
                start: start.into(),
                end: end.into(),
            }],
        })
        .collect()
}

pub async fn a_rule_update_changes_the_masked_fields_under_its_etag(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let rule = admin
        .create_routing_rule(pb::CreateRoutingRuleRequest {
            rule: Some(pb::RoutingRule {
                name: "VIPs first".into(),
                position: 1,
                enabled: true,
                conditions: Some(pb::RuleConditions {
                    contact_vip: Some(true),
                    ..Default::default()
                }),
                actions: Some(pb::RuleActions {
                    raise_priority: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .rule
        .unwrap();
    assert_eq!(rule.etag, "1");

    // Switching the rule off sends nothing else: conditions and actions stay.
    let off = admin
        .update_routing_rule(pb::UpdateRoutingRuleRequest {
            rule: Some(pb::RoutingRule {
                id: rule.id.clone(),
                enabled: false,
                ..Default::default()
            }),
            update_mask: mask(&["enabled"]),
            etag: "1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .rule
        .unwrap();
    assert!(!off.enabled);
    assert_eq!(off.etag, "2");
    assert_eq!(off.name, "VIPs first");
    assert_eq!(off.conditions, rule.conditions);
    assert_eq!(off.actions, rule.actions);
    let listed = admin
        .list_routing_rules(pb::ListRoutingRulesRequest {})
        .await
        .unwrap()
        .into_inner()
        .rules;
    assert_eq!(listed, vec![off.clone()], "the list shows what was saved");

    // Switching it off again changes nothing: same etag, no audit entry.
    let again = admin
        .update_routing_rule(pb::UpdateRoutingRuleRequest {
            rule: Some(pb::RoutingRule {
                id: rule.id.clone(),
                enabled: false,
                ..Default::default()
            }),
            update_mask: mask(&["enabled"]),
            etag: "2".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .rule
        .unwrap();
    assert_eq!(again, off);
    let audited = admin
        .list_audit_entries(pb::ListAuditEntriesRequest {
            filter: format!("resource_id = \"{}\"", rule.id),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(audited.len(), 2, "created, switched off: {audited:?}");

    // The etag read before that change is stale: ABORTED, and nothing changes.
    let stale = admin
        .update_routing_rule(pb::UpdateRoutingRuleRequest {
            rule: Some(pb::RoutingRule {
                id: rule.id.clone(),
                name: "renamed".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
            etag: "1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let unchanged = admin
        .list_routing_rules(pb::ListRoutingRulesRequest {})
        .await
        .unwrap()
        .into_inner()
        .rules;
    assert_eq!(unchanged, vec![off]);

    // No mask replaces the whole rule, as before masks existed; unknown paths and
    // unknown rules are refused.
    let replaced = admin
        .update_routing_rule(pb::UpdateRoutingRuleRequest {
            rule: Some(pb::RoutingRule {
                id: rule.id.clone(),
                name: "Everyone".into(),
                position: 5,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rule
        .unwrap();
    assert_eq!((replaced.name.as_str(), replaced.position), ("Everyone", 5));
    assert_eq!(replaced.conditions, Some(Default::default()));
    assert_eq!(replaced.etag, "3");
    let unknown = admin
        .update_routing_rule(pb::UpdateRoutingRuleRequest {
            rule: Some(pb::RoutingRule {
                id: rule.id.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["colour"]),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&unknown), vec!["update_mask"]);
    let missing = admin
        .update_routing_rule(pb::UpdateRoutingRuleRequest {
            rule: Some(pb::RoutingRule {
                id: uuid::Uuid::now_v7().to_string(),
                ..Default::default()
            }),
            update_mask: mask(&["enabled"]),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

pub async fn a_calendar_update_changes_the_masked_fields_under_its_etag(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let calendar = admin
        .create_calendar(pb::CreateCalendarRequest {
            calendar: Some(pb::Calendar {
                name: "Berlin office".into(),
                time_zone: "Europe/Berlin".into(),
                weekly: weekdays("09:00", "17:00"),
                holidays: vec!["2026-12-24".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .calendar
        .unwrap();
    assert_eq!(calendar.etag, "1");

    // A new holiday list alone: the hours and the zone stay.
    let update = |calendar: pb::Calendar, paths: &[&str], etag: &str| pb::UpdateCalendarRequest {
        calendar: Some(calendar),
        update_mask: mask(paths),
        etag: etag.into(),
    };
    let holidays = admin
        .update_calendar(update(
            pb::Calendar {
                id: calendar.id.clone(),
                holidays: vec!["2026-12-24".into(), "2026-12-31".into()],
                ..Default::default()
            },
            &["holidays"],
            "1",
        ))
        .await
        .unwrap()
        .into_inner()
        .calendar
        .unwrap();
    assert_eq!(holidays.holidays, vec!["2026-12-24", "2026-12-31"]);
    assert_eq!(holidays.weekly, calendar.weekly);
    assert_eq!(holidays.time_zone, "Europe/Berlin");
    assert_eq!(holidays.etag, "2");

    // The merged calendar is checked as a whole: hours that end before they start are
    // refused, and a stale etag is ABORTED.
    let backwards = admin
        .update_calendar(update(
            pb::Calendar {
                id: calendar.id.clone(),
                weekly: weekdays("17:00", "09:00"),
                ..Default::default()
            },
            &["weekly"],
            "2",
        ))
        .await
        .unwrap_err();
    assert_eq!(backwards.code(), Code::InvalidArgument, "{backwards:?}");
    let stale = admin
        .update_calendar(update(
            pb::Calendar {
                id: calendar.id.clone(),
                name: "Munich office".into(),
                ..Default::default()
            },
            &["name"],
            "1",
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let listed = admin
        .list_calendars(pb::ListCalendarsRequest {})
        .await
        .unwrap()
        .into_inner()
        .calendars;
    assert_eq!(listed, vec![holidays], "refused updates changed nothing");
}

pub async fn a_policy_update_changes_the_masked_fields_under_its_etag(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let policy = admin
        .create_sla_policy(pb::CreateSlaPolicyRequest {
            policy: Some(pb::SlaPolicy {
                name: "Urgent".into(),
                conditions: Some(pb::SlaConditions {
                    priorities: vec![pb::Priority::Urgent as i32],
                    ..Default::default()
                }),
                first_response: seconds(3600),
                resolution: seconds(8 * 3600),
                warning: Some(pb::sla_policy::Warning::WarningPercent(75)),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();
    assert_eq!(policy.etag, "1");

    // A tighter first response only: the resolution target and the warning stay.
    let tighter = admin
        .update_sla_policy(pb::UpdateSlaPolicyRequest {
            policy: Some(pb::SlaPolicy {
                id: policy.id.clone(),
                first_response: seconds(1800),
                ..Default::default()
            }),
            update_mask: mask(&["first_response"]),
            etag: "1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();
    assert_eq!(tighter.first_response, seconds(1800));
    assert_eq!(tighter.resolution, seconds(8 * 3600));
    assert_eq!(tighter.warning, policy.warning);
    assert_eq!(tighter.conditions, policy.conditions);
    assert_eq!(tighter.etag, "2");

    // The warning by its oneof member's name.
    let lead = admin
        .update_sla_policy(pb::UpdateSlaPolicyRequest {
            policy: Some(pb::SlaPolicy {
                id: policy.id.clone(),
                warning: Some(pb::sla_policy::Warning::WarningLead(seconds(600).unwrap())),
                ..Default::default()
            }),
            update_mask: mask(&["warning_lead"]),
            etag: "2".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap();
    assert_eq!(
        lead.warning,
        Some(pb::sla_policy::Warning::WarningLead(seconds(600).unwrap()))
    );
    assert_eq!(lead.first_response, seconds(1800));

    // Clearing every target is refused on the merged policy; a stale etag is ABORTED.
    let no_targets = admin
        .update_sla_policy(pb::UpdateSlaPolicyRequest {
            policy: Some(pb::SlaPolicy {
                id: policy.id.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["first_response", "resolution"]),
            etag: "3".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_targets.code(), Code::InvalidArgument, "{no_targets:?}");
    let stale = admin
        .update_sla_policy(pb::UpdateSlaPolicyRequest {
            policy: Some(pb::SlaPolicy {
                id: policy.id.clone(),
                name: "Renamed".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
            etag: "2".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let listed = admin
        .list_sla_policies(pb::ListSlaPoliciesRequest {})
        .await
        .unwrap()
        .into_inner()
        .policies;
    assert_eq!(listed, vec![lead], "refused updates changed nothing");
}
