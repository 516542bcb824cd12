-- Inbound hooks: URLs other systems POST signed JSON to. The secret is kept as given out
-- (`whsec_…`): verifying a signature needs the key itself.
CREATE TABLE inbound_hooks (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    action     text NOT NULL CHECK (action IN ('create_ticket', 'post_customer_message')),
    source     text NOT NULL,
    secret     text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX inbound_hooks_created_idx ON inbound_hooks (created_at, id);
