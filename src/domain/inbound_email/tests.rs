use proptest::prelude::*;

use super::*;

const REPLY: &str = "From: Ada Lovelace <ada@example.com>\r\n\
To: support+t0196d2a7@acme.test\r\n\
Subject: Re: [#42] Password reset\r\n\
Message-ID: <CAF=answer@mail.example.com>\r\n\
In-Reply-To: <0196d2a7c0de7000a000000000000001@acme.test>\r\n\
References: <ticket.0196d2a7c0de7000a000000000000002@acme.test>\r\n <0196d2a7c0de7000a000000000000001@acme.test>\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Thanks, it works now!\r\n\
\r\n\
On Mon, 30 Nov 2026 at 10:00, Support <support@acme.test> wrote:\r\n\
> Your password is reset.\r\n\
> Regards\r\n";

#[test]
fn a_reply_keeps_its_new_text_and_names_what_it_answers() {
    let email = parse(REPLY.as_bytes()).unwrap();
    assert_eq!(email.from_address, "ada@example.com");
    assert_eq!(email.from_name, "Ada Lovelace");
    assert_eq!(email.subject, "Re: [#42] Password reset");
    assert_eq!(email.message_id, "CAF=answer@mail.example.com");
    assert_eq!(
        email.answers,
        vec![
            "0196d2a7c0de7000a000000000000001@acme.test",
            "0196d2a7c0de7000a000000000000001@acme.test",
            "ticket.0196d2a7c0de7000a000000000000002@acme.test",
        ]
    );
    assert_eq!(email.recipients, vec!["support+t0196d2a7@acme.test"]);
    assert_eq!(email.visible_text, "Thanks, it works now!");
    assert!(email.full_text.contains("> Your password is reset."));
    assert_eq!(email.automatic, None);
    assert_eq!(email.bounce_of, None);
}

#[test]
fn html_only_mail_in_latin_1_is_read_as_text_and_attachments_are_kept() {
    let raw = "From: =?ISO-8859-1?Q?J=F6rg?= <jorg@example.de>\r\n\
To: support@acme.test\r\n\
Subject: =?ISO-8859-1?Q?R=FCckerstattung?=\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/html; charset=ISO-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
<html><body><p>Gr=FC=DFe, bitte <b>erstatten</b> Sie den Betrag.</p></body></html>\r\n\
--b1\r\n\
Content-Type: application/pdf; name=\"rechnung.pdf\"\r\n\
Content-Disposition: attachment; filename=\"rechnung.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--b1--\r\n";
    let email = parse(raw.as_bytes()).unwrap();
    assert_eq!(email.from_name, "Jörg");
    assert_eq!(email.subject, "Rückerstattung");
    assert!(
        email
            .visible_text
            .contains("Grüße, bitte erstatten Sie den Betrag."),
        "{:?}",
        email.visible_text
    );
    assert!(!email.visible_text.contains('<'), "no markup is left");
    assert_eq!(email.attachments.len(), 1);
    let pdf = &email.attachments[0];
    assert_eq!(pdf.name, "rechnung.pdf");
    assert_eq!(pdf.content_type, "application/pdf");
    assert_eq!(pdf.content, b"%PDF-1.4\n");
}

#[test]
fn machines_give_themselves_away() {
    let with = |header: &str| {
        let raw = format!(
            "From: ada@example.com\r\nSubject: Out of office\r\n{header}\r\n\r\nI am away.\r\n"
        );
        parse(raw.as_bytes()).unwrap().automatic
    };
    assert_eq!(
        with("Auto-Submitted: auto-replied").as_deref(),
        Some("Auto-Submitted: auto-replied")
    );
    assert_eq!(with("Auto-Submitted: no"), None);
    assert_eq!(
        with("Precedence: bulk").as_deref(),
        Some("Precedence: bulk")
    );
    assert_eq!(with("Precedence: first-class"), None);
    assert_eq!(with("X-Autoreply: yes").as_deref(), Some("X-Autoreply"));
    assert_eq!(with("X-Autorespond: 1").as_deref(), Some("X-Autoreply"));
}

