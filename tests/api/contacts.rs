//! ContactService: contacts with every address they are known by, listed, changed under
//! an etag, and found by any address when a message comes in.

use ticketd::grpc::pb;
use tonic::Code;
use uuid::Uuid;

use crate::harness::{Backend, TestApp, create, new_ticket, spawn_app, violated_fields};

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// A ticket for a new contact; returns the contact's id.
async fn contact(app: &TestApp, external_id: &str, name: &str, email: &str) -> String {
    let ticket = create(
        &mut app.tickets(),
        pb::CreateTicketRequest {
            contact: Some(pb::Contact {
                external_id: external_id.into(),
                name: name.into(),
                email: email.into(),
                ..Default::default()
            }),
            ..new_ticket(&format!("{name} needs help"))
        },
    )
    .await;
    ticket.contact.unwrap().id
}

async fn update(
    app: &TestApp,
    contact: pb::Contact,
    paths: &[&str],
    etag: &str,
) -> Result<pb::Contact, tonic::Status> {
    app.contacts()
        .update_contact(pb::UpdateContactRequest {
            contact: Some(contact),
            update_mask: mask(paths),
            etag: etag.into(),
        })
        .await
        .map(|r| r.into_inner().contact.unwrap())
}

pub async fn contacts_gain_addresses_under_their_etag_and_intake_finds_them_by_any(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let ada = contact(&app, "crm-ada", "Ada Lovelace", "Ada@Example.com").await;
    let grace = contact(&app, "crm-grace", "Grace Hopper", "grace@example.com").await;
    let mut contacts = app.contacts();

    let found = contacts
        .list_contacts(pb::ListContactsRequest {
            email: "ada@EXAMPLE.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .contacts;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, ada);
    assert_eq!(found[0].emails, vec!["ada@example.com"]);
    let etag = found[0].etag.clone();

    // A second address and a phone; the primary stays.
    let more = update(
        &app,
        pb::Contact {
            id: ada.clone(),
            emails: vec!["ada@example.com".into(), "ada.l@work.example".into()],
            phones: vec!["+15550100".into()],
            ..Default::default()
        },
        &["emails", "phones"],
        &etag,
    )
    .await
    .unwrap();
    assert_eq!(more.email, "ada@example.com");
    assert_eq!(more.emails, vec!["ada@example.com", "ada.l@work.example"]);
    assert_eq!(more.phone, "+15550100", "the first phone is the primary");
    assert_eq!(more.name, "Ada Lovelace", "unnamed fields stay");
    assert_ne!(more.etag, etag);

    // The etag read before is stale; an address of another contact is refused.
    let stale = update(
        &app,
        pb::Contact {
            id: ada.clone(),
            name: "Countess".into(),
            ..Default::default()
        },
        &["name"],
        &etag,
    )
    .await
    .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let taken = update(
        &app,
        pb::Contact {
            id: ada.clone(),
            emails: vec!["grace@example.com".into()],
            ..Default::default()
        },
        &["emails"],
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    let unchanged = contacts
        .get_contact(pb::GetContactRequest { id: ada.clone() })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(unchanged, more, "refused updates changed nothing");

    // Mail from the second address finds Ada; so does a text from her phone.
    let gateway = app.key(pb::Role::Gateway, None).await;
    let mut gw = app.escalation_as(&gateway);
    let by_mail = gw
        .post_customer_message(pb::PostCustomerMessageRequest {
            source: "mail".into(),
            conversation_id: "t-1".into(),
            channel: pb::Channel::Email as i32,
            sender: "Ada.L@work.example".into(),
            text: "Hello from work".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(by_mail.created);
    assert_eq!(by_mail.ticket.unwrap().contact.unwrap().id, ada);
    let by_text = gw
        .post_customer_message(pb::PostCustomerMessageRequest {
            source: "sms".into(),
            conversation_id: "+15550100".into(),
            channel: pb::Channel::Sms as i32,
            sender: "+15550100".into(),
            text: "And from my phone".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_text.ticket.unwrap().contact.unwrap().id, ada);

    // Making the work address primary keeps the other one listed.
    let primary = update(
        &app,
        pb::Contact {
            id: ada.clone(),
            email: "ada.l@work.example".into(),
            ..Default::default()
        },
        &["email"],
        &more.etag,
    )
    .await
    .unwrap();
    assert_eq!(
        primary.emails,
        vec!["ada.l@work.example", "ada@example.com"]
    );

    // Clearing the primary forgets it; the next address becomes primary.
    let cleared = update(
        &app,
        pb::Contact {
            id: ada.clone(),
            email: String::new(),
            ..Default::default()
        },
        &["email"],
        &primary.etag,
    )
    .await
    .unwrap();
    assert_eq!(cleared.email, "ada@example.com");
    assert_eq!(cleared.emails, vec!["ada@example.com"]);

    // Each change that took is in the audit trail, with what it changed.
    let audited = app
        .admin()
        .list_audit_entries(pb::ListAuditEntriesRequest {
            filter: format!("resource = \"contact\" AND resource_id = \"{ada}\""),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(audited.len(), 3, "addresses, primary, cleared: {audited:?}");
    assert!(audited.iter().all(|e| !e.changes.is_empty()));

    // A CRM record sharing Grace's address (the CRM says so) leaves the address with
    // Grace, and the newcomer can still be changed.
    let twin = contact(&app, "crm-twin", "Grace's twin", "grace@example.com").await;
    let renamed = update(
        &app,
        pb::Contact {
            id: twin,
            name: "Ada's cousin".into(),
            ..Default::default()
        },
        &["name"],
        "",
    )
    .await
    .unwrap();
    assert_eq!(renamed.name, "Ada's cousin");

    // Grace is untouched throughout.
    let grace_now = contacts
        .get_contact(pb::GetContactRequest { id: grace })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert_eq!(grace_now.emails, vec!["grace@example.com"]);
}

pub async fn contacts_page_and_requests_are_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    for i in 0..5 {
        contact(
            &app,
            &format!("crm-{i}"),
            &format!("Person {i}"),
            &format!("p{i}@example.com"),
        )
        .await;
    }
    contact(&app, "crm-x", "Someone Else", "x@example.com").await;
    let mut contacts = app.contacts();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = contacts
            .list_contacts(pb::ListContactsRequest {
                name: "PERSON".into(),
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.contacts.len() <= 2);
        seen.extend(page.contacts.into_iter().map(|c| c.external_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, vec!["crm-0", "crm-1", "crm-2", "crm-3", "crm-4"]);

    let first_page = contacts
        .list_contacts(pb::ListContactsRequest {
            name: "person".into(),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let other_filter = contacts
        .list_contacts(pb::ListContactsRequest {
            name: "someone".into(),
            page_token: first_page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(other_filter.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&other_filter), vec!["page_token"]);

    let missing = contacts
        .get_contact(pb::GetContactRequest {
            id: Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let some = seen_contact(&app, "crm-0").await;
    let bad = update(
        &app,
        pb::Contact {
            id: some.id.clone(),
            emails: vec!["not an address".into()],
            ..Default::default()
        },
        &["emails"],
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad), vec!["contact.emails[0]"]);
    let unknown_path = update(&app, some.clone(), &["colour"], "")
        .await
        .unwrap_err();
    assert_eq!(unknown_path.code(), Code::InvalidArgument);
    let bot = app.key(pb::Role::Bot, None).await;
    let denied = app
        .contacts_as(&bot)
        .get_contact(pb::GetContactRequest { id: some.id })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}

async fn seen_contact(app: &TestApp, external_id: &str) -> pb::Contact {
    app.contacts()
        .list_contacts(pb::ListContactsRequest {
            external_id: external_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .contacts
        .remove(0)
}
