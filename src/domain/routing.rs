//! Routing: agents, queues, routing rules, and how an assignment strategy picks an agent.
//! Pure rules; the service gathers the facts and the store applies the outcome.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ticket::{Channel, Priority, TicketType, text_enum};

/// Tiers run from 1 (first line) to this.
pub const TOP_TIER: i32 = 3;

text_enum!(
    /// Whether an agent takes new work.
    Availability {
        Online = "ONLINE",
        Away = "AWAY",
        Offline = "OFFLINE",
    }
);

text_enum!(
    /// How a queue hands its tickets to its members.
    Strategy {
        Manual = "MANUAL",
        RoundRobin = "ROUND_ROBIN",
        SkillBased = "SKILL_BASED",
        LoadBalanced = "LOAD_BALANCED",
    }
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub skills: Vec<String>,
    pub tier: i32,
    /// Most OPEN or IN_PROGRESS tickets at once.
    pub capacity: i32,
    pub availability: Availability,
    pub queue_ids: Vec<Uuid>,
    pub vip_handler: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub id: Uuid,
    pub name: String,
    pub tier: i32,
    pub strategy: Strategy,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a routing rule looks at. Every condition that is set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleConditions {
    #[serde(default)]
    pub types: Vec<TicketType>,
    #[serde(default)]
    pub priorities: Vec<Priority>,
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// The ticket has at least one of these tags.
    #[serde(default)]
    pub any_tags: Vec<String>,
    #[serde(default)]
    pub contact_vip: Option<bool>,
    /// Each key has exactly this value.
    #[serde(default)]
    pub custom_fields: BTreeMap<String, String>,
    /// The escalating bot's `source`; only escalations match.
    #[serde(default)]
    pub escalation_sources: Vec<String>,
}

/// What a matching rule does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleActions {
    #[serde(default)]
    pub queue_id: Option<Uuid>,
    #[serde(default)]
    pub set_priority: Option<Priority>,
    /// Raises the priority one step (after `set_priority`), up to URGENT.
    #[serde(default)]
    pub raise_priority: bool,
    #[serde(default)]
    pub add_tags: Vec<String>,
    /// Skills an agent needs to take the ticket in a skill-based queue.
    #[serde(default)]
    pub required_skills: Vec<String>,
    /// Only agents flagged as VIP handlers may take the ticket.
    #[serde(default)]
    pub vip_handlers_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingRule {
    pub id: Uuid,
    pub name: String,
    /// Rules are tried in ascending position; the first match wins.
    pub position: i32,
    pub enabled: bool,
    pub conditions: RuleConditions,
    pub actions: RuleActions,
    /// Goes up by one with every saved change.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What rules are matched against.
#[derive(Debug, Clone, Default)]
pub struct TicketFacts<'a> {
    pub ticket_type: Option<TicketType>,
    pub priority: Option<Priority>,
    pub channel: Option<Channel>,
    pub tags: &'a [String],
    pub contact_vip: bool,
    pub custom_fields: Option<&'a BTreeMap<String, String>>,
    pub escalation_source: Option<&'a str>,
}

impl RuleConditions {
    pub fn matches(&self, facts: &TicketFacts<'_>) -> bool {
        let within = |set_empty: bool, hit: bool| set_empty || hit;
        within(
            self.types.is_empty(),
            facts.ticket_type.is_some_and(|t| self.types.contains(&t)),
        ) && within(
            self.priorities.is_empty(),
            facts.priority.is_some_and(|p| self.priorities.contains(&p)),
        ) && within(
            self.channels.is_empty(),
            facts.channel.is_some_and(|c| self.channels.contains(&c)),
        ) && within(
            self.any_tags.is_empty(),
            self.any_tags.iter().any(|t| facts.tags.contains(t)),
        ) && self.contact_vip.is_none_or(|vip| vip == facts.contact_vip)
            && self.custom_fields.iter().all(|(key, value)| {
                facts
                    .custom_fields
                    .and_then(|fields| fields.get(key))
                    .is_some_and(|v| v == value)
            })
            && within(
                self.escalation_sources.is_empty(),
                facts
                    .escalation_source
                    .is_some_and(|s| self.escalation_sources.iter().any(|x| x == s)),
            )
    }
}

/// The first enabled rule, in position order, whose conditions hold.
pub fn first_match<'r>(
    rules: &'r [RoutingRule],
    facts: &TicketFacts<'_>,
) -> Option<&'r RoutingRule> {
    let mut ordered: Vec<&RoutingRule> = rules.iter().filter(|r| r.enabled).collect();
    ordered.sort_by_key(|r| (r.position, r.created_at, r.id));
    ordered.into_iter().find(|r| r.conditions.matches(facts))
}

/// One step up, URGENT staying URGENT.
pub fn raised(priority: Priority) -> Priority {
    match priority {
        Priority::Low => Priority::Medium,
        Priority::Medium => Priority::High,
        Priority::High | Priority::Urgent => Priority::Urgent,
    }
}

