//! Typed, prefixed identifiers (`acc_…`, `prj_…`, `key_…`, `ns_…`, `tok_…`): a key id can never
//! be passed where a project id is expected, and logs stay readable.

use std::fmt;

use serde::{Deserialize, Serialize};

const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// `len` random lowercase alphanumerics.
pub fn random_suffix(len: usize) -> String {
    (0..len)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh random id.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, random_suffix(16)))
            }

            /// Parses an id from a path segment; `None` when it is not of this kind.
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix($prefix)?;
                (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
                    .then(|| Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(/// An account.
    AccountId, "acc_");
prefixed_id!(/// A project (tenant).
    ProjectId, "prj_");
prefixed_id!(/// A server API key.
    ApiKeyId, "key_");
prefixed_id!(/// A channel namespace.
    NamespaceId, "ns_");
prefixed_id!(/// A management token.
    TokenId, "tok_");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_parse_only_their_kind() {
        let p = ProjectId::generate();
        assert!(p.as_str().starts_with("prj_"));
        assert_eq!(ProjectId::parse(p.as_str()), Some(p.clone()));
        assert_eq!(ApiKeyId::parse(p.as_str()), None);
        assert_eq!(ProjectId::parse("prj_"), None);
        assert_eq!(ProjectId::parse("prj_../x"), None);
    }
}
