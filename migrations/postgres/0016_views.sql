-- Saved views of tickets: personal (an owner agent) or shared (none).
CREATE TABLE views (
    id             uuid PRIMARY KEY,
    name           text NOT NULL,
    filter         text NOT NULL,
    order_by       text NOT NULL,
    columns        jsonb NOT NULL,
    owner_agent_id uuid,
    version        bigint NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX views_owner_idx ON views (owner_agent_id);
