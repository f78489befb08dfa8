//! Publisher exclusion: a publication that is not for the one who sent it. A publication
//! carries at most one [`Exclusion`] in a field of its own that travels with it through the
//! engines (history, Redis, NATS) but never reaches a client: fan-out skips the connections it
//! names, and recovery (and history read from a position) leaves it out for them, so a
//! publisher that reconnects while its publication is in flight does not get it back.
//!
//! A connection is named three ways ([`Owner`]): its client id (this connection only), its
//! user (all of the user's connections), and its *session tag*, which survives reconnects: the
//! connection token's `session_tag` claim (or the connect proxy's `session_tag`), else, for a
//! connection of a known user, a digest of the token itself (centrifuge SDKs reconnect with
//! the same token until it is refreshed), else the client id. A client publication in a
//! namespace with `exclude_publisher` excludes its publisher's session tag; the server API's
//! `exclude` names any of the three.
//!
//! The token digest deliberately groups the connections of one user that hold the same token
//! (its reconnects, and its tabs sharing a token): the user's own sessions, which a
//! publication excluded for the user would skip as well. Anonymous connections (no user) never
//! share a tag: many visitors may hold one byte-identical anonymous token, and one visitor's
//! publication must not be hidden from the others, so each is its own publisher (a reconnect
//! of an anonymous publisher may get its own in-flight publication back in recovery).

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::protocol::{ClientError, Publication};

/// Longest client id, user id or session tag an exclusion may name, and longest session tag
/// a token may carry.
pub const MAX_LEN: usize = 256;

