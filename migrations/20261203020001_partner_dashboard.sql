-- The partner's dashboard (GET /business/dashboard): one business's figures over a range of
-- days, read in well under 50 ms for a month over a million of its transactions (DESIGN.md
-- speed targets; the `dashboard` bench scenario measures it).

-- The days' sums come from this index alone (an index-only scan: every column the dashboard
-- sums is included), ranged on when the purchase happened (`occurred_at`: the CRM's own time
-- for a CRM purchase, the scan for a QR one).
CREATE INDEX transactions_business_occurred_idx ON transactions (business_id, occurred_at)
    INCLUDE (user_id, transaction_type, amount, bonus_accrued, bonus_redeemed, coupon_id);

-- Purchases paid with a coupon, for the promo arrivals: few rows, so a small index.
CREATE INDEX transactions_business_coupon_idx ON transactions (business_id, occurred_at)
    INCLUDE (coupon_id) WHERE coupon_id IS NOT NULL;

-- Coupons valid at a business, by when they were issued (coupons_issued).
CREATE INDEX coupons_business_created_idx ON coupons (business_id, created_at);

-- Each member's first purchase at each business: the new members of a range are those whose
-- first purchase there falls in it. Kept here rather than found by probing every member's
-- history at each read (tens of thousands of index probes a month, far over the target).
CREATE TABLE business_members (
    business_id       uuid NOT NULL REFERENCES businesses(id),
    user_id           uuid NOT NULL REFERENCES users(id),
    first_purchase_at timestamptz NOT NULL,
    PRIMARY KEY (business_id, user_id)
);
CREATE INDEX business_members_first_idx ON business_members (business_id, first_purchase_at);

INSERT INTO business_members (business_id, user_id, first_purchase_at)
SELECT business_id, user_id, min(occurred_at) FROM transactions
WHERE transaction_type = 'purchase'
GROUP BY business_id, user_id;

-- Kept by a statement trigger, so that every way purchases are written (QR scans, CRM
-- ingest, the bench's and the demo's loads) keeps it, in one statement per batch. A CRM
-- backfill may bring a purchase older than the first one known: the date then moves back.
-- DO NOTHING and a separate UPDATE (rather than DO UPDATE … WHERE) lock an existing row only
-- when its date really moves: a member's every purchase would otherwise lock her row until
-- the purchase's transaction ends. Rows go in key order, so two batches never wait on each
-- other in a cycle.
CREATE FUNCTION krug_business_members() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO business_members (business_id, user_id, first_purchase_at)
    SELECT business_id, user_id, min(occurred_at) FROM new_rows
    WHERE transaction_type = 'purchase'
    GROUP BY business_id, user_id
    ORDER BY business_id, user_id
    ON CONFLICT (business_id, user_id) DO NOTHING;
    UPDATE business_members m SET first_purchase_at = n.first_purchase_at
    FROM (SELECT business_id, user_id, min(occurred_at) AS first_purchase_at FROM new_rows
          WHERE transaction_type = 'purchase'
          GROUP BY business_id, user_id) n
    WHERE m.business_id = n.business_id AND m.user_id = n.user_id
      AND m.first_purchase_at > n.first_purchase_at;
    RETURN NULL;
END $$;
CREATE TRIGGER transactions_business_members AFTER INSERT ON transactions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION krug_business_members();
