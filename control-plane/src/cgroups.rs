//! Control groups, as files: finding where this process may create child groups (cgroup v1,
//! one hierarchy per controller, or v2, one unified hierarchy), making one group per tenant
//! under a parent of our own, writing its memory, pids and CPU limits, moving a process in,
//! reading how often the kernel's OOM killer fired in it, and removing it again. Only the
//! `memory`, `pids` and `cpu` controllers are used. Groups are created only below the group
//! this process runs in, never elsewhere in the tree.

use std::io;
use std::path::{Path, PathBuf};

/// A group's CPU cap at work so far (cumulative counters of `cpu.stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuStat {
    /// Enforcement periods (100 ms each) in which the group ran.
    pub periods: u64,
    /// Periods in which it used its whole quota and was held back.
    pub throttled: u64,
}

/// The controllers Rotor uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    Memory,
    Pids,
    Cpu,
}

impl Controller {
    pub const ALL: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }
}

/// The CPU bandwidth period a CPU cap is measured over (the kernel's default, 100 ms).
const CPU_PERIOD_US: u64 = 100_000;

/// Which cgroup interface is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// What limits to write into a group (0 = not limited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupLimits {
    pub memory_bytes: u64,
    pub tasks: u64,
    /// 1–10000, 100 being an ordinary share (0 = the default share).
    pub cpu_weight: u64,
    /// The most CPU time the group may use, in percent of one core (100 = a whole core,
    /// 250 = two and a half); 0 = no cap. Unlike the weight, which only orders who runs first
    /// under contention, this holds a saturated tenant down even on an idle box.
    pub cpu_max_percent: u64,
}

/// Where tenant groups are made: for each usable controller, the parent directory.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    version: Version,
    parents: Vec<(Controller, PathBuf)>,
}

/// One tenant's group (one directory per controller on v1, one directory on v2).
#[derive(Debug, Clone)]
pub struct Group {
    version: Version,
    dirs: Vec<(Controller, PathBuf)>,
}

/// A line of `/proc/self/cgroup`: hierarchy id, controllers, path.
#[derive(Debug, PartialEq)]
struct Membership {
    controllers: Vec<String>,
    path: String,
}

/// A cgroup mount from `/proc/self/mountinfo`.
#[derive(Debug, PartialEq)]
struct Mount {
    root: String,
    point: PathBuf,
    v2: bool,
    options: Vec<String>,
}

fn parse_memberships(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(Membership {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                path: path.to_owned(),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            let octal = digits.iter().all(|d| (b'0'..=b'7').contains(d));
            if let (true, Ok(v)) = (octal, u8::from_str_radix(&field[i + 1..i + 4], 8)) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let mut post = post.split(' ');
            let fstype = post.next()?;
            let _source = post.next();
            let superopts = post.next().unwrap_or("");
            let v2 = match fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            Some(Mount {
                root: unescape(pre.get(3)?),
                point: PathBuf::from(unescape(pre.get(4)?)),
                v2,
                options: superopts.split(',').map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// The directory of cgroup `path` under `mount`, when the mount shows it.
fn dir_of(mount: &Mount, path: &str) -> Option<PathBuf> {
    let rel = if mount.root == "/" {
        path
    } else {
        path.strip_prefix(mount.root.as_str())
            .filter(|r| r.is_empty() || r.starts_with('/'))?
    };
    let rel = rel.trim_start_matches('/');
    Some(if rel.is_empty() {
        mount.point.clone()
    } else {
        mount.point.join(rel)
    })
}

/// This process's own group directory for each controller found, and the version.
fn locate(
    memberships: &[Membership],
    mounts: &[Mount],
) -> Option<(Version, Vec<(Controller, PathBuf)>)> {
    let mut v1 = Vec::new();
    for controller in Controller::ALL {
        let found = memberships
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == controller.name()));
        let Some(member) = found else { continue };
        let mount = mounts
            .iter()
            .find(|m| !m.v2 && m.options.iter().any(|o| o == controller.name()));
        if let Some(dir) = mount.and_then(|m| dir_of(m, &member.path)) {
            v1.push((controller, dir));
        }
    }
    if !v1.is_empty() {
        return Some((Version::V1, v1));
    }
    let member = memberships.iter().find(|m| m.controllers.is_empty())?;
    let mount = mounts.iter().find(|m| m.v2)?;
    let dir = dir_of(mount, &member.path)?;
    let available = std::fs::read_to_string(dir.join("cgroup.controllers")).ok()?;
    let v2: Vec<(Controller, PathBuf)> = Controller::ALL
        .into_iter()
        .filter(|c| available.split_whitespace().any(|a| a == c.name()))
        .map(|c| (c, dir.clone()))
        .collect();
    (!v2.is_empty()).then_some((Version::V2, v2))
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    std::fs::write(dir.join(file), value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot write {value:?} to {}: {e}",
                dir.join(file).display()
            ),
        )
    })
}

