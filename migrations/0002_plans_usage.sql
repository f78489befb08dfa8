-- Plans and their limits, per-minute usage (30 days) with hourly rollups, and the collector's
-- cursor so a restarted control plane neither loses nor double-counts usage.

CREATE TABLE plans (
    name   TEXT PRIMARY KEY,
    limits JSONB NOT NULL
);

INSERT INTO plans (name, limits) VALUES
  ('free', '{"max_connections": 200, "max_channels_per_connection": 32, "publish_rate": 100,
             "max_message_size": 65536, "max_history_size": 100, "max_history_ttl_seconds": 3600,
             "max_namespaces": 10, "max_api_keys": 5}'),
  ('pro', '{"max_connections": 10000, "max_channels_per_connection": 128, "publish_rate": 5000,
            "max_message_size": 262144, "max_history_size": 1000, "max_history_ttl_seconds": 86400,
            "max_namespaces": 100, "max_api_keys": 50}'),
  ('custom', '{"max_connections": 0, "max_channels_per_connection": 128, "publish_rate": 0,
               "max_message_size": 1048576, "max_history_size": 10000, "max_history_ttl_seconds": 604800,
               "max_namespaces": 1000, "max_api_keys": 500}');

ALTER TABLE projects ADD CONSTRAINT projects_plan_fkey FOREIGN KEY (plan) REFERENCES plans(name);

-- namespace '*' holds project totals (connections, API calls, errors, bytes); named rows hold
-- per-namespace publications, deliveries and subscriptions.
CREATE TABLE usage_minute (
    project_id    TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    namespace     TEXT NOT NULL,
    minute        TIMESTAMPTZ NOT NULL,
    connections   BIGINT NOT NULL DEFAULT 0,
    subscriptions BIGINT NOT NULL DEFAULT 0,
    published     BIGINT NOT NULL DEFAULT 0,
    delivered     BIGINT NOT NULL DEFAULT 0,
    api_calls     BIGINT NOT NULL DEFAULT 0,
    errors        BIGINT NOT NULL DEFAULT 0,
    bytes_in      BIGINT NOT NULL DEFAULT 0,
    bytes_out     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, namespace, minute)
);

CREATE TABLE usage_hour (LIKE usage_minute INCLUDING ALL);
ALTER TABLE usage_hour RENAME COLUMN minute TO hour;

CREATE TABLE usage_cursor (
    project_id TEXT PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    node_id    TEXT NOT NULL,
    snapshot   JSONB NOT NULL
);
ALTER TABLE usage_hour ADD CONSTRAINT usage_hour_project_fkey
    FOREIGN KEY (project_id) REFERENCES projects(id) ON DELETE CASCADE;
