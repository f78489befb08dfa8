//! Server resource use from /proc: CPU time (utime + stime of `/proc/<pid>/stat`) and resident
//! memory (`VmRSS` of `/proc/<pid>/status`), summed over a process and all its descendants
//! (nginx workers, a control plane's tenant processes); proportional and private memory
//! (`smaps_rollup`) and open files of one process. Also raises this process's fd limit.

use std::fs;
use std::time::Duration;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::unistd::{sysconf, SysconfVar};

/// Why /proc could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("process {0} not found: {1}")]
    Missing(u32, std::io::Error),
    #[error("unexpected format of {0}")]
    Format(String),
}

/// One sample of a process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// User + system CPU time.
    pub cpu: Duration,
    /// Resident set, bytes.
    pub rss: u64,
    /// Processes counted.
    pub processes: usize,
}

fn clock_ticks() -> u64 {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    }
}

/// CPU time of one process.
pub fn cpu_of(pid: u32) -> Result<Duration, ProcError> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).map_err(|e| ProcError::Missing(pid, e))?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| ProcError::Format(path.clone()))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let get = |n: usize| -> Result<u64, ProcError> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| ProcError::Format(path.clone()))
    };
    let ticks = get(14)? + get(15)?;
    Ok(Duration::from_micros(ticks * 1_000_000 / clock_ticks()))
}

/// CPU time of one process's live threads to the nanosecond (the first field of each
/// `/proc/<pid>/task/<tid>/schedstat`, the scheduler's own runtime), or `None` where the kernel
/// does not give it. Unlike [`cpu_of`], which reads utime + stime, it is not sampled at the
/// timer tick: on a kernel with tick-based accounting (`CONFIG_TICK_CPU_ACCOUNTING`) a process
/// that wakes on a timer and is done before the next tick is charged nothing there, which is
/// what an idle tenant does. Threads that exited are not counted, so it is for windows in
/// which a process's threads stay (an idle one).
pub fn runtime_of(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let text = fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// Resident memory of one process, bytes.
pub fn rss_of(pid: u32) -> Result<u64, ProcError> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).map_err(|e| ProcError::Missing(pid, e))?;
    let line = text
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| ProcError::Format(path.clone()))?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ProcError::Format(path.clone()))?;
    Ok(kb * 1024)
}

/// Memory of one process from `/proc/<pid>/smaps_rollup`, bytes: resident, proportional
/// (shared pages divided among the processes mapping them) and private (clean + dirty).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rollup {
    pub rss: u64,
    pub pss: u64,
    pub private: u64,
}

/// Reads `/proc/<pid>/smaps_rollup`.
pub fn rollup_of(pid: u32) -> Result<Rollup, ProcError> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = fs::read_to_string(&path).map_err(|e| ProcError::Missing(pid, e))?;
    let kb = |key: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let r = Rollup {
        rss: kb("Rss:"),
        pss: kb("Pss:"),
        private: kb("Private_Clean:") + kb("Private_Dirty:"),
    };
    if r.rss == 0 {
        return Err(ProcError::Format(path));
    }
    Ok(r)
}

/// CPU time the whole machine has been busy, all cores together (user, nice, system, irq,
/// softirq and steal of the `cpu` line of `/proc/stat`): what else ran shows as the difference
/// to the processes measured.
pub fn machine_busy() -> Result<Duration, ProcError> {
    let text = fs::read_to_string("/proc/stat").map_err(|e| ProcError::Missing(0, e))?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| ProcError::Format("/proc/stat".into()))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    Ok(Duration::from_micros(busy * 1_000_000 / clock_ticks()))
}

/// Threads of one process (`Threads:` of `/proc/<pid>/status`).
pub fn threads_of(pid: u32) -> Result<u64, ProcError> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).map_err(|e| ProcError::Missing(pid, e))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(ProcError::Format(path))
}

/// The CPUs a process may run on (`Cpus_allowed_list:` of `/proc/<pid>/status`, e.g. `0-1`).
pub fn cpus_allowed(pid: u32) -> Result<String, ProcError> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).map_err(|e| ProcError::Missing(pid, e))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_owned())
        .ok_or(ProcError::Format(path))
}

/// Open file descriptors of one process (entries of `/proc/<pid>/fd`).
pub fn open_files(pid: u32) -> Result<usize, ProcError> {
    let dir = fs::read_dir(format!("/proc/{pid}/fd")).map_err(|e| ProcError::Missing(pid, e))?;
    Ok(dir.count())
}

/// The process and every descendant (through `/proc/<pid>/task/<tid>/children`).
pub fn tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) {
            for task in tasks.flatten() {
                if let Ok(children) = fs::read_to_string(task.path().join("children")) {
                    out.extend(
                        children
                            .split_whitespace()
                            .filter_map(|c| c.parse::<u32>().ok()),
                    );
                }
            }
        }
        i += 1;
    }
    out.dedup();
    out
}

/// CPU and RSS summed over the union of the trees of `pids`. Processes that vanished meanwhile
/// are skipped; fails only when none of the roots exists.
pub fn sample(pids: &[u32]) -> Result<Sample, ProcError> {
    let mut s = Sample::default();
    let mut first_err = None;
    // A root may also descend from another root (a tenant both adopted and spawned): count once.
    let all: std::collections::BTreeSet<u32> = pids.iter().flat_map(|&root| tree(root)).collect();
    for pid in all {
        match (cpu_of(pid), rss_of(pid)) {
            (Ok(cpu), Ok(rss)) => {
                s.cpu += cpu;
                s.rss += rss;
                s.processes += 1;
            }
            (Err(e), _) | (_, Err(e)) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match (s.processes, first_err) {
        (0, Some(e)) => Err(e),
        _ => Ok(s),
    }
}

/// Raises the soft open-files limit to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let me = std::process::id();
        let s = sample(&[me]).unwrap();
        assert!(s.rss > 1024 * 1024, "rss {}", s.rss);
        assert!(s.processes >= 1);
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_of(me).unwrap() > Duration::ZERO);
    }

    #[test]
    fn this_process_has_a_memory_rollup_and_open_files() {
        let me = std::process::id();
        let r = rollup_of(me).unwrap();
        assert!(r.pss > 0 && r.private > 0 && r.rss >= r.private, "{r:?}");
        assert!(open_files(me).unwrap() >= 3);
        assert!(threads_of(me).unwrap() >= 1);
        assert!(machine_busy().unwrap() > Duration::ZERO);
    }

    #[test]
    fn a_missing_process_is_an_error() {
        assert!(matches!(
            sample(&[u32::MAX - 1]),
            Err(ProcError::Missing(..))
        ));
    }
}
