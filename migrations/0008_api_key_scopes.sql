-- API keys get what the dashboard shows of them and what they may do:
--
-- `prefix`: the first characters of the key (`rk_` and a few more), stored at creation so the
-- owner can tell keys apart; never the whole key. Keys created before this migration have ''.
-- `scope`: `all` (every server API method) or `publish` (publish and broadcast only), sent to
-- the tenant with the key's hash and enforced there.
-- Key names are unique per project. Duplicates an older version allowed are renamed first
-- (the later key gets its id appended), so the constraint can hold.
-- `last_used_at` (0001) is now filled: tenants report which keys they saw used.

ALTER TABLE api_keys ADD COLUMN prefix TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'all'
    CHECK (scope IN ('all', 'publish'));

UPDATE api_keys k SET name = k.name || ' (' || k.id || ')'
 WHERE EXISTS (
    SELECT 1 FROM api_keys o
     WHERE o.project_id = k.project_id AND o.name = k.name
       AND (o.created_at, o.id) < (k.created_at, k.id));

ALTER TABLE api_keys ADD CONSTRAINT api_keys_project_name_unique UNIQUE (project_id, name);

-- The audit views page newest first by id.
CREATE INDEX audit_log_project_id ON audit_log (project_id, id);
CREATE INDEX audit_log_account_id ON audit_log (account_id, id);