/// An agent as the strategy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub agent_id: Uuid,
    pub name: String,
    pub availability: Availability,
    pub capacity: i32,
    /// OPEN or IN_PROGRESS tickets assigned now.
    pub load: i64,
    pub skills: Vec<String>,
    pub tier: i32,
    pub vip_handler: bool,
    pub last_assigned_at: Option<DateTime<Utc>>,
}

/// What the ticket asks of an agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub tier: i32,
    pub required_skills: Vec<String>,
    pub vip_handlers_only: bool,
}

/// How one candidate fared, for the activity feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Considered {
    pub agent_id: Uuid,
    pub name: String,
    pub load: i64,
    pub capacity: i32,
    /// Empty when the agent was eligible; else why not.
    pub excluded_because: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub chosen: Option<Uuid>,
    pub reason: String,
    pub considered: Vec<Considered>,
}

fn exclusion(strategy: Strategy, c: &Candidate, needs: &Needs) -> Option<String> {
    if c.availability != Availability::Online {
        return Some(format!("{}", c.availability));
    }
    if c.load >= i64::from(c.capacity) {
        return Some(format!("at capacity ({}/{})", c.load, c.capacity));
    }
    if c.tier < needs.tier {
        return Some(format!("tier {} below {}", c.tier, needs.tier));
    }
    if needs.vip_handlers_only && !c.vip_handler {
        return Some("not a VIP handler".into());
    }
    if strategy == Strategy::SkillBased {
        let missing: Vec<&str> = needs
            .required_skills
            .iter()
            .filter(|s| !c.skills.contains(s))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Some(format!("lacks {}", missing.join(", ")));
        }
    }
    None
}

