-- Several CRMs per business (Лисичкино: iiko for the kitchen and delivery, 1C for the
-- market's checkout). A connection to a vendor becomes its own record, with its own sealed
-- credentials, settings, cursor and health; a CRM purchase is unique per integration and
-- vendor id. Every business that had a CRM gets one integration carrying what it had.

CREATE TABLE integrations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    business_id     uuid NOT NULL REFERENCES businesses(id) ON DELETE CASCADE,
    crm_type        text NOT NULL CHECK (crm_type IN ('yclients', 'iiko', '1c', 'amo_crm', 'renovatio')),
    base_url        text NOT NULL,
    -- storage::secret's sealed form: a key-version byte, the nonce, then AES-256-GCM of the
    -- credentials JSON with this row's id as associated data. Version 0 is the form before
    -- this migration (no associated data), rewritten by `krug migrate` and on first use.
    -- NULL until given: changing base_url or crm_type drops them.
    credentials     bytea,
    -- What is not secret: the 1C preset and field names, a CA certificate, and the like.
    settings        jsonb NOT NULL DEFAULT '{}',
    -- ok; failing (the vendor refused us, or the configuration is unusable: last_error
    -- says what to fix); disabled (switched off, or waiting for credentials).
    status          text NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'failing', 'disabled')),
    last_error      text,
    -- Something operators should know that is not a failure (an incomplete catch-up).
    warning         text,
    -- Everything the vendor changed before this is stored (NULL: never polled).
    polled_until    timestamptz,
    vendor_cursor   text,
    last_polled_at  timestamptz,
    last_success_at timestamptz,
    -- Deleted integrations stay, so that their purchases keep their key (and a re-created
    -- one of the same type and URL takes the record back).
    deleted_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX integrations_business_idx ON integrations (business_id, created_at);

INSERT INTO integrations (business_id, crm_type, base_url, credentials, status, last_error,
                          polled_until, vendor_cursor, last_polled_at, last_success_at, created_at)
SELECT b.id, b.crm_type, b.crm_base_url,
       CASE WHEN b.crm_credentials IS NULL THEN NULL ELSE '\x00'::bytea || b.crm_credentials END,
       b.integration_status, COALESCE(b.integration_error, c.last_error),
       c.polled_until, c.vendor_cursor, c.updated_at, c.last_success_at, b.created_at
FROM businesses b LEFT JOIN crm_cursors c ON c.business_id = b.id
WHERE b.crm_type IS NOT NULL AND b.crm_base_url IS NOT NULL;

-- Checks whose buyer could not be resolved: counted per integration and shown to
-- operators, never silently dropped; kept once however often the vendor sends them.
CREATE TABLE crm_unattributed (
    integration_id uuid NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
    external_id    text NOT NULL,
    amount         numeric(14,2) NOT NULL,
    occurred_at    timestamptz NOT NULL,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (integration_id, external_id)
);

ALTER TABLE transactions ADD COLUMN integration_id uuid REFERENCES integrations(id);
UPDATE transactions t SET integration_id = i.id
FROM integrations i
WHERE t.source = 'crm' AND i.business_id = t.business_id;

-- A QR code is one purchase per business; a CRM record one per integration.
ALTER TABLE transactions DROP CONSTRAINT transactions_business_id_source_external_id_key;
CREATE UNIQUE INDEX transactions_qr_code_key ON transactions (business_id, external_id) WHERE source = 'qr';
CREATE UNIQUE INDEX transactions_crm_record_key ON transactions (integration_id, external_id) WHERE source = 'crm';

DROP TABLE crm_cursors;
ALTER TABLE businesses
    DROP COLUMN crm_type,
    DROP COLUMN crm_base_url,
    DROP COLUMN crm_credentials,
    DROP COLUMN integration_status,
    DROP COLUMN integration_error;
