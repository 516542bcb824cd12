use super::*;
use proptest::prelude::*;

fn office(zone: &str) -> BusinessCalendar {
    let day = vec![
        ("09:00".to_string(), "12:00".to_string()),
        ("13:00".to_string(), "17:00".to_string()),
    ];
    let weekly: Vec<(String, Vec<(String, String)>)> = ["MON", "TUE", "WED", "THU", "FRI"]
        .iter()
        .map(|d| (d.to_string(), day.clone()))
        .collect();
    BusinessCalendar::parse(
        Uuid::nil(),
        "office",
        zone,
        &weekly,
        BTreeSet::new(),
        BTreeSet::new(),
    )
    .unwrap()
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn lunch_breaks_and_weekends_are_skipped() {
    let cal = office("Europe/Berlin");
    // Friday 16:00 Berlin (15:00 UTC) + 2 h: one hour Friday, one hour Monday morning.
    assert_eq!(
        cal.add(at("2026-11-27T15:00:00Z"), 7200),
        Some(at("2026-11-30T09:00:00Z"))
    );
    // Running out exactly at closing time is due at closing time.
    assert_eq!(
        cal.add(at("2026-11-27T15:00:00Z"), 3600),
        Some(at("2026-11-27T16:00:00Z"))
    );
    // Friday 11:00-12:00 and 13:00-17:00, Monday 09:00-10:00, Berlin time.
    assert_eq!(
        cal.between(at("2026-11-27T10:00:00Z"), at("2026-11-30T09:00:00Z")),
        6 * 3600
    );
}

#[test]
fn times_of_day_are_checked() {
    assert_eq!(parse_minute("24:00"), Ok(1440));
    assert_eq!(parse_minute("09:30"), Ok(570));
    for bad in ["9:00", "24:01", "12:60", "noon", "25:00"] {
        assert!(parse_minute(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_calendar_needs_hours_and_a_real_zone() {
    let none: Vec<(String, Vec<(String, String)>)> = Vec::new();
    assert_eq!(
        BusinessCalendar::parse(
            Uuid::nil(),
            "x",
            "UTC",
            &none,
            BTreeSet::new(),
            BTreeSet::new()
        ),
        Err(CalendarError::Empty)
    );
    let day = vec![(
        "MON".to_string(),
        vec![("09:00".to_string(), "10:00".to_string())],
    )];
    assert!(matches!(
        BusinessCalendar::parse(
            Uuid::nil(),
            "x",
            "Mars/Olympus",
            &day,
            BTreeSet::new(),
            BTreeSet::new()
        ),
        Err(CalendarError::TimeZone(_))
    ));
    let overlap = vec![(
        "MON".to_string(),
        vec![
            ("09:00".to_string(), "12:00".to_string()),
            ("11:00".to_string(), "13:00".to_string()),
        ],
    )];
    assert!(matches!(
        BusinessCalendar::parse(
            Uuid::nil(),
            "x",
            "UTC",
            &overlap,
            BTreeSet::new(),
            BTreeSet::new()
        ),
        Err(CalendarError::Overlap { .. })
    ));
}

#[test]
fn yearly_holidays_recur() {
    let mut cal = office("UTC");
    cal.yearly_holidays.insert((12, 25));
    // 2028-12-25 is a Monday.
    assert_eq!(
        cal.between(at("2028-12-25T00:00:00Z"), at("2028-12-26T00:00:00Z")),
        0
    );
    assert_eq!(
        cal.between(at("2028-12-26T00:00:00Z"), at("2028-12-27T00:00:00Z")),
        7 * 3600
    );
}

/// The shared vectors, produced by a minute-by-minute oracle: DST changes in New York,
/// Berlin and Sydney, a +05:30 zone, holidays, midnight-crossing shifts.
#[test]
fn agrees_with_every_reference_vector() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/business_hours.json"
    ))
    .unwrap();
    let data: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut calendars = std::collections::HashMap::new();
    for (name, def) in data["calendars"].as_object().unwrap() {
        let weekly: Vec<(String, Vec<(String, String)>)> = def["weekly"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(day, intervals)| {
                let pairs = intervals
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            p[0].as_str().unwrap().to_owned(),
                            p[1].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect();
                (day.clone(), pairs)
            })
            .collect();
        let holidays = def["holidays"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().parse().unwrap())
            .collect();
        let tz = def["time_zone"].as_str().unwrap();
        let cal =
            BusinessCalendar::parse(Uuid::nil(), name, tz, &weekly, holidays, BTreeSet::new())
                .unwrap();
        calendars.insert(name.clone(), cal);
    }
    let cases = data["cases"].as_array().unwrap();
    assert!(cases.len() >= 100);
    for case in cases {
        let cal = &calendars[case["calendar"].as_str().unwrap()];
        let start = at(case["start"].as_str().unwrap());
        if let Some(seconds) = case.get("business_seconds") {
            let due = at(case["due"].as_str().unwrap());
            assert_eq!(
                cal.add(start, seconds.as_i64().unwrap()),
                Some(due),
                "{case}"
            );
        } else {
            let end = at(case["end"].as_str().unwrap());
            let expected = case["elapsed_business_seconds"].as_i64().unwrap();
            assert_eq!(cal.between(start, end), expected, "{case}");
        }
    }
}

const ZONES: [&str; 5] = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Sydney",
    "Asia/Kolkata",
    "UTC",
];

fn zones() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("America/New_York"),
        Just("Europe/Berlin"),
        Just("Australia/Sydney"),
        Just("Asia/Kolkata"),
        Just("UTC"),
    ]
}