/// Who a publication is not delivered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusion<'a> {
    /// One connection, by client id.
    Client(&'a str),
    /// Every connection of a user.
    User(&'a str),
    /// Every connection of a session, across reconnects.
    SessionTag(&'a str),
}

impl<'a> Exclusion<'a> {
    /// The exclusion stored in a publication's hidden field, if any.
    pub fn of(publication: &'a Publication) -> Option<Self> {
        Self::parse(&publication.exclude)
    }

    /// Reads the hidden field's form (`c:`, `u:` or `s:` and the id); `None` for anything else.
    pub fn parse(field: &'a str) -> Option<Self> {
        let (kind, id) = field.split_at_checked(2)?;
        if id.is_empty() {
            return None;
        }
        match kind {
            "c:" => Some(Self::Client(id)),
            "u:" => Some(Self::User(id)),
            "s:" => Some(Self::SessionTag(id)),
            _ => None,
        }
    }

    /// The hidden field's form.
    pub fn to_field(self) -> String {
        let (kind, id) = match self {
            Self::Client(id) => ("c:", id),
            Self::User(id) => ("u:", id),
            Self::SessionTag(id) => ("s:", id),
        };
        let mut field = String::with_capacity(2 + id.len());
        field.push_str(kind);
        field.push_str(id);
        field
    }

    /// Whether it names the connection `client` of `owner`.
    pub fn excludes(self, client: &str, owner: Option<&Owner>) -> bool {
        match self {
            Self::Client(id) => id == client,
            Self::User(id) => owner.is_some_and(|o| &*o.user == id),
            Self::SessionTag(id) => owner.is_some_and(|o| &*o.session_tag == id),
        }
    }

    /// The server API's `exclude` object: exactly one of `client`, `user`, `session_tag`,
    /// non-empty and at most [`MAX_LEN`] bytes.
    pub fn from_request(
        client: &'a str,
        user: &'a str,
        session_tag: &'a str,
    ) -> Result<Self, ClientError> {
        let given: Vec<Self> = [
            (!client.is_empty()).then_some(Self::Client(client)),
            (!user.is_empty()).then_some(Self::User(user)),
            (!session_tag.is_empty()).then_some(Self::SessionTag(session_tag)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let [one] = given[..] else {
            return Err(ClientError::BAD_REQUEST
                .with_message("exclude needs exactly one of client, user, session_tag"));
        };
        let (Self::Client(id) | Self::User(id) | Self::SessionTag(id)) = one;
        if id.len() > MAX_LEN {
            return Err(ClientError::BAD_REQUEST
                .with_message(format!("exclude ids are at most {MAX_LEN} bytes")));
        }
        Ok(one)
    }
}

/// Who a connection is, for exclusion: set once it has connected.
#[derive(Debug, Clone)]
pub struct Owner {
    pub user: Arc<str>,
    pub session_tag: Arc<str>,
}

/// A connection's session tag: the one its credentials named, else for a connection of
/// `user` (not anonymous) a digest of its connection token (stable while the SDK reconnects
/// with the same token), else its client id.
pub fn session_tag(named: &str, token: &str, user: &str, client: &str) -> Arc<str> {
    if !named.is_empty() {
        return named.into();
    }
    if !token.is_empty() && !user.is_empty() {
        let digest = Sha256::digest(token.as_bytes());
        let mut tag = *b"t:00000000000000000000000000000000";
        hex::encode_to_slice(&digest[..16], &mut tag[2..]).expect("32 hex digits fit");
        return std::str::from_utf8(&tag).expect("hex is ASCII").into();
    }
    ["c:", client].concat().into()
}

/// Publications replayed to one connection (recovery, history from a position): those
/// excluded for it are left out. Every publication's hidden field is cleared.
pub fn replay_for(publications: &mut Vec<Publication>, client: &str, owner: Option<&Owner>) {
    publications.retain(|p| !Exclusion::of(p).is_some_and(|e| e.excludes(client, owner)));
    strip(publications);
}

/// Clears the hidden field of publications about to leave for a client or the API.
pub fn strip(publications: &mut [Publication]) {
    for p in publications {
        if !p.exclude.is_empty() {
            p.exclude = String::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(user: &str, tag: &str) -> Owner {
        Owner {
            user: user.into(),
            session_tag: tag.into(),
        }
    }

    #[test]
    fn the_hidden_field_round_trips_and_rejects_other_forms() {
        for e in [
            Exclusion::Client("c1"),
            Exclusion::User("u:1"),
            Exclusion::SessionTag("tab 7"),
        ] {
            assert_eq!(Exclusion::parse(&e.to_field()), Some(e));
        }
        for bad in ["", "c:", "x:1", "c", "é", "s"] {
            assert_eq!(Exclusion::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn each_form_names_only_its_own_connections() {
        let ann_tab1 = owner("ann", "tab1");
        let ann_tab2 = owner("ann", "tab2");
        let bob_tab1 = owner("bob", "tab1x");
        assert!(Exclusion::Client("id1").excludes("id1", Some(&ann_tab1)));
        assert!(!Exclusion::Client("id1").excludes("id2", Some(&ann_tab1)));
        assert!(Exclusion::User("ann").excludes("id2", Some(&ann_tab2)));
        assert!(!Exclusion::User("ann").excludes("id3", Some(&bob_tab1)));
        assert!(Exclusion::SessionTag("tab1").excludes("id9", Some(&ann_tab1)));
        assert!(!Exclusion::SessionTag("tab1").excludes("id9", Some(&ann_tab2)));
        // Before connecting a connection has no owner: only its client id can name it.
        assert!(!Exclusion::User("ann").excludes("id1", None));
        assert!(!Exclusion::SessionTag("tab1").excludes("id1", None));
    }

    #[test]
    fn the_api_form_needs_exactly_one_bounded_id() {
        assert_eq!(
            Exclusion::from_request("", "ann", "").unwrap(),
            Exclusion::User("ann")
        );
        assert!(Exclusion::from_request("", "", "").is_err());
        assert!(Exclusion::from_request("c", "ann", "").is_err());
        let long = "x".repeat(MAX_LEN + 1);
        assert!(Exclusion::from_request("", "", &long).is_err());
    }

    #[test]
    fn session_tags_come_from_the_claim_then_the_token_then_the_client() {
        assert_eq!(&*session_tag("tab1", "tok", "", "c1"), "tab1");
        let a = session_tag("", "token-a", "ann", "c1");
        assert_eq!(
            a,
            session_tag("", "token-a", "ann", "c2"),
            "same token, same tag"
        );
        assert_ne!(a, session_tag("", "token-b", "ann", "c1"));
        assert!(a.starts_with("t:") && a.len() == 34 && !a.contains("token"));
        // Nodes of two versions share tags through the engine: the form must not change.
        let digest = Sha256::digest(b"token-a");
        assert_eq!(&*a, format!("t:{}", hex::encode(&digest[..16])));
        assert_eq!(&*session_tag("", "", "ann", "c1"), "c:c1");
    }

    #[test]
    fn anonymous_connections_with_one_token_are_distinct_sessions() {
        let a = session_tag("", "shared-token", "", "c1");
        let b = session_tag("", "shared-token", "", "c2");
        assert_ne!(a, b);
        assert_eq!(&*a, "c:c1");
    }

    #[test]
    fn replays_leave_out_what_is_excluded_for_the_reader_and_clear_the_field() {
        let publication = |offset: u64, exclude: Exclusion<'_>| Publication {
            offset,
            exclude: exclude.to_field(),
            ..Default::default()
        };
        let mut pubs = vec![
            publication(1, Exclusion::SessionTag("tab1")),
            publication(2, Exclusion::SessionTag("tab2")),
            publication(3, Exclusion::User("ann")),
            Publication {
                offset: 4,
                ..Default::default()
            },
        ];
        replay_for(&mut pubs, "id", Some(&owner("bob", "tab1")));
        assert_eq!(pubs.iter().map(|p| p.offset).collect::<Vec<_>>(), [2, 3, 4]);
        assert!(pubs.iter().all(|p| p.exclude.is_empty()));
    }
}
