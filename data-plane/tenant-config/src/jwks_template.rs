//! Dynamic JWKS endpoints: `jwks_public_endpoint` may hold `{{name}}` placeholders, filled per
//! token from the named groups of `issuer_regex` and `audience_regex` (Centrifugo's multi-issuer
//! setup, e.g. `https://auth.example.com/{{tenant}}/jwks` with
//! `issuer_regex: "^https://auth\.example\.com/(?P<tenant>acme|globex)$"`).
//!
//! The values come from a token whose signature is not checked yet, so they are an attacker's
//! choice. Centrifugo's rule applies — each group a placeholder uses must be an explicit list of
//! fixed strings (`a|b|c`: no classes, wildcards or repetitions) — and Rotor's own on top:
//! placeholders may stand only in the URL's path, never in its scheme, host, port, query or
//! fragment, and every value a group can take must be a plain path segment. A token can then
//! only pick one of the endpoints the operator listed.

use std::collections::{BTreeMap, BTreeSet};

use regex_syntax::ast::{Ast, GroupKind};

use crate::sections::TokenSection;

/// Most distinct values one placeholder's group may stand for.
const MAX_VALUES: usize = 256;

/// The `{{name}}` placeholders of `endpoint`, in order; an error for an unterminated or
/// malformed one.
pub fn placeholders(endpoint: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = endpoint;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a `{{` placeholder is not closed with `}}`".to_owned())?;
        let name = &after[..end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "placeholder {{{{{name}}}}} must be a group name (letters, digits, _)"
            ));
        }
        out.push(name);
        rest = &after[end + 2..];
    }
    Ok(out)
}

/// Whether `value` may stand in a URL path as one segment.
pub fn is_path_segment(value: &str) -> bool {
    !value.is_empty()
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The values each placeholder of `token.jwks_public_endpoint` may take (empty when the
/// endpoint has none), after checking every rule of the module; the error says what is wrong.
pub fn template_values(token: &TokenSection) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let endpoint = &token.jwks_public_endpoint;
    let names = placeholders(endpoint)?;
    let mut out = BTreeMap::new();
    if names.is_empty() {
        return Ok(out);
    }
    let Some(first) = endpoint.find("{{") else {
        return Ok(out);
    };
    let scheme_end = endpoint
        .find("://")
        .ok_or_else(|| "must be an http:// or https:// URL".to_owned())?;
    let authority_end = endpoint[scheme_end + 3..]
        .find(['/', '?', '#'])
        .map(|i| scheme_end + 3 + i);
    let path_end = endpoint.find(['?', '#']).unwrap_or(endpoint.len());
    let in_path = authority_end.is_some_and(|a| first > a) && endpoint.rfind("}}") < Some(path_end);
    if !in_path {
        return Err("placeholders may only stand in the URL's path (never in its host, port, query or fragment)".into());
    }
    let scheme = &endpoint[..scheme_end];
    if scheme != "http" && scheme != "https" {
        return Err("must be an http:// or https:// URL".into());
    }
    for name in names {
        if out.contains_key(name) {
            continue;
        }
        let mut found = None;
        for (option, pattern) in [
            ("issuer_regex", &token.issuer_regex),
            ("audience_regex", &token.audience_regex),
        ] {
            if pattern.is_empty() {
                continue;
            }
            let ast = regex_syntax::ast::parse::Parser::new()
                .parse(pattern)
                .map_err(|e| format!("{option}: {e}"))?;
            if let Some(group) = named_group(&ast, name) {
                let values = literal_values(group).ok_or_else(|| {
                    format!(
                        "{option}: group {name:?} is used in the JWKS endpoint, so it must be an explicit list of fixed values (value1|value2|value3)"
                    )
                })?;
                if let Some(bad) = values.iter().find(|v| !is_path_segment(v)) {
                    return Err(format!(
                        "{option}: group {name:?} may take the value {bad:?}, which is not a plain URL path segment (letters, digits, -, ., _, ~)"
                    ));
                }
                found = Some(values);
                break;
            }
        }
        let values = found.ok_or_else(|| {
            format!("{{{{{name}}}}} is not a named group of issuer_regex or audience_regex")
        })?;
        out.insert(name.to_owned(), values);
    }
    Ok(out)
}

/// The group named `name` in `ast`.
fn named_group<'a>(ast: &'a Ast, name: &str) -> Option<&'a Ast> {
    match ast {
        Ast::Group(g) => match &g.kind {
            GroupKind::CaptureName { name: n, .. } if n.name == name => Some(&g.ast),
            _ => named_group(&g.ast, name),
        },
        Ast::Alternation(a) => a.asts.iter().find_map(|x| named_group(x, name)),
        Ast::Concat(c) => c.asts.iter().find_map(|x| named_group(x, name)),
        Ast::Repetition(r) => named_group(&r.ast, name),
        _ => None,
    }
}

