-- Outbound webhooks: each endpoint follows the event log from its own position. The
-- delivery columns (position, attempts, state while failing) are written by the replica
-- delivering; `version` moves only with an admin's change, and is the etag.
CREATE TABLE webhooks (
    id                    BLOB PRIMARY KEY,
    url                   TEXT NOT NULL,
    description           TEXT NOT NULL,
    event_types           TEXT NOT NULL,
    filter                TEXT NOT NULL,
    state                 TEXT NOT NULL CHECK (state IN ('healthy', 'failing', 'disabled')),
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until TEXT,
    delivered_through     INTEGER NOT NULL,
    attempts              INTEGER NOT NULL,
    next_attempt_at       TEXT,
    failing_since         TEXT,
    last_error            TEXT NOT NULL,
    version               INTEGER NOT NULL,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
);

-- Every attempt, newest kept (the delivering replica trims each webhook's log).
CREATE TABLE webhook_deliveries (
    id              BLOB PRIMARY KEY,
    webhook_id      BLOB NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_cursor    INTEGER NOT NULL,
    event_id        BLOB NOT NULL,
    event_type      TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    status_code     INTEGER NOT NULL,
    latency_micros  INTEGER NOT NULL,
    error           TEXT NOT NULL,
    attempted_at    TEXT NOT NULL,
    next_attempt_at TEXT,
    delivered_at    TEXT,
    manual          BOOLEAN NOT NULL
);
CREATE INDEX webhook_deliveries_webhook_idx ON webhook_deliveries (webhook_id, id);
