-- Customer satisfaction: the latest rating of a ticket, and the secrets survey tokens are
-- signed with (one row per purpose, made by whichever replica needs it first).
ALTER TABLE tickets ADD COLUMN satisfaction_score INTEGER
    CHECK (satisfaction_score BETWEEN 1 AND 5);
ALTER TABLE tickets ADD COLUMN satisfaction_comment TEXT;
ALTER TABLE tickets ADD COLUMN satisfaction_rated_at TEXT;

CREATE TABLE signing_keys (
    name   TEXT PRIMARY KEY,
    secret BLOB NOT NULL
);
