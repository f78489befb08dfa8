-- Bounded accounts and sealed secrets.
--
-- Accounts get a plan (per-account limits: projects and management tokens; new projects start
-- on their account's plan). Plans get max_projects and max_management_tokens. Plans, statuses
-- and limits are written only by the operator (`rotor-control-plane operator …`).
--
-- token_secrets.hmac_secret / previous_hmac_secret and the values of proxies'
-- http.static_headers in projects.settings hold sealed values (`sealed:v1:<key id>:…`, see
-- control-plane/src/sealed.rs) from now on; rows an older version wrote in plaintext are sealed
-- by the control plane at start-up (SQL cannot: the key is the operator's, not the database's).

ALTER TABLE accounts ADD COLUMN plan TEXT NOT NULL DEFAULT 'free' REFERENCES plans(name);

UPDATE plans SET limits = limits || '{"max_projects": 3, "max_management_tokens": 10}'::jsonb
 WHERE name = 'free';
UPDATE plans SET limits = limits || '{"max_projects": 20, "max_management_tokens": 50}'::jsonb
 WHERE name = 'pro';
UPDATE plans SET limits = limits || '{"max_projects": 200, "max_management_tokens": 200}'::jsonb
 WHERE name = 'custom';

-- The operator's changes to plans are audited without an account or project.
CREATE INDEX audit_log_account ON audit_log(account_id, created_at);
