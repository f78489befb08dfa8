//! What a project's overview offers to copy: its endpoints and quick-start snippets filled with
//! its real values, and the channel they use — the same one the console starts with.
//!
//! A channel without a namespace lets clients do nothing by themselves (Centrifugo's default:
//! subscribing needs a subscription token, error 103 otherwise), so a project created in the
//! dashboard starts with one namespace, [`STARTER_NAMESPACE`], chosen to make the snippets work
//! as shown and to allow no more than they need: clients with a connection token may subscribe,
//! only the project's server publishes (with an API key), and recent messages are kept for
//! recovery. The snippets use the first namespace that lets clients subscribe on their own; when
//! none does (a project made through the API, or the starter deleted), the overview says so and
//! offers to create the starter namespace.

use serde_json::{json, Value};

use super::views::{Endpoint, Snippet};
use super::WebResult;
use crate::service::{namespaces, ProjectScope};
use crate::state::AppState;

/// The namespace a project created in the dashboard starts with.
pub const STARTER_NAMESPACE: &str = "updates";
/// The preset of the namespaces page the starter namespace is made of.
pub const STARTER_PRESET: &str = "feed";
/// The channel of the snippets, within their namespace.
const CHANNEL: &str = "lobby";

/// The starter namespace's options: the namespace page's "Live feed" preset.
pub fn starter_options() -> Value {
    feed_preset()
}

/// The "Live feed" preset: clients with a connection token subscribe, the server publishes,
/// the last 50 messages are kept for 10 minutes and replayed to reconnecting clients.
pub fn feed_preset() -> Value {
    json!({
        "history_size": 50, "history_ttl": "600s", "force_recovery": true,
        "allow_subscribe_for_client": true,
    })
}

/// The channel the snippets and the console use.
pub struct ExampleChannel {
    /// `updates:lobby`.
    pub channel: String,
    /// Its namespace.
    pub namespace: String,
    /// Whether the namespace exists and lets clients with a connection token subscribe (the
    /// snippets work as shown).
    pub ready: bool,
    /// Whether the namespace exists (when not ready: it was changed to refuse clients).
    pub exists: bool,
}

/// The example channel of a project that still has its starter namespace (the front page's
/// quick start, before there is a project).
pub fn starter_example() -> ExampleChannel {
    ExampleChannel {
        channel: format!("{STARTER_NAMESPACE}:{CHANNEL}"),
        namespace: STARTER_NAMESPACE.to_owned(),
        ready: true,
        exists: true,
    }
}

/// Whether a namespace with these options lets a client with a connection token subscribe
/// without asking anyone else (no subscribe proxy).
fn clients_may_subscribe(options: &Value) -> bool {
    let on = |k: &str| options.get(k).and_then(Value::as_bool) == Some(true);
    on("allow_subscribe_for_client") && !on("subscribe_proxy_enabled")
}

/// The example channel of `project`: in the starter namespace when it lets clients subscribe,
/// else in the oldest namespace that does, else in the starter namespace (not ready).
pub async fn example_channel(
    state: &AppState,
    project: &ProjectScope,
) -> WebResult<ExampleChannel> {
    let mut rows = namespaces::list(state, project).await?;
    rows.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
    let usable: Vec<&str> = rows
        .iter()
        .filter(|ns| clients_may_subscribe(&ns.options))
        .map(|ns| ns.name.as_str())
        .collect();
    let (namespace, ready) = if usable.contains(&STARTER_NAMESPACE) {
        (STARTER_NAMESPACE, true)
    } else if let Some(first) = usable.first() {
        (*first, true)
    } else {
        (STARTER_NAMESPACE, false)
    };
    Ok(ExampleChannel {
        channel: format!("{namespace}:{CHANNEL}"),
        namespace: namespace.to_owned(),
        ready,
        exists: rows.iter().any(|ns| ns.name == namespace),
    })
}

