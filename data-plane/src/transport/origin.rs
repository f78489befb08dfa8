//! Browser `Origin` checks for connection endpoints. With no allowed origins configured a
//! browser may connect only from the same origin (the `Origin` host equals the `Host` header,
//! as Centrifugo does); requests without an `Origin` header (non-browser clients) always pass;
//! `*` admits everyone; other entries are patterns where `*` matches any run of characters
//! (`https://*.example.com`).

/// Whether a request with this `Origin` header (if any), sent to `host`, may connect.
pub fn origin_allowed(allowed: &[String], origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    let origin = origin.trim().to_ascii_lowercase();
    if allowed.is_empty() {
        return same_origin(&origin, host);
    }
    allowed.iter().any(|pattern| {
        let pattern = pattern.trim().to_ascii_lowercase();
        pattern == "*" || glob_match(&pattern, &origin)
    })
}

/// `Origin` is `scheme://host[:port]`; it is the same origin when that authority is the
/// request's `Host`.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    !authority.is_empty() && authority.eq_ignore_ascii_case(host.trim())
}

fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_follow_centrifugo_rules() {
        let none: Vec<String> = vec![];
        assert!(origin_allowed(&none, None, Some("a.com")));
        assert!(!origin_allowed(&none, Some("https://a.com"), None));
        assert!(!origin_allowed(&none, Some("https://a.com"), Some("b.com")));
        assert!(origin_allowed(&none, Some("https://a.com"), Some("a.com")));
        assert!(origin_allowed(
            &none,
            Some("http://127.0.0.1:8000"),
            Some("127.0.0.1:8000")
        ));
        assert!(!origin_allowed(
            &none,
            Some("http://127.0.0.1:8001"),
            Some("127.0.0.1:8000")
        ));
        assert!(!origin_allowed(&none, Some("null"), Some("null")));
        let all = vec!["*".to_owned()];
        assert!(origin_allowed(&all, Some("https://a.com"), None));
        let some = vec![
            "https://*.example.com".to_owned(),
            "http://localhost:3000".to_owned(),
        ];
        assert!(origin_allowed(&some, Some("https://app.example.com"), None));
        assert!(origin_allowed(&some, Some("HTTP://LOCALHOST:3000"), None));
        assert!(!origin_allowed(&some, Some("https://example.org"), None));
        assert!(!origin_allowed(&some, Some("http://localhost:3001"), None));
    }
}
