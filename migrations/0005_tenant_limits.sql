-- Kernel limits per plan, and the events of a tenant's life that its owner should see.
--
-- Every tenant process runs inside limits its plan sets and the kernel enforces: open files
-- (RLIMIT_NOFILE), tasks (threads and processes: the pids cgroup), memory (the memory cgroup)
-- and a CPU weight (cpu.weight / cpu.shares). 0 means "not limited" and is for plans the
-- operator trusts.

UPDATE plans SET limits = limits ||
  '{"tenant_open_files": 1024, "tenant_tasks": 64, "tenant_memory_mb": 256, "tenant_cpu_weight": 100}'::jsonb
 WHERE name = 'free';
UPDATE plans SET limits = limits ||
  '{"tenant_open_files": 16384, "tenant_tasks": 256, "tenant_memory_mb": 2048, "tenant_cpu_weight": 400}'::jsonb
 WHERE name = 'pro';
UPDATE plans SET limits = limits ||
  '{"tenant_open_files": 65536, "tenant_tasks": 1024, "tenant_memory_mb": 8192, "tenant_cpu_weight": 1000}'::jsonb
 WHERE name = 'custom';

-- Application budgets the data plane enforces (error 106 past them): history payload bytes
-- kept by the memory engine in all and per channel, channels that exist at once, presence
-- entries.
UPDATE plans SET limits = limits ||
  '{"max_history_bytes": 16777216, "max_channel_history_bytes": 1048576, "max_channels": 1000, "max_presence_entries": 2000}'::jsonb
 WHERE name = 'free';
UPDATE plans SET limits = limits ||
  '{"max_history_bytes": 536870912, "max_channel_history_bytes": 16777216, "max_channels": 100000, "max_presence_entries": 100000}'::jsonb
 WHERE name = 'pro';
UPDATE plans SET limits = limits ||
  '{"max_history_bytes": 2147483648, "max_channel_history_bytes": 67108864, "max_channels": 1000000, "max_presence_entries": 1000000}'::jsonb
 WHERE name = 'custom';

-- What happened to a tenant's process that its owner should know: restarts after running out
-- of memory, crashes. Kept with the usage data, read through the REST API.
CREATE TABLE tenant_events (
    id         BIGSERIAL PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    kind       TEXT NOT NULL,
    detail     JSONB NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX tenant_events_project ON tenant_events(project_id, at);