/// The project's public endpoints; the first is the WebSocket one, the last the server API.
pub fn endpoints(state: &AppState, slug: &str) -> Vec<Endpoint> {
    let http = state.settings.tenant_http_base(slug);
    let ws = state.settings.tenant_ws_base(slug);
    vec![
        Endpoint {
            label: "WebSocket",
            url: format!("{ws}/connection/websocket"),
            help: "Bidirectional client connections (centrifuge-js, centrifuge-python, …), JSON or Protobuf.",
        },
        Endpoint {
            label: "SSE",
            url: format!("{http}/connection/sse"),
            help: "Server-Sent Events fallback (with the emulation endpoint for commands).",
        },
        Endpoint {
            label: "HTTP streaming",
            url: format!("{http}/connection/http_stream"),
            help: "HTTP-streaming fallback for browsers without WebSocket.",
        },
        Endpoint {
            label: "Uni SSE",
            url: format!("{http}/connection/uni_sse"),
            help: "Follow channels with a plain EventSource and a token.",
        },
        Endpoint {
            label: "Server API",
            url: format!("{http}/api"),
            help: "POST /api/publish, /api/broadcast, /api/presence, … with an X-API-Key header.",
        },
    ]
}

/// The quick-start snippets. They run as shown (the browser test copies and runs them): the
/// token minted by the backend snippet is what `getToken` fetches, and the curl publish
/// reaches the subscription.
pub fn snippets(ws_url: &str, api_url: &str, example: &ExampleChannel) -> Vec<Snippet> {
    let channel = &example.channel;
    let namespace = &example.namespace;
    vec![
        Snippet {
            id: "snippet-js",
            title: "Connect and subscribe (browser, centrifuge-js)",
            code: format!(
                "import {{ Centrifuge }} from 'centrifuge';\n\n\
                 const client = new Centrifuge('{ws_url}', {{\n  \
                 // Asks your backend for a connection token (see the next snippet).\n  \
                 getToken: () => fetch('/rotor-token').then((r) => r.text()),\n}});\n\n\
                 // Namespace \"{namespace}\" lets clients with a token subscribe; your server publishes.\n\
                 const sub = client.newSubscription('{channel}');\n\
                 sub.on('publication', (ctx) => console.log('message', ctx.data));\n\
                 sub.subscribe();\n\
                 client.connect();\n"
            ),
        },
        Snippet {
            id: "snippet-node",
            title: "Mint a connection token (Node.js, jsonwebtoken)",
            code: "import jwt from 'jsonwebtoken';\n\n\
                   // Answer GET /rotor-token with rotorToken(user.id) for your logged-in users.\n\
                   // ROTOR_TOKEN_SECRET is this project's token secret (Keys & secret tab).\n\
                   export function rotorToken(userId) {\n  \
                   return jwt.sign({ sub: String(userId) }, process.env.ROTOR_TOKEN_SECRET, {\n    \
                   algorithm: 'HS256',\n    expiresIn: '1h',\n  });\n}\n"
                .to_owned(),
        },
        Snippet {
            id: "snippet-python",
            title: "Mint a connection token (Python, PyJWT)",
            code: "import os, time, jwt\n\n\n\
                   # Answer GET /rotor-token with rotor_token(user.id) for your logged-in users.\n\
                   # ROTOR_TOKEN_SECRET is this project's token secret (Keys & secret tab).\n\
                   def rotor_token(user_id):\n    \
                   return jwt.encode(\n        \
                   {\"sub\": str(user_id), \"exp\": int(time.time()) + 3600},\n        \
                   os.environ[\"ROTOR_TOKEN_SECRET\"],\n        algorithm=\"HS256\",\n    )\n"
                .to_owned(),
        },
        Snippet {
            id: "snippet-curl",
            title: "Publish from your server (curl)",
            code: format!(
                "# ROTOR_API_KEY is one of this project's API keys (Keys & secret tab).\n\
                 curl -sS -X POST '{api_url}/publish' \\\n  \
                 -H \"X-API-Key: $ROTOR_API_KEY\" \\\n  \
                 -H 'Content-Type: application/json' \\\n  \
                 -d '{{\"channel\": \"{channel}\", \"data\": {{\"text\": \"hello\"}}}}'\n"
            ),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starter_namespace_lets_clients_subscribe_but_not_publish() {
        let o = starter_options();
        assert!(clients_may_subscribe(&o));
        for k in [
            "allow_publish_for_client",
            "allow_publish_for_subscriber",
            "allow_publish_for_anonymous",
            "allow_subscribe_for_anonymous",
        ] {
            assert!(o.get(k).is_none(), "{k}");
        }
        assert!(!clients_may_subscribe(&json!({})));
        assert!(!clients_may_subscribe(
            &json!({"allow_subscribe_for_client": true, "subscribe_proxy_enabled": true})
        ));
    }
}
