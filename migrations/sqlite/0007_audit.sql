-- The audit trail of administrative changes. No foreign keys: entries outlive what they
-- describe.
CREATE TABLE audit_log (
    id          BLOB PRIMARY KEY,
    actor_kind  TEXT NOT NULL,
    actor_id    BLOB,
    actor_name  TEXT NOT NULL,
    action      TEXT NOT NULL,
    resource    TEXT NOT NULL,
    resource_id BLOB NOT NULL,
    changes     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX audit_log_resource_idx ON audit_log (resource, resource_id, id);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, id);
