-- Scans are their own record of the qr_scan job (no outbox row on the hot path):
-- reconcile looks for unfinished ones that have not moved for a while.
CREATE INDEX scan_requests_unfinished_idx ON scan_requests (updated_at)
    WHERE state IN ('pending', 'processing');
