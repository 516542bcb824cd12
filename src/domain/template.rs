//! Message templates: named text per channel (an email's subject and body, an SMS, a chat
//! message) with `{{ ticket.number }}`-style variables, rendered by a sandboxed engine
//! (minijinja: no file access, a fuel budget per render). A template is checked as it is
//! saved (syntax, and every variable it names), so it never fails when it is sent.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Serialize;
use uuid::Uuid;

use super::ticket::Channel;
use super::validation::Violations;

/// Longest template text, in characters.
pub const MAX_TEMPLATE_CHARS: usize = 20_000;
/// Longest rendered message, in characters.
pub const MAX_RENDERED_CHARS: usize = 65_536;
/// The work one render may do (minijinja's fuel: roughly one unit per instruction).
const FUEL: u64 = 50_000;

/// A stored template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub id: Uuid,
    pub name: String,
    pub channel: Channel,
    /// Email only.
    pub subject: String,
    pub body: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a template may name: each top-level object and its fields.
pub const VARIABLES: &[(&str, &[&str])] = &[
    (
        "ticket",
        &[
            "id",
            "number",
            "subject",
            "status",
            "priority",
            "type",
            "channel",
            "tags",
            "created_at",
            "first_response_due",
            "resolution_due",
            "survey_token",
        ],
    ),
    ("contact", &["name", "email", "phone", "external_id"]),
    ("assignee", &["name", "email"]),
    ("queue", &["name"]),
    ("last_customer_message", &["text", "channel", "at"]),
];

