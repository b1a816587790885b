-- DELETE /users/me (152-FZ): a deleted member's row stays, so that the ledger, purchases
-- and settlement statements that point at it stay whole, but it holds nothing about the
-- person: no phone, no names, no e-mail. `deleted_at` says so; the phone being free, the
-- same person may join again later as a new member.
ALTER TABLE users ALTER COLUMN phone DROP NOT NULL;
ALTER TABLE users ADD COLUMN deleted_at timestamptz;
ALTER TABLE users ADD CONSTRAINT users_phone_unless_deleted
    CHECK (phone IS NOT NULL OR deleted_at IS NOT NULL);
