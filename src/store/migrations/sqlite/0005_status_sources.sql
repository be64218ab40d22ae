-- What the one status rule (status::standing) needs beyond 0001: when a login ID or a
-- contract was disabled (the revocationTime of its certificates' certificateHold, the same
-- in every OCSP answer and CRL), and the server certificates `ca issue-server` signs, so
-- OCSP and the CRL answer for them too.

ALTER TABLE users ADD COLUMN disabled_at INTEGER;
ALTER TABLE contracts ADD COLUMN disabled_at INTEGER;
-- Disabled before this migration: the moment is unknown; its creation is the honest bound.
UPDATE users SET disabled_at = created_at WHERE enabled = 0;
UPDATE contracts SET disabled_at = created_at WHERE enabled = 0;

CREATE TABLE server_certificates (
    serial            TEXT    PRIMARY KEY,
    ca_id             INTEGER NOT NULL REFERENCES cas (id),
    -- The DNS names and IP addresses, comma-separated, as given to `ca issue-server`.
    names             TEXT    NOT NULL,
    der               BLOB    NOT NULL,
    sha256            TEXT    NOT NULL UNIQUE,
    not_before        INTEGER NOT NULL,
    not_after         INTEGER NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('current', 'revoked')),
    revoked_at        INTEGER,
    revocation_reason TEXT,
    created_at        INTEGER NOT NULL,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL AND revocation_reason IS NOT NULL))
);
CREATE INDEX server_certificates_for_crl ON server_certificates (ca_id, status, not_after);

CREATE TRIGGER cert_changes_on_server_status AFTER UPDATE OF status ON server_certificates
WHEN OLD.status IS NOT NEW.status
BEGIN
    INSERT INTO cert_changes (serial) VALUES (NEW.serial);
END;

CREATE TRIGGER cert_changes_on_server_insert AFTER INSERT ON server_certificates
BEGIN
    INSERT INTO cert_changes (serial) VALUES (NEW.serial);
END;
