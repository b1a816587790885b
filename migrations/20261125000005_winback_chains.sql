-- Win-back chains: a chain may be triggered by the nightly RFM snapshot instead of a
-- purchase, issuing its coupon to members whose churn risk newly reached this level.
ALTER TABLE promo_chains
    ADD COLUMN trigger_churn_risk numeric(4,3) CHECK (trigger_churn_risk > 0 AND trigger_churn_risk <= 1);
ALTER TABLE promo_chains DROP CONSTRAINT promo_chains_check;
ALTER TABLE promo_chains ADD CONSTRAINT promo_chains_one_trigger
    CHECK (num_nonnulls(trigger_business_id, trigger_category, trigger_churn_risk) = 1);
