//! Facts about the machine a run happened on, from /proc and `rustc -V`.

use serde::{Deserialize, Serialize};

/// What BENCHMARKS.md says about the machine.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub mem_total_gib: f64,
    /// `uname -srvm` equivalent.
    pub kernel: String,
    pub open_files_limit: u64,
    pub rustc: String,
    pub date_unix: u64,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Collects the facts now.
pub fn collect() -> Machine {
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem_kb: f64 = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let kernel = format!(
        "{} {} {} {}",
        read("/proc/sys/kernel/ostype").trim(),
        read("/proc/sys/kernel/osrelease").trim(),
        read("/proc/sys/kernel/version").trim(),
        std::env::consts::ARCH
    );
    let open_files_limit =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(_, hard)| hard)
            .unwrap_or(0);
    let rustc = std::process::Command::new("rustc")
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    Machine {
        cpu_model,
        cores,
        mem_total_gib: mem_kb / 1024.0 / 1024.0,
        kernel,
        open_files_limit,
        rustc,
        date_unix: crate::payload::now_micros() / 1_000_000,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_machine_has_cores_and_memory() {
        let m = super::collect();
        assert!(m.cores >= 1);
        assert!(m.mem_total_gib > 0.1);
        assert!(m.kernel.starts_with("Linux"));
    }
}
