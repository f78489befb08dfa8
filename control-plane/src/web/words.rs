//! The dashboard's words for what the REST layer and the config rules say in theirs: option
//! names become the labels the forms show, config paths (`channel.namespaces[0].history_ttl`)
//! and plan keys (`max_namespaces`) go, and Markdown backticks in help texts become code
//! spans instead of showing raw.

use rotor_tenant_config::CHANNEL_OPTION_DOCS;

/// The form label of channel option `name` (`history_ttl` → "History ttl").
pub fn label_of(name: &str) -> String {
    if name == "allowed_delta_types" {
        return "Allow fossil delta compression".into();
    }
    let mut s = name.replace('_', " ");
    if let Some(first) = s.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    s
}

/// The option a config word names (`history_ttl`, `channel.namespaces[0].history_ttl`,
/// `settings.without_namespace.history_size`), if any.
fn option_in(word: &str) -> Option<&'static str> {
    let last = word.rsplit('.').next().unwrap_or(word);
    let last = last.split('[').next().unwrap_or(last);
    CHANNEL_OPTION_DOCS
        .iter()
        .map(|(n, _)| *n)
        .find(|n| *n == last && (n.contains('_') || word.contains('.')))
}

/// A message from the REST layer or the config rules, in the dashboard's words.
pub fn humanize(message: &str) -> String {
    let mut m = message.trim();
    // "invalid config at `path`: message": the path means nothing on a form.
    if let Some(rest) = m.strip_prefix("invalid config at `") {
        if let Some((_, after)) = rest.split_once("`: ") {
            m = after;
        }
    }
    let mut out = String::with_capacity(m.len() + 16);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.is_empty() {
            return;
        }
        match option_in(word) {
            Some(option) => {
                out.push('“');
                out.push_str(&label_of(option));
                out.push('”');
            }
            None => out.push_str(word),
        }
        word.clear();
    };
    for c in m.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']') {
            word.push(c);
        } else {
            // A word may end with a sentence's full stop.
            let stop = word.ends_with('.');
            if stop {
                word.pop();
            }
            flush(&mut word, &mut out);
            if stop {
                out.push('.');
            }
            if c != '`' {
                out.push(c);
            }
        }
    }
    let stop = word.ends_with('.');
    if stop {
        word.pop();
    }
    flush(&mut word, &mut out);
    if stop {
        out.push('.');
    }
    drop_plan_keys(&out)
}

/// Removes " (max_namespaces)"-style plan keys from a plan-limit message.
fn drop_plan_keys(m: &str) -> String {
    let mut out = m.to_owned();
    while let Some(start) = out.find(" (max_") {
        let Some(len) = out[start..].find(')') else {
            break;
        };
        let inner = &out[start + 2..start + len];
        if !inner.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            break;
        }
        out.replace_range(start..=start + len, "");
    }
    out
}

/// One piece of a help text: plain text, or a `code` span.
pub struct Segment {
    pub code: bool,
    pub text: String,
}

/// A help text with Markdown code spans (`` `cache` ``) split out, so the page shows them as
/// code rather than as backticks.
pub fn segments(doc: &str) -> Vec<Segment> {
    doc.split('`')
        .enumerate()
        .filter(|(_, t)| !t.is_empty())
        .map(|(i, t)| Segment {
            code: i % 2 == 1,
            text: t.to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_paths_and_option_names_become_the_form_labels() {
        assert_eq!(
            humanize("invalid config at `channel.namespaces[0].history_ttl`: history_size and history_ttl must be set together"),
            "“History size” and “History ttl” must be set together"
        );
        assert_eq!(
            humanize("settings.without_namespace.history_size: your plan allows at most 100"),
            "“History size”: your plan allows at most 100"
        );
        assert_eq!(
            humanize("must be at least history_ttl."),
            "must be at least “History ttl”."
        );
    }

    #[test]
    fn plan_keys_and_backticks_go_and_plain_words_stay() {
        assert_eq!(
            humanize("your plan (free) allows at most 10 namespaces per project (max_namespaces)"),
            "your plan (free) allows at most 10 namespaces per project"
        );
        assert_eq!(
            humanize("the name `chat` is taken; presence is off"),
            "the name chat is taken; presence is off"
        );
    }

    #[test]
    fn help_texts_split_into_text_and_code() {
        let s = segments("`stream` (default) or `cache`.");
        let parts: Vec<(bool, &str)> = s.iter().map(|s| (s.code, s.text.as_str())).collect();
        assert_eq!(
            parts,
            [
                (true, "stream"),
                (false, " (default) or "),
                (true, "cache"),
                (false, ".")
            ]
        );
    }
}
