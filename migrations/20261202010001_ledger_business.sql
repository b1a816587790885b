-- The business each ledger entry belongs to: the partner whose check accrued, was paid
-- with bonuses or refunded, or whose coupon credited. Settlement between partners sums
-- entries by it. NULL for entries no partner funds (an operator's correction, an expiry).
ALTER TABLE bonus_ledger ADD COLUMN business_id uuid REFERENCES businesses(id);

UPDATE bonus_ledger l SET business_id = t.business_id
FROM transactions t
WHERE t.id = l.transaction_id AND l.business_id IS NULL;
