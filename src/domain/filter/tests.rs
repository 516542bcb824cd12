use super::*;
use crate::domain::ticket::{Channel, Priority, Status};
use chrono::{DateTime, Utc};
use proptest::prelude::*;

fn bind(text: &str) -> Result<Option<TicketFilter>, FilterError> {
    TicketFilter::parse_text(text)
}

#[test]
fn an_empty_filter_matches_everything() {
    assert_eq!(bind("   ").unwrap(), None);
}

#[test]
fn conjunctions_of_comparisons_bind_to_typed_predicates() {
    let filter = bind(r#"status = OPEN AND priority >= HIGH AND tag = "Billing""#)
        .unwrap()
        .unwrap();
    assert_eq!(
        filter,
        Expr::And(vec![
            Expr::Cond(TicketPredicate::Status(Op::Eq, Status::Open)),
            Expr::Cond(TicketPredicate::Priority(Op::Ge, Priority::High)),
            Expr::Cond(TicketPredicate::Tag(Op::Eq, "billing".into())),
        ])
    );
}

#[test]
fn enum_values_accept_the_proto_prefix_and_any_case() {
    let a = bind("status = TICKET_STATUS_WAITING").unwrap();
    let b = bind("status = waiting").unwrap();
    assert_eq!(a, b);
}

#[test]
fn and_binds_tighter_than_or() {
    let filter = bind("status = OPEN OR status = WAITING AND priority = LOW")
        .unwrap()
        .unwrap();
    assert!(matches!(filter, Expr::Or(ref items) if items.len() == 2));
}

#[test]
fn parentheses_and_not_nest() {
    let filter = bind("NOT (status = OPEN OR status = WAITING)")
        .unwrap()
        .unwrap();
    assert!(matches!(filter, Expr::Not(_)));
}

#[test]
fn me_and_empty_name_the_caller_and_nobody() {
    assert_eq!(
        bind(r#"assignee_id = "me""#).unwrap(),
        Some(Expr::Cond(TicketPredicate::Assignee(
            Op::Eq,
            AssigneeRef::Me
        )))
    );
    assert_eq!(
        bind(r#"assignee_id = """#).unwrap(),
        Some(Expr::Cond(TicketPredicate::Assignee(
            Op::Eq,
            AssigneeRef::Nobody
        )))
    );
}

#[test]
fn errors_name_the_problem_and_where_it_is() {
    let cases = [
        ("colour = red", "unknown field 'colour'"),
        ("status = SLEEPING", "'SLEEPING' is not a valid status"),
        ("status > OPEN", "status supports only = and !="),
        ("status =", "expected a value for 'status'"),
        ("(status = OPEN", "unbalanced '('"),
        ("status = OPEN AND", "unexpected end of filter"),
        (
            "status = OPEN priority = LOW",
            "unexpected text after the filter",
        ),
        ("number = 4-2", "not a number"),
        ("contact_id = \"nope\"", "contact_id must be a UUID"),
        ("status = \"OPEN", "unterminated string"),
        ("status ; DROP TABLE tickets", "unexpected character ';'"),
    ];
    for (text, expected) in cases {
        let err = bind(text).expect_err(text);
        assert!(
            err.message.contains(expected),
            "{text:?}: {:?} lacks {expected:?}",
            err.message
        );
    }
}

#[test]
fn times_may_be_relative_to_now() {
    let now = DateTime::parse_from_rfc3339("2026-03-10T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let bound = |text: &str| match TicketFilter::parse_text(text).unwrap().unwrap() {
        Expr::Cond(TicketPredicate::CreatedAt(_, m)) => m.at(now),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        bound("created_at > \"now-7d\"").to_rfc3339(),
        "2026-03-03T12:00:00+00:00"
    );
    assert_eq!(
        bound("created_at < \"now + 2h\"").to_rfc3339(),
        "2026-03-10T14:00:00+00:00"
    );
    assert_eq!(
        bound("created_at < \"NOW\"").to_rfc3339(),
        "2026-03-10T12:00:00+00:00"
    );
    for bad in [
        "\"now-7y\"",
        "\"now-\"",
        "\"now*2d\"",
        "\"now-99999999999d\"",
    ] {
        assert!(
            TicketFilter::parse_text(&format!("created_at > {bad}")).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn channel_is_a_ticket_field() {
    assert_eq!(
        TicketFilter::parse_text("channel = CHANNEL_SMS").unwrap(),
        Some(Expr::Cond(TicketPredicate::Channel(
            Op::Eq,
            Some(Channel::Sms)
        )))
    );
    assert_eq!(
        TicketFilter::parse_text("channel != \"\"").unwrap(),
        Some(Expr::Cond(TicketPredicate::Channel(Op::Ne, None)))
    );
    assert!(TicketFilter::parse_text("channel > CHAT").is_err());
}

#[test]
fn custom_and_contact_fields_and_has() {
    assert_eq!(
        TicketFilter::parse_text("custom_fields.plan = \"pro\" AND tags:billing").unwrap(),
        Some(Expr::And(vec![
            Expr::Cond(TicketPredicate::CustomField(
                Op::Eq,
                "plan".into(),
                "pro".into()
            )),
            Expr::Cond(TicketPredicate::Tag(Op::Eq, "billing".into())),
        ]))
    );
    assert_eq!(
        TicketFilter::parse_text("contact.vip = true AND contact.email != \"a@b.c\"").unwrap(),
        Some(Expr::And(vec![
            Expr::Cond(TicketPredicate::ContactVip(true)),
            Expr::Cond(TicketPredicate::ContactField(
                Op::Ne,
                ContactField::Email,
                "a@b.c".into()
            )),
        ]))
    );
    // Every key a custom field may have can be filtered on, '-' included.
    assert_eq!(
        TicketFilter::parse_text("custom_fields.order-id = \"A-17\"").unwrap(),
        Some(Expr::Cond(TicketPredicate::CustomField(
            Op::Eq,
            "order-id".into(),
            "A-17".into()
        )))
    );
    for bad in [
        "custom_fields. = x",
        "custom_fields.a b = x",
        "contact.vip = maybe",
        "contact.age = 3",
    ] {
        assert!(TicketFilter::parse_text(bad).is_err(), "{bad}");
    }
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{}status = OPEN{}", "(".repeat(40), ")".repeat(40));
    let err = bind(&deep).unwrap_err();
    assert!(err.message.contains("nested deeper"));
}

#[test]
fn the_number_of_comparisons_is_bounded() {
    let many = vec!["number = 1"; MAX_COMPARISONS + 1].join(" OR ");
    assert!(bind(&many).unwrap_err().message.contains("comparisons"));
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = bind(&text);
    }

    #[test]
    fn arbitrary_token_soup_never_panics(
        words in proptest::collection::vec(
            prop_oneof![
                Just("status"), Just("priority"), Just("="), Just(">="), Just("("),
                Just(")"), Just("AND"), Just("OR"), Just("NOT"), Just("OPEN"),
                Just("\"x\""), Just("42"), Just("tag"),
            ],
            0..40,
        )
    ) {
        let _ = bind(&words.join(" "));
    }
}
