-- Inbound hooks: URLs other systems POST signed JSON to. The secret is kept as given out
-- (`whsec_…`): verifying a signature needs the key itself.
CREATE TABLE inbound_hooks (
    id         BLOB PRIMARY KEY,
    name       TEXT NOT NULL,
    action     TEXT NOT NULL CHECK (action IN ('create_ticket', 'post_customer_message')),
    source     TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX inbound_hooks_created_idx ON inbound_hooks (created_at, id);