/// The values a template is rendered with. Every object is always present (fields empty
/// when there is nothing to say), so a template checked once renders for every ticket.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TemplateContext {
    pub ticket: TicketVars,
    pub contact: ContactVars,
    pub assignee: AssigneeVars,
    pub queue: QueueVars,
    pub last_customer_message: MessageVars,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TicketVars {
    pub id: String,
    pub number: i64,
    pub subject: String,
    pub status: String,
    pub priority: String,
    #[serde(rename = "type")]
    pub ticket_type: String,
    pub channel: String,
    pub tags: Vec<String>,
    pub created_at: String,
    /// RFC 3339, or empty when no clock runs.
    pub first_response_due: String,
    pub resolution_due: String,
    /// For a resolved or closed ticket, the token its customer rates it with
    /// (`RecordSatisfaction`); empty otherwise.
    pub survey_token: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ContactVars {
    pub name: String,
    pub email: String,
    pub phone: String,
    pub external_id: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AssigneeVars {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueVars {
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MessageVars {
    pub text: String,
    pub channel: String,
    pub at: String,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
    /// For SMS, the parts the text is sent in; 1 for other channels.
    pub segments: u32,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(32);
    env
}

/// Checks a template's text as it is saved: it parses, names only known variables, and
/// renders within its budget against a context with every variable set.
pub fn check(field: &str, source: &str, v: &mut Violations) {
    v.text(field, source, false, MAX_TEMPLATE_CHARS);
    if source.chars().count() > MAX_TEMPLATE_CHARS {
        return;
    }
    let env = environment();
    let template = match env.template_from_str(source) {
        Ok(template) => template,
        Err(err) => {
            v.add(field, format!("does not parse: {}", describe(&err)));
            return;
        }
    };
    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    let mut unknown: BTreeSet<String> = BTreeSet::new();
    for path in template.undeclared_variables(true) {
        let mut parts = path.splitn(2, '.');
        let top = parts.next().unwrap_or_default();
        // The engine's own functions (`range`, `dict`, `namespace`).
        if globals.contains(top) {
            continue;
        }
        let known = VARIABLES
            .iter()
            .find(|(name, _)| *name == top)
            .is_some_and(|(_, fields)| {
                parts
                    .next()
                    .is_none_or(|rest| fields.contains(&rest.split('.').next().unwrap_or_default()))
            });
        if !known {
            unknown.insert(path);
        }
    }
    if !unknown.is_empty() {
        let names: Vec<String> = unknown.into_iter().collect();
        let known: Vec<String> = VARIABLES
            .iter()
            .flat_map(|(top, fields)| fields.iter().map(move |f| format!("{top}.{f}")))
            .collect();
        v.add(
            field,
            format!(
                "names unknown variables {}; known: {}",
                names.join(", "),
                known.join(", ")
            ),
        );
        return;
    }
    match template.render(Value::from(minijinja::value::Serde(sample()))) {
        Err(err) => v.add(field, format!("does not render: {}", describe(&err))),
        Ok(text) if text.chars().count() > MAX_RENDERED_CHARS => v.add(
            field,
            format!("renders more than {MAX_RENDERED_CHARS} characters"),
        ),
        Ok(_) => {}
    }
}

/// Renders `template` for `ctx`. A template that passed [`check`] fails only if the text
/// it makes is too long or it runs out of its budget on unusual data.
pub fn render(template: &Template, ctx: &TemplateContext) -> Result<Rendered, String> {
    let env = environment();
    let values = Value::from(minijinja::value::Serde(ctx));
    let run = |source: &str| -> Result<String, String> {
        let text = env
            .render_str(source, values.clone())
            .map_err(|e| describe(&e))?;
        if text.chars().count() > MAX_RENDERED_CHARS {
            return Err(format!("renders more than {MAX_RENDERED_CHARS} characters"));
        }
        Ok(text)
    };
    let subject = match template.channel {
        Channel::Email => run(&template.subject)?.trim().to_owned(),
        _ => String::new(),
    };
    let body = run(&template.body)?;
    let segments = match template.channel {
        Channel::Sms => sms_segments(&body),
        _ => 1,
    };
    Ok(Rendered {
        subject,
        body,
        segments,
    })
}

fn describe(err: &minijinja::Error) -> String {
    match (err.detail(), err.line()) {
        (Some(detail), Some(line)) => format!("{} (line {line}): {detail}", err.kind()),
        (Some(detail), None) => format!("{}: {detail}", err.kind()),
        (None, Some(line)) => format!("{} (line {line})", err.kind()),
        (None, None) => err.kind().to_string(),
    }
}

/// A context with every variable set, for checking templates.
fn sample() -> TemplateContext {
    let text = |s: &str| s.to_owned();
    TemplateContext {
        ticket: TicketVars {
            id: Uuid::nil().to_string(),
            number: 1042,
            subject: text("Printer on fire"),
            status: text("OPEN"),
            priority: text("HIGH"),
            ticket_type: text("INCIDENT"),
            channel: text("EMAIL"),
            tags: vec![text("hardware")],
            created_at: text("2026-11-30T09:00:00Z"),
            first_response_due: text("2026-11-30T13:00:00Z"),
            resolution_due: text("2026-12-02T09:00:00Z"),
            survey_token: text("AZrSuwrYc7S4hYK1XtN1_wAAAABp8BJQ0n7nS3u5ZJmVGJ2sQFuJvA"),
        },
        contact: ContactVars {
            name: text("Ada Lovelace"),
            email: text("ada@example.com"),
            phone: text("+15550100"),
            external_id: text("crm-1"),
        },
        assignee: AssigneeVars {
            name: text("Sam"),
            email: text("sam@example.com"),
        },
        queue: QueueVars {
            name: text("Support"),
        },
        last_customer_message: MessageVars {
            text: text("It is still on fire."),
            channel: text("EMAIL"),
            at: text("2026-11-30T09:05:00Z"),
        },
    }
}

/// The GSM 03.38 characters an SMS carries in 7 bits; those of the extension table take
/// two.
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM_EXTENDED: &str = "^{}\\[~]|€\u{c}";

/// How many parts an SMS of `text` is sent in: 160 GSM characters in one, 153 per part
/// beyond; 70 UCS-2 units in one, 67 per part beyond, when any character is outside GSM.
pub fn sms_segments(text: &str) -> u32 {
    let gsm_units: Option<usize> = text.chars().try_fold(0usize, |n, c| {
        if GSM_BASIC.contains(c) {
            Some(n + 1)
        } else if GSM_EXTENDED.contains(c) {
            Some(n + 2)
        } else {
            None
        }
    });
    let (units, single, multi) = match gsm_units {
        Some(units) => (units, 160, 153),
        None => (text.encode_utf16().count(), 70, 67),
    };
    let parts = if units <= single {
        1
    } else {
        units.div_ceil(multi)
    };
    u32::try_from(parts).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(source: &str) -> Vec<String> {
        let mut v = Violations::new();
        check("template.body", source, &mut v);
        v.finish()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.description)
            .collect()
    }

    #[test]
    fn known_variables_pass_and_unknown_ones_are_named() {
        assert!(
            errors(
                "Hi {{ contact.name }}, ticket #{{ ticket.number }} is {{ ticket.status | lower }}."
            )
            .is_empty()
        );
        assert!(
            errors("{% if assignee.name %}{{ assignee.name }}{% else %}the team{% endif %}")
                .is_empty()
        );
        assert!(errors("{% for t in ticket.tags %}{{ t }} {% endfor %}").is_empty());
        let unknown = errors("Dear {{ customer.name }}, {{ ticket.colour }}");
        assert_eq!(unknown.len(), 1);
        assert!(
            unknown[0].contains("customer.name") && unknown[0].contains("ticket.colour"),
            "{unknown:?}"
        );
    }

    #[test]
    fn syntax_errors_unknown_filters_and_runaway_loops_are_refused() {
        assert!(errors("{{ ticket.number ")[0].contains("does not parse"));
        assert!(errors("{{ ticket.subject | shout }}")[0].contains("does not render"));
        let runaway = errors(
            "{% for a in range(100) %}{% for b in range(100) %}{% for c in range(100) %}x{% endfor %}{% endfor %}{% endfor %}",
        );
        assert!(runaway[0].contains("does not render"), "{runaway:?}");
        let huge = errors("{{ \"x\" * 100000 }}");
        assert!(huge[0].contains("renders more than"), "{huge:?}");
    }

    #[test]
    fn email_templates_render_a_subject_and_sms_counts_its_parts() {
        let template = |channel, subject: &str, body: &str| Template {
            id: Uuid::nil(),
            name: "t".into(),
            channel,
            subject: subject.into(),
            body: body.into(),
            version: 1,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
        };
        let ctx = sample();
        let mail = render(
            &template(
                Channel::Email,
                "Re: [#{{ ticket.number }}] {{ ticket.subject }}",
                "Hello {{ contact.name }}",
            ),
            &ctx,
        )
        .unwrap();
        assert_eq!(mail.subject, "Re: [#1042] Printer on fire");
        assert_eq!(mail.body, "Hello Ada Lovelace");
        let sms = render(
            &template(
                Channel::Sms,
                "ignored",
                "Ticket {{ ticket.number }} got your message.",
            ),
            &ctx,
        )
        .unwrap();
        assert_eq!((sms.subject.as_str(), sms.segments), ("", 1));
    }

    #[test]
    fn sms_parts_follow_gsm_and_ucs2_limits() {
        assert_eq!(sms_segments(&"a".repeat(160)), 1);
        assert_eq!(sms_segments(&"a".repeat(161)), 2);
        assert_eq!(sms_segments(&"a".repeat(306)), 2);
        assert_eq!(sms_segments(&"a".repeat(307)), 3);
        assert_eq!(sms_segments(&"€".repeat(80)), 1, "two units each");
        assert_eq!(sms_segments(&"€".repeat(81)), 2);
        assert_eq!(sms_segments(&"ü".repeat(160)), 1, "in the GSM set");
        assert_eq!(sms_segments(&"ç".repeat(70)), 1, "not in GSM: UCS-2");
        assert_eq!(sms_segments(&"ç".repeat(71)), 2);
        assert_eq!(sms_segments("🔥"), 1);
        assert_eq!(sms_segments(""), 1);
    }
}
