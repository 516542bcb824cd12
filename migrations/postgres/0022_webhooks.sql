-- Outbound webhooks: each endpoint follows the event log from its own position. The
-- delivery columns (position, attempts, state while failing) are written by the replica
-- delivering; `version` moves only with an admin's change, and is the etag.
CREATE TABLE webhooks (
    id                    uuid PRIMARY KEY,
    url                   text NOT NULL,
    description           text NOT NULL,
    event_types           jsonb NOT NULL,
    filter                text NOT NULL,
    state                 text NOT NULL CHECK (state IN ('healthy', 'failing', 'disabled')),
    secret                text NOT NULL,
    previous_secret       text,
    previous_secret_until timestamptz,
    delivered_through     bigint NOT NULL,
    attempts              integer NOT NULL,
    next_attempt_at       timestamptz,
    failing_since         timestamptz,
    last_error            text NOT NULL,
    version               bigint NOT NULL,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL
);

-- Every attempt, newest kept (the delivering replica trims each webhook's log).
CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,
    webhook_id      uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_cursor    bigint NOT NULL,
    event_id        uuid NOT NULL,
    event_type      text NOT NULL,
    attempt         integer NOT NULL,
    status_code     integer NOT NULL,
    latency_micros  bigint NOT NULL,
    error           text NOT NULL,
    attempted_at    timestamptz NOT NULL,
    next_attempt_at timestamptz,
    delivered_at    timestamptz,
    manual          boolean NOT NULL
);
CREATE INDEX webhook_deliveries_webhook_idx ON webhook_deliveries (webhook_id, id);
