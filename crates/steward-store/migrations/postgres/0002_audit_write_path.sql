-- Schema version 2 drops two audit_log indexes on SQLite (see its 0002). PostgreSQL keeps
-- them, since its planner uses them for audit search; nothing changes here.
SELECT 1;
