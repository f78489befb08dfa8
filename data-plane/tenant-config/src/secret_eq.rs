//! Comparing a presented secret with the one on record (API keys and their digests, admin and
//! report tokens, CSRF tokens) in time that does not depend on where they differ, for the
//! control plane and the data plane alike.

use subtle::ConstantTimeEq as _;

/// Whether `presented` is `expected`. An empty secret on record matches nothing, so a missing
/// one never lets an empty answer in. Lengths are not secret (keys and digests have fixed
/// lengths); the bytes are compared in constant time.
pub fn secret_eq(expected: &[u8], presented: &[u8]) -> bool {
    !expected.is_empty() && bool::from(expected.ct_eq(presented))
}

#[cfg(test)]
mod tests {
    use super::secret_eq;

    #[test]
    fn only_the_same_non_empty_bytes_match() {
        assert!(secret_eq(b"s3cret", b"s3cret"));
        assert!(!secret_eq(b"s3cret", b"s3creT"));
        assert!(!secret_eq(b"s3cret", b"s3cre"));
        assert!(!secret_eq(b"s3cret", b""));
        assert!(
            !secret_eq(b"", b""),
            "an empty secret on record matches nothing"
        );
    }
}
