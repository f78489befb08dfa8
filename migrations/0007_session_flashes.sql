-- One-time messages between a dashboard action and the page it redirects to (POST/redirect/GET):
-- a notice, an error with what was typed, or a value shown once (a new API key or management
-- token). At most one per session and page; read and deleted in one statement by that page.
-- The payload is encrypted with a key derived from the session token, which only the browser
-- holds (the database keeps its SHA-256), so these rows alone reveal nothing.
CREATE TABLE session_flashes (
    token_hash  TEXT NOT NULL REFERENCES sessions(token_hash) ON DELETE CASCADE,
    path        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (token_hash, path)
);
