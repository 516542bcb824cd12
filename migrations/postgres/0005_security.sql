-- Bot keys scoped to conversation sources; request ids purged once their window passed.

-- Conversation sources a bot key speaks for; empty means any.
ALTER TABLE api_keys ADD COLUMN sources jsonb NOT NULL DEFAULT '[]';

CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
