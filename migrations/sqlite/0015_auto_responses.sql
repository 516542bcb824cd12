-- Auto-responses: one per kind and channel, and a record of each one sent (for the
-- once-per-closed-period and per-contact limits).
CREATE TABLE auto_responses (
    id                BLOB PRIMARY KEY,
    kind              TEXT NOT NULL
        CHECK (kind IN ('ACKNOWLEDGEMENT', 'AFTER_HOURS', 'RESOLUTION_CONFIRMATION')),
    channel           TEXT NOT NULL CHECK (channel IN ('EMAIL', 'SMS', 'CHAT')),
    template_id       BLOB NOT NULL,
    calendar_id       BLOB,
    enabled           BOOLEAN NOT NULL,
    for_agent_tickets BOOLEAN NOT NULL,
    version           INTEGER NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    UNIQUE (kind, channel)
);

CREATE TABLE auto_responses_sent (
    ticket_id BLOB NOT NULL REFERENCES tickets (id),
    contact   TEXT NOT NULL,
    kind      TEXT NOT NULL,
    sent_at   TEXT NOT NULL
);
CREATE INDEX auto_responses_sent_ticket_idx ON auto_responses_sent (ticket_id, kind, sent_at);
CREATE INDEX auto_responses_sent_contact_idx ON auto_responses_sent (contact, sent_at);
