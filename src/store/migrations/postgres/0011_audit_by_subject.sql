-- Finding an entry about one subject without reading the whole log: the four-eyes check
-- looks up who received a staff member's issuance code (the latest `code.authorize` of
-- `staff:<name>`) at each approval. Same meaning as migrations/sqlite/0011_audit_by_subject.sql.
CREATE INDEX audit_log_by_subject ON audit_log (subject, action, seq);
