-- Saved views of tickets: personal (an owner agent) or shared (none).
CREATE TABLE views (
    id             BLOB PRIMARY KEY,
    name           TEXT NOT NULL,
    filter         TEXT NOT NULL,
    order_by       TEXT NOT NULL,
    columns        TEXT NOT NULL,
    owner_agent_id BLOB,
    version        INTEGER NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX views_owner_idx ON views (owner_agent_id);
