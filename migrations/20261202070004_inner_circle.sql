-- The Inner Circle: a fourth status above Elite, given and taken back by a superadmin only
-- (`POST /admin/users/{id}/tier`), multiplier 2.5. Its row in `tier_rules` is read for the
-- multiplier alone: no spend earns it (`domain::TierRules::earned` skips it), and
-- `tier_review` never moves a member out of it.
ALTER TABLE users DROP CONSTRAINT users_status_tier_check;
ALTER TABLE users ADD CONSTRAINT users_status_tier_check
    CHECK (status_tier IN ('Insider', 'VIP', 'Elite', 'InnerCircle'));

ALTER TABLE tier_rules DROP CONSTRAINT tier_rules_tier_check;
ALTER TABLE tier_rules ADD CONSTRAINT tier_rules_tier_check
    CHECK (tier IN ('Insider', 'VIP', 'Elite', 'InnerCircle'));
INSERT INTO tier_rules VALUES ('InnerCircle', 0, 0, 2.5) ON CONFLICT (tier) DO NOTHING;

-- An event may be for the Inner Circle only.
ALTER TABLE events DROP CONSTRAINT events_min_status_tier_check;
ALTER TABLE events ADD CONSTRAINT events_min_status_tier_check
    CHECK (min_status_tier IN ('Insider', 'VIP', 'Elite', 'InnerCircle'));
