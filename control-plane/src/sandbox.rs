//! The kernel's hold on each tenant process: the limits its plan sets ([`TenantLimits`]) and
//! how the local driver enforces them. Resource limits always: `RLIMIT_NOFILE` (the soft limit,
//! which is what the kernel checks on every open, is the plan's open files; the hard limit
//! stays the control plane's own so a plan upgrade can raise the soft one live without
//! privileges, and the tenant is told not to raise it: `ROTOR_OPEN_FILES=supervised`),
//! `RLIMIT_CORE` = 0 (no core dump of a tenant's secrets), and, only where no memory cgroup is
//! available, `RLIMIT_DATA` as a coarse memory backstop. Control
//! groups where this process has a delegated hierarchy (v1 or v2, see [`crate::cgroups`]):
//! memory (the OOM killer stays inside the tenant's group), pids (threads), CPU weight and a
//! CPU cap (`cpu.max`, or the CFS quota on v1).
//! After a tenant dies, [`Sandbox::exit_cause`] tells whether its memory limit killed it.

use std::collections::HashSet;
use std::path::Path;

use rustix::process::{prlimit, Pid, Resource, Rlimit};

use crate::cgroups::{Controller, CpuStat, GroupLimits, Hierarchy, Version};
use crate::ids::ProjectId;

/// What one tenant process is held to (0 = not limited): by the kernel (open files, tasks,
/// memory, CPU), and by the edge in front of it (its request budget, see
/// [`crate::edge::budgets`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct TenantLimits {
    pub open_files: u64,
    /// Threads (and processes), through the pids controller.
    pub tasks: u64,
    pub memory_bytes: u64,
    /// 100 is an ordinary share of the CPU under contention.
    pub cpu_weight: u64,
    /// The most CPU it may use, in percent of one core (a hard cap, even on an idle box).
    #[serde(default)]
    pub cpu_max_percent: u64,
    /// The scheduler time slice its threads ask for, in microseconds (0 = the kernel's
    /// default): shorter preempts a longer-sliced neighbour on wake-up (see
    /// `rotor_timeslice`).
    #[serde(default)]
    pub cpu_slice_us: u64,
    /// What the edge lets through to it before answering 429 itself.
    #[serde(default)]
    pub edge: crate::edge::budgets::EdgeBudget,
}

impl TenantLimits {
    fn group(&self) -> GroupLimits {
        GroupLimits {
            memory_bytes: self.memory_bytes,
            tasks: self.tasks,
            cpu_weight: self.cpu_weight,
            cpu_max_percent: self.cpu_max_percent,
        }
    }
}

/// Why a tenant process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitCause {
    /// The kernel killed it for going over its memory limit.
    OutOfMemory { limit_bytes: u64 },
    /// Anything else, with the exit status when known.
    Exited { status: String },
}

/// Errors confining a process.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot set {resource} limit of pid {pid} to {soft} (hard {hard:?}): {source}")]
    Rlimit {
        resource: &'static str,
        pid: u32,
        soft: u64,
        hard: Option<u64>,
        source: std::io::Error,
    },
    #[error("cgroup: {0}")]
    Cgroup(#[from] std::io::Error),
    #[error("cannot set the scheduler time slice of pid {pid}: {source}")]
    Slice { pid: u32, source: std::io::Error },
}

/// Applies tenant limits on this machine.
pub struct Sandbox {
    cgroups: Option<Hierarchy>,
}

/// Per-task allowance in the `RLIMIT_DATA` backstop (thread stacks count as data).
const DATA_PER_TASK: u64 = 8 << 20;
/// Fixed allowance in the `RLIMIT_DATA` backstop (runtime, TLS, buffers).
const DATA_BASE: u64 = 64 << 20;

impl Sandbox {
    /// Finds the cgroup hierarchy delegated to this process and makes a parent for the tenants
    /// of `run_dir` in it (named after the run directory, so control planes with different run
    /// directories on one box never touch each other's groups). `ROTOR_CGROUPS=off` disables
    /// cgroups (resource limits only).
    pub fn detect(run_dir: &Path) -> Self {
        let off = std::env::var("ROTOR_CGROUPS").is_ok_and(|v| v == "off" || v == "0");
        let cgroups = if off {
            None
        } else {
            Hierarchy::detect(&tag_of(run_dir))
        };
        Self { cgroups }
    }

