//! The CPU time slice a tenant's threads ask the kernel's scheduler for.
//!
//! Linux's fair scheduler (EEVDF, 6.6+) runs a thread until its slice is used before another
//! thread of the same weight gets the CPU, and since 6.12 a thread may ask for its own slice
//! (`sched_setattr` with `sched_runtime` under `SCHED_OTHER`, 0.1–100 ms). A thread that wakes
//! with a shorter slice than the one running preempts it at once; one with the default slice
//! (0.7 ms × (1 + log2 CPUs)) waits until the running one's slice is spent. So a plan's slice
//! orders who waits behind whom when tenants share a core: a tenant whose plan asks for a short
//! slice is served as soon as its traffic arrives, even while a saturated neighbour on a longer
//! slice holds the core; it does not take more CPU than its weight gives it.
//!
//! The supervisor sets it on the tenant's first thread between fork and exec ([`on_exec`]);
//! threads inherit it from the thread that creates them, so every runtime worker has it from
//! birth. A plan change walks the running process's threads ([`set_process`]). Kernels before
//! 6.12 take the call and ignore the slice; where `sched_setattr` is missing the process keeps
//! the default.
//!
//! This crate is the workspace's only unsafe code (the rest forbids it): the two syscalls and
//! the fork-to-exec hook, each in a block of its own with what makes it sound.

use std::os::unix::process::CommandExt as _;
use std::path::Path;

/// The shortest and longest slice the kernel takes, in microseconds (it clamps to these).
pub const MIN_US: u64 = 100;
pub const MAX_US: u64 = 100_000;

/// `struct sched_attr` of `sched_setattr(2)` (the size known since Linux 4.13).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: u32 = 3;

/// Gives thread `tid` (0: the calling thread) a slice of `slice_us` microseconds (clamped to
/// [`MIN_US`]..=[`MAX_US`]; 0: back to the kernel's default), keeping its policy and nice
/// value. Only plain syscalls, so it may run between fork and exec. Threads under a real-time
/// or idle policy are left alone.
pub fn set(tid: i32, slice_us: u64) -> std::io::Result<()> {
    let attr = read(tid)?;
    if attr.policy != SCHED_OTHER && attr.policy != SCHED_BATCH {
        return Ok(());
    }
    let size = std::mem::size_of::<SchedAttr>() as u32;
    let runtime = if slice_us == 0 {
        0
    } else {
        slice_us.clamp(MIN_US, MAX_US) * 1_000
    };
    let new = SchedAttr {
        size,
        policy: attr.policy,
        nice: attr.nice,
        runtime,
        ..SchedAttr::default()
    };
    // SAFETY: `new` is a valid `sched_attr` whose `size` field is its own size; the kernel
    // only reads it.
    #[allow(unsafe_code)]
    let set = unsafe { libc::syscall(libc::SYS_sched_setattr, tid, &new as *const SchedAttr, 0) };
    if set != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The slice thread `tid` runs with, in microseconds (the kernel's default when none was
/// asked for).
pub fn get(tid: i32) -> std::io::Result<u64> {
    Ok(read(tid)?.runtime / 1_000)
}

/// Thread `tid`'s scheduling attributes (`sched_getattr`).
fn read(tid: i32) -> std::io::Result<SchedAttr> {
    let mut attr = SchedAttr::default();
    let size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `attr` is a live, writable `sched_attr` of `size` bytes, and the kernel writes
    // at most `size` bytes into it.
    #[allow(unsafe_code)]
    let got = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            tid,
            &mut attr as *mut SchedAttr,
            size,
            0,
        )
    };
    if got != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(attr)
}

/// Makes the process `command` starts run with the slice from its first instruction: set
/// between fork and exec, kept across exec and inherited by every thread it makes. A kernel
/// that refuses it leaves the default (not a reason to fail the start).
pub fn on_exec(command: &mut std::process::Command, slice_us: u64) {
    // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe work
    // is allowed: it makes two syscalls on the child's own thread, with values on its stack,
    // and neither allocates nor takes a lock (an `io::Error` from a raw OS code allocates
    // nothing, and it is dropped unread).
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            let _ = set(0, slice_us);
            Ok(())
        });
    }
}

/// Gives every thread of process `pid` the slice (a plan change on a running tenant). A thread
/// that ends meanwhile is skipped; one being created meanwhile inherits from its creator. A
/// kernel without `sched_setattr` leaves the default, as at start.
pub fn set_process(pid: u32, slice_us: u64) -> std::io::Result<()> {
    let tasks = Path::new("/proc").join(pid.to_string()).join("task");
    for entry in std::fs::read_dir(tasks)? {
        let Some(tid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        match set(tid, slice_us) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_gets_the_slice_asked_for_and_its_new_threads_inherit_it() {
        let t = std::thread::spawn(|| {
            let before = get(0).expect("getattr");
            set(0, 250).expect("setattr");
            let child = std::thread::spawn(|| get(0).expect("getattr in child"))
                .join()
                .expect("child thread");
            let clamped = {
                set(0, 1).expect("setattr");
                get(0).expect("getattr")
            };
            set(0, 0).expect("reset");
            (before, get(0).expect("getattr"), child, clamped)
        });
        let (before, after_reset, inherited, clamped) = t.join().expect("thread");
        if before == 0 {
            // A kernel without EEVDF reports no slice: nothing to check.
            return;
        }
        assert_eq!(inherited, 250, "a new thread inherits its creator's slice");
        assert_eq!(
            clamped, MIN_US,
            "a slice below the kernel's least is clamped"
        );
        assert_eq!(after_reset, before, "0 goes back to the default slice");
    }
}
