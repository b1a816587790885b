-- Facts go to ClickHouse once: a transaction is marked when its fact is stored there.
-- Medical transactions are never exported (and never marked).
ALTER TABLE transactions ADD COLUMN facts_exported_at timestamptz;
CREATE INDEX transactions_facts_pending_idx ON transactions (created_at)
    WHERE facts_exported_at IS NULL AND bonus_applied AND NOT is_medical;
