-- Issuing a coupon checks the chain's cool-down over all of a member's coupons of that
-- chain (used and expired ones too), which the partial indexes on active coupons cannot serve.
CREATE INDEX coupons_chain_user_idx ON coupons (source_chain_id, user_id, created_at);
