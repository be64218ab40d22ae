-- The latest complete CRL of each scope (`scope`: its file name under /crl/), kept so
-- that every instance makes its delta CRLs against the same base and a relying party can
-- apply a delta to any complete CRL it got from any instance.
CREATE TABLE crl_bases (
    ca_id        INTEGER NOT NULL REFERENCES cas (id),
    scope        TEXT    NOT NULL,
    number       INTEGER NOT NULL,
    this_update  INTEGER NOT NULL,
    der          BLOB    NOT NULL,
    PRIMARY KEY (ca_id, scope)
);
