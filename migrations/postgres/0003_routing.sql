-- Routing: agents, queues and their members, routing rules; tickets gain a tier and the
-- skills they need.

CREATE TABLE queues (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    tier       integer NOT NULL CHECK (tier BETWEEN 1 AND 3),
    strategy   text NOT NULL CHECK (strategy IN ('MANUAL', 'ROUND_ROBIN', 'SKILL_BASED', 'LOAD_BALANCED')),
    version    bigint NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE agents (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    email        text NOT NULL,
    skills       jsonb NOT NULL,
    tier         integer NOT NULL CHECK (tier BETWEEN 1 AND 3),
    capacity     integer NOT NULL CHECK (capacity >= 0),
    availability text NOT NULL CHECK (availability IN ('ONLINE', 'AWAY', 'OFFLINE')),
    vip_handler  boolean NOT NULL,
    version      bigint NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE UNIQUE INDEX agents_email_idx ON agents (email) WHERE email <> '';

-- last_assigned_at drives round robin: the member assigned least recently goes next.
CREATE TABLE queue_members (
    queue_id         uuid NOT NULL REFERENCES queues (id) ON DELETE CASCADE,
    agent_id         uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    last_assigned_at timestamptz,
    PRIMARY KEY (queue_id, agent_id)
);
CREATE INDEX queue_members_agent_idx ON queue_members (agent_id);

CREATE TABLE routing_rules (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    position   integer NOT NULL,
    enabled    boolean NOT NULL,
    conditions jsonb NOT NULL,
    actions    jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

ALTER TABLE tickets ADD COLUMN tier integer NOT NULL DEFAULT 1 CHECK (tier BETWEEN 1 AND 3);
ALTER TABLE tickets ADD COLUMN required_skills jsonb NOT NULL DEFAULT '[]';
ALTER TABLE tickets ADD COLUMN vip_handlers_only boolean NOT NULL DEFAULT false;
CREATE INDEX tickets_assignee_active_idx ON tickets (assignee_id)
    WHERE status IN ('OPEN', 'IN_PROGRESS');
CREATE INDEX tickets_waiting_idx ON tickets (queue_id, priority_rank DESC, created_at)
    WHERE assignee_id IS NULL AND status IN ('OPEN', 'IN_PROGRESS');
