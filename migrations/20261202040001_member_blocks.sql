-- Member support (DESIGN.md round 2): an operator blocks a member with a reason. A blocked
-- member cannot sign in, scan or register for events (403 `member_blocked`); unblocking
-- clears both columns. Who blocked her and when is in the audit log (`member.block`).
ALTER TABLE users ADD COLUMN blocked_at timestamptz;
ALTER TABLE users ADD COLUMN blocked_reason text;
ALTER TABLE users ADD CONSTRAINT users_block_has_reason
    CHECK ((blocked_at IS NULL) = (blocked_reason IS NULL));
