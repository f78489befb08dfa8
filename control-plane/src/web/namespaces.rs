//! Namespace pages: the list with a create form (with presets), an editor with every channel
//! option labelled in words and explained (help text from the option's own documentation,
//! code spans rendered as code), the common options first and the advanced groups folded, inline
//! validation errors in the form's words that keep what was typed, and deletion after a
//! confirmation page of its own. Creating, saving and deleting answer with a redirect and a
//! [`Flash`]; the work is [`crate::service::namespaces`]'s (a name created twice at once is
//! created once, and the other form is told the name is taken).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use rotor_tenant_config::CHANNEL_OPTION_DOCS;
use serde_json::{json, Map, Value};

use super::extract::{CsrfForm, OwnedProject};
use super::flash::{self, Flash, Shown};
use super::session::Session;
use super::views::{
    when, Choice, DeleteNamespacePage, Field, FieldGroup, Layout, NamespacePage, NamespaceRow,
    NamespacesPage, ProjectHead,
};
use super::words::{label_of, segments};
use super::{page, refusal, urlencode, WebResult};
use crate::service::namespaces;
use crate::service::{ProjectScope, ServiceError};
use crate::state::AppState;

/// Option groups, in the order the editor shows them: (title, intro, advanced, options). The
/// first holds what most namespaces set; advanced groups start folded unless one of their
/// options is set (or has a mistake).
const GROUPS: &[(&str, &str, bool, &[&str])] = &[
    (
        "Common options",
        "What most namespaces set: history so reconnecting clients catch up, presence, and who may subscribe and publish from the client.",
        false,
        &[
            "history_size",
            "history_ttl",
            "force_recovery",
            "presence",
            "join_leave",
            "allow_subscribe_for_client",
            "allow_publish_for_subscriber",
            "allow_history_for_subscriber",
            "allow_presence_for_subscriber",
        ],
    ),
    (
        "More on history and recovery",
        "Fine-tune how clients catch up on what they missed.",
        true,
        &[
            "allow_recovery",
            "force_recovery_mode",
            "auto_cache_recover",
            "history_meta_ttl",
            "allow_positioning",
            "force_positioning",
        ],
    ),
    (
        "More on who may do what",
        "Without these, clients subscribe only with a subscription token or server-side, and only your server publishes.",
        true,
        &[
            "force_push_join_leave",
            "allow_subscribe_for_anonymous",
            "allow_user_limited_channels",
            "allow_publish_for_client",
            "allow_publish_for_anonymous",
            "allow_presence_for_client",
            "allow_presence_for_anonymous",
            "allow_history_for_client",
            "allow_history_for_anonymous",
            "allow_tags_filter",
            "exclude_publisher",
        ],
    ),
    (
        "Delta compression",
        "Subscribers that ask for it get each publication as a Fossil delta against the previous one, which saves bandwidth when publications change little. Needs history.",
        true,
        &["allowed_delta_types", "delta_publish"],
    ),
    (
        "Channel rules",
        "Which channel names and payloads are accepted.",
        true,
        &["channel_regex", "publication_data_format"],
    ),
    (
        "Proxies to your backend",
        "Ask your application before subscribing, publishing or refreshing, or stream each subscription from it over gRPC (the proxies' URLs are in the project's settings).",
        true,
        &[
            "subscribe_proxy_enabled",
            "subscribe_proxy_name",
            "publish_proxy_enabled",
            "publish_proxy_name",
            "sub_refresh_proxy_enabled",
            "sub_refresh_proxy_name",
            "subscribe_stream_proxy_enabled",
            "subscribe_stream_proxy_name",
            "subscribe_stream_proxy_bidirectional",
        ],
    ),
];

fn kind_of(name: &str) -> &'static str {
    match name {
        "history_size" => "number",
        "history_ttl" | "history_meta_ttl" => "duration",
        "force_recovery_mode" | "publication_data_format" | "allowed_delta_types" => "select",
        "channel_regex" => "text",
        n if n.ends_with("_proxy_name") => "text",
        _ => "bool",
    }
}

fn choices_of(name: &str) -> Vec<(&'static str, &'static str)> {
    match name {
        "force_recovery_mode" => vec![
            ("stream", "stream: replay missed publications"),
            (
                "cache",
                "cache: only the latest publication, as the current state",
            ),
        ],
        "allowed_delta_types" => vec![
            ("", "off: publications always whole"),
            ("fossil", "Fossil deltas for subscribers that ask"),
        ],
        "publication_data_format" => vec![
            ("", "any payload"),
            ("json", "JSON"),
            ("json_object", "JSON object"),
            ("binary", "binary"),
        ],
        _ => Vec::new(),
    }
}

fn doc_of(name: &str) -> String {
    CHANNEL_OPTION_DOCS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| d.trim().to_owned())
        .unwrap_or_default()
}

