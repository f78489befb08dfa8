//! The benchmark payload: a JSON object whose `ts` string carries the send time and the step
//! number between markers, `{"ts":"~T<unix µs>,<step>~","p":"xxxx"}`. The markers contain no
//! quote, so they survive being embedded in another JSON string (Socket.IO, escaped) and are
//! found by a byte search in any framing (Centrifugo JSON or Protobuf, raw text) without
//! parsing the envelope.

use std::time::{SystemTime, UNIX_EPOCH};

const START: &[u8] = b"~T";

/// Microseconds since the Unix epoch (the wall clock is shared by every process on the host).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A payload of about `size` bytes stamped now for `step`.
pub fn make(step: u32, size: usize) -> String {
    make_at(now_micros(), step, size)
}

/// A payload stamped with `ts` (µs) for `step`, padded to about `size` bytes.
pub fn make_at(ts: u64, step: u32, size: usize) -> String {
    let head = format!("{{\"ts\":\"~T{ts},{step}~\"");
    let pad = size.saturating_sub(head.len() + 8);
    if pad == 0 {
        format!("{head}}}")
    } else {
        format!("{head},\"p\":\"{}\"}}", "x".repeat(pad))
    }
}

/// Finds the stamp in `bytes`: (send time µs, step).
pub fn find(bytes: &[u8]) -> Option<(u64, u32)> {
    let start = bytes.windows(START.len()).position(|w| w == START)? + START.len();
    let mut ts: u64 = 0;
    let mut i = start;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        ts = ts
            .checked_mul(10)?
            .checked_add(u64::from(bytes[i] - b'0'))?;
        i += 1;
    }
    if i == start || bytes.get(i) != Some(&b',') {
        return None;
    }
    i += 1;
    let step_start = i;
    let mut step: u32 = 0;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        step = step
            .checked_mul(10)?
            .checked_add(u32::from(bytes[i] - b'0'))?;
        i += 1;
    }
    if i == step_start || bytes.get(i) != Some(&b'~') {
        return None;
    }
    Some((ts, step))
}

/// Every stamp in `bytes` (a batched frame may carry several publications).
pub fn find_all(mut bytes: &[u8], mut each: impl FnMut(u64, u32)) -> usize {
    let mut n = 0;
    while let Some(pos) = bytes.windows(START.len()).position(|w| w == START) {
        let rest = &bytes[pos..];
        if let Some((ts, step)) = find(rest) {
            each(ts, step);
            n += 1;
        }
        bytes = &rest[START.len()..];
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_survives_json_and_escaped_json() {
        let p = make_at(1_712_345_678_901_234, 7, 100);
        assert!(serde_json::from_str::<serde_json::Value>(&p).is_ok());
        assert!((95..=105).contains(&p.len()), "{}", p.len());
        assert_eq!(find(p.as_bytes()), Some((1_712_345_678_901_234, 7)));
        let escaped = serde_json::to_string(&serde_json::json!(["msg", p])).unwrap();
        assert_eq!(
            find(format!("42{escaped}").as_bytes()),
            Some((1_712_345_678_901_234, 7))
        );
    }

    #[test]
    fn small_sizes_still_make_valid_json() {
        let p = make_at(5, 0, 0);
        assert!(serde_json::from_str::<serde_json::Value>(&p).is_ok());
        assert_eq!(find(p.as_bytes()), Some((5, 0)));
    }

    #[test]
    fn several_stamps_in_one_frame_are_all_found() {
        let frame = format!("{}\n{}\n{{}}", make_at(1, 2, 50), make_at(3, 4, 50));
        let mut seen = Vec::new();
        assert_eq!(find_all(frame.as_bytes(), |t, s| seen.push((t, s))), 2);
        assert_eq!(seen, vec![(1, 2), (3, 4)]);
    }

    #[test]
    fn broken_stamps_are_ignored() {
        assert_eq!(find(b"~T12"), None);
        assert_eq!(find(b"~T,1~"), None);
        assert_eq!(find(b"no stamp"), None);
        assert_eq!(find_all(b"~T~T1,2~", |_, _| {}), 1);
    }
}
