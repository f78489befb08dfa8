//! The HTTP client for the control plane's REST API (`/v1`, JSON, Bearer management token): one
//! method per call the provider makes, and one typed error for everything that can go wrong.
//! A call the control plane throttles (429, its per-account budget of writes) is sent again after
//! the `Retry-After` it names, so a large `terraform apply` slows down instead of failing.
//! Nothing here logs, and the token never appears in an error or a `Debug` print.

use std::fmt;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// How long one REST call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one call may wait in all for the control plane's throttling (429) to let it
/// through before the 429 is the call's error.
const THROTTLED_FOR_AT_MOST: Duration = Duration::from_secs(120);
/// The longest single wait a `Retry-After` is taken for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The wait a throttled answer asks for: its `Retry-After` in seconds (at least one second, at
/// most [`MAX_RETRY_AFTER`]), one second when it names none.
fn retry_after(response: &reqwest::Response) -> Duration {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(1), |s| Duration::from_secs(s.max(1)))
        .min(MAX_RETRY_AFTER)
}

/// Everything a REST call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with an error document (`{"error": {"code", "message", "field"?}}`).
    #[error("{message} (HTTP {status}, {code})")]
    Api {
        status: u16,
        code: String,
        message: String,
        /// The request field the API refused, when it names one.
        field: Option<String>,
    },
    /// The request did not get an answer (DNS, connection, TLS, timeout).
    #[error("cannot reach the Rotor API at {endpoint}: {source}")]
    Transport {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not what this API version sends.
    #[error("unexpected response to {what} from the Rotor API: {detail}")]
    Decode { what: String, detail: String },
    /// The endpoint setting is not an http(s) URL.
    #[error("endpoint {0:?} must be an http:// or https:// URL")]
    BadEndpoint(String),
}

impl ApiError {
    /// True for a 404: the object does not exist (or belongs to another account).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Api { status: 404, .. })
    }

    /// The refused field, for errors that name one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::Api { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

/// Result of a REST call.
pub type ApiResult<T> = Result<T, ApiError>;

/// A project as the API returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub engine: String,
    pub plan: String,
    pub status: String,
    /// `websocket`, `sse`, `http_stream` and `api` URLs.
    pub endpoints: std::collections::BTreeMap<String, String>,
    /// The project's settings (`PATCH /v1/projects/{id}` replaces them whole).
    #[serde(default)]
    pub settings: Value,
}

impl Project {
    /// Whether the settings turn the server API's `user_status` on.
    pub fn user_status_enabled(&self) -> bool {
        self.switched_on("user_status")
    }

