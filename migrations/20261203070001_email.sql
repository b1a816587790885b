-- E-mail (issue 16): tickets and receipts of paid events and partners' monthly statements
-- are recorded in `notifications` like SMS and pushes, keyed by their dedupe key, so that a
-- retried job never sends one twice. The address is kept beside the phone, and erased with
-- it when a member deletes her account.
ALTER TABLE notifications DROP CONSTRAINT notifications_channel_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_channel_check
    CHECK (channel IN ('sms', 'push', 'email'));
ALTER TABLE notifications ADD COLUMN email text;
