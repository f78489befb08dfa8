-- Redis-engine projects being moved to another deployment (#23): while a project's row holds
-- (`expires_at` in the future), the reconciler keeps its tenant stopped (no start, no wake; the
-- edge answers 503 with Retry-After) and writes `stopped_at` once it has stopped it, so the
-- operator's `move-project` copies keys nothing writes any more. The move renews `expires_at`
-- while it works and deletes the row in the transaction that switches the project (or when it
-- calls the move off). A row past `expires_at` (a move whose command was killed) holds nothing:
-- the tenant starts again on the deployment the project still points at, and `move-project`
-- may be run again.

CREATE TABLE redis_moves (
    project_id TEXT PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    deployment TEXT NOT NULL REFERENCES redis_deployments (name) ON DELETE CASCADE,
    history    TEXT NOT NULL CHECK (history IN ('drain', 'drop')),
    started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    expires_at TIMESTAMPTZ NOT NULL,
    stopped_at TIMESTAMPTZ
);
