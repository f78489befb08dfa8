//! Percent-decoding, one round at a time, for the places that judge a client's path after the
//! browser or server would decode it (the edge's internal-path check, `next=` after login).

/// One round of percent-decoding; malformed escapes stay as they are.
pub fn decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_decode_once_and_malformed_ones_stay() {
        assert_eq!(super::decode(b"/%61dmin%2F%252F"), b"/admin/%2F");
        assert_eq!(super::decode(b"%zz%4"), b"%zz%4");
        assert_eq!(super::decode(b"%e2%82%ac"), "€".as_bytes());
    }
}
