-- One more kernel limit per plan (#20): the scheduler time slice a tenant's threads ask for,
-- in microseconds (sched_setattr's sched_runtime under SCHED_OTHER, Linux 6.12+; 0 = the
-- kernel's default, 0.7 ms × (1 + log2 CPUs)). When tenants share a core, a thread waking with
-- a shorter slice than the one running preempts it at once; one with the default waits for the
-- running slice to end. Paying plans are served first on wake-up; the free plan keeps the
-- default, so a saturated free tenant delays nobody on a paying plan by more than a wake-up.
-- The weight still decides how the CPU is shared under contention, the cap how much at most.

UPDATE plans SET limits = limits || '{"tenant_cpu_slice_us": 0}'::jsonb WHERE name = 'free';
UPDATE plans SET limits = limits || '{"tenant_cpu_slice_us": 300}'::jsonb WHERE name = 'pro';
UPDATE plans SET limits = limits || '{"tenant_cpu_slice_us": 0}'::jsonb WHERE name = 'custom';
