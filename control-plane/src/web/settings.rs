//! A project's settings page: its name, the origins browsers may connect from, anonymous
//! connections, the server API's `user_status`, webhooks ([`super::webhooks`]), and the
//! proxies to the customer's backend (connect, subscribe, publish, RPC)
//! each with "Test this endpoint" ([`crate::probe`]: one harmless request under the tenants'
//! egress rule, and what came back). The form edits the settings the REST API edits
//! (`PATCH /v1/projects/{id}`), keeping everything it does not show (static headers, named
//! proxies, options of channels without a namespace); mistakes come back in the form's words
//! with what was typed, via POST/redirect/GET like every other form.

use std::collections::BTreeMap;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::extract::{CsrfForm, OwnedProject};
use super::flash::{self, Flash};
use super::views::{GrpcTarget, Layout, ProjectHead, ProxyField, SettingsPage};
use super::webhooks::{self, WebhookForm};
use super::{page, words, WebResult};
use crate::probe::{self, Rule};
use crate::service::projects::{self, ProjectUpdate};
use crate::service::ServiceError;
use crate::state::AppState;

/// One proxy the page edits.
struct ProxySpec {
    /// Form field prefix: `connect`, `subscribe`, `publish` or `rpc`.
    kind: &'static str,
    /// Where it sits in the settings (`client_proxy.connect`).
    path: [&'static str; 2],
    title: &'static str,
    help: &'static str,
    /// The label of its switch, for those that have one.
    switch: Option<&'static str>,
}

/// The proxies the page edits, in its order.
const PROXIES: [ProxySpec; 4] = [
    ProxySpec {
        kind: "connect",
        path: ["client_proxy", "connect"],
        title: "Connect proxy",
        help: "Rotor asks this URL whether a client without a connection token may connect, and as whom.",
        switch: Some("Ask my backend when a client connects"),
    },
    ProxySpec {
        kind: "subscribe",
        path: ["channel_proxy", "subscribe"],
        title: "Subscribe proxy",
        help: "Used by namespaces with “Ask your backend before each subscription”: your backend decides each subscription.",
        switch: None,
    },
    ProxySpec {
        kind: "publish",
        path: ["channel_proxy", "publish"],
        title: "Publish proxy",
        help: "Used by namespaces with “Ask your backend before each client publication”: your backend checks each one.",
        switch: None,
    },
    ProxySpec {
        kind: "rpc",
        path: ["rpc", "proxy"],
        title: "RPC proxy",
        help: "Answers clients' RPC calls.",
        switch: Some("Send RPC calls (methods without a namespace) to my backend"),
    },
];

/// The form as posted (and as kept when it comes back with a mistake).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SettingsForm {
    name: String,
    origins: String,
    anonymous: Option<String>,
    user_status: Option<String>,
    grpc_api: Option<String>,
    connect_enabled: Option<String>,
    connect_endpoint: String,
    connect_timeout: String,
    subscribe_endpoint: String,
    subscribe_timeout: String,
    publish_endpoint: String,
    publish_timeout: String,
    rpc_enabled: Option<String>,
    rpc_endpoint: String,
    rpc_timeout: String,
    #[serde(flatten)]
    webhooks: WebhookForm,
}

impl SettingsForm {
    fn proxy(&self, kind: &str) -> (bool, &str, &str) {
        match kind {
            "connect" => (
                self.connect_enabled.is_some(),
                &self.connect_endpoint,
                &self.connect_timeout,
            ),
            "subscribe" => (true, &self.subscribe_endpoint, &self.subscribe_timeout),
            "publish" => (true, &self.publish_endpoint, &self.publish_timeout),
            _ => (
                self.rpc_enabled.is_some(),
                &self.rpc_endpoint,
                &self.rpc_timeout,
            ),
        }
    }

