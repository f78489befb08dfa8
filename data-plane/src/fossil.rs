//! Fossil deltas (the format of Fossil SCM's `delta.c`, which Centrifugo's `delta: "fossil"`
//! subscriptions use): [`create`] encodes the difference between a source and a target as copy
//! and insert commands, [`apply`] rebuilds the target (used by tests and to check encodings).
//!
//! The format: the target length, `\n`, then commands — `N@O,` copies `N` bytes from source
//! offset `O`, `N:` followed by `N` bytes inserts them — and `C;` ends the delta with a checksum
//! of the target. Numbers are written most significant digit first in a 64-letter alphabet.
//! The encoder indexes the source in blocks of [`BLOCK`] bytes by a rolling hash, slides the
//! same hash over the target, and at each landmark hit extends the match both ways; a copy is
//! emitted only when it is shorter than the bytes it replaces.

/// Length of the blocks the source is indexed by (and of the rolling hash window).
const BLOCK: usize = 16;
/// Candidate source blocks examined per target position (bounds the work on repetitive input).
const MAX_CANDIDATES: usize = 250;
/// The digits of the delta's integers, in value order.
const DIGITS: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";

/// Why a delta could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("the delta ends before its checksum")]
    Unterminated,
    #[error("the size line is not terminated by a newline")]
    BadHeader,
    #[error("a copy command is not terminated by a comma")]
    BadCopy,
    #[error("a copy reaches past the end of the source")]
    CopyOutOfSource,
    #[error("the commands produce more bytes than announced")]
    TooLong,
    #[error("an insert reaches past the end of the delta")]
    InsertOutOfDelta,
    #[error("the commands produce fewer bytes than announced")]
    TooShort,
    #[error("the checksum does not match the target")]
    BadChecksum,
    #[error("unknown command {0:?}")]
    UnknownCommand(char),
    #[error("a number is too large")]
    Overflow,
}

/// A delta that turns `source` into `target`.
pub fn create(source: &[u8], target: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(target.len() / 4 + 32);
    put_int(&mut out, target.len() as u64);
    out.push(b'\n');
    if source.len() <= BLOCK {
        insert(&mut out, target);
        finish(&mut out, target);
        return out;
    }
    let index = Index::new(source);
    // `base`: first target byte not yet encoded; `i`: how far past it the window looks.
    let mut base = 0;
    while base + BLOCK < target.len() {
        let mut hash = Rolling::new(&target[base..base + BLOCK]);
        let mut i = 0;
        loop {
            if let Some(m) = index.best_match(source, target, base, i, hash.value()) {
                if m.literal > 0 {
                    insert(&mut out, &target[base..base + m.literal]);
                }
                put_int(&mut out, m.len as u64);
                out.push(b'@');
                put_int(&mut out, m.offset as u64);
                out.push(b',');
                base += m.literal + m.len;
                break;
            }
            if base + i + BLOCK >= target.len() {
                insert(&mut out, &target[base..]);
                base = target.len();
                break;
            }
            hash.roll(target[base + i], target[base + i + BLOCK]);
            i += 1;
        }
    }
    if base < target.len() {
        insert(&mut out, &target[base..]);
    }
    finish(&mut out, target);
    out
}

