-- Customer satisfaction: the latest rating of a ticket, and the secrets survey tokens are
-- signed with (one row per purpose, made by whichever replica needs it first).
ALTER TABLE tickets ADD COLUMN satisfaction_score integer
    CHECK (satisfaction_score BETWEEN 1 AND 5);
ALTER TABLE tickets ADD COLUMN satisfaction_comment text;
ALTER TABLE tickets ADD COLUMN satisfaction_rated_at timestamptz;

CREATE TABLE signing_keys (
    name   text PRIMARY KEY,
    secret bytea NOT NULL
);