    /// A sandbox with resource limits only.
    pub fn rlimits_only() -> Self {
        Self { cgroups: None }
    }

    /// What is enforced, for the start-up log: e.g. `cgroup v1 (memory, pids, cpu) + rlimits`.
    pub fn describe(&self) -> String {
        match &self.cgroups {
            Some(h) => {
                let names: Vec<&str> = h.controllers().iter().map(|c| c.name()).collect();
                let version = match h.version() {
                    Version::V1 => "v1",
                    Version::V2 => "v2",
                };
                format!("cgroup {version} ({}) + rlimits (nofile, core)", names.join(", "))
            }
            None => "rlimits only (nofile, core, data as the memory backstop); no delegated cgroup hierarchy, so tasks and CPU weight are not limited".into(),
        }
    }

    /// Whether memory is limited by a cgroup (else by `RLIMIT_DATA`).
    pub fn cgroup_memory(&self) -> bool {
        self.cgroups
            .as_ref()
            .is_some_and(|h| h.controllers().contains(&Controller::Memory))
    }

    /// Makes a fresh, empty group for `tenant` before its process starts.
    pub fn prepare(&self, tenant: &ProjectId) -> Result<(), SandboxError> {
        if let Some(h) = &self.cgroups {
            h.group(tenant.as_str()).create()?;
        }
        Ok(())
    }

    /// Puts a just-started process under `limits`: into its group, then its resource limits.
    pub fn confine(
        &self,
        tenant: &ProjectId,
        pid: u32,
        limits: &TenantLimits,
    ) -> Result<(), SandboxError> {
        if let Some(h) = &self.cgroups {
            let group = h.group(tenant.as_str());
            group.apply(&limits.group())?;
            group.add(pid)?;
        }
        set_rlimit(pid, Resource::Core, 0, Some(0), "core")?;
        self.set_rlimits(pid, limits)
    }

    /// Changes the limits of a running tenant (its plan changed), up or down.
    pub fn update(
        &self,
        tenant: &ProjectId,
        pid: u32,
        limits: &TenantLimits,
    ) -> Result<(), SandboxError> {
        if let Some(h) = &self.cgroups {
            h.group(tenant.as_str()).apply(&limits.group())?;
        }
        // The limits that hold the tenant first; the slice only orders who runs first.
        self.set_rlimits(pid, limits)?;
        rotor_timeslice::set_process(pid, limits.cpu_slice_us)
            .map_err(|source| SandboxError::Slice { pid, source })
    }

    fn set_rlimits(&self, pid: u32, limits: &TenantLimits) -> Result<(), SandboxError> {
        // Soft limits only, under the hard limits the tenant inherited from us: raising them
        // later needs no privilege.
        let nofile_hard = rustix::process::getrlimit(Resource::Nofile).maximum;
        let open_files = if limits.open_files == 0 {
            nofile_hard.unwrap_or(u64::MAX)
        } else {
            limits.open_files.min(nofile_hard.unwrap_or(u64::MAX))
        };
        if open_files < limits.open_files {
            tracing::warn!(
                pid,
                plan = limits.open_files,
                granted = open_files,
                "the plan's open files exceed this control plane's own hard limit"
            );
        }
        set_rlimit(pid, Resource::Nofile, open_files, nofile_hard, "open files")?;
        if limits.memory_bytes > 0 && !self.cgroup_memory() {
            let data = limits
                .memory_bytes
                .saturating_add(DATA_BASE)
                .saturating_add(limits.tasks.max(16).saturating_mul(DATA_PER_TASK));
            let hard = rustix::process::getrlimit(Resource::Data).maximum;
            set_rlimit(
                pid,
                Resource::Data,
                data.min(hard.unwrap_or(u64::MAX)),
                hard,
                "data",
            )?;
        }
        Ok(())
    }