/// The editor's groups with values taken from `values` (option JSON, defaults omitted) and
/// errors for `error_field`.
fn groups(values: &Map<String, Value>, error: Option<(&str, &str)>) -> Vec<FieldGroup> {
    let mut placed: Vec<&str> = Vec::new();
    let mut out: Vec<FieldGroup> = GROUPS
        .iter()
        .map(|(title, intro, advanced, names)| {
            placed.extend(names.iter());
            let fields: Vec<Field> = names.iter().map(|n| field(n, values, error)).collect();
            FieldGroup {
                title,
                intro,
                advanced: *advanced,
                open: !*advanced || fields.iter().any(Field::stands_out),
                fields,
            }
        })
        .collect();
    let rest: Vec<Field> = CHANNEL_OPTION_DOCS
        .iter()
        .filter(|(n, _)| !placed.contains(n))
        .map(|(n, _)| field(n, values, error))
        .collect();
    if !rest.is_empty() {
        out.push(FieldGroup {
            title: "Other",
            intro: "",
            advanced: true,
            open: rest.iter().any(Field::stands_out),
            fields: rest,
        });
    }
    out
}

fn field(name: &'static str, values: &Map<String, Value>, error: Option<(&str, &str)>) -> Field {
    let v = values.get(name);
    let kind = kind_of(name);
    let (value, checked) = match (kind, v) {
        (_, None) if name.ends_with("_proxy_name") => ("default".to_owned(), false),
        (_, None) if name == "force_recovery_mode" => ("stream".to_owned(), false),
        (_, None) => (String::new(), false),
        ("bool", Some(b)) => (String::new(), b.as_bool().unwrap_or(false)),
        // A list of delta types: the form offers the one there is.
        (_, Some(Value::Array(items))) => (
            items
                .iter()
                .filter_map(Value::as_str)
                .next()
                .unwrap_or_default()
                .to_owned(),
            false,
        ),
        (_, Some(Value::String(s))) => (s.clone(), false),
        (_, Some(other)) => (other.to_string(), false),
    };
    let choices = choices_of(name)
        .into_iter()
        .map(|(v, text)| Choice {
            value: v,
            text,
            selected: v == value,
        })
        .collect();
    Field {
        name,
        label: label_of(name),
        help: segments(&doc_of(name)),
        kind,
        value,
        checked,
        choices,
        error: error.filter(|(f, _)| *f == name).map(|(_, m)| m.to_owned()),
    }
}

/// Turns the submitted form into option JSON; `Err((field, message))` on a value that is not
/// even of the right type (the rest is validated by the data plane's rules).
fn options_from_form(form: &[(String, String)]) -> Result<Map<String, Value>, (String, String)> {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim());
    let mut out = Map::new();
    for (name, _) in CHANNEL_OPTION_DOCS {
        let raw = get(name);
        match (kind_of(name), raw) {
            ("bool", Some(_)) => {
                out.insert((*name).into(), json!(true));
            }
            ("bool", None) | (_, None) | (_, Some("")) => {}
            ("number", Some(v)) => {
                let n: u64 = v
                    .parse()
                    .map_err(|_| ((*name).to_owned(), "must be a whole number".to_owned()))?;
                if n > 0 {
                    out.insert((*name).into(), json!(n));
                }
            }
            ("duration", Some(v)) => {
                // Whole seconds are accepted as a convenience and written as a Go duration.
                let v = if v.bytes().all(|b| b.is_ascii_digit()) {
                    format!("{v}s")
                } else {
                    v.to_owned()
                };
                if v != "0s" {
                    out.insert((*name).into(), json!(v));
                }
            }
            (_, Some(v)) if *name == "allowed_delta_types" => {
                out.insert((*name).into(), json!([v]));
            }
            (_, Some(v)) => {
                let is_default = (name.ends_with("_proxy_name") && v == "default")
                    || (*name == "force_recovery_mode" && v == "stream");
                if !is_default {
                    out.insert((*name).into(), json!(v));
                }
            }
        }
    }
    Ok(out)
}

async fn list_view(
    state: &AppState,
    session: &Session,
    scope: &ProjectScope,
    p: ProjectHead,
) -> WebResult<NamespacesPage> {
    let rows = namespaces::list(state, scope).await?;
    Ok(NamespacesPage {
        layout: Layout::of(session),
        tab: "namespaces",
        namespaces: rows
            .into_iter()
            .map(|ns| NamespaceRow {
                summary: summary(&ns.options),
                updated: when(&ns.updated_at),
                name: ns.name,
            })
            .collect(),
        form_name: String::new(),
        error: None,
        notice: None,
        p,
    })
}

