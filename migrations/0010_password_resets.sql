-- Password reset links. A link carries a random 32-byte token; only its SHA-256 is kept here.
-- A token works once and for 30 minutes: it is deleted as it is used, a newer request for the
-- same account deletes the older ones, and a successful reset deletes every one of the
-- account's. Rows whose time has passed are deleted whenever a new link is made.
CREATE TABLE password_resets (
    token_hash  TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX password_resets_account ON password_resets(account_id);
CREATE INDEX password_resets_expires ON password_resets(expires_at);

-- Reset requests are counted like logins and sign-ups: per email digest and per address.
ALTER TABLE auth_counters DROP CONSTRAINT auth_counters_kind_check;
ALTER TABLE auth_counters ADD CONSTRAINT auth_counters_kind_check
    CHECK (kind IN ('login', 'signup', 'reset'));
