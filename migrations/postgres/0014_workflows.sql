-- Workflows: a trigger, a condition and actions, run after the triggering commit by a
-- processor on the event log, or by a durable timer on the ticket.

-- How many workflow runs led to an event (0: a caller's change); bounds chains.
ALTER TABLE ticket_events ADD COLUMN depth integer NOT NULL DEFAULT 0;

CREATE TABLE workflows (
    id           uuid PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    enabled      boolean NOT NULL,
    position     integer NOT NULL,
    trigger      jsonb NOT NULL,
    condition    text NOT NULL,
    actions      jsonb NOT NULL,
    -- The log position up to which this workflow has seen every event: moved forward in
    -- the transaction of the actions an event caused, so an event is acted on once.
    seen_through bigint NOT NULL,
    version      bigint NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

-- One replica at a time runs a processor on the log: the holder renews its lease.
CREATE TABLE processor_leases (
    name       text PRIMARY KEY,
    owner      uuid NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Timers of time-triggered workflows, one per workflow and ticket: armed, re-armed and
-- cancelled in the transaction of the change that moves them; deleted when they fire,
-- in the transaction of the workflow's actions.
CREATE TABLE workflow_timers (
    workflow_id uuid NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    ticket_id   uuid NOT NULL REFERENCES tickets (id),
    due_at      timestamptz NOT NULL,
    started_at  timestamptz NOT NULL,
    PRIMARY KEY (workflow_id, ticket_id)
);
CREATE INDEX workflow_timers_due_idx ON workflow_timers (due_at);
CREATE INDEX workflow_timers_ticket_idx ON workflow_timers (ticket_id);
