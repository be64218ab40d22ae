-- Same meaning as migrations/sqlite/0005_status_sources.sql.

ALTER TABLE users ADD COLUMN disabled_at BIGINT;
ALTER TABLE contracts ADD COLUMN disabled_at BIGINT;
UPDATE users SET disabled_at = created_at WHERE NOT enabled;
UPDATE contracts SET disabled_at = created_at WHERE NOT enabled;

CREATE TABLE server_certificates (
    serial            TEXT    PRIMARY KEY,
    ca_id             BIGINT  NOT NULL REFERENCES cas (id),
    names             TEXT    NOT NULL,
    der               BYTEA   NOT NULL,
    sha256            TEXT    NOT NULL UNIQUE,
    not_before        BIGINT  NOT NULL,
    not_after         BIGINT  NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('current', 'revoked')),
    revoked_at        BIGINT,
    revocation_reason TEXT,
    created_at        BIGINT  NOT NULL,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL AND revocation_reason IS NOT NULL))
);
CREATE INDEX server_certificates_for_crl ON server_certificates (ca_id, status, not_after);
