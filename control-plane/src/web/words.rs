//! The dashboard's words for what the REST layer and the config rules say in theirs: option
//! names become the labels the forms show (in words, not the option's name), config paths (`channel.namespaces[0].history_ttl`)
//! and plan keys (`max_namespaces`) go, and Markdown backticks in help texts become code
//! spans instead of showing raw.

use rotor_tenant_config::CHANNEL_OPTION_DOCS;

/// The form label of channel option `name`, in words (`history_ttl` → "Keep history for");
/// an option without one reads as its name ("Some option").
pub fn label_of(name: &str) -> String {
    let label = match name {
        "presence" => "Track presence (who is subscribed)",
        "join_leave" => "Send join and leave messages",
        "force_push_join_leave" => "Push join and leave messages to every subscriber",
        "history_size" => "Publications kept per channel",
        "history_ttl" => "Keep history for",
        "history_meta_ttl" => "Keep a channel's stream position for",
        "force_positioning" => "Always check clients' stream position",
        "allow_positioning" => "Let clients ask for stream position checks",
        "force_recovery" => "Recover missed publications on reconnect",
        "allow_recovery" => "Let clients ask to recover missed publications",
        "force_recovery_mode" => "Recovery mode",
        "auto_cache_recover" => "Send the latest publication on every subscribe",
        "allow_subscribe_for_anonymous" => "Anonymous users may subscribe",
        "allow_subscribe_for_client" => "Connected users may subscribe without a token",
        "allow_publish_for_anonymous" => "Anonymous users may publish",
        "allow_publish_for_subscriber" => "Subscribers may publish",
        "allow_publish_for_client" => "Any connected user may publish",
        "allow_presence_for_anonymous" => "Anonymous users may read presence",
        "allow_presence_for_subscriber" => "Subscribers may read presence",
        "allow_presence_for_client" => "Any connected user may read presence",
        "allow_history_for_anonymous" => "Anonymous users may read history",
        "allow_history_for_subscriber" => "Subscribers may read history",
        "allow_history_for_client" => "Any connected user may read history",
        "allow_user_limited_channels" => "Allow channels limited to listed users (name#alice,bob)",
        "channel_regex" => "Channel names must match (regular expression)",
        "publication_data_format" => "Publication format",
        "allow_tags_filter" => "Subscribers may filter publications by tags",
        "exclude_publisher" => "Don't send a client's publications back to its own session",
        "allowed_delta_types" => "Delta compression subscribers may ask for",
        "delta_publish" => "Send every publication as a delta where possible",
        "subscribe_proxy_enabled" => "Ask your backend before each subscription",
        "subscribe_proxy_name" => "Subscribe proxy to use",
        "publish_proxy_enabled" => "Ask your backend before each client publication",
        "publish_proxy_name" => "Publish proxy to use",
        "sub_refresh_proxy_enabled" => "Ask your backend to refresh subscriptions",
        "sub_refresh_proxy_name" => "Subscription refresh proxy to use",
        "subscribe_stream_proxy_enabled" => "Stream each subscription from your backend (gRPC)",
        "subscribe_stream_proxy_name" => "Subscribe stream proxy to use",
        "subscribe_stream_proxy_bidirectional" => "Send subscribers' publishes up their stream",
        _ => "",
    };
    if !label.is_empty() {
        return label.to_owned();
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
    // Ends a word: an option name in it becomes its label; a sentence's full stop at its end
    // stays outside the label.
    let flush = |word: &mut String, out: &mut String| {
        let stop = word.ends_with('.');
        if stop {
            word.pop();
        }
        if !word.is_empty() {
            match option_in(word) {
                Some(option) => {
                    out.push('“');
                    out.push_str(&label_of(option));
                    out.push('”');
                }
                None => out.push_str(word),
            }
            word.clear();
        }
        if stop {
            out.push('.');
        }
    };
    for c in m.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']') {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            if c != '`' {
                out.push(c);
            }
        }
    }
    flush(&mut word, &mut out);
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
            "“Publications kept per channel” and “Keep history for” must be set together"
        );
        assert_eq!(
            humanize("settings.without_namespace.history_size: your plan allows at most 100"),
            "“Publications kept per channel”: your plan allows at most 100"
        );
        assert_eq!(
            humanize("must be at least history_ttl."),
            "must be at least “Keep history for”."
        );
    }

    #[test]
    fn every_channel_option_has_a_label_in_words() {
        for (name, _) in CHANNEL_OPTION_DOCS {
            let label = label_of(name);
            assert!(!label.contains('_'), "{name}: {label}");
            assert_ne!(
                label.to_lowercase(),
                name.replace('_', " "),
                "{name} has no label"
            );
        }
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
