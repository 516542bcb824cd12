//! SearchTickets: full text over a ticket's subject, description, replies, messages,
//! transcripts and notes; ranking, snippets, filters, pages and who sees what.

use ticketd::grpc::pb;
use tonic::Code;

use crate::bridge::{escalate, escalation};
use ticketd::config::Settings;

use crate::harness::{
    Backend, TestDatabase, Tickets, create, new_ticket, settings_for, spawn_app, start,
    start_replica, violated_fields,
};

fn request(query: &str, filter: &str) -> pb::SearchTicketsRequest {
    pb::SearchTicketsRequest {
        query: query.into(),
        filter: filter.into(),
        ..Default::default()
    }
}

async fn search(tickets: &mut Tickets, query: &str, filter: &str) -> Vec<pb::SearchResult> {
    tickets
        .search_tickets(request(query, filter))
        .await
        .unwrap_or_else(|e| panic!("search {query:?}: {e}"))
        .into_inner()
        .results
}

fn subjects(results: &[pb::SearchResult]) -> Vec<String> {
    results
        .iter()
        .map(|r| r.ticket.as_ref().unwrap().subject.clone())
        .collect()
}

/// The highlighted words of a result's snippet of `field`.
fn highlighted(result: &pb::SearchResult, field: &str) -> Vec<String> {
    result
        .snippets
        .iter()
        .filter(|s| s.field == field)
        .flat_map(|s| {
            let chars: Vec<char> = s.text.chars().collect();
            s.highlights
                .iter()
                .map(|h| {
                    chars[h.start as usize..h.end as usize]
                        .iter()
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

pub async fn search_ranks_matches_and_marks_the_words_that_matched(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let blender = create(
        &mut tickets,
        pb::CreateTicketRequest {
            description: "The blender arrived cracked; I want my money back.".into(),
            priority: pb::Priority::High as i32,
            ..new_ticket("Refund for a broken blender")
        },
    )
    .await;
    let login = create(&mut tickets, new_ticket("Cannot log in")).await;
    create(&mut tickets, new_ticket("Invoice address")).await;
    tickets
        .add_reply(pb::AddReplyRequest {
            ticket_id: login.id.clone(),
            body: "Your password was reset. If you still want a refund, tell us.".into(),
            channel: pb::Channel::Email as i32,
            ..Default::default()
        })
        .await
        .unwrap();

    // A subject match outranks one in a reply; stemming finds "refunds".
    let found = search(&mut tickets, "refunds", "").await;
    assert_eq!(
        subjects(&found),
        vec!["Refund for a broken blender", "Cannot log in"]
    );
    assert!(found[0].score > found[1].score, "{found:?}");
    assert_eq!(highlighted(&found[0], "subject"), vec!["Refund"]);
    assert_eq!(highlighted(&found[1], "text"), vec!["refund"]);

    // Phrases, exclusions and words from the description.
    assert_eq!(
        subjects(&search(&mut tickets, "\"broken blender\"", "").await),
        vec!["Refund for a broken blender"]
    );
    assert!(
        search(&mut tickets, "\"blender broken\"", "")
            .await
            .is_empty()
    );
    assert_eq!(
        subjects(&search(&mut tickets, "refund -blender", "").await),
        vec!["Cannot log in"]
    );
    let cracked = search(&mut tickets, "cracked money", "").await;
    assert_eq!(subjects(&cracked), vec!["Refund for a broken blender"]);
    assert_eq!(highlighted(&cracked[0], "text"), vec!["cracked", "money"]);

    // A filter narrows the search.
    assert_eq!(
        subjects(&search(&mut tickets, "refund", "priority = HIGH").await),
        vec!["Refund for a broken blender"]
    );
    assert!(
        search(&mut tickets, "refund", "status = RESOLVED")
            .await
            .is_empty()
    );

    // A renamed ticket is found by its new subject, no longer by the old one.
    tickets
        .update_ticket(pb::UpdateTicketRequest {
            ticket: Some(pb::Ticket {
                id: blender.id.clone(),
                subject: "Smoothie maker returned".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["subject".into()],
            }),
            etag: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        subjects(&search(&mut tickets, "smoothie", "").await),
        vec!["Smoothie maker returned"]
    );
    // "refund" was only in the old subject.
    assert_eq!(
        subjects(&search(&mut tickets, "refund", "").await),
        vec!["Cannot log in"]
    );

    // Transcripts of escalated conversations are searchable too.
    let mut bot = app.escalation();
    let mut escalated = escalation("search-1", 0);
    escalated.conversation.as_mut().unwrap().transcript = vec![pb::TranscriptMessage {
        id: "m1".into(),
        role: pb::MessageRole::Customer as i32,
        author: "Ada".into(),
        text: "My parcel went to the neighbour's house".into(),
        sent_at: Some(prost_types::Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        }),
        attachments: Vec::new(),
    }];
    let (ticket, _) = escalate(&mut bot, escalated).await;
    let found = search(&mut tickets, "neighbour parcel", "").await;
    assert_eq!(subjects(&found), vec![ticket.subject]);
    assert_eq!(highlighted(&found[0], "text"), vec!["parcel", "neighbour"]);
}

pub async fn internal_notes_are_searched_for_agents_and_never_for_bots(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    let ticket = create(&mut tickets, new_ticket("Late delivery")).await;
    tickets
        .add_note(pb::AddNoteRequest {
            ticket_id: ticket.id.clone(),
            body: "Warehouse confirms the courier lost it".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();

    let found = search(&mut tickets, "courier", "").await;
    assert_eq!(subjects(&found), vec!["Late delivery"]);
    assert_eq!(highlighted(&found[0], "internal"), vec!["courier"]);

    let bot_secret = app.key(pb::Role::Bot, None).await;
    let mut bot = app.tickets_as(&bot_secret);
    assert!(search(&mut bot, "courier", "").await.is_empty());
    assert!(search(&mut bot, "\"courier lost\"", "").await.is_empty());
    // A word only a note holds cannot leave a ticket out of a bot's search either.
    assert_eq!(
        subjects(&search(&mut bot, "delivery -courier", "").await),
        vec!["Late delivery"]
    );
    // Public text is there for bots, without the note's snippet.
    let found = search(&mut bot, "delivery", "").await;
    assert_eq!(subjects(&found), vec!["Late delivery"]);
    assert!(found[0].snippets.iter().all(|s| s.field != "internal"));
}

pub async fn search_pages_and_checks_its_input(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tickets = app.tickets();
    for i in 0..5 {
        create(&mut tickets, new_ticket(&format!("Printer {i} is jammed"))).await;
    }
    create(&mut tickets, new_ticket("Scanner is fine")).await;

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = tickets
            .search_tickets(pb::SearchTicketsRequest {
                query: "jammed printer".into(),
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.results.len() <= 2);
        seen.extend(subjects(&page.results));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    seen.sort();
    let expected: Vec<String> = (0..5).map(|i| format!("Printer {i} is jammed")).collect();
    assert_eq!(seen, expected, "every match once, over three pages");

    let other_token = token_of(&mut tickets).await;
    let refused = |query: &str, filter: &str, page_size: i32, page_token: &str| {
        let mut tickets = tickets.clone();
        let request = pb::SearchTicketsRequest {
            query: query.into(),
            filter: filter.into(),
            page_size,
            page_token: page_token.into(),
        };
        async move { tickets.search_tickets(request).await.unwrap_err() }
    };
    for (status, field) in [
        (refused("", "", 0, "").await, "query"),
        (refused("-printer", "", 0, "").await, "query"),
        (refused(&"word ".repeat(200), "", 0, "").await, "query"),
        (
            refused("printer", "status = SIDEWAYS", 0, "").await,
            "filter",
        ),
        (refused("printer", "", 101, "").await, "page_size"),
        (refused("printer", "", 0, "garbage").await, "page_token"),
        (refused("scanner", "", 0, &other_token).await, "page_token"),
    ] {
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert_eq!(violated_fields(&status), vec![field.to_string()]);
    }
}

/// A page token of the search "printer".
async fn token_of(tickets: &mut Tickets) -> String {
    tickets
        .search_tickets(pb::SearchTicketsRequest {
            query: "printer".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token
}

/// PostgreSQL: the text-search configuration is a setting; a new one rebuilds every
/// document at start-up, and one PostgreSQL does not know stops the start.
pub async fn the_search_configuration_is_a_setting(backend: Backend) {
    let database = TestDatabase::create(&backend).await;
    let settings = settings_for(&database);
    let english = start(settings.clone(), database).await;
    let mut tickets = english.tickets();
    create(&mut tickets, new_ticket("Refunds pending since March")).await;
    // English stems "refund" and "refunds" alike.
    assert_eq!(search(&mut tickets, "refund", "").await.len(), 1);

    let simple = start_replica(Settings {
        search_config: "simple".into(),
        ..settings.clone()
    })
    .await;
    let mut tickets = simple.tickets();
    assert!(search(&mut tickets, "refund", "").await.is_empty());
    assert_eq!(search(&mut tickets, "refunds", "").await.len(), 1);

    let unknown = ticketd::app::App::build(Settings {
        search_config: "klingon".into(),
        ..settings
    })
    .await;
    let error = unknown
        .err()
        .expect("an unknown configuration stops the start");
    assert!(error.to_string().contains("klingon"), "{error}");
}
