-- Every certificate the CA key signs is announced here before the HSM signs it, and settled
-- after: completed (the certificate was stored and handed out) or discarded (signed but
-- thrown away: it lost the redemption race, or the store refused it). A discarded one is
-- revoked (cessationOfOperation) in OCSP and the CRL, so no copy of it can ever pass.
CREATE TABLE signature_intents (
    serial       TEXT    PRIMARY KEY,
    ca_id        INTEGER NOT NULL REFERENCES cas (id),
    kind         TEXT    NOT NULL CHECK (kind IN ('client', 'server')),
    -- The login ID (client) or the names (server) the certificate is for.
    subject      TEXT    NOT NULL,
    spki_sha256  TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('open', 'completed', 'discarded')),
    reason       TEXT,
    created_at   INTEGER NOT NULL,
    settled_at   INTEGER,
    -- The validity planned at the intent (a discard records the signed one): a discarded
    -- certificate is listed on the CRL until it expires.
    not_before   INTEGER NOT NULL,
    not_after    INTEGER NOT NULL,
    CHECK ((state = 'open') = (settled_at IS NULL)),
    CHECK ((state = 'discarded') = (reason IS NOT NULL))
);
CREATE INDEX signature_intents_state ON signature_intents (state, created_at);

-- Signatures counted in memory (CRLs, OCSP responses, certificates) and added here from
-- time to time, per CA and kind: OCSP is too hot for a row per response.
CREATE TABLE signature_counts (
    ca_id  INTEGER NOT NULL,
    kind   TEXT    NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (ca_id, kind)
);

-- A discard changes what OCSP and the CRL say about the serial.
CREATE TRIGGER cert_changes_on_intent_discard AFTER UPDATE OF state ON signature_intents
WHEN NEW.state = 'discarded' AND OLD.state IS NOT NEW.state
BEGIN
    INSERT INTO cert_changes (serial) VALUES (NEW.serial);
END;
