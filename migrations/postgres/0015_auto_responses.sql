-- Auto-responses: one per kind and channel, and a record of each one sent (for the
-- once-per-closed-period and per-contact limits).
CREATE TABLE auto_responses (
    id                uuid PRIMARY KEY,
    kind              text NOT NULL
        CHECK (kind IN ('ACKNOWLEDGEMENT', 'AFTER_HOURS', 'RESOLUTION_CONFIRMATION')),
    channel           text NOT NULL CHECK (channel IN ('EMAIL', 'SMS', 'CHAT')),
    template_id       uuid NOT NULL,
    calendar_id       uuid,
    enabled           boolean NOT NULL,
    for_agent_tickets boolean NOT NULL,
    version           bigint NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    UNIQUE (kind, channel)
);

CREATE TABLE auto_responses_sent (
    ticket_id uuid NOT NULL REFERENCES tickets (id),
    contact   text NOT NULL,
    kind      text NOT NULL,
    sent_at   timestamptz NOT NULL
);
CREATE INDEX auto_responses_sent_ticket_idx ON auto_responses_sent (ticket_id, kind, sent_at);
CREATE INDEX auto_responses_sent_contact_idx ON auto_responses_sent (contact, sent_at);