    /// Why `tenant`'s process (now gone) ended: its group's OOM-kill counter says whether the
    /// memory limit did it; `status` is the exit status when this process reaped it.
    pub fn exit_cause(&self, tenant: &ProjectId, status: Option<String>) -> ExitCause {
        if let Some(h) = &self.cgroups {
            let group = h.group(tenant.as_str());
            if group.oom_kills() > 0 {
                return ExitCause::OutOfMemory {
                    limit_bytes: group.read_limits().memory_bytes,
                };
            }
        }
        ExitCause::Exited {
            status: status.unwrap_or_else(|| "unknown (not started by this control plane)".into()),
        }
    }

    /// Removes `tenant`'s group once its process is gone (retrying briefly while the kernel
    /// finishes tearing the process down).
    pub async fn release(&self, tenant: &ProjectId) {
        let Some(h) = &self.cgroups else { return };
        let group = h.group(tenant.as_str());
        for _ in 0..40 {
            match group.remove() {
                Ok(()) => return,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(25)).await,
            }
        }
        tracing::warn!(tenant = %tenant, "cgroup still busy; left in place (removed at the next start)");
    }

    /// Removes groups of tenants that are no longer ours (`keep` lists the live ones): what a
    /// control plane that died without cleaning up left behind.
    pub fn sweep(&self, keep: &HashSet<String>) {
        let Some(h) = &self.cgroups else { return };
        for name in h.existing() {
            if keep.contains(&name) {
                continue;
            }
            let group = h.group(&name);
            if group.pids().is_empty() {
                let _ = group.remove();
            }
        }
    }

    /// The group directories of `tenant` (written into its process record, so tools that
    /// clean up after a control plane can find them).
    pub fn group_paths(&self, tenant: &ProjectId) -> Vec<std::path::PathBuf> {
        self.cgroups
            .as_ref()
            .map(|h| h.group(tenant.as_str()).paths())
            .unwrap_or_default()
    }

    /// The parent groups of this control plane's tenants (none without cgroups).
    pub fn parents(&self) -> Vec<std::path::PathBuf> {
        self.cgroups
            .as_ref()
            .map(Hierarchy::parents)
            .unwrap_or_default()
    }

    /// `tenant`'s CPU cap at work so far, when it has a cpu group.
    pub fn cpu_stat(&self, tenant: &ProjectId) -> Option<CpuStat> {
        self.cgroups.as_ref()?.group(tenant.as_str()).cpu_stat()
    }

    /// The limits written into `tenant`'s group, when it has one.
    pub fn group_limits(&self, tenant: &ProjectId) -> Option<GroupLimits> {
        self.cgroups
            .as_ref()
            .map(|h| h.group(tenant.as_str()).read_limits())
    }

    /// Removes the tenants' parent groups when empty (at shutdown).
    pub fn close(&self) {
        if let Some(h) = &self.cgroups {
            h.remove_parents();
        }
    }
}

/// Sets the soft limit to `soft` and the hard one to `hard` (`None` = unlimited).
fn set_rlimit(
    pid: u32,
    resource: Resource,
    soft: u64,
    hard: Option<u64>,
    name: &'static str,
) -> Result<(), SandboxError> {
    let target = i32::try_from(pid).ok().and_then(Pid::from_raw);
    prlimit(
        target,
        resource,
        Rlimit {
            current: Some(soft),
            maximum: hard,
        },
    )
    .map(|_| ())
    .map_err(|e| SandboxError::Rlimit {
        resource: name,
        pid,
        soft,
        hard,
        source: e.into(),
    })
}

/// A short stable name for a run directory.
fn tag_of(run_dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let path = std::fs::canonicalize(run_dir).unwrap_or_else(|_| run_dir.to_path_buf());
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_directories_get_distinct_stable_tags() {
        let a = tag_of(Path::new("/nonexistent/a"));
        assert_eq!(a.len(), 12);
        assert_eq!(a, tag_of(Path::new("/nonexistent/a")));
        assert_ne!(a, tag_of(Path::new("/nonexistent/b")));
    }

    #[test]
    fn without_cgroups_the_cause_is_the_status() {
        let sandbox = Sandbox::rlimits_only();
        let id = ProjectId::generate();
        assert_eq!(
            sandbox.exit_cause(&id, Some("signal: 9 (SIGKILL)".into())),
            ExitCause::Exited {
                status: "signal: 9 (SIGKILL)".into()
            }
        );
    }
}
