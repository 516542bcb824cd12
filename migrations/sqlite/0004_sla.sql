-- SLA: business-hours calendars, policies, and the clocks of each ticket.

CREATE TABLE calendars (
    id              BLOB PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    time_zone       TEXT NOT NULL,
    weekly          TEXT NOT NULL,
    holidays        TEXT NOT NULL,
    yearly_holidays TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE sla_policies (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    position    INTEGER NOT NULL,
    conditions  TEXT NOT NULL,
    targets     TEXT NOT NULL,
    calendar_id BLOB REFERENCES calendars (id),
    warning     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- One row per ticket and metric. The outcome of a stopped clock (met or breached, when)
-- stays here, so compliance per period, priority and queue is one query.
CREATE TABLE sla_clocks (
    ticket_id      BLOB NOT NULL REFERENCES tickets (id),
    metric         TEXT NOT NULL CHECK (metric IN ('FIRST_RESPONSE', 'NEXT_RESPONSE', 'RESOLUTION')),
    policy_id      BLOB,
    calendar_id    BLOB,
    warning        TEXT NOT NULL,
    target_seconds INTEGER NOT NULL CHECK (target_seconds >= 0),
    used_seconds   INTEGER NOT NULL CHECK (used_seconds >= 0),
    running_since  TEXT,
    stopped        INTEGER NOT NULL,
    breached       INTEGER NOT NULL,
    due_at         TEXT,
    warn_at        TEXT,
    warned         INTEGER NOT NULL,
    breach_fired   INTEGER NOT NULL,
    started_at     TEXT NOT NULL,
    stopped_at     TEXT,
    PRIMARY KEY (ticket_id, metric)
);
CREATE INDEX sla_clocks_due_idx ON sla_clocks (due_at)
    WHERE running_since IS NOT NULL AND stopped = 0 AND breach_fired = 0;
CREATE INDEX sla_clocks_warn_idx ON sla_clocks (warn_at)
    WHERE running_since IS NOT NULL AND stopped = 0 AND warned = 0;
