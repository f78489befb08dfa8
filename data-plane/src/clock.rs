//! Housekeeping deadlines that cost one wake each. An idle tenant does little but ping its
//! clients, refresh presence and look at its counters, so what it costs is the number of times
//! its runtime wakes. Tokio keeps timers in a hierarchical wheel (slots of 1 ms, 64 ms,
//! 4.096 s, … from the instant the runtime was built): a timer seconds away sits in a coarse
//! slot, and the runtime wakes at that slot's start, moves the timer down a level, wakes at the
//! finer slot's start and so on — three or four wakes for one 25 s ping. A deadline that *is* a
//! coarse slot's start fires on the first of them. [`coarse`] moves a deadline that may come a
//! little early (a ping, a presence refresh, a usage check) back onto the grid of such starts,
//! so it costs one wake, and the deadlines of every connection of the process that fall in the
//! same slot share it.
//!
//! The grid is counted from [`init`], called just before the runtime is built (tokio counts
//! its slots from the runtime's start, a few microseconds later, and rounds deadlines up to the
//! next millisecond, so a grid point lands on the slot's start). Where the origin is off (a
//! process that did not call [`init`]) deadlines still share slots; they only wake a little
//! more often. Nothing here affects correctness: a coarse deadline is never later than asked.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The grids tried, coarsest first: tokio's level-2 and level-1 slot widths.
const GRIDS: [Duration; 2] = [Duration::from_millis(4096), Duration::from_millis(64)];

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Fixes the grid's origin; call it right before building the runtime.
pub fn init() {
    let _ = ORIGIN.set(Instant::now());
}

fn origin() -> Instant {
    *ORIGIN.get_or_init(Instant::now)
}

/// Milliseconds since [`init`], wrapping after ~49 days: compare two of them with
/// `wrapping_sub`.
pub fn millis() -> u32 {
    (origin().elapsed().as_millis() % (1 << 32)) as u32
}

/// `at`, or the latest grid point before it that keeps at least three quarters of the wait
/// from `now` (coarsest grid first). A deadline in the past or too near for any grid is
/// returned as it is.
pub fn coarse(now: Instant, at: Instant) -> Instant {
    coarse_from(origin(), now, at)
}

/// [`coarse`] for tokio's instant type.
pub fn coarse_tokio(now: tokio::time::Instant, at: tokio::time::Instant) -> tokio::time::Instant {
    tokio::time::Instant::from_std(coarse(now.into_std(), at.into_std()))
}

/// `now + wait`, coarsened ([`coarse`]).
pub fn after(wait: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    coarse_tokio(now, now + wait)
}

fn coarse_from(origin: Instant, now: Instant, at: Instant) -> Instant {
    let Some(wait) = at.checked_duration_since(now) else {
        return at;
    };
    let Some(since) = at.checked_duration_since(origin) else {
        return at;
    };
    let earliest = now + wait - wait / 4;
    for grid in GRIDS {
        let grid_nanos = grid.as_nanos();
        let down = since.as_nanos() / grid_nanos * grid_nanos;
        let point = origin + Duration::from_nanos(u64::try_from(down).unwrap_or(u64::MAX));
        if point >= earliest && point > now {
            return point;
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_long_wait_lands_on_the_coarse_grid_and_never_later() {
        let origin = Instant::now();
        for start in [0, 1, 999, 4095, 4096, 12_345, 100_003] {
            let now = origin + ms(start);
            let at = now + ms(25_000);
            let c = coarse_from(origin, now, at);
            assert!(c <= at, "never later than asked");
            assert!(c >= now + ms(18_750), "keeps three quarters of the wait");
            assert_eq!(
                (c - origin).as_millis() % 4096,
                0,
                "on the 4.096 s grid from {start}"
            );
        }
    }

    #[test]
    fn deadlines_in_one_slot_share_it() {
        let origin = Instant::now();
        let a = coarse_from(origin, origin + ms(10), origin + ms(30_000));
        let b = coarse_from(origin, origin + ms(900), origin + ms(30_900));
        assert_eq!(a, b);
    }

    #[test]
    fn a_short_wait_uses_the_fine_grid_or_stays_exact() {
        let origin = Instant::now();
        let now = origin + ms(5_000);
        let c = coarse_from(origin, now, now + ms(1_000));
        assert_eq!((c - origin).as_millis() % 64, 0);
        assert!(c <= now + ms(1_000) && c >= now + ms(750));
        let tiny = now + ms(10);
        assert_eq!(coarse_from(origin, now, tiny), tiny);
    }

    #[test]
    fn past_deadlines_are_left_alone() {
        let origin = Instant::now();
        let now = origin + ms(5_000);
        let past = origin + ms(4_000);
        assert_eq!(coarse_from(origin, now, past), past);
        assert_eq!(coarse_from(origin, now, now), now);
    }
}
