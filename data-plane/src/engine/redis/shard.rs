//! Which Redis shard holds a channel: Jump consistent hash (Lamping & Veach, 2014) over the
//! 64-bit FNV-1a hash of the channel name, as the centrifuge library picks a shard for
//! Centrifugo's Redis engine. Growing from N to N+1 shards moves about 1/(N+1) of the channels
//! (those the new shard takes), where `hash % N` would move almost all of them; processes that
//! share the same shard list always agree, whatever their start order or platform.

/// The 64-bit FNV-1a hash of `bytes` (stable across processes and restarts, unlike the std
/// hasher).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Jump consistent hash: the bucket in `0..buckets` for `key` (0 when `buckets` is 0 or 1).
/// Each step draws the next candidate bucket from a 64-bit linear congruential generator;
/// the arithmetic (wrapping u64, then f64) follows the published algorithm exactly, so the
/// answer matches other implementations of it bit for bit.
pub fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let buckets = buckets as i64;
    let mut bucket: i64 = 0;
    let mut next: i64 = 0;
    while next < buckets {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        let draw = (1u64 << 31) as f64 / ((key >> 33) + 1) as f64;
        next = ((bucket + 1) as f64 * draw) as i64;
    }
    bucket as usize
}

/// The shard of `channel` among `shards` shards.
pub fn shard_index(channel: &str, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    jump_hash(fnv1a64(channel.as_bytes()), shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_matches_an_independent_implementation_of_the_algorithm() {
        // Computed with a separate implementation (Python, float64 like Go's centrifuge).
        assert_eq!(fnv1a64(b""), 14_695_981_039_346_656_037);
        assert_eq!(fnv1a64(b"chat:index"), 5_648_794_480_358_446_777);
        for (channel, shards, expected) in [
            ("chat:index", 2, 0),
            ("chat:index", 3, 0),
            ("news", 5, 3),
            ("#42", 7, 1),
            ("", 4, 1),
            ("personal:#alice", 16, 14),
            ("x", 1000, 955),
        ] {
            assert_eq!(
                shard_index(channel, shards),
                expected,
                "{channel} over {shards}"
            );
        }
    }

    #[test]
    fn one_shard_or_none_takes_every_channel() {
        assert_eq!(shard_index("anything", 0), 0);
        assert_eq!(shard_index("anything", 1), 0);
        assert_eq!(jump_hash(u64::MAX, 1), 0);
    }

    #[test]
    fn channels_spread_evenly_over_the_shards() {
        let shards = 5;
        let mut counts = vec![0usize; shards];
        let total = 100_000;
        for i in 0..total {
            counts[shard_index(&format!("chat:{i}"), shards)] += 1;
        }
        for (shard, count) in counts.iter().enumerate() {
            let share = *count as f64 / total as f64;
            assert!(
                (share - 0.2).abs() < 0.01,
                "shard {shard} holds {share:.4} of the channels"
            );
        }
    }

    /// Counts the channels (of `total`) whose shard changes from `n` to `n + 1` shards, with
    /// jump hash and with `hash % n`.
    fn moved(n: usize, total: usize) -> (usize, usize) {
        let mut jump = 0;
        let mut modulo = 0;
        for i in 0..total {
            let channel = format!("room:{i}");
            let (before, after) = (shard_index(&channel, n), shard_index(&channel, n + 1));
            if before != after {
                jump += 1;
                // A channel may only move onto the new shard.
                assert_eq!(after, n, "{channel} moved between old shards");
            }
            let hash = fnv1a64(channel.as_bytes());
            if hash % n as u64 != hash % (n as u64 + 1) {
                modulo += 1;
            }
        }
        (jump, modulo)
    }

    #[test]
    fn adding_a_shard_moves_about_one_channel_in_n_plus_one_where_modulo_moves_most() {
        let total = 100_000;
        for n in [1, 2, 3, 4, 7, 15] {
            let (jump, modulo) = moved(n, total);
            let jump_share = jump as f64 / total as f64;
            let modulo_share = modulo as f64 / total as f64;
            let ideal = 1.0 / (n + 1) as f64;
            assert!(
                (jump_share - ideal).abs() < 0.01,
                "{n}→{}: jump hash moved {jump_share:.4}, ideal {ideal:.4}",
                n + 1
            );
            // Modulo keeps a channel only when both remainders agree: 1/(n+1) of them.
            assert!(
                modulo_share > 1.0 - ideal - 0.01,
                "{n}→{}: modulo moved {modulo_share:.4}",
                n + 1
            );
        }
    }
}