/// Rebuilds the target from `source` and a delta made by [`create`] (or by any Fossil encoder).
pub fn apply(source: &[u8], delta: &[u8]) -> Result<Vec<u8>, ApplyError> {
    let mut r = Reader {
        bytes: delta,
        pos: 0,
    };
    let limit = r.int()?;
    if r.next() != Some(b'\n') {
        return Err(ApplyError::BadHeader);
    }
    let limit = usize::try_from(limit).map_err(|_| ApplyError::Overflow)?;
    let mut out = Vec::with_capacity(limit.min(1 << 24));
    while r.pos < delta.len() {
        let n = usize::try_from(r.int()?).map_err(|_| ApplyError::Overflow)?;
        match r.next() {
            Some(b'@') => {
                let offset = usize::try_from(r.int()?).map_err(|_| ApplyError::Overflow)?;
                if r.next() != Some(b',') {
                    return Err(ApplyError::BadCopy);
                }
                if out.len().checked_add(n).is_none_or(|t| t > limit) {
                    return Err(ApplyError::TooLong);
                }
                let end = offset.checked_add(n).ok_or(ApplyError::Overflow)?;
                let chunk = source.get(offset..end).ok_or(ApplyError::CopyOutOfSource)?;
                out.extend_from_slice(chunk);
            }
            Some(b':') => {
                if out.len().checked_add(n).is_none_or(|t| t > limit) {
                    return Err(ApplyError::TooLong);
                }
                let end = r.pos.checked_add(n).ok_or(ApplyError::Overflow)?;
                let chunk = delta.get(r.pos..end).ok_or(ApplyError::InsertOutOfDelta)?;
                out.extend_from_slice(chunk);
                r.pos = end;
            }
            Some(b';') => {
                if out.len() != limit {
                    return Err(ApplyError::TooShort);
                }
                if n as u64 != u64::from(checksum(&out)) {
                    return Err(ApplyError::BadChecksum);
                }
                return Ok(out);
            }
            Some(other) => return Err(ApplyError::UnknownCommand(other as char)),
            None => return Err(ApplyError::Unterminated),
        }
    }
    Err(ApplyError::Unterminated)
}

/// A copy found for the target at `base`: `literal` bytes to insert first, then `len` bytes
/// from the source at `offset`.
struct Match {
    literal: usize,
    len: usize,
    offset: usize,
}

/// The source's blocks by rolling hash: `heads[h]` is the last block with hash `h`, and
/// `chain[b]` the block before `b` with the same hash.
struct Index {
    heads: Vec<Option<u32>>,
    chain: Vec<Option<u32>>,
}

impl Index {
    fn new(source: &[u8]) -> Self {
        let blocks = source.len() / BLOCK;
        let mut heads = vec![None; blocks];
        let mut chain = vec![None; blocks];
        for (b, block) in source.chunks_exact(BLOCK).enumerate() {
            let h = Rolling::new(block).value() as usize % blocks;
            chain[b] = heads[h];
            heads[h] = Some(b as u32);
        }
        Self { heads, chain }
    }

    /// The longest worthwhile copy for the window at `target[base + i..]`, among the source
    /// blocks with the window's hash, extended forwards and backwards (at most `i` bytes back).
    fn best_match(
        &self,
        source: &[u8],
        target: &[u8],
        base: usize,
        i: usize,
        hash: u32,
    ) -> Option<Match> {
        let mut best: Option<Match> = None;
        let mut block = self.heads[hash as usize % self.heads.len()];
        let at = base + i;
        for _ in 0..MAX_CANDIDATES {
            let Some(b) = block else { break };
            let src = b as usize * BLOCK;
            let forward = source[src..]
                .iter()
                .zip(&target[at..])
                .take_while(|(a, b)| a == b)
                .count();
            let backward = source[..src]
                .iter()
                .rev()
                .zip(target[base..at].iter().rev())
                .take_while(|(a, b)| a == b)
                .count();
            let len = forward + backward;
            let offset = src - backward;
            let literal = i - backward;
            // A copy must not cost more than the bytes it stands for.
            let cost = digits(literal as u64) + digits(len as u64) + digits(offset as u64) + 3;
            if len >= cost && best.as_ref().is_none_or(|m| len > m.len) {
                best = Some(Match {
                    literal,
                    len,
                    offset,
                });
            }
            block = self.chain[b as usize];
        }
        best
    }
}

/// The rolling hash of a [`BLOCK`]-byte window (Fossil's: two 16-bit sums).
struct Rolling {
    a: u16,
    b: u16,
}

impl Rolling {
    fn new(window: &[u8]) -> Self {
        let (mut a, mut b) = (0u16, 0u16);
        for (k, &c) in window.iter().enumerate() {
            a = a.wrapping_add(u16::from(c));
            b = b.wrapping_add((BLOCK - k) as u16 * u16::from(c));
        }
        Self { a, b }
    }

