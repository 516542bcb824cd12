-- Message templates for automation: named, per channel, checked when saved.
CREATE TABLE templates (
    id         BLOB PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    channel    TEXT NOT NULL CHECK (channel IN ('EMAIL', 'SMS', 'CHAT')),
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