    /// Whether the settings section `section` (`user_status`, `grpc_api`) says `enabled`.
    pub fn switched_on(&self, section: &str) -> bool {
        self.settings
            .get(section)
            .and_then(|u| u.get("enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// An API key as listed (without the key itself).
#[derive(Debug, Clone, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// `all` or `publish` (keys listed by an older control plane have all methods).
    #[serde(default = "all_methods")]
    pub scope: String,
    pub created_at: String,
}

fn all_methods() -> String {
    "all".into()
}

/// A newly created API key: the only time the key is returned.
#[derive(Clone, Deserialize)]
pub struct NewApiKey {
    pub id: String,
    pub name: String,
    #[serde(default = "all_methods")]
    pub scope: String,
    pub key: String,
    pub created_at: String,
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// A namespace as the API returns it: its id, and its channel options in canonical form
/// (options at their default are left out).
#[derive(Debug, Clone)]
pub struct Namespace {
    pub id: String,
    pub name: String,
    pub options: Map<String, Value>,
}

#[derive(Deserialize)]
struct ErrorDocument {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
    #[serde(default)]
    field: Option<String>,
}

#[derive(Deserialize)]
struct ProjectList {
    projects: Vec<Project>,
}

#[derive(Deserialize)]
struct KeyList {
    api_keys: Vec<ApiKey>,
}

#[derive(Deserialize)]
struct Secrets {
    token_hmac_secret: String,
}

/// A client of one control plane, authenticated with one management token. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Percent-encodes one path segment (ids and names are URL-safe already; this keeps a stray
/// character from changing the path).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// A client for the control plane at `endpoint` (e.g. `https://rotor.example.com`).
    pub fn new(endpoint: &str, token: &str) -> ApiResult<Self> {
        let base = endpoint.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ApiError::BadEndpoint(endpoint.to_owned()));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!(
                "terraform-provider-rotor/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|source| ApiError::Transport {
                endpoint: base.clone(),
                source,
            })?;
        Ok(Self {
            http,
            base,
            token: token.to_owned(),
        })
    }

    /// Sends one request; returns the status and the body for 2xx answers, the API's error
    /// otherwise.
    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> ApiResult<Value> {
        let transport = |source| ApiError::Transport {
            endpoint: self.base.clone(),
            source,
        };
        let mut waited = Duration::ZERO;
        let response = loop {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(&self.token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(transport)?;
            // Throttled before anything was done: the same call is safe to send again.
            let wait = retry_after(&response);
            if response.status() != StatusCode::TOO_MANY_REQUESTS
                || waited + wait > THROTTLED_FOR_AT_MOST
            {
                break response;
            }
            tokio::time::sleep(wait).await;
            waited += wait;
        };
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        if status.is_success() {
            if status == StatusCode::NO_CONTENT || text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|e| ApiError::Decode {
                what: format!("{method} {path}"),
                detail: e.to_string(),
            });
        }
        match serde_json::from_str::<ErrorDocument>(&text) {
            Ok(doc) => Err(ApiError::Api {
                status: status.as_u16(),
                code: doc.error.code,
                message: doc.error.message,
                field: doc.error.field,
            }),
            Err(_) => Err(ApiError::Api {
                status: status.as_u16(),
                code: status
                    .canonical_reason()
                    .unwrap_or("error")
                    .to_ascii_lowercase(),
                message: format!("{method} {path} failed"),
                field: None,
            }),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> ApiResult<T> {
        let value = self.send(method.clone(), path, body).await?;
        serde_json::from_value(value).map_err(|e| ApiError::Decode {
            what: format!("{method} {path}"),
            detail: e.to_string(),
        })
    }

    /// `POST /v1/projects`.
    pub async fn create_project(&self, name: &str, engine: &str) -> ApiResult<Project> {
        let body = json!({"name": name, "engine": engine});
        self.call(Method::POST, "/v1/projects", Some(&body)).await
    }

    /// `GET /v1/projects/{id}`.
    pub async fn project(&self, id: &str) -> ApiResult<Project> {
        self.call(Method::GET, &format!("/v1/projects/{}", segment(id)), None)
            .await
    }

    /// `GET /v1/projects`: every project of the account.
    pub async fn projects(&self) -> ApiResult<Vec<Project>> {
        let list: ProjectList = self.call(Method::GET, "/v1/projects", None).await?;
        Ok(list.projects)
    }

    /// `PATCH /v1/projects/{id}` with a new name.
    pub async fn rename_project(&self, id: &str, name: &str) -> ApiResult<Project> {
        let body = json!({"name": name});
        self.call(
            Method::PATCH,
            &format!("/v1/projects/{}", segment(id)),
            Some(&body),
        )
        .await
    }

    /// Turns the server API's `user_status` on or off (see [`Self::set_switch`]).
    pub async fn set_user_status(&self, id: &str, enabled: bool) -> ApiResult<Project> {
        self.set_switch(id, "user_status", enabled).await
    }

    /// Turns a switched setting (`user_status`, `grpc_api`) on or off: changes
    /// `<section>.enabled` only, keeping what else is set there and every other setting.
    pub async fn set_switch(&self, id: &str, section: &str, enabled: bool) -> ApiResult<Project> {
        self.update_settings(id, |settings| {
            let mut fields = settings
                .get(section)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if enabled {
                fields.insert("enabled".into(), Value::Bool(true));
            } else {
                fields.remove("enabled");
            }
            if fields.is_empty() {
                settings.remove(section);
            } else {
                settings.insert(section.into(), Value::Object(fields));
            }
        })
        .await
    }

    /// Sets (`Some`, replacing an entry of the same name or adding one) or removes (`None`)
    /// consumer `name` in the project setting `consumers`, keeping every other consumer and
    /// setting; the list goes when it is empty.
    pub async fn set_consumer(
        &self,
        id: &str,
        name: &str,
        entry: Option<Value>,
    ) -> ApiResult<Project> {
        self.update_settings(id, |settings| {
            let mut list = settings
                .get("consumers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let at = list
                .iter()
                .position(|c| c.get("name").and_then(Value::as_str) == Some(name));
            match (entry, at) {
                (Some(e), Some(i)) => list[i] = e,
                (Some(e), None) => list.push(e),
                (None, Some(i)) => {
                    list.remove(i);
                }
                (None, None) => {}
            }
            if list.is_empty() {
                settings.remove("consumers");
            } else {
                settings.insert("consumers".into(), Value::Array(list));
            }
        })
        .await
    }

    /// Sets (`Some`) or removes (`None`) the project setting `webhooks`, keeping every other
    /// setting.
    pub async fn set_webhooks(&self, id: &str, webhooks: Option<Value>) -> ApiResult<Project> {
        self.update_settings(id, |settings| match webhooks {
            Some(w) => {
                settings.insert("webhooks".into(), w);
            }
            None => {
                settings.remove("webhooks");
            }
        })
        .await
    }

    /// Reads a project's settings, lets `change` edit them and writes them back whole
    /// (`PATCH /v1/projects/{id}` replaces the settings). Resources of one apply run in
    /// parallel and several edit the same settings (`rotor_project`'s user status,
    /// `rotor_project_webhooks`): one edit at a time in this provider, so none is lost.
    pub async fn update_settings(
        &self,
        id: &str,
        change: impl FnOnce(&mut Map<String, Value>),
    ) -> ApiResult<Project> {
        static EDITS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one_at_a_time = EDITS.lock().await;
        let project = self.project(id).await?;
        let mut settings = match project.settings {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        change(&mut settings);
        let body = json!({"settings": settings});
        self.call(
            Method::PATCH,
            &format!("/v1/projects/{}", segment(id)),
            Some(&body),
        )
        .await
    }

    /// `DELETE /v1/projects/{id}`.
    pub async fn delete_project(&self, id: &str) -> ApiResult<()> {
        self.send(
            Method::DELETE,
            &format!("/v1/projects/{}", segment(id)),
            None,
        )
        .await
        .map(drop)
    }

    /// `GET /v1/projects/{id}/secrets`: the connection-token HMAC secret.
    pub async fn token_hmac_secret(&self, id: &str) -> ApiResult<String> {
        let secrets: Secrets = self
            .call(
                Method::GET,
                &format!("/v1/projects/{}/secrets", segment(id)),
                None,
            )
            .await?;
        Ok(secrets.token_hmac_secret)
    }

    /// `POST /v1/projects/{id}/api-keys`.
    pub async fn create_api_key(
        &self,
        project: &str,
        name: &str,
        scope: &str,
    ) -> ApiResult<NewApiKey> {
        let body = json!({"name": name, "scope": scope});
        self.call(
            Method::POST,
            &format!("/v1/projects/{}/api-keys", segment(project)),
            Some(&body),
        )
        .await
    }

    /// `GET /v1/projects/{id}/api-keys`.
    pub async fn api_keys(&self, project: &str) -> ApiResult<Vec<ApiKey>> {
        let list: KeyList = self
            .call(
                Method::GET,
                &format!("/v1/projects/{}/api-keys", segment(project)),
                None,
            )
            .await?;
        Ok(list.api_keys)
    }

    /// `DELETE /v1/projects/{id}/api-keys/{key_id}`.
    pub async fn delete_api_key(&self, project: &str, key_id: &str) -> ApiResult<()> {
        self.send(
            Method::DELETE,
            &format!(
                "/v1/projects/{}/api-keys/{}",
                segment(project),
                segment(key_id)
            ),
            None,
        )
        .await
        .map(drop)
    }

    fn namespace_path(project: &str, name: &str) -> String {
        format!(
            "/v1/projects/{}/namespaces/{}",
            segment(project),
            segment(name)
        )
    }

    /// `GET /v1/projects/{id}/namespaces/{name}`.
    pub async fn namespace(&self, project: &str, name: &str) -> ApiResult<Namespace> {
        let path = Self::namespace_path(project, name);
        let value = self.send(Method::GET, &path, None).await?;
        namespace_from(value, &format!("GET {path}"))
    }

    /// `PUT /v1/projects/{id}/namespaces/{name}`: creates or replaces the namespace's options.
    pub async fn put_namespace(
        &self,
        project: &str,
        name: &str,
        options: &Map<String, Value>,
    ) -> ApiResult<Namespace> {
        let path = Self::namespace_path(project, name);
        let body = Value::Object(options.clone());
        let value = self.send(Method::PUT, &path, Some(&body)).await?;
        namespace_from(value, &format!("PUT {path}"))
    }

    /// `DELETE /v1/projects/{id}/namespaces/{name}`.
    pub async fn delete_namespace(&self, project: &str, name: &str) -> ApiResult<()> {
        self.send(Method::DELETE, &Self::namespace_path(project, name), None)
            .await
            .map(drop)
    }
}

/// Splits a namespace document into its id, name and channel options.
fn namespace_from(value: Value, what: &str) -> ApiResult<Namespace> {
    let decode = |detail: &str| ApiError::Decode {
        what: what.to_owned(),
        detail: detail.to_owned(),
    };
    let Value::Object(mut options) = value else {
        return Err(decode("not a JSON object"));
    };
    let id = match options.remove("id") {
        Some(Value::String(id)) => id,
        _ => return Err(decode("no namespace id")),
    };
    let name = match options.remove("name") {
        Some(Value::String(name)) => name,
        _ => return Err(decode("no namespace name")),
    };
    options.remove("updated_at");
    Ok(Namespace { id, name, options })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("prj_abc-1"), "prj_abc-1");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn endpoints_must_be_http_urls() {
        assert!(matches!(
            Client::new("rotor.example.com", "t"),
            Err(ApiError::BadEndpoint(_))
        ));
        let client = Client::new("https://rotor.example.com/", "secret-token").unwrap();
        assert_eq!(client.base, "https://rotor.example.com");
        assert!(!format!("{client:?}").contains("secret-token"));
    }

    #[test]
    fn namespace_documents_split_into_id_name_and_options() {
        let ns = namespace_from(
            json!({"id": "ns_1", "name": "chat", "updated_at": "x", "presence": true}),
            "GET",
        )
        .unwrap();
        assert_eq!(ns.id, "ns_1");
        assert_eq!(ns.name, "chat");
        assert_eq!(Value::Object(ns.options), json!({"presence": true}));
    }

    /// A one-connection-per-answer HTTP server on loopback: each accepted connection reads one
    /// request head and gets the next of `answers`; the requests' first lines come back.
    async fn serve(answers: Vec<&'static str>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for answer in answers {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    socket.read_exact(&mut byte).await.unwrap();
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                seen.push(text.lines().next().unwrap_or_default().to_owned());
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
            seen
        });
        (base, task)
    }

    #[tokio::test]
    async fn a_throttled_call_is_sent_again_after_the_wait_the_server_names() {
        let throttled = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nConnection: close\r\n\
                         Content-Type: application/json\r\nContent-Length: 47\r\n\r\n\
                         {\"error\":{\"code\":\"rate_limited\",\"message\":\"x\"}}";
        let done = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
        let (base, server) = serve(vec![throttled, done]).await;
        let client = Client::new(&base, "t").unwrap();
        let started = std::time::Instant::now();
        client.delete_project("prj_1").await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(1));
        let seen = server.await.unwrap();
        assert_eq!(seen, vec!["DELETE /v1/projects/prj_1 HTTP/1.1"; 2]);
    }

    #[tokio::test]
    async fn other_errors_are_not_sent_again() {
        let refused = "HTTP/1.1 409 Conflict\r\nConnection: close\r\nContent-Type: application/json\r\n\
                       Content-Length: 44\r\n\r\n{\"error\":{\"code\":\"conflict\",\"message\":\"no\"}}";
        let (base, server) = serve(vec![refused]).await;
        let client = Client::new(&base, "t").unwrap();
        let err = client.delete_project("prj_1").await.unwrap_err();
        assert!(matches!(err, ApiError::Api { status: 409, .. }), "{err}");
        assert_eq!(server.await.unwrap().len(), 1);
    }
}
