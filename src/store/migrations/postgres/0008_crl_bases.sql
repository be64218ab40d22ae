-- Same meaning as migrations/sqlite/0008_crl_bases.sql.
CREATE TABLE crl_bases (
    ca_id        BIGINT NOT NULL REFERENCES cas (id),
    scope        TEXT   NOT NULL,
    number       BIGINT NOT NULL,
    this_update  BIGINT NOT NULL,
    der          BYTEA  NOT NULL,
    PRIMARY KEY (ca_id, scope)
);