#[test]
fn a_bounce_names_the_message_it_returns() {
    let raw = "From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\n\
To: support@acme.test\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\r\n\
\r\n\
--r\r\n\
Content-Type: text/plain\r\n\
\r\n\
Your message could not be delivered to nobody@example.com.\r\n\
--r\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.com\r\n\
Final-Recipient: rfc822; nobody@example.com\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
--r\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: support@acme.test\r\n\
To: nobody@example.com\r\n\
Subject: Re: [#7] Hello\r\n\
Message-ID: <0196d2a7c0de7000a000000000000009@acme.test>\r\n\
\r\n\
Hello!\r\n\
--r--\r\n";
    let email = parse(raw.as_bytes()).unwrap();
    assert_eq!(email.automatic.as_deref(), Some("bounce"));
    let mentioned = email.bounce_of.unwrap();
    assert!(
        mentioned.contains(&"0196d2a7c0de7000a000000000000009@acme.test".to_owned()),
        "{mentioned:?}"
    );
}

#[test]
fn quoted_history_is_cut_at_its_first_sign() {
    assert_eq!(above_quote("Yes.\n\n> earlier"), "Yes.");
    assert_eq!(
        above_quote("Ja.\n\nAm 30.11.2026 um 10:00 schrieb Support:\n> alt"),
        "Ja."
    );
    assert_eq!(
        above_quote("Sure.\n\nOn Mon, 30 Nov 2026 at 10:00, Support\n<s@acme.test> wrote:\n> x"),
        "Sure."
    );
    assert_eq!(
        above_quote("Fine\n-----Original Message-----\nFrom: x"),
        "Fine"
    );
    // An answer written below the quote keeps everything.
    assert_eq!(above_quote("> question?\nanswer"), "> question?\nanswer");
    assert_eq!(above_quote("no quote at all\n"), "no quote at all");
}

#[test]
fn subjects_name_ticket_numbers_in_brackets() {
    assert_eq!(subject_number("Re: [#42] Password reset"), Some(42));
    assert_eq!(subject_number("Fwd: [#x] [#1042]"), Some(1042));
    assert_eq!(subject_number("#42 without brackets"), None);
    assert_eq!(subject_number("[#99999999999999999999]"), None);
    assert_eq!(subject_number("[#]"), None);
}

#[test]
fn control_characters_never_reach_subjects_names_or_text() {
    let raw = "From: \"B\x1bob\" <bob@example.com>\r\nSubject: =?utf-8?Q?a=00b=0D=0Ac?=\r\n\
Message-ID: <x@y>\r\n\r\npage1\x0cpage2\r\nline\ttab\r\n";
    let email = parse(raw.as_bytes()).unwrap();
    assert!(
        !email.subject.contains(char::is_control),
        "{:?}",
        email.subject
    );
    assert!(
        !email.from_name.contains(char::is_control),
        "{:?}",
        email.from_name
    );
    assert_eq!(email.full_text.trim_end(), "page1page2\nline\ttab");
}

#[test]
fn garbage_is_refused_not_a_panic() {
    assert_eq!(parse(b""), Err(EmailError::Unreadable));
    assert_eq!(
        parse(b"Subject: no sender\r\n\r\nbody"),
        Err(EmailError::NoSender)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes at all: an error or an email, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = parse(&raw);
    }

    /// Real messages cut, spliced and corrupted anywhere: never a panic, and the parts
    /// read back stay within the input's size.
    #[test]
    fn damaged_real_messages_never_panic(
        cut in 0usize..REPLY.len(),
        at in 0usize..REPLY.len(),
        junk in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut raw = REPLY.as_bytes()[..cut].to_vec();
        let at = at.min(raw.len());
        raw.splice(at..at, junk.iter().copied());
        if let Ok(email) = parse(&raw) {
            prop_assert!(email.full_text.len() <= raw.len() * 4 + 16);
        }
    }

    #[test]
    fn above_quote_never_grows_the_text(text in "[ -~\n>]{0,300}") {
        prop_assert!(above_quote(&text).len() <= text.len());
    }
}
