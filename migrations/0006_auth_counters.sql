-- Login and sign-up counters, shared by every control-plane process and kept across restarts.
--
-- One row per (kind, key) in a fixed window that starts at the key's first event: `count`
-- events until `window_ends`, after which the next event starts a new window. Keys are
-- `email:<SHA-256 of the normalised email>` (never the address itself) and
-- `ip:<address>` / `ip:<prefix>::/64`. Each attempt is one statement that locks its keys' rows
-- and, unless one is at its limit, counts every key with one upsert; rows whose window has
-- ended are deleted by a sweep.

CREATE TABLE auth_counters (
    kind        TEXT NOT NULL CHECK (kind IN ('login', 'signup')),
    key         TEXT NOT NULL CHECK (length(key) <= 100),
    count       INTEGER NOT NULL CHECK (count >= 0),
    window_ends TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, key)
);

CREATE INDEX auth_counters_window_ends ON auth_counters (window_ends);