    /// Slides the window one byte: `old` leaves, `new` enters.
    fn roll(&mut self, old: u8, new: u8) {
        self.a = self
            .a
            .wrapping_sub(u16::from(old))
            .wrapping_add(u16::from(new));
        self.b = self
            .b
            .wrapping_sub((BLOCK as u16).wrapping_mul(u16::from(old)))
            .wrapping_add(self.a);
    }

    fn value(&self) -> u32 {
        u32::from(self.a) | (u32::from(self.b) << 16)
    }
}

fn insert(out: &mut Vec<u8>, bytes: &[u8]) {
    put_int(out, bytes.len() as u64);
    out.push(b':');
    out.extend_from_slice(bytes);
}

fn finish(out: &mut Vec<u8>, target: &[u8]) {
    put_int(out, u64::from(checksum(target)));
    out.push(b';');
}

fn put_int(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 11];
    let mut n = 0;
    loop {
        buf[n] = DIGITS[(v & 63) as usize];
        n += 1;
        v >>= 6;
        if v == 0 {
            break;
        }
    }
    out.extend(buf[..n].iter().rev());
}

fn digits(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 64 {
        v >>= 6;
        n += 1;
    }
    n
}

/// The target's checksum: the sum of its big-endian 32-bit words, a short last word padded
/// with zero bytes.
fn checksum(bytes: &[u8]) -> u32 {
    let mut sum = 0u32;
    let mut words = bytes.chunks_exact(4);
    for w in &mut words {
        sum = sum.wrapping_add(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 4];
        last[..rest.len()].copy_from_slice(rest);
        sum = sum.wrapping_add(u32::from_be_bytes(last));
    }
    sum
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn next(&mut self) -> Option<u8> {
        let b = self.bytes.get(self.pos).copied();
        if b.is_some() {
            self.pos += 1;
        }
        b
    }

    fn int(&mut self) -> Result<u64, ApplyError> {
        let mut v: u64 = 0;
        while let Some(&c) = self.bytes.get(self.pos) {
            let Some(d) = DIGITS.iter().position(|&x| x == c) else {
                break;
            };
            v = v
                .checked_mul(64)
                .and_then(|v| v.checked_add(d as u64))
                .ok_or(ApplyError::Overflow)?;
            self.pos += 1;
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(source: &[u8], target: &[u8]) -> Vec<u8> {
        let delta = create(source, target);
        assert_eq!(
            apply(source, &delta).as_deref(),
            Ok(target),
            "delta {delta:?}"
        );
        delta
    }

    #[test]
    fn integers_use_the_sixty_four_letter_alphabet() {
        let enc = |v| {
            let mut out = Vec::new();
            put_int(&mut out, v);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(enc(0), "0");
        assert_eq!(enc(63), "~");
        assert_eq!(enc(64), "10");
        assert_eq!(enc(1000), "Fd");
        for v in [0, 1, 63, 64, 4095, 4096, u64::from(u32::MAX)] {
            assert_eq!(digits(v), enc(v).len());
        }
    }

    #[test]
    fn the_checksum_sums_big_endian_words_with_a_padded_tail() {
        assert_eq!(checksum(b""), 0);
        assert_eq!(checksum(b"\x00\x00\x00\x01\x00\x00\x00\x02"), 3);
        assert_eq!(checksum(b"\x01"), 0x0100_0000);
        assert_eq!(checksum(b"\x01\x02\x03"), 0x0102_0300);
    }

    #[test]
    fn a_known_delta_is_read_as_fossil_writes_it() {
        // "hello world" → "hello there world": copy 6 bytes, insert "there ", copy 5.
        let target = b"hello there world";
        let sum = {
            let mut out = Vec::new();
            put_int(&mut out, u64::from(checksum(target)));
            String::from_utf8(out).unwrap()
        };
        let delta = format!("H\n6@0,6:there 5@6,{sum};");
        assert_eq!(
            apply(b"hello world", delta.as_bytes()).unwrap(),
            target.to_vec()
        );
    }

    #[test]
    fn a_small_change_in_a_json_document_makes_a_small_delta() {
        let doc = |n: u32, status: &str| {
            let items: Vec<String> = (0..20)
                .map(|i| format!(r#"{{"id":{i},"name":"item number {i}","qty":{}}}"#, i * 3))
                .collect();
            format!(
                r#"{{"version":{n},"status":"{status}","items":[{}]}}"#,
                items.join(",")
            )
        };
        let (a, b) = (doc(1, "open"), doc(2, "closed"));
        let delta = round_trip(a.as_bytes(), b.as_bytes());
        assert!(delta.len() * 10 < b.len(), "{} of {}", delta.len(), b.len());
        assert!(std::str::from_utf8(&delta).is_ok());
    }

    #[test]
    fn edge_cases_round_trip() {
        round_trip(b"", b"");
        round_trip(b"", b"something new");
        round_trip(b"short", b"");
        round_trip(b"a source longer than one block", b"");
        round_trip(b"0123456789abcdefXYZ", b"0123456789abcdefXYZ");
        round_trip(&[7u8; 1000], &[7u8; 1001]);
        round_trip(&[0u8; 64], &[255u8; 64]);
        let s: Vec<u8> = (0..=255).collect();
        let mut t = s.clone();
        t.reverse();
        round_trip(&s, &t);
    }

    #[test]
    fn random_edits_of_random_inputs_round_trip() {
        let mut rng = fastrand::Rng::with_seed(22);
        for round in 0..400 {
            let len = rng.usize(0..3000);
            // A small alphabet makes many repeats and hash collisions; full bytes make none.
            let small = round % 2 == 0;
            let source: Vec<u8> = (0..len)
                .map(|_| if small { rng.u8(..4) } else { rng.u8(..) })
                .collect();
            let mut target = source.clone();
            for _ in 0..rng.usize(0..8) {
                let at = rng.usize(0..=target.len());
                match rng.u8(0..3) {
                    0 => {
                        let n = rng.usize(0..50);
                        let bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
                        target.splice(at..at, bytes);
                    }
                    1 => {
                        let end = (at + rng.usize(0..100)).min(target.len());
                        target.drain(at..end);
                    }
                    _ => {
                        if at < target.len() {
                            target[at] = rng.u8(..);
                        }
                    }
                }
            }
            if round % 7 == 0 {
                target = (0..rng.usize(0..500)).map(|_| rng.u8(..)).collect();
            }
            round_trip(&source, &target);
        }
    }

    #[test]
    fn broken_deltas_are_errors_not_panics() {
        let source = b"the quick brown fox jumps over the lazy dog";
        let target = b"the quick brown cat jumps over the lazy dog!";
        let delta = create(source, target);
        for cut in 0..delta.len() {
            assert!(apply(source, &delta[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(
            apply(source, b"3\n3@100,0;"),
            Err(ApplyError::CopyOutOfSource)
        );
        assert_eq!(apply(source, b"3\n9:abc"), Err(ApplyError::TooLong));
        assert_eq!(apply(source, b"3 x"), Err(ApplyError::BadHeader));
        assert_eq!(
            apply(source, b"3\n3!"),
            Err(ApplyError::UnknownCommand('!'))
        );
        assert_eq!(apply(source, b"~~~~~~~~~~~~\n"), Err(ApplyError::Overflow));
        let mut bad_sum = delta.clone();
        let at = bad_sum.len() - 2;
        bad_sum[at] = if bad_sum[at] == b'0' { b'1' } else { b'0' };
        assert_eq!(apply(source, &bad_sum), Err(ApplyError::BadChecksum));
        let mut rng = fastrand::Rng::with_seed(3);
        let letters: Vec<u8> = DIGITS.iter().chain(b"@:;,\n").copied().collect();
        for _ in 0..2000 {
            let junk: Vec<u8> = (0..rng.usize(0..40))
                .map(|_| letters[rng.usize(0..letters.len())])
                .collect();
            let _ = apply(source, &junk);
        }
    }
}
