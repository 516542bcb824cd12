use super::*;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
}

fn plan(first: i64, resolution: i64) -> Plan {
    Plan {
        policy_id: None,
        targets: Targets {
            first_response: Some(first),
            next_response: Some(60),
            resolution: Some(resolution),
        },
        calendar_id: None,
        warning: Warning::Percent { percent: 50 },
    }
}

fn setup(p: &Plan) -> Vec<Clock> {
    let mut clocks = Vec::new();
    react(
        &mut clocks,
        Uuid::nil(),
        Signal::Created,
        p,
        &|_| &CAL,
        at(0),
    );
    clocks
}

static CAL: std::sync::LazyLock<BusinessCalendar> =
    std::sync::LazyLock::new(|| BusinessCalendar::always(Uuid::nil(), "24/7"));

fn clock(clocks: &[Clock], metric: Metric) -> &Clock {
    clocks.iter().find(|c| c.metric == metric).unwrap()
}

#[test]
fn waiting_pauses_without_freezing_and_resumes_with_the_time_left() {
    let p = plan(100, 1000);
    let mut clocks = setup(&p);
    assert_eq!(clock(&clocks, Metric::FirstResponse).due_at, Some(at(100)));
    assert_eq!(clock(&clocks, Metric::FirstResponse).warn_at, Some(at(50)));
    react(
        &mut clocks,
        Uuid::nil(),
        Signal::Waiting,
        &p,
        &|_| &CAL,
        at(30),
    );
    let paused = clock(&clocks, Metric::FirstResponse);
    assert_eq!(
        paused.state(at(500)),
        ClockState::Paused,
        "no breach while paused"
    );
    assert_eq!(paused.remaining(&CAL, at(500)), 70);
    react(
        &mut clocks,
        Uuid::nil(),
        Signal::Active,
        &p,
        &|_| &CAL,
        at(530),
    );
    let resumed = clock(&clocks, Metric::FirstResponse);
    assert_eq!(
        resumed.due_at,
        Some(at(600)),
        "70 s left after resuming at 530"
    );
    assert_eq!(resumed.state(at(599)), ClockState::Running);
    assert_eq!(resumed.state(at(600)), ClockState::Breached);
}

#[test]
fn the_next_alert_is_the_warning_then_the_breach_and_none_once_stopped() {
    let p = plan(100, 1000);
    let mut clocks = setup(&p);
    let first = clock(&clocks, Metric::FirstResponse).clone();
    assert_eq!(first.next_alert(), Some(at(50)), "the warning comes first");
    let warned = Clock {
        warned: true,
        ..first.clone()
    };
    assert_eq!(warned.next_alert(), Some(at(100)), "then the breach");
    let fired = Clock {
        breach_fired: true,
        ..warned
    };
    assert_eq!(fired.next_alert(), None);
    react(
        &mut clocks,
        Uuid::nil(),
        Signal::Waiting,
        &p,
        &|_| &CAL,
        at(30),
    );
    assert_eq!(
        clock(&clocks, Metric::FirstResponse).next_alert(),
        None,
        "a paused clock has nothing due"
    );
}

#[test]
fn the_first_public_reply_meets_first_response() {
    let p = plan(100, 1000);
    let mut clocks = setup(&p);
    react(
        &mut clocks,
        Uuid::nil(),
        Signal::AgentReplied,
        &p,
        &|_| &CAL,
        at(40),
    );
    let first = clock(&clocks, Metric::FirstResponse);
    assert_eq!(first.state(at(5000)), ClockState::Met);
    assert_eq!(first.used_seconds, 40);
    let late = {
        let mut clocks = setup(&p);
        react(
            &mut clocks,
            Uuid::nil(),
            Signal::AgentReplied,
            &p,
            &|_| &CAL,
            at(140),
        );
        clock(&clocks, Metric::FirstResponse).state(at(5000))
    };
    assert_eq!(late, ClockState::Breached);
}

#[test]
fn resolution_stops_at_resolved_and_resumes_on_reopen() {
    let p = plan(100, 1000);
    let mut clocks = setup(&p);
    react(
        &mut clocks,
        Uuid::nil(),
        Signal::Resolved,
        &p,
        &|_| &CAL,
        at(300),
    );
    assert_eq!(
        clock(&clocks, Metric::Resolution).state(at(2000)),
        ClockState::Met
    );
    react(
        &mut clocks,
        Uuid::nil(),
        Signal::Active,
        &p,
        &|_| &CAL,
        at(2000),
    );
    let reopened = clock(&clocks, Metric::Resolution);
    assert_eq!(reopened.used_seconds, 300);
    assert_eq!(reopened.due_at, Some(at(2700)));
}

#[test]
fn a_new_priority_keeps_the_time_used_and_applies_its_target() {
    let p = plan(100, 1000);
    let mut clocks = setup(&p);
    let urgent = plan(60, 500);
    follow_plan(&mut clocks, &urgent, &|_| &CAL, at(45));
    let first = clock(&clocks, Metric::FirstResponse);
    assert_eq!((first.used_seconds, first.target_seconds), (45, 60));
    assert_eq!(first.due_at, Some(at(60)));
    let stricter = plan(30, 500);
    follow_plan(&mut clocks, &stricter, &|_| &CAL, at(50));
    assert_eq!(
        clock(&clocks, Metric::FirstResponse).state(at(50)),
        ClockState::Breached
    );
}

#[test]
fn each_customer_message_after_an_answer_starts_a_next_response_cycle() {
    let p = plan(100, 1000);
    let mut clocks = setup(&p);
    react(
        &mut clocks,
        Uuid::nil(),
        Signal::CustomerMessaged,
        &p,
        &|_| &CAL,
        at(10),
    );
    react(
        &mut clocks,
        Uuid::nil(),
        Signal::CustomerMessaged,
        &p,
        &|_| &CAL,
        at(20),
    );
    assert_eq!(
        clock(&clocks, Metric::NextResponse).started_at,
        at(10),
        "unanswered: no reset"
    );
    react(
        &mut clocks,
        Uuid::nil(),
        Signal::AgentReplied,
        &p,
        &|_| &CAL,
        at(30),
    );
    assert_eq!(
        clock(&clocks, Metric::NextResponse).state(at(31)),
        ClockState::Met
    );
    react(
        &mut clocks,
        Uuid::nil(),
        Signal::CustomerMessaged,
        &p,
        &|_| &CAL,
        at(40),
    );
    let next = clock(&clocks, Metric::NextResponse);
    assert_eq!((next.started_at, next.due_at), (at(40), Some(at(100))));
}

#[test]
fn defaults_follow_the_product_table() {
    assert_eq!(
        Targets::default_for(Priority::Urgent).first_response,
        Some(3600)
    );
    assert_eq!(
        Targets::default_for(Priority::Urgent).resolution,
        Some(4 * 3600)
    );
    assert_eq!(
        Targets::default_for(Priority::Low).first_response,
        Some(48 * 3600)
    );
    assert_eq!(Warning::Lead { seconds: 600 }.threshold(3600), 3000);
}
