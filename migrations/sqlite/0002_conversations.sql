-- The conversation bridge: conversations escalated by bots, their transcripts, customer
-- messages from gateways, and the outbound delivery queue.

CREATE TABLE conversations (
    id              BLOB PRIMARY KEY,
    source          TEXT NOT NULL,
    external_id     TEXT NOT NULL,
    channel         TEXT NOT NULL CHECK (channel IN ('EMAIL', 'SMS', 'CHAT')),
    ticket_id       BLOB NOT NULL REFERENCES tickets (id),
    summary         TEXT NOT NULL,
    intent          TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (source, external_id)
);
CREATE INDEX conversations_ticket_idx ON conversations (ticket_id);

-- One row per transcript message kept, so re-escalations add only what is new.
CREATE TABLE conversation_messages (
    conversation_id BLOB NOT NULL REFERENCES conversations (id),
    message_key     TEXT NOT NULL,
    event_id        BLOB NOT NULL,
    PRIMARY KEY (conversation_id, message_key)
);

-- Customer messages by the gateway's id, so a gateway may safely retry.
CREATE TABLE inbound_messages (
    channel             TEXT NOT NULL,
    external_message_id TEXT NOT NULL,
    ticket_id           BLOB NOT NULL REFERENCES tickets (id),
    event_id            BLOB NOT NULL,
    created_at          TEXT NOT NULL,
    PRIMARY KEY (channel, external_message_id)
);

-- Messages for channel gateways. status sums up the deliveries: QUEUED until a consumer
-- group reports an outcome, then that outcome.
CREATE TABLE outbound_messages (
    id                  BLOB PRIMARY KEY,
    ticket_id           BLOB NOT NULL REFERENCES tickets (id),
    event_id            BLOB NOT NULL UNIQUE,
    conversation_id     TEXT NOT NULL,
    channel             TEXT NOT NULL CHECK (channel IN ('EMAIL', 'SMS', 'CHAT')),
    recipient           TEXT NOT NULL,
    subject             TEXT NOT NULL,
    body                TEXT NOT NULL,
    attachments         TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('QUEUED', 'DELIVERED', 'FAILED')),
    provider_message_id TEXT NOT NULL DEFAULT '',
    error               TEXT NOT NULL DEFAULT '',
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE INDEX outbound_messages_channel_idx ON outbound_messages (channel, created_at) WHERE status = 'QUEUED';

-- Consumer groups seen per channel: a message is delivered once to each group.
CREATE TABLE channel_consumers (
    channel        TEXT NOT NULL,
    consumer_group TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (channel, consumer_group)
);

-- One row per message and consumer group. A lease hands the row to one subscriber until
-- lease_expires_at; after that, or when its stream drops, it is handed out again.
CREATE TABLE deliveries (
    message_id          BLOB NOT NULL REFERENCES outbound_messages (id),
    consumer_group      TEXT NOT NULL,
    channel             TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('QUEUED', 'LEASED', 'DELIVERED', 'FAILED')),
    lease_id            BLOB,
    lease_expires_at    TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    PRIMARY KEY (message_id, consumer_group)
);
CREATE INDEX deliveries_pending_idx ON deliveries (channel, consumer_group, created_at)
    WHERE status IN ('QUEUED', 'LEASED');
CREATE INDEX deliveries_lease_idx ON deliveries (lease_id) WHERE lease_id IS NOT NULL;
