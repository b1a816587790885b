-- Every change made by an operator or a business owner: who, what, on what, the state
-- before and after, and the request that made it. Append-only: rows are never updated or
-- deleted (the triggers refuse it, whoever asks), so the log is evidence.
CREATE TABLE audit_log (
    -- UUIDv7: time-ordered, the pagination key with created_at.
    id          uuid PRIMARY KEY,
    -- The user who acted; null for the command line (`krug admin …`) and the system.
    actor_id    uuid,
    -- `business.update`, `staff.put`, `job.retry`, … (dotted: what, then the verb).
    action      text NOT NULL,
    target_type text NOT NULL,
    target_id   text,
    -- Snapshots as operators see them (never a secret: credentials are not in them).
    before      jsonb,
    after       jsonb,
    request_id  text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_time_idx ON audit_log (created_at DESC, id DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, created_at DESC, id DESC);
CREATE INDEX audit_log_target_idx ON audit_log (target_id, created_at DESC, id DESC);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END;
$$;
CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
