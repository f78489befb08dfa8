-- Redis deployments the operator places Redis-engine projects on (#23): each row is one
-- standalone server (or a sharded list), Redis Cluster or Sentinel group, its `engine.redis`
-- options (addresses, credentials, TLS) stored sealed because they hold passwords. A project
-- on a deployment keeps its own key prefix there; `accepts_new` closes a deployment to new
-- projects without touching those already on it. A deployment in use cannot be removed.

CREATE TABLE redis_deployments (
    name        TEXT PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    form        TEXT NOT NULL CHECK (form IN ('standalone', 'cluster', 'sentinel')),
    options     TEXT NOT NULL,
    accepts_new BOOLEAN NOT NULL DEFAULT true,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

ALTER TABLE projects ADD COLUMN redis_deployment TEXT REFERENCES redis_deployments (name);
CREATE INDEX projects_redis_deployment ON projects (redis_deployment)
    WHERE redis_deployment IS NOT NULL;
