-- Same meaning as migrations/sqlite/0006_signature_intents.sql.

CREATE TABLE signature_intents (
    serial       TEXT    PRIMARY KEY,
    ca_id        BIGINT  NOT NULL REFERENCES cas (id),
    kind         TEXT    NOT NULL CHECK (kind IN ('client', 'server')),
    subject      TEXT    NOT NULL,
    spki_sha256  TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('open', 'completed', 'discarded')),
    reason       TEXT,
    created_at   BIGINT  NOT NULL,
    settled_at   BIGINT,
    not_before   BIGINT  NOT NULL,
    not_after    BIGINT  NOT NULL,
    CHECK ((state = 'open') = (settled_at IS NULL)),
    CHECK ((state = 'discarded') = (reason IS NOT NULL))
);
CREATE INDEX signature_intents_state ON signature_intents (state, created_at);

CREATE TABLE signature_counts (
    ca_id  BIGINT NOT NULL,
    kind   TEXT   NOT NULL,
    count  BIGINT NOT NULL,
    PRIMARY KEY (ca_id, kind)
);