/// A short description of what a namespace turns on.
fn summary(options: &Value) -> String {
    let o = options.as_object().cloned().unwrap_or_default();
    let mut parts = Vec::new();
    if let (Some(size), Some(ttl)) = (o.get("history_size"), o.get("history_ttl")) {
        parts.push(format!(
            "history {size} for {}",
            ttl.as_str().unwrap_or("?")
        ));
    }
    for (key, text) in [
        ("allow_recovery", "recovery"),
        ("force_recovery", "recovery"),
        ("presence", "presence"),
        ("join_leave", "join/leave"),
        ("allow_subscribe_for_client", "clients subscribe"),
        ("allow_publish_for_subscriber", "subscribers publish"),
        ("allow_publish_for_client", "clients publish"),
        ("subscribe_proxy_enabled", "subscribe proxy"),
        ("publish_proxy_enabled", "publish proxy"),
        ("subscribe_stream_proxy_enabled", "subscribe stream"),
        ("delta_publish", "delta publish"),
        ("exclude_publisher", "no echo to publisher"),
    ] {
        if o.get(key).and_then(Value::as_bool) == Some(true) && !parts.iter().any(|p| p == text) {
            parts.push(text.to_owned());
        }
    }
    if o.get("allowed_delta_types")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        parts.push("delta compression".into());
    }
    if parts.is_empty() {
        "defaults (server-side publishing only)".into()
    } else {
        parts.join(", ")
    }
}

pub async fn list(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
) -> WebResult<Response> {
    let location = format!("/projects/{}/namespaces", p.id);
    let shown = Shown::from(flash::take(&state, &session, &location).await?.as_ref());
    let mut v = list_view(&state, &session, &scope, p).await?;
    v.notice = shown.notice;
    Ok(page(v.render()?))
}

#[derive(serde::Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    preset: String,
}

fn preset(name: &str) -> Value {
    match name {
        "feed" => super::quickstart::feed_preset(),
        "chat" => json!({
            "history_size": 100, "history_ttl": "300s", "force_recovery": true,
            "presence": true, "join_leave": true, "force_push_join_leave": true,
            "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true,
            "allow_presence_for_subscriber": true, "allow_history_for_subscriber": true,
        }),
        _ => json!({}),
    }
}

pub async fn create(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
    CsrfForm(form): CsrfForm<CreateForm>,
) -> WebResult<Response> {
    let name = form.name.trim().to_owned();
    let problem = match namespaces::create(&state, &scope, &name, &preset(&form.preset)).await {
        Ok(_) => {
            let notice =
                format!("Namespace created: channels named \"{name}:…\" now use these options.");
            return flash::redirect(
                &state,
                &session,
                &namespace_path(&p, &name),
                Flash::notice(notice),
            )
            .await;
        }
        Err(ServiceError::Conflict(_)) => {
            format!("A namespace called \"{name}\" already exists.")
        }
        Err(e) => refusal(e)?.text,
    };
    let mut v = list_view(&state, &session, &scope, p).await?;
    v.form_name = form.name;
    v.error = Some(problem);
    let mut resp = page(v.render()?);
    *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    Ok(resp)
}

/// The address of namespace `name`'s editor.
fn namespace_path(p: &ProjectHead, name: &str) -> String {
    format!("/projects/{}/namespaces/{}", p.id, urlencode(name))
}

pub async fn edit(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
    Path((_, name)): Path<(String, String)>,
) -> WebResult<Response> {
    let options = namespaces::get(&state, &scope, &name).await?.options;
    let shown = Shown::from(
        flash::take(&state, &session, &namespace_path(&p, &name))
            .await?
            .as_ref(),
    );
    let view = NamespacePage {
        layout: Layout::of(&session),
        tab: "namespaces",
        groups: groups(options.as_object().unwrap_or(&Map::new()), None),
        name,
        error: shown.error,
        notice: shown.notice,
        p,
    };
    Ok(page(view.render()?))
}