    /// The form showing stored `settings`.
    fn from_settings(name: &str, settings: &Value) -> Self {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
        let on = |v: Option<&Value>| {
            v.and_then(Value::as_bool)
                .unwrap_or(false)
                .then(String::new)
        };
        let proxy = |path: [&str; 2]| settings.get(path[0]).and_then(|s| s.get(path[1]));
        let origins: Vec<String> = settings
            .get("allowed_origins")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|o| o.as_str().map(str::to_owned))
            .collect();
        let [connect, subscribe, publish, rpc] = PROXIES.map(|spec| proxy(spec.path));
        Self {
            name: name.to_owned(),
            origins: origins.join("\n"),
            anonymous: on(settings.get("allow_anonymous_connect_without_token")),
            user_status: on(settings.get("user_status").and_then(|u| u.get("enabled"))),
            grpc_api: on(settings.get("grpc_api").and_then(|g| g.get("enabled"))),
            connect_enabled: on(connect.and_then(|c| c.get("enabled"))),
            connect_endpoint: text(connect.and_then(|c| c.get("endpoint"))),
            connect_timeout: text(connect.and_then(|c| c.get("timeout"))),
            subscribe_endpoint: text(subscribe.and_then(|c| c.get("endpoint"))),
            subscribe_timeout: text(subscribe.and_then(|c| c.get("timeout"))),
            publish_endpoint: text(publish.and_then(|c| c.get("endpoint"))),
            publish_timeout: text(publish.and_then(|c| c.get("timeout"))),
            rpc_enabled: on(settings
                .get("rpc")
                .and_then(|r| r.get("without_namespace"))
                .and_then(|w| w.get("proxy_enabled"))),
            rpc_endpoint: text(rpc.and_then(|c| c.get("endpoint"))),
            rpc_timeout: text(rpc.and_then(|c| c.get("timeout"))),
            webhooks: WebhookForm::from_settings(settings.get("webhooks")),
        }
    }
}

/// A mistake in the form: (form field, message in the form's words).
type FormError = (String, String);

/// A timeout as typed (`2`, `1.5s`, `500ms`) as a Go duration; `None` for blank.
fn timeout_value(field: &str, typed: &str) -> Result<Option<String>, FormError> {
    let t = typed.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let t = if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        format!("{t}s")
    } else {
        t.to_owned()
    };
    match rotor_tenant_config::parse_go_duration(&t) {
        Ok(d) if d > Duration::ZERO && d <= Duration::from_secs(60) => Ok(Some(t)),
        _ => Err((
            field.to_owned(),
            format!("“{typed}” is not a timeout: write it like 1s, 500ms or 2.5s (at most 60s)."),
        )),
    }
}

/// Sets `settings.<section>.enabled` (or removes it, and the section when nothing else is in it).
fn switch(out: &mut serde_json::Map<String, Value>, section: &str, on: bool) {
    let mut fields = out
        .get(section)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if on {
        fields.insert("enabled".into(), json!(true));
    } else {
        fields.remove("enabled");
    }
    if fields.is_empty() {
        out.remove(section);
    } else {
        out.insert(section.into(), Value::Object(fields));
    }
}

