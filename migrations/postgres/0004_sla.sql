-- SLA: business-hours calendars, policies, and the clocks of each ticket.

CREATE TABLE calendars (
    id              uuid PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    time_zone       text NOT NULL,
    weekly          jsonb NOT NULL,
    holidays        jsonb NOT NULL,
    yearly_holidays jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

CREATE TABLE sla_policies (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    position    integer NOT NULL,
    conditions  jsonb NOT NULL,
    targets     jsonb NOT NULL,
    calendar_id uuid REFERENCES calendars (id),
    warning     jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- One row per ticket and metric. The outcome of a stopped clock (met or breached, when)
-- stays here, so compliance per period, priority and queue is one query.
CREATE TABLE sla_clocks (
    ticket_id      uuid NOT NULL REFERENCES tickets (id),
    metric         text NOT NULL CHECK (metric IN ('FIRST_RESPONSE', 'NEXT_RESPONSE', 'RESOLUTION')),
    policy_id      uuid,
    calendar_id    uuid,
    warning        jsonb NOT NULL,
    target_seconds bigint NOT NULL CHECK (target_seconds >= 0),
    used_seconds   bigint NOT NULL CHECK (used_seconds >= 0),
    running_since  timestamptz,
    stopped        boolean NOT NULL,
    breached       boolean NOT NULL,
    due_at         timestamptz,
    warn_at        timestamptz,
    warned         boolean NOT NULL,
    breach_fired   boolean NOT NULL,
    started_at     timestamptz NOT NULL,
    stopped_at     timestamptz,
    PRIMARY KEY (ticket_id, metric)
);
CREATE INDEX sla_clocks_due_idx ON sla_clocks (due_at)
    WHERE running_since IS NOT NULL AND NOT stopped AND NOT breach_fired;
CREATE INDEX sla_clocks_warn_idx ON sla_clocks (warn_at)
    WHERE running_since IS NOT NULL AND NOT stopped AND NOT warned;
