-- The audit log's two secondary indexes served no query on SQLite and cost half the CPU
-- of every indexed audit row.
--
-- Audit search binds every filter as `(? IS NULL OR col = ?)`, a form SQLite's planner
-- cannot match to an index, so searches scanned the table whether or not these existed
-- (EXPLAIN QUERY PLAN: `SCAN audit_log`). Proofs, verification, export and recovery read
-- by (instance_id, seq), the primary key. Maintaining the two indexes took about 3 of
-- 7 µs of CPU per inserted row, and the identity index grew dearer with every distinct
-- identity, since each commit rewrote one 32 KiB leaf page per identity it touched.
--
-- PostgreSQL keeps both: its planner folds the bound NULL checks and uses them.
DROP INDEX IF EXISTS audit_log_actor;
DROP INDEX IF EXISTS audit_log_request;