/// On v2 a group with processes cannot hand controllers to its children: move this process
/// into a leaf of its own first (only when enabling fails for that reason).
fn enable_v2(own: &Path, controllers: &[Controller]) -> io::Result<()> {
    let wanted: Vec<String> = controllers
        .iter()
        .map(|c| format!("+{}", c.name()))
        .collect();
    let wanted = wanted.join(" ");
    if write(own, "cgroup.subtree_control", &wanted).is_ok() {
        return Ok(());
    }
    let leaf = own.join("rotor-control-plane");
    std::fs::create_dir_all(&leaf)?;
    write(&leaf, "cgroup.procs", &std::process::id().to_string())?;
    write(own, "cgroup.subtree_control", &wanted)
}

impl Hierarchy {
    /// Finds where this process may create groups and makes its parent `rotor-{tag}` there;
    /// `None` when no controller is usable (not mounted, or not writable for us).
    pub fn detect(tag: &str) -> Option<Self> {
        let memberships = parse_memberships(&std::fs::read_to_string("/proc/self/cgroup").ok()?);
        let mounts = parse_mounts(&std::fs::read_to_string("/proc/self/mountinfo").ok()?);
        let (version, own) = locate(&memberships, &mounts)?;
        let name = format!("rotor-{tag}");
        let mut parents = Vec::new();
        match version {
            Version::V1 => {
                for (controller, dir) in own {
                    let parent = dir.join(&name);
                    match std::fs::create_dir_all(&parent) {
                        Ok(()) => parents.push((controller, parent)),
                        Err(e) => {
                            tracing::warn!(controller = controller.name(), dir = %dir.display(), error = %e, "cgroup controller not writable; not used")
                        }
                    }
                }
            }
            Version::V2 => {
                let dir = own[0].1.clone();
                let controllers: Vec<Controller> = own.iter().map(|(c, _)| *c).collect();
                let parent = dir.join(&name);
                let made = enable_v2(&dir, &controllers)
                    .and_then(|()| std::fs::create_dir_all(&parent))
                    .and_then(|()| {
                        let wanted: Vec<String> = controllers
                            .iter()
                            .map(|c| format!("+{}", c.name()))
                            .collect();
                        write(&parent, "cgroup.subtree_control", &wanted.join(" "))
                    });
                match made {
                    Ok(()) => parents.extend(controllers.into_iter().map(|c| (c, parent.clone()))),
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "cgroup v2 hierarchy not delegated to this process; not used")
                    }
                }
            }
        }
        (!parents.is_empty()).then_some(Self { version, parents })
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The controllers in use.
    pub fn controllers(&self) -> Vec<Controller> {
        self.parents.iter().map(|(c, _)| *c).collect()
    }

    /// The parent directories (one per controller on v1).
    pub fn parents(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.parents.iter().map(|(_, p)| p.clone()).collect();
        out.dedup();
        out
    }

    /// The group named `name` (whether or not it exists yet).
    pub fn group(&self, name: &str) -> Group {
        Group {
            version: self.version,
            dirs: self
                .parents
                .iter()
                .map(|(c, p)| (*c, p.join(name)))
                .collect(),
        }
    }

    /// Names of the groups that exist under our parents.
    pub fn existing(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .parents()
            .iter()
            .filter_map(|p| std::fs::read_dir(p).ok())
            .flat_map(|entries| entries.flatten())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Removes our parent directories when no group is left in them.
    pub fn remove_parents(&self) {
        for parent in self.parents() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

impl Group {
    /// Creates the group's directories (an existing, empty group is made anew, so its
    /// counters start at zero).
    pub fn create(&self) -> io::Result<()> {
        let _ = self.remove();
        for dir in self.unique_dirs() {
            std::fs::create_dir_all(dir)?;
        }
        if self.version == Version::V2 {
            if let Some(dir) = self.dir(Controller::Memory) {
                // The tenant is one unit: the OOM killer takes all of it or nothing.
                let _ = write(dir, "memory.oom.group", "1");
            }
        }
        Ok(())
    }

    fn unique_dirs(&self) -> Vec<&PathBuf> {
        let mut out: Vec<&PathBuf> = self.dirs.iter().map(|(_, d)| d).collect();
        out.dedup();
        out
    }

    fn dir(&self, controller: Controller) -> Option<&PathBuf> {
        self.dirs
            .iter()
            .find(|(c, _)| *c == controller)
            .map(|(_, d)| d)
    }

    /// Whether the group limits memory (the memory controller is in use).
    pub fn has(&self, controller: Controller) -> bool {
        self.dir(controller).is_some()
    }

    /// Writes the limits for every controller in use.
    pub fn apply(&self, limits: &GroupLimits) -> io::Result<()> {
        if let Some(dir) = self.dir(Controller::Memory) {
            match self.version {
                Version::V1 => {
                    let value = if limits.memory_bytes == 0 {
                        "-1".to_owned()
                    } else {
                        limits.memory_bytes.to_string()
                    };
                    // memory+swap may never be below memory: open it, set memory, close it.
                    let swap = dir.join("memory.memsw.limit_in_bytes").exists();
                    if swap {
                        write(dir, "memory.memsw.limit_in_bytes", "-1")?;
                    }
                    write(dir, "memory.limit_in_bytes", &value)?;
                    if swap {
                        write(dir, "memory.memsw.limit_in_bytes", &value)?;
                    }
                }
                Version::V2 => {
                    let value = if limits.memory_bytes == 0 {
                        "max".to_owned()
                    } else {
                        limits.memory_bytes.to_string()
                    };
                    write(dir, "memory.max", &value)?;
                    if dir.join("memory.swap.max").exists() {
                        let swap = if limits.memory_bytes == 0 { "max" } else { "0" };
                        write(dir, "memory.swap.max", swap)?;
                    }
                }
            }
        }
        if let Some(dir) = self.dir(Controller::Pids) {
            let value = if limits.tasks == 0 {
                "max".to_owned()
            } else {
                limits.tasks.to_string()
            };
            write(dir, "pids.max", &value)?;
        }
        if let Some(dir) = self.dir(Controller::Cpu) {
            let weight = if limits.cpu_weight == 0 {
                100
            } else {
                limits.cpu_weight.clamp(1, 10_000)
            };
            // The quota is the cap's share of each period (at least the kernel's 1 ms).
            let quota = (limits.cpu_max_percent > 0)
                .then(|| (limits.cpu_max_percent.min(100_000) * CPU_PERIOD_US / 100).max(1_000));
            match self.version {
                // v1 shares: 1024 is an ordinary share (weight 100).
                Version::V1 => {
                    write(dir, "cpu.shares", &(weight * 1024 / 100).max(2).to_string())?;
                    write(dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
                    let quota = quota.map_or("-1".to_owned(), |q| q.to_string());
                    write(dir, "cpu.cfs_quota_us", &quota)?;
                }
                Version::V2 => {
                    write(dir, "cpu.weight", &weight.to_string())?;
                    let quota = quota.map_or("max".to_owned(), |q| q.to_string());
                    write(dir, "cpu.max", &format!("{quota} {CPU_PERIOD_US}"))?;
                }
            }
        }
        Ok(())
    }

    /// Moves process `pid` (all its threads) into the group.
    pub fn add(&self, pid: u32) -> io::Result<()> {
        for dir in self.unique_dirs() {
            write(dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Processes in the group.
    pub fn pids(&self) -> Vec<u32> {
        let Some(dir) = self.unique_dirs().first().cloned() else {
            return Vec::new();
        };
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// How many times the kernel's OOM killer killed a process of this group.
    pub fn oom_kills(&self) -> u64 {
        let Some(dir) = self.dir(Controller::Memory) else {
            return 0;
        };
        let file = match self.version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| counter(&text, "oom_kill"))
            .unwrap_or(0)
    }

    /// The CPU periods the group ran in, and those its CPU cap held it back in (`nr_periods`
    /// and `nr_throttled` of `cpu.stat`, v1 and v2 alike); counted only while a cap is set.
    pub fn cpu_stat(&self) -> Option<CpuStat> {
        let text = std::fs::read_to_string(self.dir(Controller::Cpu)?.join("cpu.stat")).ok()?;
        Some(CpuStat {
            periods: counter(&text, "nr_periods")?,
            throttled: counter(&text, "nr_throttled")?,
        })
    }

    /// Memory in use by the group now, in bytes.
    pub fn memory_current(&self) -> Option<u64> {
        let dir = self.dir(Controller::Memory)?;
        let file = match self.version {
            Version::V1 => "memory.usage_in_bytes",
            Version::V2 => "memory.current",
        };
        std::fs::read_to_string(dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The limits written in the group's files (for checks and tests).
    pub fn read_limits(&self) -> GroupLimits {
        let read = |c: Controller, file: &str| -> Option<String> {
            std::fs::read_to_string(self.dir(c)?.join(file))
                .ok()
                .map(|s| s.trim().to_owned())
        };
        let number = |s: Option<String>| s.and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let (memory, cpu, quota, period) = match self.version {
            Version::V1 => (
                number(read(Controller::Memory, "memory.limit_in_bytes")).min(i64::MAX as u64 / 2),
                number(read(Controller::Cpu, "cpu.shares")) * 100 / 1024,
                number(read(Controller::Cpu, "cpu.cfs_quota_us")),
                number(read(Controller::Cpu, "cpu.cfs_period_us")),
            ),
            Version::V2 => {
                let max = read(Controller::Cpu, "cpu.max").unwrap_or_default();
                let mut parts = max.split_whitespace();
                let quota = number(parts.next().map(str::to_owned));
                let period = number(parts.next().map(str::to_owned));
                (
                    number(read(Controller::Memory, "memory.max")),
                    number(read(Controller::Cpu, "cpu.weight")),
                    quota,
                    period,
                )
            }
        };
        GroupLimits {
            memory_bytes: memory,
            tasks: number(read(Controller::Pids, "pids.max")),
            cpu_weight: cpu,
            // `-1` / `max` read as 0: no cap.
            cpu_max_percent: (quota * 100).checked_div(period).unwrap_or(0),
        }
    }

    /// The group's directories.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.unique_dirs().into_iter().cloned().collect()
    }

    /// Removes the group; fails while a process is still in it.
    pub fn remove(&self) -> io::Result<()> {
        let mut result = Ok(());
        for dir in self.unique_dirs() {
            match std::fs::remove_dir(dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => result = Err(e),
                _ => {}
            }
        }
        result
    }
}

/// `name N` from a flat-keyed cgroup file.
fn counter(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CGROUP_V1: &str =
        "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n";
    const MOUNTINFO_V1: &str = "\
30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
33 25 0:29 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
36 25 0:32 / /sys/fs/cgroup/pids rw,relatime shared:15 - cgroup cgroup rw,pids
38 25 0:34 / /sys/fs/cgroup/unified rw,relatime shared:17 - cgroup2 cgroup2 rw
40 1 8:1 / / rw,relatime - ext4 /dev/vda rw
";

    #[test]
    fn v1_controllers_are_found_in_their_own_hierarchies() {
        let (version, dirs) =
            locate(&parse_memberships(CGROUP_V1), &parse_mounts(MOUNTINFO_V1)).unwrap();
        assert_eq!(version, Version::V1);
        assert_eq!(
            dirs,
            vec![
                (
                    Controller::Memory,
                    PathBuf::from("/sys/fs/cgroup/memory/process_api/abc")
                ),
                (Controller::Pids, PathBuf::from("/sys/fs/cgroup/pids")),
                (Controller::Cpu, PathBuf::from("/sys/fs/cgroup/cpu")),
            ]
        );
    }

    #[test]
    fn a_mount_of_a_subtree_is_resolved_relative_to_its_root() {
        // A container sees its own group as the root of the mount.
        let mounts = parse_mounts(
            "50 40 0:29 /kubepods/pod1 /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        );
        let members = parse_memberships("4:memory:/kubepods/pod1/c1\n");
        let (_, dirs) = locate(&members, &mounts).unwrap();
        assert_eq!(
            dirs,
            vec![(
                Controller::Memory,
                PathBuf::from("/sys/fs/cgroup/memory/c1")
            )]
        );
        // A group outside the mounted subtree is not reachable.
        let members = parse_memberships("4:memory:/elsewhere\n");
        assert!(locate(&members, &mounts).is_none());
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/end\\"), "/end\\");
    }

    /// A group over plain directories (the files a kernel would offer are written as text).
    fn group_in(version: Version, name: &str) -> (Group, PathBuf) {
        let root =
            std::env::temp_dir().join(format!("rotor-cgroup-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let dirs = Controller::ALL.iter().map(|c| (*c, root.clone())).collect();
        (Group { version, dirs }, root)
    }

    #[test]
    fn the_cpu_cap_is_a_quota_per_period_and_reads_back() {
        for version in [Version::V1, Version::V2] {
            let (group, root) = group_in(version, &format!("{version:?}"));
            let capped = GroupLimits {
                memory_bytes: 1 << 20,
                tasks: 8,
                cpu_weight: 400,
                cpu_max_percent: 50,
            };
            group.apply(&capped).unwrap();
            assert_eq!(group.read_limits(), capped, "{version:?}");
            let text = |f: &str| std::fs::read_to_string(root.join(f)).unwrap();
            match version {
                Version::V1 => {
                    assert_eq!(text("cpu.cfs_quota_us"), "50000");
                    assert_eq!(text("cpu.cfs_period_us"), "100000");
                }
                Version::V2 => assert_eq!(text("cpu.max"), "50000 100000"),
            }
            // Two and a half cores; then no cap at all.
            group
                .apply(&GroupLimits {
                    cpu_max_percent: 250,
                    ..capped
                })
                .unwrap();
            assert_eq!(group.read_limits().cpu_max_percent, 250);
            group
                .apply(&GroupLimits {
                    cpu_max_percent: 0,
                    ..capped
                })
                .unwrap();
            assert_eq!(group.read_limits().cpu_max_percent, 0);
            let uncapped = match version {
                Version::V1 => "-1",
                Version::V2 => "max 100000",
            };
            assert_eq!(
                text(if version == Version::V1 {
                    "cpu.cfs_quota_us"
                } else {
                    "cpu.max"
                }),
                uncapped
            );
            std::fs::write(root.join("cpu.stat"), "nr_periods 9\nnr_throttled 4\n").unwrap();
            assert_eq!(
                group.cpu_stat(),
                Some(CpuStat {
                    periods: 9,
                    throttled: 4
                })
            );
            std::fs::remove_dir_all(&root).unwrap();
        }
    }

    #[test]
    fn flat_counters_are_read_by_name() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(counter(v1, "oom_kill"), Some(3));
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 1\n";
        assert_eq!(counter(v2, "oom_kill"), Some(1));
        assert_eq!(counter("", "oom_kill"), None);
    }
}
