//! The open-file limit of a Rotor process. A typical host starts processes with a soft
//! `RLIMIT_NOFILE` of 1,024, far below what a real-time server needs (one file per
//! connection) and far below the hard limit it may raise itself to, so every Rotor process
//! raises its soft limit to the hard one at start, as Go's runtime does, and reports both.

use std::io;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// The open-file limits before and after [`raise_to_hard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    /// The soft limit the process was started with.
    pub started: u64,
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit (`u64::MAX` when unlimited).
    pub hard: u64,
}

/// Raises the soft open-file limit to the hard one; returns the limits. A failure to raise
/// leaves the soft limit as it was (and says so in `soft`).
pub fn raise_to_hard() -> io::Result<FileLimits> {
    let before = getrlimit(Resource::Nofile);
    let started = before.current.unwrap_or(u64::MAX);
    let hard = before.maximum.unwrap_or(u64::MAX);
    if started < hard {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: before.maximum,
                maximum: before.maximum,
            },
        )?;
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    Ok(FileLimits {
        started,
        soft,
        hard,
    })
}

/// The soft open-file limit in force.
pub fn soft_limit() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let limits = raise_to_hard().unwrap();
        assert_eq!(limits.soft, limits.hard);
        assert!(limits.started <= limits.soft);
        assert_eq!(soft_limit(), limits.soft);
    }
}
