-- Routing: agents, queues and their members, routing rules; tickets gain a tier and the
-- skills they need.

CREATE TABLE queues (
    id         BLOB PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    tier       INTEGER NOT NULL CHECK (tier BETWEEN 1 AND 3),
    strategy   TEXT NOT NULL CHECK (strategy IN ('MANUAL', 'ROUND_ROBIN', 'SKILL_BASED', 'LOAD_BALANCED')),
    version    INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE agents (
    id           BLOB PRIMARY KEY,
    name         TEXT NOT NULL,
    email        TEXT NOT NULL,
    skills       TEXT NOT NULL,
    tier         INTEGER NOT NULL CHECK (tier BETWEEN 1 AND 3),
    capacity     INTEGER NOT NULL CHECK (capacity >= 0),
    availability TEXT NOT NULL CHECK (availability IN ('ONLINE', 'AWAY', 'OFFLINE')),
    vip_handler  INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE UNIQUE INDEX agents_email_idx ON agents (email) WHERE email <> '';

-- last_assigned_at drives round robin: the member assigned least recently goes next.
CREATE TABLE queue_members (
    queue_id         BLOB NOT NULL REFERENCES queues (id) ON DELETE CASCADE,
    agent_id         BLOB NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    last_assigned_at TEXT,
    PRIMARY KEY (queue_id, agent_id)
);
CREATE INDEX queue_members_agent_idx ON queue_members (agent_id);

CREATE TABLE routing_rules (
    id         BLOB PRIMARY KEY,
    name       TEXT NOT NULL,
    position   INTEGER NOT NULL,
    enabled    INTEGER NOT NULL,
    conditions TEXT NOT NULL,
    actions    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

ALTER TABLE tickets ADD COLUMN tier INTEGER NOT NULL DEFAULT 1 CHECK (tier BETWEEN 1 AND 3);
ALTER TABLE tickets ADD COLUMN required_skills TEXT NOT NULL DEFAULT '[]';
ALTER TABLE tickets ADD COLUMN vip_handlers_only INTEGER NOT NULL DEFAULT 0;
CREATE INDEX tickets_assignee_active_idx ON tickets (assignee_id)
    WHERE status IN ('OPEN', 'IN_PROGRESS');
CREATE INDEX tickets_waiting_idx ON tickets (queue_id, priority_rank DESC, created_at)
    WHERE assignee_id IS NULL AND status IN ('OPEN', 'IN_PROGRESS');
