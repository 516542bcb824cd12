//! AutomationService templates: checked when saved, previewed against a ticket.

use ticketd::grpc::pb;
use tonic::Code;

use crate::bridge::{escalate, escalation};
use crate::harness::{Backend, TestApp, spawn_app, violated_fields};
use crate::routing::{AgentSpec, agent, queue};

fn template(name: &str, channel: pb::Channel, subject: &str, body: &str) -> pb::Template {
    pb::Template {
        name: name.into(),
        channel: channel as i32,
        subject: subject.into(),
        body: body.into(),
        ..Default::default()
    }
}

async fn create(app: &TestApp, t: pb::Template) -> Result<pb::Template, tonic::Status> {
    app.automation()
        .create_template(pb::CreateTemplateRequest { template: Some(t) })
        .await
        .map(|r| r.into_inner().template.unwrap())
}

async fn render(
    app: &TestApp,
    source: pb::render_template_request::Source,
    ticket_id: &str,
) -> Result<pb::RenderTemplateResponse, tonic::Status> {
    app.automation()
        .render_template(pb::RenderTemplateRequest {
            source: Some(source),
            ticket_id: ticket_id.into(),
        })
        .await
        .map(|r| r.into_inner())
}

pub async fn templates_are_checked_when_saved_and_render_a_tickets_details(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut admin = app.admin();
    let desk = queue(&mut admin, "Billing", 1, pb::AssignmentStrategy::RoundRobin).await;
    agent(
        &mut admin,
        AgentSpec {
            name: "Sam",
            queues: vec![&desk.id],
            ..AgentSpec::default()
        },
    )
    .await;
    let (ticket, _) = escalate(
        &mut app.escalation(),
        pb::EscalateConversationRequest {
            queue_id: desk.id.clone(),
            ..escalation("t-1", 1)
        },
    )
    .await;
    app.escalation()
        .post_customer_message(pb::PostCustomerMessageRequest {
            source: "helpbot".into(),
            conversation_id: "t-1".into(),
            channel: pb::Channel::Chat as i32,
            text: "Any news on my refund?".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let saved = create(
        &app,
        template(
            "acknowledgement",
            pb::Channel::Email,
            "[#{{ ticket.number }}] {{ ticket.subject }}",
            "Hello {{ contact.name }},\n{{ assignee.name }} of {{ queue.name }} has your \
             ticket ({{ ticket.status | lower }}). You wrote: \"{{ last_customer_message.text }}\"\n\
             {% if ticket.first_response_due %}We answer by {{ ticket.first_response_due }}.{% endif %}",
        ),
    )
    .await
    .unwrap();
    assert_eq!(saved.etag, "1");
    let shown = render(
        &app,
        pb::render_template_request::Source::TemplateId(saved.id.clone()),
        &ticket.id,
    )
    .await
    .unwrap();
    assert_eq!(
        shown.subject,
        format!("[#{}] Customer cannot reset their password", ticket.number)
    );
    assert!(
        shown.body.starts_with(
            "Hello Ada Lovelace,\nSam of Billing has your ticket (open). \
             You wrote: \"Any news on my refund?\""
        ),
        "{}",
        shown.body
    );
    assert!(shown.body.contains("We answer by 20"), "{}", shown.body);
    assert_eq!(shown.segments, 1);

    // An SMS draft, unsaved, reports the parts it is sent in.
    let sms = render(
        &app,
        pb::render_template_request::Source::Template(template(
            "draft",
            pb::Channel::Sms,
            "",
            &format!("Ticket {{{{ ticket.number }}}}: {}", "x".repeat(200)),
        )),
        &ticket.id,
    )
    .await
    .unwrap();
    assert_eq!(sms.segments, 2);
    assert_eq!(sms.subject, "");

    // Unknown variables and syntax errors are refused when saved, naming the field.
    let unknown = create(
        &app,
        template("bad", pb::Channel::Chat, "", "Hi {{ customer.name }}"),
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&unknown), vec!["template.body"]);
    assert!(unknown.message().contains("customer.name"), "{unknown:?}");
    let broken = create(
        &app,
        template("bad", pb::Channel::Email, "{{ ticket.number", "fine"),
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&broken), vec!["template.subject"]);
    let no_subject = create(&app, template("bad", pb::Channel::Email, "", "body"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_subject), vec!["template.subject"]);
    let taken = create(
        &app,
        template("acknowledgement", pb::Channel::Chat, "", "Thanks!"),
    )
    .await
    .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);

    // Updates take a mask and an etag, and are checked whole again.
    let mut automation = app.automation();
    let update = |body: &str, etag: &str| pb::UpdateTemplateRequest {
        template: Some(pb::Template {
            id: saved.id.clone(),
            body: body.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["body".into()],
        }),
        etag: etag.into(),
    };
    let changed = automation
        .update_template(update("Hi {{ contact.name }}", "1"))
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    assert_eq!(
        (changed.body.as_str(), changed.etag.as_str()),
        ("Hi {{ contact.name }}", "2")
    );
    assert_eq!(changed.subject, saved.subject, "unnamed fields stay");
    let stale = automation
        .update_template(update("Hello", "1"))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let invalid = automation
        .update_template(update("{{ nope }}", "2"))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);

    let listed = automation
        .list_templates(pb::ListTemplatesRequest {})
        .await
        .unwrap()
        .into_inner()
        .templates;
    assert_eq!(listed, vec![changed.clone()]);
    let audited = admin
        .list_audit_entries(pb::ListAuditEntriesRequest {
            filter: "resource = \"template\"".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(audited.len(), 2, "created and updated");

    automation
        .delete_template(pb::DeleteTemplateRequest {
            id: saved.id.clone(),
        })
        .await
        .unwrap();
    let gone = automation
        .get_template(pb::GetTemplateRequest { id: saved.id })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    let agent_key = app.key(pb::Role::Agent, None).await;
    let denied = app
        .automation_as(&agent_key)
        .list_templates(pb::ListTemplatesRequest {})
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}
