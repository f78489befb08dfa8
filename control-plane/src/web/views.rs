//! The data each dashboard page renders: one askama template struct per page (templates in
//! `web/templates`), plus the shared layout and project header.

use askama::Template;
use chrono::{DateTime, Utc};

use super::assets;
use super::quickstart::ExampleChannel;
use super::session::Session;
use super::words::Segment;

/// What the page frame needs: who is logged in and the CSRF token for its forms.
pub struct Layout {
    pub email: Option<String>,
    pub csrf: String,
    pub asset_version: &'static str,
}

impl Layout {
    /// The frame of a logged-in page.
    pub fn of(session: &Session) -> Self {
        Self {
            email: Some(session.email.clone()),
            csrf: session.csrf.clone(),
            asset_version: assets::version(),
        }
    }

    /// The frame of a page seen without a session.
    pub fn anonymous() -> Self {
        Self {
            email: None,
            csrf: String::new(),
            asset_version: assets::version(),
        }
    }
}

/// The project a page belongs to, shown in its header and tabs.
#[derive(sqlx::FromRow)]
pub struct ProjectHead {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub status: String,
    pub plan: String,
    pub engine: String,
}

/// `2026-11-24 06:30 UTC`.
pub fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Like [`when`], or "never".
pub fn when_opt(t: &Option<DateTime<Utc>>) -> String {
    t.as_ref().map(when).unwrap_or_else(|| "never".into())
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub layout: Layout,
    pub title: &'a str,
    pub message: &'a str,
    /// Whether the viewer is signed in (the page then offers their projects, else the login).
    pub signed_in: bool,
}

/// Sign-up and login (`signup` is which form).
#[derive(Template)]
#[template(path = "auth.html")]
pub struct AuthPage {
    pub layout: Layout,
    pub signup: bool,
    pub form_csrf: String,
    pub email: String,
    pub error: Option<String>,
    pub error_field: String,
    pub next: String,
    pub notice: Option<String>,
}

pub struct ProjectCard {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub status: String,
    pub engine: String,
    pub plan: String,
    pub created: String,
    pub namespaces: i64,
}

#[derive(Template)]
#[template(path = "projects.html")]
pub struct ProjectsPage {
    pub layout: Layout,
    pub projects: Vec<ProjectCard>,
    pub form_name: String,
    pub form_engine: String,
    pub error: Option<String>,
    pub notice: Option<String>,
    pub redis_available: bool,
    pub starter_namespace: &'static str,
}

pub struct Endpoint {
    pub label: &'static str,
    pub url: String,
    pub help: &'static str,
}

pub struct Snippet {
    pub id: &'static str,
    pub title: &'static str,
    pub code: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub layout: Layout,
    pub p: ProjectHead,
    pub tab: &'static str,
    pub endpoints: Vec<Endpoint>,
    pub snippets: Vec<Snippet>,
    pub applied: bool,
    pub running: bool,
    /// Not running until its next connection (parked, or never started yet).
    pub idle: bool,
    pub notice: Option<String>,
    /// Why the last delete attempt did nothing (shown by the delete form).
    pub delete_error: Option<String>,
    /// The channel the snippets use, and whether they work as shown.
    pub example: ExampleChannel,
    pub starter_namespace: &'static str,
    pub starter_preset: &'static str,
}

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: String,
}

#[derive(Template)]
#[template(path = "keys.html")]
pub struct KeysPage {
    pub layout: Layout,
    pub p: ProjectHead,
    pub tab: &'static str,
    pub keys: Vec<KeyRow>,
    pub new_key: Option<(String, String)>,
    pub secret: Option<String>,
    pub rotated_at: String,
    pub form_name: String,
    pub error: Option<String>,
    pub notice: Option<String>,
}

pub struct NamespaceRow {
    pub name: String,
    pub summary: String,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "namespaces.html")]
pub struct NamespacesPage {
    pub layout: Layout,
    pub p: ProjectHead,
    pub tab: &'static str,
    pub namespaces: Vec<NamespaceRow>,
    pub form_name: String,
    pub error: Option<String>,
    pub notice: Option<String>,
}

/// One entry of a select.
pub struct Choice {
    pub value: &'static str,
    pub text: &'static str,
    pub selected: bool,
}

/// One option's form control.
pub struct Field {
    pub name: &'static str,
    pub label: String,
    /// The option's documentation, with its code spans apart.
    pub help: Vec<Segment>,
    /// `bool`, `number`, `duration`, `text` or `select`.
    pub kind: &'static str,
    pub value: String,
    pub checked: bool,
    pub choices: Vec<Choice>,
    pub error: Option<String>,
}

pub struct FieldGroup {
    pub title: &'static str,
    pub intro: &'static str,
    pub fields: Vec<Field>,
}

#[derive(Template)]
#[template(path = "namespace.html")]
pub struct NamespacePage {
    pub layout: Layout,
    pub p: ProjectHead,
    pub tab: &'static str,
    pub name: String,
    pub groups: Vec<FieldGroup>,
    pub error: Option<String>,
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "usage.html")]
pub struct UsagePage {
    pub layout: Layout,
    pub p: ProjectHead,
    pub tab: &'static str,
    pub range: String,
    pub namespace: String,
    pub namespaces: Vec<String>,
}

#[derive(Template)]
#[template(path = "console.html")]
pub struct ConsolePage {
    pub layout: Layout,
    pub p: ProjectHead,
    pub tab: &'static str,
    pub ws_url: String,
    pub channel: String,
    pub running: bool,
}

pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    pub layout: Layout,
    pub tokens: Vec<TokenRow>,
    pub new_token: Option<(String, String)>,
    pub token_name: String,
    pub token_error: Option<String>,
    pub password_error: Option<String>,
    /// What the last change did (password changed, token revoked).
    pub notice: Option<String>,
}
