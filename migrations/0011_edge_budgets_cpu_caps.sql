-- Two more limits per plan, for what one project can take from its neighbours (#20):
--
-- * tenant_cpu_max_percent: a hard cap on the CPU a tenant process may use, in percent of one
--   core (cgroup cpu.max, or the CFS quota on v1). The weight only orders who runs first under
--   contention; the cap holds a saturated tenant down.
-- * edge_requests_per_second / edge_connects_per_second: what the shared edge lets through to
--   a project per second (requests that are not WebSocket handshakes, and handshakes), with a
--   burst of two seconds' worth; the excess is answered 429 at the edge, before the tenant's
--   process sees it. A free project's publish rate is 100/s and its connection cap 200, so its
--   whole cap may reconnect at once.
--
-- 0 means "not limited" and is for plans the operator trusts.

UPDATE plans SET limits = limits ||
  '{"tenant_cpu_max_percent": 50, "edge_requests_per_second": 200, "edge_connects_per_second": 100}'::jsonb
 WHERE name = 'free';
UPDATE plans SET limits = limits ||
  '{"tenant_cpu_max_percent": 200, "edge_requests_per_second": 10000, "edge_connects_per_second": 2000}'::jsonb
 WHERE name = 'pro';
UPDATE plans SET limits = limits ||
  '{"tenant_cpu_max_percent": 0, "edge_requests_per_second": 0, "edge_connects_per_second": 0}'::jsonb
 WHERE name = 'custom';