/// `settings` changed as the form says; what the form does not show is kept.
fn apply(settings: &Value, f: &SettingsForm) -> Result<Value, FormError> {
    let mut out = settings.as_object().cloned().unwrap_or_default();
    let origins: Vec<&str> = f
        .origins
        .lines()
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .collect();
    for o in &origins {
        let ok = *o == "*"
            || ((o.starts_with("https://") || o.starts_with("http://")) && !o.contains(' '));
        if !ok {
            return Err((
                "origins".into(),
                format!(
                    "“{o}” is not an origin: write it like https://app.example.com (or * for any)."
                ),
            ));
        }
    }
    if origins.is_empty() {
        out.remove("allowed_origins");
    } else {
        out.insert("allowed_origins".into(), json!(origins));
    }
    if f.anonymous.is_some() {
        out.insert("allow_anonymous_connect_without_token".into(), json!(true));
    } else {
        out.remove("allow_anonymous_connect_without_token");
    }
    // `enabled` follows its box; what else is set over the API (a `last_seen_ttl`) is kept.
    switch(&mut out, "user_status", f.user_status.is_some());
    switch(&mut out, "grpc_api", f.grpc_api.is_some());
    for ProxySpec {
        kind,
        path: [section, key],
        title,
        switch,
        ..
    } in PROXIES
    {
        let (enabled, endpoint, timeout) = f.proxy(kind);
        let endpoint = endpoint.trim();
        let timeout = timeout_value(&format!("{kind}_timeout"), timeout)?;
        let mut sec = out
            .get(section)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if endpoint.is_empty() {
            if let (Some(label), true) = (switch, enabled) {
                return Err((
                    format!("{kind}_endpoint"),
                    format!("{title}: enter the URL of your backend, or untick “{label}”."),
                ));
            }
            sec.remove(key);
        } else {
            let mut proxy = sec
                .get(key)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            proxy.insert("endpoint".into(), json!(endpoint));
            match timeout {
                Some(t) => proxy.insert("timeout".into(), json!(t)),
                None => proxy.remove("timeout"),
            };
            if kind == "connect" {
                proxy.insert("enabled".into(), json!(enabled));
            }
            sec.insert(key.into(), Value::Object(proxy));
        }
        if kind == "rpc" {
            let mut without: Map<String, Value> = sec
                .get("without_namespace")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if enabled && !endpoint.is_empty() {
                without.insert("proxy_enabled".into(), json!(true));
            } else {
                without.remove("proxy_enabled");
            }
            if without.is_empty() {
                sec.remove("without_namespace");
            } else {
                sec.insert("without_namespace".into(), Value::Object(without));
            }
        }
        if sec.is_empty() {
            out.remove(section);
        } else {
            out.insert(section.into(), Value::Object(sec));
        }
    }
    f.webhooks.apply(&mut out)?;
    Ok(Value::Object(out))
}

/// The form field and words for a settings error the config rules found
/// (`settings.client_proxy.connect.endpoint` → `connect_endpoint`, "Connect proxy URL: …").
fn form_error(field: Option<&str>, message: &str) -> FormError {
    let field = field.unwrap_or_default();
    let message = words::humanize(message);
    for ProxySpec {
        kind,
        path: [section, key],
        title,
        ..
    } in PROXIES
    {
        let prefix = format!("settings.{section}.{key}");
        if let Some(rest) = field.strip_prefix(&prefix) {
            let (name, what) = if rest.starts_with(".timeout") {
                (format!("{kind}_timeout"), "timeout")
            } else {
                (format!("{kind}_endpoint"), "URL")
            };
            return (name, format!("{title} {what}: {message}"));
        }
    }
    if let Some(name) = webhooks::field_of(field) {
        return (name.into(), format!("Webhooks: {message}"));
    }
    if field.starts_with("settings.grpc_api") {
        return ("grpc_api".into(), format!("gRPC API: {message}"));
    }
    if field.starts_with("settings.user_status") {
        return ("user_status".into(), format!("User status: {message}"));
    }
    if field.starts_with("settings.allowed_origins") {
        return ("origins".into(), format!("Allowed origins: {message}"));
    }
    if field == "name" {
        return ("name".into(), format!("Project name: {message}"));
    }
    let mut m = message;
    if let Some(first) = m.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    (String::new(), m)
}

fn settings_path(p: &ProjectHead) -> String {
    format!("/projects/{}/settings", p.id)
}

fn error_field_of(error: &Option<FormError>) -> &str {
    error.as_ref().map_or("", |(field, _)| field.as_str())
}

/// What a flash left for the page: (form as typed, error (field, text), probe result).
type Left = (
    Option<SettingsForm>,
    Option<FormError>,
    Option<(String, bool, String)>,
    Option<String>,
);

fn typed_form(typed: &str) -> (Option<SettingsForm>, String) {
    let v: Value = serde_json::from_str(typed).unwrap_or(Value::Null);
    let form = serde_json::from_value(v.get("form").cloned().unwrap_or(Value::Null)).ok();
    let field = v
        .get("field")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    (form, field)
}

