//! One-time messages between a dashboard action and the page it redirects to. Every form that
//! changes something answers `303 See Other` to a page (POST/redirect/GET), so a reload
//! repeats nothing and the address bar never rests on a form's action. What the action has to
//! say — a notice, an error with what was typed, a new key shown once — waits in
//! `session_flashes` for that page of that session, encrypted with the session's flash key
//! (derived from the token only the browser holds), and is deleted as it is read: it shows
//! once, and never travels in a URL.

use std::time::Duration;

use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use super::session::Session;
use super::WebResult;
use crate::secrets::os_random;
use crate::service::sessions;
use crate::state::AppState;

/// How long a message waits for its page.
const TTL: Duration = Duration::from_secs(600);
const NONCE_LEN: usize = 24;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What an action leaves for the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Flash {
    /// It worked: say what happened.
    Notice { text: String },
    /// It did not: say why, and give back what was typed.
    Error {
        text: String,
        #[serde(default)]
        typed: String,
    },
    /// A server API key, shown once.
    NewApiKey { name: String, key: String },
    /// A management token, shown once.
    NewToken { name: String, token: String },
    /// Show the project's token secret this once (after "Reveal" or a rotation).
    TokenSecret { notice: Option<String> },
    /// What "Test this endpoint" found for proxy `proxy`, with the form as it was typed.
    Probe {
        proxy: String,
        reachable: bool,
        text: String,
        #[serde(default)]
        typed: String,
    },
}

impl Flash {
    pub fn notice(text: impl Into<String>) -> Self {
        Self::Notice { text: text.into() }
    }

    pub fn error(text: impl Into<String>, typed: impl Into<String>) -> Self {
        Self::Error {
            text: text.into(),
            typed: typed.into(),
        }
    }
}

/// What a page shows of a flash: a notice, an error and what was typed.
#[derive(Debug, Default)]
pub struct Shown {
    pub notice: Option<String>,
    pub error: Option<String>,
    pub typed: String,
}

impl From<Option<&Flash>> for Shown {
    fn from(f: Option<&Flash>) -> Self {
        match f {
            Some(Flash::Notice { text }) => Self {
                notice: Some(text.clone()),
                ..Self::default()
            },
            Some(Flash::Error { text, typed }) => Self {
                error: Some(text.clone()),
                typed: typed.clone(),
                ..Self::default()
            },
            Some(Flash::TokenSecret { notice }) => Self {
                notice: notice.clone(),
                ..Self::default()
            },
            _ => Self::default(),
        }
    }
}

/// The page part of a location (`/account#tokens` → `/account`).
fn page_of(location: &str) -> &str {
    location.split(['?', '#']).next().unwrap_or(location)
}

fn cipher(session: &Session) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(session.flash_key().into())
}

fn seal(session: &Session, page: &str, flash: &Flash) -> WebResult<String> {
    let plain = serde_json::to_vec(flash).map_err(anyhow::Error::from)?;
    let nonce: [u8; NONCE_LEN] = os_random();
    let sealed = cipher(session)
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &plain,
                aad: page.as_bytes(),
            },
        )
        .map_err(|_| anyhow::anyhow!("sealing a flash message"))?;
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&sealed);
    Ok(B64.encode(blob))
}

fn open(session: &Session, page: &str, payload: &str) -> Option<Flash> {
    let blob = B64.decode(payload).ok()?;
    if blob.len() <= NONCE_LEN {
        return None;
    }
    let (nonce, sealed) = blob.split_at(NONCE_LEN);
    let plain = cipher(session)
        .decrypt(
            &XNonce::try_from(nonce).ok()?,
            Payload {
                msg: sealed,
                aad: page.as_bytes(),
            },
        )
        .ok()?;
    serde_json::from_slice(&plain).ok()
}

/// Leaves `flash` for the page at `location` and answers `303 See Other` to it.
pub async fn redirect(
    state: &AppState,
    session: &Session,
    location: &str,
    flash: Flash,
) -> WebResult<Response> {
    let page = page_of(location);
    let payload = seal(session, page, &flash)?;
    sessions::put_flash(state, session.token_hash(), page, &payload).await?;
    Ok(Redirect::to(location).into_response())
}

/// Takes (reads and deletes) what was left for `page` in this session, if it is still fresh.
pub async fn take(state: &AppState, session: &Session, page: &str) -> WebResult<Option<Flash>> {
    let Some(payload) = sessions::take_flash(state, session.token_hash(), page, TTL).await? else {
        return Ok(None);
    };
    let flash = open(session, page, &payload);
    if flash.is_none() {
        tracing::info!(account = %session.account, "a flash message did not open");
    }
    Ok(flash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_of_a_location_drops_query_and_fragment() {
        assert_eq!(page_of("/account#tokens"), "/account");
        assert_eq!(page_of("/projects/prj_1/keys?x=1"), "/projects/prj_1/keys");
        assert_eq!(page_of("/projects"), "/projects");
    }

    #[test]
    fn a_flash_opens_only_for_its_page_and_session() {
        let alice = Session::for_tests("s_alice");
        let bob = Session::for_tests("s_bob");
        let flash = Flash::NewApiKey {
            name: "backend".into(),
            key: "rk_secret".into(),
        };
        let sealed = seal(&alice, "/projects/p/keys", &flash).unwrap();
        assert!(!sealed.contains("rk_secret"));
        assert_eq!(open(&alice, "/projects/p/keys", &sealed), Some(flash));
        assert_eq!(open(&alice, "/projects/q/keys", &sealed), None);
        assert_eq!(open(&bob, "/projects/p/keys", &sealed), None);
    }
}
