-- The daily `retention` job deletes rows past their period; these indexes let it find them
-- without reading whole tables.
CREATE INDEX otp_codes_expires_idx ON otp_codes (expires_at);
CREATE INDEX job_outbox_finished_idx ON job_outbox (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX scan_requests_finished_idx ON scan_requests (created_at) WHERE state IN ('done', 'failed');
