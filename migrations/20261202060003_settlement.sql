-- Settlement between partners (DESIGN.md "Settlement"). A closed period is an immutable
-- statement: its lines, its totals and the transfers through the coalition operator. The
-- statements partition the ledger: each covers the entries created in
-- [covers_from, covers_until) — covers_from is the previous statement's covers_until (NULL
-- for the first: everything before) and covers_until the end of the month in KRUG_TIMEZONE,
-- or the moment of closing if that came first (a clock moved ahead in tests). An entry
-- written after a period closed (a late refund) therefore falls into the next period: an
-- adjustment of the next statement, never a change of a closed one.
CREATE TABLE settlement_periods (
    period          text PRIMARY KEY CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    covers_from     timestamptz,
    covers_until    timestamptz NOT NULL,
    -- Σ of the entries no business funds (referrals, operators' adjustments).
    operator_funded numeric(14,2) NOT NULL,
    -- Σ of all the covered entries (= Σ nets + operator_funded) and their number.
    total           numeric(14,2) NOT NULL,
    entries         bigint NOT NULL,
    closed_at       timestamptz NOT NULL DEFAULT now(),
    -- NULL: the `settlement` job.
    closed_by       uuid REFERENCES users(id) ON DELETE SET NULL
);

CREATE TABLE settlement_lines (
    period      text NOT NULL REFERENCES settlement_periods(period),
    business_id uuid NOT NULL REFERENCES businesses(id),
    issued      numeric(14,2) NOT NULL,
    redeemed    numeric(14,2) NOT NULL,
    expired     numeric(14,2) NOT NULL,
    refunded    numeric(14,2) NOT NULL,
    -- issued − refunded − expired − redeemed: positive, the business pays the operator.
    net         numeric(14,2) NOT NULL CHECK (net = issued - refunded - expired - redeemed),
    PRIMARY KEY (period, business_id)
);
CREATE INDEX settlement_lines_business_idx ON settlement_lines (business_id, period);

CREATE TABLE settlement_transfers (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    period      text NOT NULL REFERENCES settlement_periods(period),
    business_id uuid NOT NULL REFERENCES businesses(id),
    direction   text NOT NULL CHECK (direction IN ('to_operator', 'to_business')),
    amount      numeric(14,2) NOT NULL CHECK (amount > 0),
    paid_at     timestamptz,
    paid_by     uuid REFERENCES users(id) ON DELETE SET NULL,
    UNIQUE (period, business_id)
);

-- A closed statement never changes: its period row and lines refuse updates and deletes,
-- and of a transfer only the payment mark may be set, once.
CREATE FUNCTION krug_settlement_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'settlement_transfers' AND TG_OP = 'UPDATE'
       AND OLD.paid_at IS NULL
       AND (NEW.id, NEW.period, NEW.business_id, NEW.direction, NEW.amount)
           = (OLD.id, OLD.period, OLD.business_id, OLD.direction, OLD.amount) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'settlement statements are immutable (% on %)', TG_OP, TG_TABLE_NAME;
END $$;
CREATE TRIGGER settlement_periods_immutable BEFORE UPDATE OR DELETE ON settlement_periods
    FOR EACH ROW EXECUTE FUNCTION krug_settlement_immutable();
CREATE TRIGGER settlement_lines_immutable BEFORE UPDATE OR DELETE ON settlement_lines
    FOR EACH ROW EXECUTE FUNCTION krug_settlement_immutable();
CREATE TRIGGER settlement_transfers_immutable BEFORE UPDATE OR DELETE ON settlement_transfers
    FOR EACH ROW EXECUTE FUNCTION krug_settlement_immutable();

-- A period's entries by time (the live preview, the close).
CREATE INDEX bonus_ledger_created_idx ON bonus_ledger (created_at);
