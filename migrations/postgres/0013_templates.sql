-- Message templates for automation: named, per channel, checked when saved.
CREATE TABLE templates (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    channel    text NOT NULL CHECK (channel IN ('EMAIL', 'SMS', 'CHAT')),
    subject    text NOT NULL,
    body       text NOT NULL,
    version    bigint NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