fn left_by(flash: Option<Flash>) -> Left {
    match flash {
        Some(Flash::Notice { text }) => (None, None, None, Some(text)),
        Some(Flash::Error { text, typed }) => {
            let (form, field) = typed_form(&typed);
            (form, Some((field, text)), None, None)
        }
        Some(Flash::Probe {
            proxy,
            reachable,
            text,
            typed,
        }) => {
            let (form, _) = typed_form(&typed);
            (form, None, Some((proxy, reachable, text)), None)
        }
        _ => (None, None, None, None),
    }
}

pub async fn show(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
) -> WebResult<Response> {
    let stored = projects::settings(&state, &scope).await?;
    let saved = SettingsForm::from_settings(&p.name, &stored);
    let (typed, error, probe, notice) =
        left_by(flash::take(&state, &session, &settings_path(&p)).await?);
    let form = typed.unwrap_or_else(|| saved.clone());
    let proxies = PROXIES
        .iter()
        .map(
            |&ProxySpec {
                 kind,
                 title,
                 help,
                 switch,
                 ..
             }| {
                let (enabled, endpoint, timeout) = form.proxy(kind);
                let (_, saved_endpoint, _) = saved.proxy(kind);
                ProxyField {
                    kind,
                    title,
                    help,
                    switch,
                    enabled,
                    endpoint: endpoint.to_owned(),
                    timeout: timeout.to_owned(),
                    saved: !endpoint.trim().is_empty() && endpoint.trim() == saved_endpoint.trim(),
                    bad: if error_field_of(&error) == format!("{kind}_endpoint") {
                        "endpoint"
                    } else if error_field_of(&error) == format!("{kind}_timeout") {
                        "timeout"
                    } else {
                        ""
                    },
                    probe: probe
                        .as_ref()
                        .filter(|(k, ..)| k == kind)
                        .map(|(_, ok, text)| (*ok, text.clone())),
                }
            },
        )
        .collect();
    let (error_field, error) = match error {
        Some((field, text)) => (field, Some(text)),
        None => (String::new(), None),
    };
    let deliveries = webhooks::deliveries(&state, &p.id).await;
    let webhook_secret_set = stored
        .get("webhooks")
        .and_then(|w| w.get("secret"))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    let view = SettingsPage {
        layout: Layout::of(&session),
        tab: "settings",
        name: form.name.clone(),
        origins: form.origins.clone(),
        anonymous: form.anonymous.is_some(),
        user_status: form.user_status.is_some(),
        grpc_api: form.grpc_api.is_some(),
        grpc_target: grpc_target(&state, &p.slug),
        proxies,
        webhooks_enabled: form.webhooks.webhooks_enabled.is_some(),
        webhooks_url: form.webhooks.webhooks_url.clone(),
        webhooks_grace: form.webhooks.webhooks_grace.clone(),
        webhook_events: form.webhooks.events(),
        webhook_secret_set,
        deliveries,
        consumers: super::consumers::rows(&stored),
        consumer_kinds: super::consumers::KINDS,
        notice,
        error,
        error_field,
        public_only: !state.settings.tenant_private_egress,
        p,
    };
    Ok(page(view.render()?))
}

/// Where the project's backend points its gRPC client: the edge's address (the project's own
/// host when projects have one, else the shared one with the `rotor-project` metadata).
fn grpc_target(state: &AppState, slug: &str) -> GrpcTarget {
    let base = state.settings.tenant_http_base(slug);
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base.as_str()));
    let host = rest.split('/').next().unwrap_or(rest);
    let address = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:{}", if scheme == "https" { 443 } else { 80 })
    };
    GrpcTarget {
        address,
        project_metadata: state
            .settings
            .tenant_host
            .is_none()
            .then(|| slug.to_owned()),
    }
}

/// What was typed, kept for the page the form goes back to.
fn keep(form: &SettingsForm, field: &str) -> String {
    json!({"form": form, "field": field}).to_string()
}

