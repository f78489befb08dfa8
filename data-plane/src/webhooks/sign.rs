//! Request signing: `X-Rotor-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`, the same
//! scheme Pusher uses for its webhooks, so a backend checks a request with a few lines in any
//! language (and should compare in constant time).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-rotor-signature";
/// The header carrying the batch's id, the same on every attempt (for deduplication).
pub const ID_HEADER: &str = "x-rotor-webhook-id";

/// The `X-Rotor-Signature` value of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is the signature of `body` under `secret` (compared in constant time).
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(given) = header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hex_hmac_sha256_of_the_raw_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn only_the_right_secret_and_body_verify() {
        let body = br#"{"time_ms":1,"events":[]}"#;
        let header = sign(b"secret", body);
        assert!(verify(b"secret", body, &header));
        assert!(!verify(b"other", body, &header));
        assert!(!verify(b"secret", b"{}", &header));
        assert!(!verify(
            b"secret",
            body,
            header.trim_start_matches("sha256=")
        ));
        assert!(!verify(b"secret", body, "sha256=zz"));
    }
}
