//! The data each dashboard page renders: one askama template struct per page (templates in
//! `web/templates`), plus the shared layout and project header.

use askama::Template;
use chrono::{DateTime, Utc};

use super::api_docs::{ApiGroup, ApiSchema};
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

/// The front page for visitors.
#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage {
    pub layout: Layout,
    /// Connect, mint a token, publish: filled in for an example project.
    pub snippets: Vec<Snippet>,
    pub channel: String,
    pub namespace: String,
}

/// The REST API reference.
#[derive(Template)]
#[template(path = "api_docs.html")]
pub struct ApiDocsPage {
    pub layout: Layout,
    /// `https://…/v1`.
    pub base: String,
    pub version: String,
    pub groups: Vec<ApiGroup>,
    pub schemas: Vec<ApiSchema>,
}

/// "Forgot password?" and the pages after it (`mode`: `forgot`, `sent`, `reset` or `invalid`).
#[derive(Template)]
#[template(path = "password.html")]
pub struct PasswordPage {
    pub layout: Layout,
    pub mode: &'static str,
    pub form_csrf: String,
    /// What was typed (`forgot`), or the account's address (`reset`).
    pub email: String,
    /// The link's token (`reset`: the form posts back to its address).
    pub token: String,
    pub error: Option<String>,
    pub error_field: String,
    /// How long a link works.
    pub minutes: u64,
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
    /// The key's first characters and an ellipsis.
    pub prefix: String,
    /// What the key may call, in words.
    pub scope: &'static str,
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
    /// `all` or `publish`.
    pub form_scope: String,
    pub error: Option<String>,
    pub notice: Option<String>,
}

/// "Revoke this key?": the confirmation step before a key is revoked.
#[derive(Template)]
#[template(path = "revoke_key.html")]
pub struct RevokeKeyPage {
    pub layout: Layout,
    pub p: ProjectHead,
    pub tab: &'static str,
    pub key: KeyRow,
}

/// "Delete this namespace?": the confirmation step before a namespace is deleted.
#[derive(Template)]
#[template(path = "delete_namespace.html")]
pub struct DeleteNamespacePage {
    pub layout: Layout,
    pub p: ProjectHead,
    pub tab: &'static str,
    pub name: String,
    /// What the namespace turns on, in words.
    pub summary: String,
}

/// One proxy of the settings page.
pub struct ProxyField {
    /// `connect`, `subscribe`, `publish` or `rpc` (form field prefix).
    pub kind: &'static str,
    pub title: &'static str,
    pub help: &'static str,
    /// The label of its switch, when it has one (connect, RPC).
    pub switch: Option<&'static str>,
    pub enabled: bool,
    pub endpoint: String,
    pub timeout: String,
    /// Whether the endpoint shown is the saved one (only then it can be tested as shown).
    pub saved: bool,
    /// The outcome of "Test this endpoint", right after it ran: (reachable, sentence).
    pub probe: Option<(bool, String)>,
    /// Which of its fields the page's error is about: `endpoint`, `timeout` or empty.
    pub bad: &'static str,
}

/// Where a project's backend points its gRPC client.
pub struct GrpcTarget {
    /// `host:port` of the edge (the project's own host when projects have one).
    pub address: String,
    /// The `rotor-project` metadata value to send, when the address does not name the project.
    pub project_metadata: Option<String>,
}

/// A project's settings page.
#[derive(Template)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    pub layout: Layout,
    pub p: ProjectHead,
    pub tab: &'static str,
    pub name: String,
    /// One origin per line.
    pub origins: String,
    pub anonymous: bool,
    /// Whether the server API answers `user_status`.
    pub user_status: bool,
    /// Whether the gRPC server API is on, and how a backend reaches it.
    pub grpc_api: bool,
    pub grpc_target: GrpcTarget,
    pub proxies: Vec<ProxyField>,
    pub webhooks_enabled: bool,
    pub webhooks_url: String,
    pub webhooks_grace: String,
    /// (name, label, ticked).
    pub webhook_events: Vec<(&'static str, &'static str, bool)>,
    /// Whether a signing secret is stored (it is never shown).
    pub webhook_secret_set: bool,
    /// What the running project has waiting and gave up on; `None`: it did not answer.
    pub deliveries: Option<super::webhooks::Deliveries>,
    /// The project's consumers (set here, with the REST API or Terraform).
    pub consumers: Vec<super::consumers::ConsumerRow>,
    /// The kinds the add form offers.
    pub consumer_kinds: &'static [&'static str],
    pub notice: Option<String>,
    pub error: Option<String>,
    /// The form field the error is about.
    pub error_field: String,
    /// Whether probes may reach only public addresses (hosted mode).
    pub public_only: bool,
}

/// One audit entry, in words.
pub struct AuditRow {
    pub when: String,
    pub actor: String,
    pub what: String,
}

/// An entry of the account's audit trail, with the project it concerns.
pub struct AccountAuditRow {
    pub row: AuditRow,
    /// The project's name, "—" for account-wide entries.
    pub project: String,
}

/// The account's audit trail across its projects, newest first, a page at a time.
#[derive(Template)]
#[template(path = "account_audit.html")]
pub struct AccountAuditPage {
    pub layout: Layout,
    pub rows: Vec<AccountAuditRow>,
    pub older: Option<i64>,
    pub paged: bool,
}

/// A project's audit trail, newest first, a page at a time.
#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub layout: Layout,
    pub p: ProjectHead,
    pub tab: &'static str,
    pub rows: Vec<AuditRow>,
    /// `?before=` of the next (older) page.
    pub older: Option<i64>,
    /// Whether this is not the first page.
    pub paged: bool,
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

impl Field {
    /// Whether the option is set to something other than its default, or has a mistake.
    pub fn stands_out(&self) -> bool {
        self.error.is_some()
            || self.checked
            || !(self.value.is_empty()
                || self.value == "default"
                || (self.name == "force_recovery_mode" && self.value == "stream"))
    }
}

pub struct FieldGroup {
    pub title: &'static str,
    pub intro: &'static str,
    /// Folded (a `<details>`) unless `open`.
    pub advanced: bool,
    pub open: bool,
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
    /// (value, label) of each namespace in the menu.
    pub namespaces: Vec<(String, String)>,
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
    /// JSON for the console's refusal hints (see `console::hints`).
    pub hints: String,
}

pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: String,
    pub expires: String,
}

/// "Revoke this management token?": the confirmation step before a token is revoked.
#[derive(Template)]
#[template(path = "revoke_token.html")]
pub struct RevokeTokenPage {
    pub layout: Layout,
    pub token: TokenRow,
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
