-- Tickets, contacts, the event log, attachments, time entries, idempotency keys, API keys.
-- UUIDs are 16-byte BLOBs, times RFC 3339 TEXT in UTC, JSON TEXT.

CREATE TABLE contacts (
    id          BLOB PRIMARY KEY,
    external_id TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL DEFAULT '',
    email       TEXT NOT NULL DEFAULT '',
    phone       TEXT NOT NULL DEFAULT '',
    vip         INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE tickets (
    id                 BLOB PRIMARY KEY,
    number             INTEGER NOT NULL UNIQUE,
    subject            TEXT NOT NULL CHECK (length(subject) BETWEEN 1 AND 250),
    description        TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('OPEN', 'IN_PROGRESS', 'WAITING', 'RESOLVED', 'CLOSED', 'MERGED')),
    priority           TEXT NOT NULL CHECK (priority IN ('LOW', 'MEDIUM', 'HIGH', 'URGENT')),
    priority_rank      INTEGER NOT NULL CHECK (priority_rank BETWEEN 1 AND 4),
    ticket_type        TEXT NOT NULL CHECK (ticket_type IN ('BUG', 'FEATURE_REQUEST', 'QUESTION', 'COMPLAINT', 'OTHER')),
    tags               TEXT NOT NULL,
    custom_fields      TEXT NOT NULL,
    contact_id         BLOB NOT NULL REFERENCES contacts (id),
    assignee_id        BLOB,
    queue_id           BLOB,
    merged_into_id     BLOB REFERENCES tickets (id),
    channel            TEXT CHECK (channel IN ('EMAIL', 'SMS', 'CHAT')),
    follow_up_of_id    BLOB REFERENCES tickets (id),
    version            INTEGER NOT NULL CHECK (version >= 1),
    time_spent_seconds INTEGER NOT NULL DEFAULT 0 CHECK (time_spent_seconds >= 0),
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    CONSTRAINT tickets_merged_has_target CHECK ((status = 'MERGED') = (merged_into_id IS NOT NULL)),
    CONSTRAINT tickets_not_merged_into_self CHECK (merged_into_id <> id)
);

CREATE INDEX tickets_created_idx ON tickets (created_at, number);
CREATE INDEX tickets_updated_idx ON tickets (updated_at, number);
CREATE INDEX tickets_priority_idx ON tickets (priority_rank, number);
CREATE INDEX tickets_status_idx ON tickets (status);
CREATE INDEX tickets_assignee_idx ON tickets (assignee_id);
CREATE INDEX tickets_queue_idx ON tickets (queue_id);
CREATE INDEX tickets_contact_idx ON tickets (contact_id);
CREATE INDEX tickets_merged_into_idx ON tickets (merged_into_id) WHERE merged_into_id IS NOT NULL;

CREATE TABLE ticket_tags (
    ticket_id BLOB NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    tag       TEXT NOT NULL,
    PRIMARY KEY (ticket_id, tag)
);
CREATE INDEX ticket_tags_tag_idx ON ticket_tags (tag, ticket_id);

-- position orders the log. SQLite has one writer at a time, so positions handed out as
-- max + 1 inside the write transaction commit in order.
CREATE TABLE ticket_events (
    position      INTEGER PRIMARY KEY,
    id            BLOB NOT NULL UNIQUE,
    ticket_id     BLOB NOT NULL REFERENCES tickets (id),
    ticket_number INTEGER NOT NULL,
    event_type    TEXT NOT NULL,
    actor_kind    TEXT NOT NULL,
    actor_id      BLOB,
    actor_name    TEXT NOT NULL,
    visibility    TEXT NOT NULL CHECK (visibility IN ('public', 'internal')),
    payload       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    ticket_status TEXT NOT NULL,
    priority      TEXT NOT NULL,
    ticket_type   TEXT NOT NULL,
    assignee_id   BLOB,
    queue_id      BLOB,
    contact_id    BLOB NOT NULL,
    channel       TEXT,
    tags          TEXT NOT NULL
);
CREATE INDEX ticket_events_ticket_idx ON ticket_events (ticket_id, position);

CREATE TABLE attachments (
    id           BLOB PRIMARY KEY,
    ticket_id    BLOB NOT NULL REFERENCES tickets (id),
    event_id     BLOB NOT NULL REFERENCES ticket_events (id),
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   INTEGER NOT NULL CHECK (size_bytes >= 0),
    content      BLOB NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX attachments_event_idx ON attachments (event_id);

CREATE TABLE time_entries (
    id         BLOB PRIMARY KEY,
    ticket_id  BLOB NOT NULL REFERENCES tickets (id),
    agent_id   BLOB,
    seconds    INTEGER NOT NULL CHECK (seconds > 0),
    note       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX time_entries_ticket_idx ON time_entries (ticket_id);

CREATE TABLE idempotency_keys (
    scope       TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    resource_id BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (scope, request_id)
);

CREATE TABLE api_keys (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'agent', 'bot', 'gateway')),
    agent_id    BLOB,
    -- Channels a gateway key is limited to; empty means all.
    channels    TEXT NOT NULL DEFAULT '[]',
    prefix      TEXT NOT NULL,
    secret_hash BLOB NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE INDEX api_keys_created_idx ON api_keys (created_at, id);