/// Picks the agent for a ticket, or nobody, and says why.
///
/// - ROUND_ROBIN: the eligible agent assigned least recently (never first), so turns rotate
///   across replicas through the database;
/// - SKILL_BASED: among agents with every required skill, the least loaded;
/// - LOAD_BALANCED: the lowest load relative to capacity;
/// - MANUAL: nobody; a person assigns.
///
/// Eligible means ONLINE, below capacity, at least the ticket's tier, and a VIP handler when
/// the ticket needs one. Ties go to the agent waiting longest, then the lowest id.
pub fn choose(strategy: Strategy, candidates: &[Candidate], needs: &Needs) -> Decision {
    let considered: Vec<Considered> = candidates
        .iter()
        .map(|c| Considered {
            agent_id: c.agent_id,
            name: c.name.clone(),
            load: c.load,
            capacity: c.capacity,
            excluded_because: exclusion(strategy, c, needs).unwrap_or_default(),
        })
        .collect();
    if strategy == Strategy::Manual {
        return Decision {
            chosen: None,
            reason: "the queue assigns manually".into(),
            considered,
        };
    }
    let eligible: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| exclusion(strategy, c, needs).is_none())
        .collect();
    let waited = |c: &Candidate| (c.last_assigned_at, c.agent_id);
    let chosen = match strategy {
        Strategy::RoundRobin => eligible.iter().min_by_key(|c| waited(c)),
        Strategy::SkillBased => eligible.iter().min_by_key(|c| (c.load, waited(c))),
        Strategy::LoadBalanced => eligible.iter().min_by(|a, b| {
            // Compare load/capacity without division: a.load * b.cap vs b.load * a.cap.
            let left = a.load * i64::from(b.capacity);
            let right = b.load * i64::from(a.capacity);
            left.cmp(&right).then_with(|| waited(a).cmp(&waited(b)))
        }),
        Strategy::Manual => None,
    };
    let reason = match chosen {
        None if candidates.is_empty() => "the queue has no members".to_owned(),
        None => "no member can take it now; it waits in the queue".to_owned(),
        Some(c) => match strategy {
            Strategy::RoundRobin => format!(
                "round robin: {} was assigned least recently among {} eligible",
                c.name,
                eligible.len()
            ),
            Strategy::SkillBased => format!(
                "skill based: {} has the skills and the lowest load ({}/{}) among {} eligible",
                c.name,
                c.load,
                c.capacity,
                eligible.len()
            ),
            Strategy::LoadBalanced => format!(
                "load balanced: {} has the lowest load ({}/{}) among {} eligible",
                c.name,
                c.load,
                c.capacity,
                eligible.len()
            ),
            Strategy::Manual => String::new(),
        },
    };
    Decision {
        chosen: chosen.map(|c| c.agent_id),
        reason,
        considered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(n: u128, load: i64, capacity: i32) -> Candidate {
        Candidate {
            agent_id: Uuid::from_u128(n),
            name: format!("agent {n}"),
            availability: Availability::Online,
            capacity,
            load,
            skills: vec!["billing".into()],
            tier: 1,
            vip_handler: false,
            last_assigned_at: None,
        }
    }

    fn needs() -> Needs {
        Needs {
            tier: 1,
            ..Needs::default()
        }
    }

    #[test]
    fn round_robin_takes_the_agent_waiting_longest() {
        let mut a = agent(1, 0, 5);
        let mut b = agent(2, 3, 5);
        a.last_assigned_at = DateTime::from_timestamp(200, 0);
        b.last_assigned_at = DateTime::from_timestamp(100, 0);
        let d = choose(Strategy::RoundRobin, &[a, b], &needs());
        assert_eq!(d.chosen, Some(Uuid::from_u128(2)));
        assert!(d.reason.starts_with("round robin"));
    }

    #[test]
    fn nobody_above_capacity_offline_or_below_tier_is_chosen() {
        let full = agent(1, 5, 5);
        let mut away = agent(2, 0, 5);
        away.availability = Availability::Away;
        let mut junior = agent(3, 0, 5);
        junior.tier = 1;
        let d = choose(
            Strategy::LoadBalanced,
            &[full, away, junior],
            &Needs {
                tier: 2,
                ..Needs::default()
            },
        );
        assert_eq!(d.chosen, None);
        let reasons: Vec<&str> = d
            .considered
            .iter()
            .map(|c| c.excluded_because.as_str())
            .collect();
        assert_eq!(reasons, vec!["at capacity (5/5)", "AWAY", "tier 1 below 2"]);
    }

    #[test]
    fn skills_must_be_covered_and_then_load_decides() {
        let mut expert = agent(1, 2, 5);
        expert.skills = vec!["billing".into(), "refunds".into()];
        let mut idle_expert = agent(2, 0, 5);
        idle_expert.skills = vec!["refunds".into(), "billing".into(), "sql".into()];
        let novice = agent(3, 0, 5);
        let needs = Needs {
            tier: 1,
            required_skills: vec!["billing".into(), "refunds".into()],
            vip_handlers_only: false,
        };
        let d = choose(Strategy::SkillBased, &[expert, idle_expert, novice], &needs);
        assert_eq!(d.chosen, Some(Uuid::from_u128(2)));
        assert_eq!(d.considered[2].excluded_because, "lacks refunds");
    }

    #[test]
    fn load_balancing_compares_load_relative_to_capacity() {
        let big = agent(1, 4, 10); // 40 %
        let small = agent(2, 1, 2); // 50 %
        let d = choose(Strategy::LoadBalanced, &[small, big], &needs());
        assert_eq!(d.chosen, Some(Uuid::from_u128(1)));
    }

    #[test]
    fn vip_tickets_go_to_vip_handlers_only() {
        let regular = agent(1, 0, 5);
        let mut vip = agent(2, 4, 5);
        vip.vip_handler = true;
        let d = choose(
            Strategy::LoadBalanced,
            &[regular, vip],
            &Needs {
                tier: 1,
                vip_handlers_only: true,
                ..Needs::default()
            },
        );
        assert_eq!(d.chosen, Some(Uuid::from_u128(2)));
    }

    #[test]
    fn the_first_enabled_matching_rule_wins() {
        let rule = |position, enabled, conditions| RoutingRule {
            id: Uuid::from_u128(position as u128),
            name: format!("rule {position}"),
            position,
            enabled,
            conditions,
            actions: RuleActions::default(),
            version: 1,
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
            updated_at: DateTime::from_timestamp(0, 0).unwrap(),
        };
        let vip = RuleConditions {
            contact_vip: Some(true),
            ..RuleConditions::default()
        };
        let billing = RuleConditions {
            any_tags: vec!["billing".into()],
            ..RuleConditions::default()
        };
        let rules = vec![
            rule(3, true, RuleConditions::default()),
            rule(2, true, billing),
            rule(1, false, vip.clone()),
            rule(0, true, vip),
        ];
        let tags = vec!["billing".to_string()];
        let facts = TicketFacts {
            tags: &tags,
            contact_vip: true,
            ..TicketFacts::default()
        };
        assert_eq!(first_match(&rules, &facts).unwrap().position, 0);
        let facts = TicketFacts {
            tags: &tags,
            ..TicketFacts::default()
        };
        assert_eq!(first_match(&rules, &facts).unwrap().position, 2);
        assert_eq!(
            first_match(&rules, &TicketFacts::default())
                .unwrap()
                .position,
            3
        );
    }

    #[test]
    fn escalation_source_conditions_match_only_escalations() {
        let c = RuleConditions {
            escalation_sources: vec!["helpbot".into()],
            ..RuleConditions::default()
        };
        assert!(!c.matches(&TicketFacts::default()));
        assert!(c.matches(&TicketFacts {
            escalation_source: Some("helpbot"),
            ..TicketFacts::default()
        }));
    }

    #[test]
    fn raising_priority_stops_at_urgent() {
        assert_eq!(raised(Priority::Low), Priority::Medium);
        assert_eq!(raised(Priority::High), Priority::Urgent);
        assert_eq!(raised(Priority::Urgent), Priority::Urgent);
    }
}
