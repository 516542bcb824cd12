-- The audit trail of administrative changes. No foreign keys: entries outlive what they
-- describe.
CREATE TABLE audit_log (
    id          uuid PRIMARY KEY,
    actor_kind  text NOT NULL,
    actor_id    uuid,
    actor_name  text NOT NULL,
    action      text NOT NULL,
    resource    text NOT NULL,
    resource_id uuid NOT NULL,
    changes     jsonb NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX audit_log_resource_idx ON audit_log (resource, resource_id, id);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, id);