pub async fn save(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
    Path((_, name)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<Vec<(String, String)>>,
) -> WebResult<Response> {
    // A form for a namespace that is gone is the 404 page, whatever it holds.
    namespaces::get(&state, &scope, &name).await?;
    let outcome = match options_from_form(&form) {
        Ok(options) => {
            let saved =
                namespaces::replace(&state, &scope, &name, &Value::Object(options.clone())).await;
            match saved {
                Ok(_) => {
                    let notice = Flash::notice(
                        "Saved. Connected clients get the new options without reconnecting.",
                    );
                    return flash::redirect(&state, &session, &namespace_path(&p, &name), notice)
                        .await;
                }
                Err(e) => {
                    let refused = refusal(e)?;
                    (options, refused.field.unwrap_or_default(), refused.text)
                }
            }
        }
        Err((field, message)) => {
            // Keep what was typed: rebuild the values from the raw form.
            let mut typed = Map::new();
            for (k, v) in &form {
                if k != "csrf" {
                    let value = if kind_of(k) == "bool" {
                        json!(true)
                    } else {
                        json!(v)
                    };
                    typed.insert(k.clone(), value);
                }
            }
            (typed, field, message)
        }
    };
    let (values, field, message) = outcome;
    let error_field = field.split('.').next_back().unwrap_or_default().to_owned();
    let view = NamespacePage {
        layout: Layout::of(&session),
        tab: "namespaces",
        groups: groups(&values, Some((&error_field, &message))),
        name,
        error: Some({
            let label = label_of(&error_field);
            if error_field.is_empty() || message.contains(&label) {
                message.clone()
            } else {
                format!("{label}: {message}")
            }
        }),
        notice: None,
        p,
    };
    let mut resp = page(view.render()?);
    *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    Ok(resp)
}

/// The confirmation page before a namespace is deleted: what it turns on and what stops.
pub async fn delete_confirm(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
    Path((_, name)): Path<(String, String)>,
) -> WebResult<Response> {
    let options = namespaces::get(&state, &scope, &name).await?.options;
    let view = DeleteNamespacePage {
        layout: Layout::of(&session),
        tab: "namespaces",
        summary: summary(&options),
        name,
        p,
    };
    Ok(page(view.render()?))
}

#[derive(serde::Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    confirm: String,
}

/// Deletes a namespace when the form comes from its confirmation page (`confirm=yes`); any
/// other form is sent to that page first.
pub async fn delete(
    State(state): State<AppState>,
    OwnedProject {
        session,
        scope,
        head: p,
    }: OwnedProject,
    Path((_, name)): Path<(String, String)>,
    CsrfForm(form): CsrfForm<DeleteForm>,
) -> WebResult<Response> {
    if form.confirm != "yes" {
        let location = format!("{}/delete", namespace_path(&p, &name));
        return Ok(axum::response::IntoResponse::into_response(
            axum::response::Redirect::to(&location),
        ));
    }
    namespaces::delete(&state, &scope, &name).await?;
    let notice = Flash::notice(format!(
        "Namespace “{name}” deleted: channels {name}:… are refused from now on."
    ));
    let location = format!("/projects/{}/namespaces", p.id);
    flash::redirect(&state, &session, &location, notice).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_channel_option_has_a_form_control_and_help() {
        let fields: Vec<Field> = groups(&Map::new(), None)
            .into_iter()
            .flat_map(|g| g.fields)
            .collect();
        assert_eq!(fields.len(), CHANNEL_OPTION_DOCS.len());
        for f in &fields {
            assert!(!f.help.is_empty(), "{} has no help text", f.name);
        }
    }

    #[test]
    fn common_options_come_first_and_advanced_groups_fold_unless_set() {
        let g = groups(&Map::new(), None);
        assert_eq!(g[0].title, "Common options");
        assert!(!g[0].advanced && g[0].open);
        assert!(g[0].fields.iter().any(|f| f.name == "history_size"));
        assert!(g[1..].iter().all(|g| g.advanced && !g.open));
        let mut set = Map::new();
        set.insert("channel_regex".into(), json!("^[a-z]+$"));
        let g = groups(&set, None);
        let rules = g.iter().find(|g| g.title == "Channel rules").unwrap();
        assert!(rules.open, "a group with a value set starts open");
        let g = groups(&Map::new(), Some(("publication_data_format", "bad")));
        assert!(g.iter().find(|g| g.title == "Channel rules").unwrap().open);
    }

    #[test]
    fn the_form_round_trips_to_canonical_options() {
        let form: Vec<(String, String)> = [
            ("csrf", "x"),
            ("history_size", "10"),
            ("history_ttl", "60"),
            ("presence", "on"),
            ("auto_cache_recover", "on"),
            ("subscribe_proxy_name", "default"),
            ("force_recovery_mode", "cache"),
            ("allowed_delta_types", "fossil"),
            ("delta_publish", "on"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let o = options_from_form(&form).unwrap();
        assert_eq!(
            Value::Object(o.clone()),
            json!({"history_size": 10, "history_ttl": "60s", "presence": true,
                   "auto_cache_recover": true, "force_recovery_mode": "cache",
                   "allowed_delta_types": ["fossil"], "delta_publish": true})
        );
        // And back: the editor shows the list's one type as the selected choice.
        let shown = field("allowed_delta_types", &o, None);
        assert_eq!(shown.value, "fossil");
        assert!(shown
            .choices
            .iter()
            .any(|c| c.value == "fossil" && c.selected));
        let off: Vec<(String, String)> = vec![("allowed_delta_types".into(), String::new())];
        assert!(options_from_form(&off).unwrap().is_empty());
        let bad = vec![("history_size".to_string(), "ten".to_string())];
        assert_eq!(options_from_form(&bad).unwrap_err().0, "history_size");
    }
}