pub async fn save(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
    CsrfForm(form): CsrfForm<SettingsForm>,
) -> WebResult<Response> {
    let location = settings_path(&p);
    let stored = projects::settings(&state, &scope).await?;
    let outcome = match apply(&stored, &form) {
        Ok(settings) => {
            let name = (form.name.trim() != p.name).then_some(form.name.as_str());
            let changed = settings != stored;
            if name.is_none() && !changed {
                return flash::redirect(
                    &state,
                    &session,
                    &location,
                    Flash::notice("Nothing to save: the settings are as they were."),
                )
                .await;
            }
            let change = ProjectUpdate {
                name: name.map(str::to_owned),
                settings: changed.then_some(settings),
            };
            match projects::update(&state, &scope, change).await {
                Ok(_) => Ok(()),
                Err(ServiceError::BadRequest { field, message }) => {
                    Err(form_error(field.as_deref(), &message))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => {
            let notice = Flash::notice("Settings saved. The project's server uses them within seconds; connected clients stay connected.");
            flash::redirect(&state, &session, &location, notice).await
        }
        Err((field, text)) => {
            let anchor = if field.is_empty() {
                String::new()
            } else {
                format!("#f-{field}")
            };
            let left = Flash::error(text, keep(&form, &field));
            flash::redirect(&state, &session, &format!("{location}{anchor}"), left).await
        }
    }
}

/// The static headers a proxy sends (so a backend that checks them answers as it would).
fn static_headers(settings: &Value, path: [&str; 2]) -> BTreeMap<String, String> {
    settings
        .get(path[0])
        .and_then(|s| s.get(path[1]))
        .and_then(|p| p.get("http"))
        .and_then(|h| h.get("static_headers"))
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
        .collect()
}

/// "Test this endpoint": probes the URL in the form for proxy `kind` (saved or not) and goes
/// back to the page with the outcome and the form as typed. Saves nothing.
pub async fn test(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
    Path((_, kind)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<SettingsForm>,
) -> WebResult<Response> {
    let Some(&ProxySpec {
        kind, path, title, ..
    }) = PROXIES.iter().find(|spec| spec.kind == kind)
    else {
        return Err(super::WebError::NotFound);
    };
    let location = format!("{}#proxy-{kind}", settings_path(&p));
    let (_, endpoint, timeout) = form.proxy(kind);
    let endpoint = endpoint.trim().to_owned();
    let (reachable, text) = if endpoint.is_empty() {
        (false, format!("{title}: enter a URL to test."))
    } else {
        let wait = timeout_value("", timeout)
            .ok()
            .flatten()
            .and_then(|t| rotor_tenant_config::parse_go_duration(&t).ok())
            .unwrap_or(Duration::from_secs(3))
            .max(Duration::from_secs(1));
        let stored = projects::settings(&state, &scope).await?;
        let rule = if state.settings.tenant_private_egress {
            Rule::Any
        } else {
            Rule::PublicOnly
        };
        let outcome = probe::probe(&endpoint, &static_headers(&stored, path), wait, rule).await;
        tracing::info!(account = %session.account, project = %p.id, proxy = kind, ok = outcome.is_ok(), "endpoint test from the dashboard");
        (outcome.is_ok(), probe::describe(&endpoint, &outcome))
    };
    let left = Flash::Probe {
        proxy: kind.to_owned(),
        reachable,
        text,
        typed: keep(&form, ""),
    };
    flash::redirect(&state, &session, &location, left).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_edits_what_it_shows_and_keeps_the_rest() {
        let stored = json!({
            "without_namespace": {"presence": true},
            "client_proxy": {"connect": {"enabled": true, "endpoint": "https://b.example/c",
                "http": {"static_headers": {"X-Key": "k"}}}},
            "proxies": [{"name": "billing", "endpoint": "https://b.example/b"}],
        });
        let mut form = SettingsForm::from_settings("App", &stored);
        assert_eq!(form.connect_endpoint, "https://b.example/c");
        assert!(form.connect_enabled.is_some());
        form.origins = "https://app.example.com\n\n  https://admin.example.com ".into();
        form.anonymous = Some("on".into());
        form.subscribe_endpoint = "https://b.example/s".into();
        form.subscribe_timeout = "2".into();
        form.connect_endpoint = "https://b.example/c2".into();
        let out = apply(&stored, &form).unwrap();
        assert_eq!(
            out["allowed_origins"],
            json!(["https://app.example.com", "https://admin.example.com"])
        );
        assert_eq!(out["allow_anonymous_connect_without_token"], true);
        assert_eq!(
            out["client_proxy"]["connect"]["endpoint"],
            "https://b.example/c2"
        );
        assert_eq!(
            out["client_proxy"]["connect"]["http"]["static_headers"]["X-Key"],
            "k"
        );
        assert_eq!(out["channel_proxy"]["subscribe"]["timeout"], "2s");
        assert_eq!(out["without_namespace"], stored["without_namespace"]);
        assert_eq!(out["proxies"], stored["proxies"]);
        assert!(out.get("user_status").is_none(), "{out}");
        // Ticked, user status is on; unticked, off, with a TTL set over the API kept.
        form.user_status = Some("on".into());
        let on = apply(&json!({"user_status": {"last_seen_ttl": "2h"}}), &form).unwrap();
        assert_eq!(
            on["user_status"],
            json!({"enabled": true, "last_seen_ttl": "2h"})
        );
        assert!(SettingsForm::from_settings("App", &on)
            .user_status
            .is_some());
        form.user_status = None;
        let off = apply(&on, &form).unwrap();
        assert_eq!(off["user_status"], json!({"last_seen_ttl": "2h"}));
        // The gRPC API's box: on, then off again without a trace.
        form.grpc_api = Some("on".into());
        let grpc = apply(&off, &form).unwrap();
        assert_eq!(grpc["grpc_api"], json!({"enabled": true}));
        assert!(SettingsForm::from_settings("App", &grpc).grpc_api.is_some());
        form.grpc_api = None;
        assert!(apply(&grpc, &form).unwrap().get("grpc_api").is_none());
        assert!(apply(&json!({"user_status": {"enabled": true}}), &form)
            .unwrap()
            .get("user_status")
            .is_none());
        // Emptied, a proxy goes; unticked, the connect proxy is kept but off.
        form.connect_enabled = None;
        form.subscribe_endpoint.clear();
        form.anonymous = None;
        let out = apply(&stored, &form).unwrap();
        assert_eq!(out["client_proxy"]["connect"]["enabled"], false);
        assert!(out.get("channel_proxy").is_none(), "{out}");
        assert!(out.get("allow_anonymous_connect_without_token").is_none());
    }

    #[test]
    fn mistakes_name_the_field_in_the_forms_words() {
        let mut form = SettingsForm::from_settings("App", &json!({}));
        form.origins = "app.example.com".into();
        let (field, text) = apply(&json!({}), &form).unwrap_err();
        assert_eq!(field, "origins");
        assert!(text.contains("https://app.example.com"), "{text}");
        form.origins.clear();
        form.rpc_timeout = "soon".into();
        form.rpc_endpoint = "https://b.example/r".into();
        assert_eq!(apply(&json!({}), &form).unwrap_err().0, "rpc_timeout");
        form.rpc_timeout.clear();
        form.rpc_endpoint.clear();
        form.connect_enabled = Some("on".into());
        let (field, text) = apply(&json!({}), &form).unwrap_err();
        assert_eq!(field, "connect_endpoint");
        assert!(text.starts_with("Connect proxy: enter the URL"), "{text}");
        let (field, text) = form_error(
            Some("settings.channel_proxy.subscribe.endpoint"),
            "invalid config at `channel.proxy.subscribe.endpoint`: is required",
        );
        assert_eq!(field, "subscribe_endpoint");
        assert_eq!(text, "Subscribe proxy URL: is required");
    }
}
