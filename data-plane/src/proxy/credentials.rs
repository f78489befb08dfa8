//! Rotor's own credentials never reach a tenant's backend. Whatever a proxy's header allow-list
//! names, a header captured from the client for forwarding passes through [`forwardable`]
//! first: Rotor's cookies (`rotor_…`, `__Host-rotor_…`, `__Secure-rotor_…`: the dashboard
//! session and CSRF cookies) are cut out of `Cookie`, and an `Authorization: Bearer rtr_…`
//! (a Rotor management token) is dropped whole. The edge strips them too; this is the data
//! plane's own guarantee.

use axum::http::{header, HeaderName, HeaderValue};

/// Prefix of Rotor's management tokens.
const MANAGEMENT_TOKEN_PREFIX: &str = "rtr_";

/// Cookie-name prefixes Rotor's own cookies use (compared without regard to case).
const ROTOR_COOKIE_PREFIXES: [&str; 3] = ["rotor_", "__host-rotor_", "__secure-rotor_"];

/// The value of header `name` that may be forwarded to a tenant's backend: `value` itself, a
/// `Cookie` without Rotor's cookies, or `None` when nothing of it may go.
pub fn forwardable(name: &HeaderName, value: &HeaderValue) -> Option<HeaderValue> {
    if name == header::COOKIE {
        return without_rotor_cookies(value);
    }
    if name == header::AUTHORIZATION && is_management_token(value) {
        return None;
    }
    Some(value.clone())
}

/// Whether `value` is `Bearer rtr_…` (any case of `Bearer`, any spacing).
fn is_management_token(value: &HeaderValue) -> bool {
    // A value that is not text cannot be inspected: it is not forwarded either.
    let Ok(text) = value.to_str() else {
        return true;
    };
    let text = text.trim_start();
    let Some((scheme, credentials)) = text.split_once([' ', '\t']) else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && credentials
            .trim_start()
            .starts_with(MANAGEMENT_TOKEN_PREFIX)
}

fn is_rotor_cookie(name: &str) -> bool {
    let name = name.trim().as_bytes();
    ROTOR_COOKIE_PREFIXES.iter().any(|prefix| {
        name.get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes()))
    })
}

/// A `Cookie` header without Rotor's cookies; `None` when none of it remains (or it is not
/// text, so it cannot be checked).
fn without_rotor_cookies(value: &HeaderValue) -> Option<HeaderValue> {
    let text = value.to_str().ok()?;
    let kept: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
            !is_rotor_cookie(name)
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join("; ")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie(value: &'static str) -> Option<String> {
        forwardable(&header::COOKIE, &HeaderValue::from_static(value))
            .map(|v| v.to_str().unwrap().to_owned())
    }

    fn authorization(value: &'static str) -> Option<String> {
        forwardable(&header::AUTHORIZATION, &HeaderValue::from_static(value))
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn rotor_cookies_are_cut_out_of_a_forwarded_cookie_header() {
        assert_eq!(cookie("rotor_session=x; app=1").as_deref(), Some("app=1"));
        assert_eq!(
            cookie("a=1; __Host-rotor_session=s; rotor_csrf=c; __Host-rotor_csrf=d; b=2")
                .as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(
            cookie("ROTOR_other=1;__secure-rotor_x=2 ;keep=3").as_deref(),
            Some("keep=3")
        );
        assert_eq!(
            cookie("rotorish=1; my_rotor_session=2").as_deref(),
            Some("rotorish=1; my_rotor_session=2"),
            "only the prefix counts"
        );
    }

    #[test]
    fn a_cookie_header_of_rotor_cookies_only_is_dropped() {
        assert_eq!(cookie("rotor_session=x"), None);
        assert_eq!(cookie("rotor_session=x; __Host-rotor_csrf=y;"), None);
        assert_eq!(cookie(";"), None);
    }

    #[test]
    fn a_management_token_is_never_forwarded_but_other_authorization_is() {
        assert_eq!(authorization("Bearer rtr_abc"), None);
        assert_eq!(authorization("bearer   rtr_abc"), None);
        assert_eq!(authorization("  BEARER\trtr_abc"), None);
        assert_eq!(
            authorization("Bearer eyJhbGciOi.x.y").as_deref(),
            Some("Bearer eyJhbGciOi.x.y")
        );
        assert_eq!(
            authorization("Basic cnRyX2FiYw==").as_deref(),
            Some("Basic cnRyX2FiYw==")
        );
        assert_eq!(authorization("Bearer").as_deref(), Some("Bearer"));
    }

    #[test]
    fn other_headers_pass_unchanged() {
        let name = HeaderName::from_static("x-rotor-session");
        let value = HeaderValue::from_static("rtr_abc");
        assert_eq!(forwardable(&name, &value), Some(value));
    }

    #[test]
    fn headers_that_are_not_text_are_not_forwarded_as_credentials() {
        let opaque = HeaderValue::from_bytes(b"Bearer rtr_\xff").unwrap();
        assert_eq!(forwardable(&header::AUTHORIZATION, &opaque), None);
        let opaque = HeaderValue::from_bytes(b"rotor_session=\xff").unwrap();
        assert_eq!(forwardable(&header::COOKIE, &opaque), None);
    }
}