/// Every string `ast` matches when it is built only of literals, concatenations, alternations
/// and flag-free groups (at most [`MAX_VALUES`]); `None` otherwise.
fn literal_values(ast: &Ast) -> Option<BTreeSet<String>> {
    let set = match ast {
        Ast::Empty(_) => BTreeSet::from([String::new()]),
        Ast::Literal(l) => BTreeSet::from([l.c.to_string()]),
        Ast::Group(g) => match &g.kind {
            GroupKind::NonCapturing(flags) if !flags.items.is_empty() => return None,
            _ => literal_values(&g.ast)?,
        },
        Ast::Alternation(a) => {
            let mut out = BTreeSet::new();
            for x in &a.asts {
                out.extend(literal_values(x)?);
                if out.len() > MAX_VALUES {
                    return None;
                }
            }
            out
        }
        Ast::Concat(c) => {
            let mut out = BTreeSet::from([String::new()]);
            for x in &c.asts {
                let next = literal_values(x)?;
                if out.len().saturating_mul(next.len()) > MAX_VALUES {
                    return None;
                }
                out = out
                    .iter()
                    .flat_map(|a| next.iter().map(move |b| format!("{a}{b}")))
                    .collect();
            }
            out
        }
        _ => return None,
    };
    Some(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(endpoint: &str, issuer_regex: &str) -> TokenSection {
        TokenSection {
            jwks_public_endpoint: endpoint.into(),
            issuer_regex: issuer_regex.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_group_of_fixed_values_in_the_path_is_accepted() {
        let values = template_values(&token(
            "https://auth.example.com/{{tenant}}/jwks",
            r"^https://auth\.example\.com/(?P<tenant>acme|globex|ini(?:tech|gen))$",
        ))
        .unwrap();
        let expected: BTreeSet<String> = ["acme", "globex", "initech", "inigen"]
            .map(String::from)
            .into();
        assert_eq!(values["tenant"], expected);
        assert!(template_values(&token("https://a.example/jwks", ""))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn placeholders_outside_the_path_or_open_groups_are_refused() {
        let re = r"^(?P<t>acme|globex)$";
        for endpoint in [
            "https://{{t}}.example.com/jwks",
            "https://auth.example.com:{{t}}/jwks",
            "https://auth{{t}}/jwks",
            "https://auth.example.com/jwks?tenant={{t}}",
            "https://auth.example.com/jwks#{{t}}",
            "https://auth.example.com/{{t}",
            "https://auth.example.com/{{t.x}}",
            "ftp://auth.example.com/{{t}}",
        ] {
            assert!(template_values(&token(endpoint, re)).is_err(), "{endpoint}");
        }
        for pattern in [
            r"^(?P<t>[a-z]+)$",
            r"^(?P<t>.*)$",
            r"^(?P<t>\w+)$",
            r"^(?P<t>acme|a+)$",
            r"^(?P<t>(?i:acme))$",
            r"^(?P<t>acme|../x)$",
            r"^(?P<t>ev/il|acme)$",
            r"^(?P<other>acme)$",
        ] {
            assert!(
                template_values(&token("https://a.example/{{t}}/jwks", pattern)).is_err(),
                "{pattern}"
            );
        }
    }
}
