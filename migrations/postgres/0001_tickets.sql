-- Tickets, contacts, the event log, attachments, time entries, idempotency keys, API keys.

CREATE TABLE contacts (
    id          uuid PRIMARY KEY,
    external_id text NOT NULL UNIQUE,
    name        text NOT NULL DEFAULT '',
    email       text NOT NULL DEFAULT '',
    phone       text NOT NULL DEFAULT '',
    vip         boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- Human ticket numbers. A sequence never hands out a number twice, even across
-- replicas; a rolled-back create leaves a gap, as in every helpdesk.
CREATE SEQUENCE ticket_number_seq;

CREATE TABLE tickets (
    id                 uuid PRIMARY KEY,
    number             bigint NOT NULL UNIQUE,
    subject            text NOT NULL CHECK (length(subject) BETWEEN 1 AND 250),
    description        text NOT NULL,
    status             text NOT NULL CHECK (status IN ('OPEN', 'IN_PROGRESS', 'WAITING', 'RESOLVED', 'CLOSED', 'MERGED')),
    priority           text NOT NULL CHECK (priority IN ('LOW', 'MEDIUM', 'HIGH', 'URGENT')),
    priority_rank      smallint NOT NULL CHECK (priority_rank BETWEEN 1 AND 4),
    ticket_type        text NOT NULL CHECK (ticket_type IN ('BUG', 'FEATURE_REQUEST', 'QUESTION', 'COMPLAINT', 'OTHER')),
    tags               jsonb NOT NULL,
    custom_fields      jsonb NOT NULL,
    contact_id         uuid NOT NULL REFERENCES contacts (id),
    assignee_id        uuid,
    queue_id           uuid,
    merged_into_id     uuid REFERENCES tickets (id),
    channel            text CHECK (channel IN ('EMAIL', 'SMS', 'CHAT')),
    follow_up_of_id    uuid REFERENCES tickets (id),
    version            bigint NOT NULL CHECK (version >= 1),
    time_spent_seconds bigint NOT NULL DEFAULT 0 CHECK (time_spent_seconds >= 0),
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
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

-- Tags are kept twice: as a JSON array on the ticket for reading, and here for filtering.
CREATE TABLE ticket_tags (
    ticket_id uuid NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    tag       text NOT NULL,
    PRIMARY KEY (ticket_id, tag)
);
CREATE INDEX ticket_tags_tag_idx ON ticket_tags (tag, ticket_id);

-- The append-only event log: every ticket's activity feed and the source of every stream.
--
-- position orders the log. It is (writing transaction id << 20) | ordinal within that
-- transaction, so rows sort by transaction, then by insertion. A reader that only reads
-- below (pg_snapshot_xmin(pg_current_snapshot()) << 20) never passes a position that a
-- still-running transaction could fill: every transaction with a smaller id has ended.
-- The ticket_* columns copy the ticket as of the event, for stream filters.
CREATE TABLE ticket_events (
    position      bigint PRIMARY KEY,
    id            uuid NOT NULL UNIQUE,
    ticket_id     uuid NOT NULL REFERENCES tickets (id),
    ticket_number bigint NOT NULL,
    event_type    text NOT NULL,
    actor_kind    text NOT NULL,
    actor_id      uuid,
    actor_name    text NOT NULL,
    visibility    text NOT NULL CHECK (visibility IN ('public', 'internal')),
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL,
    ticket_status text NOT NULL,
    priority      text NOT NULL,
    ticket_type   text NOT NULL,
    assignee_id   uuid,
    queue_id      uuid,
    contact_id    uuid NOT NULL,
    channel       text,
    tags          jsonb NOT NULL
);
CREATE INDEX ticket_events_ticket_idx ON ticket_events (ticket_id, position);

CREATE TABLE attachments (
    id           uuid PRIMARY KEY,
    ticket_id    uuid NOT NULL REFERENCES tickets (id),
    event_id     uuid NOT NULL REFERENCES ticket_events (id),
    name         text NOT NULL,
    content_type text NOT NULL,
    size_bytes   bigint NOT NULL CHECK (size_bytes >= 0),
    content      bytea NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX attachments_event_idx ON attachments (event_id);

CREATE TABLE time_entries (
    id         uuid PRIMARY KEY,
    ticket_id  uuid NOT NULL REFERENCES tickets (id),
    agent_id   uuid,
    seconds    bigint NOT NULL CHECK (seconds > 0),
    note       text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX time_entries_ticket_idx ON time_entries (ticket_id);

CREATE TABLE idempotency_keys (
    scope       text NOT NULL,
    request_id  text NOT NULL,
    fingerprint text NOT NULL,
    resource_id uuid NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (scope, request_id)
);

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'agent', 'bot', 'gateway')),
    agent_id    uuid,
    -- Channels a gateway key is limited to; empty means all.
    channels    jsonb NOT NULL DEFAULT '[]',
    prefix      text NOT NULL,
    secret_hash bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX api_keys_created_idx ON api_keys (created_at, id);