fn night_shift(zone: &str) -> BusinessCalendar {
    // Crosses midnight and the usual 02:00/03:00 change-over hours.
    let weekly: Vec<(String, Vec<(String, String)>)> = WEEKDAYS
        .iter()
        .map(|d| {
            (
                d.to_string(),
                vec![
                    ("00:00".to_string(), "03:00".to_string()),
                    ("22:00".to_string(), "24:00".to_string()),
                ],
            )
        })
        .collect();
    BusinessCalendar::parse(
        Uuid::nil(),
        "night",
        zone,
        &weekly,
        BTreeSet::new(),
        BTreeSet::new(),
    )
    .unwrap()
}

/// Every offset change of `zone` from 2020 to 2035, to the second, found by an hourly
/// scan and a bisection of chrono-tz's own offsets (independent of `segments`).
fn transitions(zone: &str) -> Vec<DateTime<Utc>> {
    let tz: Tz = zone.parse().unwrap();
    let offset = |second: i64| {
        let at = DateTime::from_timestamp(second, 0).unwrap();
        tz.offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc()
    };
    let (first, last) = (
        at("2020-01-01T00:00:00Z").timestamp(),
        at("2036-01-01T00:00:00Z").timestamp(),
    );
    let mut found = Vec::new();
    let mut hour = first;
    while hour < last {
        let (mut before, mut after) = (hour, hour + 3600);
        if offset(before) != offset(after) {
            while after - before > 1 {
                let mid = (before + after) / 2;
                if offset(mid) == offset(before) {
                    before = mid;
                } else {
                    after = mid;
                }
            }
            found.push(DateTime::from_timestamp(after, 0).unwrap());
        }
        hour += 3600;
    }
    found
}

#[test]
fn the_transition_scan_finds_each_years_changes() {
    // Two a year where daylight saving applies, none where it does not.
    assert_eq!(transitions("America/New_York").len(), 32);
    assert_eq!(transitions("Europe/Berlin").len(), 32);
    assert_eq!(transitions("Australia/Sydney").len(), 32);
    assert!(transitions("Asia/Kolkata").is_empty());
    assert!(transitions("UTC").is_empty());
    assert!(transitions("Europe/Berlin").contains(&at("2026-03-29T01:00:00Z")));
}

/// A zone with its transitions, each starting point within two days of one of them
/// (or anywhere in the range for zones without any).
fn around_a_transition() -> impl Strategy<Value = (&'static str, DateTime<Utc>)> {
    type ZoneChanges = Vec<(&'static str, Vec<DateTime<Utc>>)>;
    static CHANGES: std::sync::LazyLock<ZoneChanges> =
        std::sync::LazyLock::new(|| ZONES.iter().map(|z| (*z, transitions(z))).collect());
    (0..ZONES.len()).prop_flat_map(|z| {
        let (zone, changes) = CHANGES[z].clone();
        let count = changes.len().max(1);
        (Just(zone), 0..count, -2 * 86_400i64..2 * 86_400).prop_map(move |(zone, index, shift)| {
            let base = changes
                .get(index)
                .copied()
                .unwrap_or_else(|| at("2028-06-15T00:00:00Z"));
            (zone, base + Duration::seconds(shift))
        })
    })
}

proptest! {
    // Around 2026's daylight-saving changes in both hemispheres.
    #[test]
    fn adding_then_measuring_is_the_identity(
        zone in zones(),
        night in any::<bool>(),
        minutes_from in 0i64..(400 * 24 * 60),
        seconds in 0i64..(40 * 3600),
    ) {
        let cal = if night { night_shift(zone) } else { office(zone) };
        let start = at("2026-01-01T00:00:00Z") + Duration::minutes(minutes_from);
        let due = cal.add(start, seconds).unwrap();
        prop_assert!(due >= start);
        prop_assert_eq!(cal.between(start, due), seconds);
    }

    #[test]
    fn whole_seconds_stay_whole_and_add_agrees_with_between_at_every_change(
        (zone, start) in around_a_transition(),
        night in any::<bool>(),
        seconds in 0i64..(30 * 3600),
    ) {
        let cal = if night { night_shift(zone) } else { office(zone) };
        let due = cal.add(start, seconds).unwrap();
        prop_assert_eq!(due.timestamp_subsec_nanos(), 0, "{} + {}s = {}", start, seconds, due);
        prop_assert_eq!(cal.between(start, due), seconds);
        if seconds > 0 {
            // The earliest such instant: a second less falls short.
            prop_assert_eq!(cal.between(start, due - Duration::seconds(1)), seconds - 1);
        }
    }

    #[test]
    fn a_due_time_never_falls_outside_business_hours(
        zone in zones(),
        night in any::<bool>(),
        minutes_from in 0i64..(400 * 24 * 60),
        seconds in 1i64..(40 * 3600),
    ) {
        let cal = if night { night_shift(zone) } else { office(zone) };
        let start = at("2026-01-01T00:00:00Z") + Duration::minutes(minutes_from);
        let due = cal.add(start, seconds).unwrap();
        // The last second before the due time was business time.
        prop_assert!(cal.is_open(due - Duration::seconds(1)));
    }
}
