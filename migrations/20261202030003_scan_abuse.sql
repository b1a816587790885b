-- Self-scans and inflated checks (issue 12): the largest check a business's staff may issue
-- a QR code for, set by a superadmin (DESIGN.md default 500 000 ₽), and what operators are
-- shown as suspicious.
ALTER TABLE businesses
    ADD COLUMN max_check_amount numeric(14,2) NOT NULL DEFAULT 500000.00 CHECK (max_check_amount > 0);

-- Suspicious scans and QR codes, for operators (`GET /admin/fraud-flags`):
--   self_scan          a member scanned a code she issued herself (refused);
--   staff_daily_limit  a staff member's codes of the day would pass the daily total (refused);
--   outlier_amount     a purchase at or over the business's outlier threshold (recorded).
CREATE TABLE fraud_flags (
    id             uuid PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('self_scan', 'staff_daily_limit', 'outlier_amount')),
    business_id    uuid NOT NULL REFERENCES businesses(id),
    -- Who issued the QR code, and who scanned it (absent when nobody did).
    staff_id       uuid,
    member_id      uuid,
    amount         numeric(14,2) NOT NULL,
    transaction_id uuid REFERENCES transactions(id),
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fraud_flags_time_idx ON fraud_flags (created_at DESC, id DESC);
CREATE INDEX fraud_flags_business_idx ON fraud_flags (business_id, created_at DESC, id DESC);
