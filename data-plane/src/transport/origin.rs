//! Browser `Origin` checks for connection endpoints. With no allowed origins configured only
//! requests without an `Origin` header (non-browser clients) pass; `*` admits everyone; other
//! entries are patterns where `*` matches any run of characters (`https://*.example.com`).

/// Whether a request with this `Origin` header (if any) may connect.
pub fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    let origin = origin.trim().to_ascii_lowercase();
    allowed.iter().any(|pattern| {
        let pattern = pattern.trim().to_ascii_lowercase();
        pattern == "*" || glob_match(&pattern, &origin)
    })
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
        assert!(origin_allowed(&none, None));
        assert!(!origin_allowed(&none, Some("https://a.com")));
        let all = vec!["*".to_owned()];
        assert!(origin_allowed(&all, Some("https://a.com")));
        let some = vec![
            "https://*.example.com".to_owned(),
            "http://localhost:3000".to_owned(),
        ];
        assert!(origin_allowed(&some, Some("https://app.example.com")));
        assert!(origin_allowed(&some, Some("HTTP://LOCALHOST:3000")));
        assert!(!origin_allowed(&some, Some("https://example.org")));
        assert!(!origin_allowed(&some, Some("http://localhost:3001")));
    }
}
