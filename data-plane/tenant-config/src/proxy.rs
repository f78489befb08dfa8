//! Proxies to the tenant's application backend, with Centrifugo v6's option names:
//! `client.proxy.connect` / `client.proxy.refresh` (each with `enabled`),
//! `channel.proxy.{subscribe,publish,sub_refresh,subscribe_stream}` (the proxies namespaces use
//! under the name `default`; a subscribe stream proxy must be gRPC), `rpc.proxy` with `rpc.without_namespace` / `rpc.namespaces`, and the
//! top-level list of named `proxies` that `*_proxy_name` options refer to. A proxy speaks HTTP
//! (JSON) to an `http://` or `https://` endpoint and gRPC (Centrifugo's proxy protocol) to a
//! `grpc://host:port` endpoint; `http.*` options are for the first, `grpc.*` for the second.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::channel::ChannelOptions;
use crate::duration::ConfigDuration;
use crate::load::ConfigError;
use crate::sections::TenantConfig;

pub use crate::grpc_proxy::{grpc_authority, ProxyGrpc, ProxyGrpcTls};
use crate::grpc_proxy::{valid_metadata_key, validate_grpc};

/// The proxy name that means "this section's own proxy" (`channel.proxy.subscribe`, `rpc.proxy`).
pub const DEFAULT_PROXY_NAME: &str = "default";

/// Names a named proxy may have.
pub const PROXY_NAME_PATTERN: &str = "^[-a-zA-Z0-9_.]{2,}$";

/// Longest error message or disconnect reason a status transform may carry (a WebSocket close
/// reason holds 123 bytes).
const MAX_REASON_LEN: usize = 123;

fn default_proxy_name() -> String {
    DEFAULT_PROXY_NAME.to_owned()
}

/// Declares the options every proxy has once and derives the three shapes Centrifugo uses: a
/// plain proxy, one with an `enabled` switch (connect, refresh) and one with a `name` (the
/// `proxies` list). Each field is spelled out (no `flatten`), so unknown keys are reported with
/// their exact path.
macro_rules! proxy_options {
    ($( $(#[doc = $doc:literal])* $field:ident : $ty:ty = $default:expr ),* $(,)?) => {
        /// How to reach one backend endpoint and what to send it.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct ProxyOptions {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for ProxyOptions {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        /// `client.proxy.connect` and `client.proxy.refresh`: a proxy that is off unless enabled.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct SwitchedProxy {
            /// Use this proxy.
            pub enabled: bool,
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for SwitchedProxy {
            fn default() -> Self {
                Self::new(false, ProxyOptions::default())
            }
        }

        impl SwitchedProxy {
            /// A proxy with the given switch and options.
            pub fn new(enabled: bool, options: ProxyOptions) -> Self {
                Self { enabled, $( $field: options.$field, )* }
            }
            /// The proxy's options.
            pub fn options(&self) -> ProxyOptions {
                ProxyOptions { $( $field: self.$field.clone(), )* }
            }
        }

        /// An entry of the top-level `proxies` list, referred to by `*_proxy_name` options.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct NamedProxy {
            /// Unique name, `^[-a-zA-Z0-9_.]{2,}$`; `default` is reserved.
            pub name: String,
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for NamedProxy {
            fn default() -> Self {
                Self::new(String::new(), ProxyOptions::default())
            }
        }

        impl NamedProxy {
            /// A named proxy with the given options.
            pub fn new(name: impl Into<String>, options: ProxyOptions) -> Self {
                Self { name: name.into(), $( $field: options.$field, )* }
            }
            /// The proxy's options.
            pub fn options(&self) -> ProxyOptions {
                ProxyOptions { $( $field: self.$field.clone(), )* }
            }
        }
    };
}

proxy_options! {
    /// `http://` or `https://` URL the request is POSTed to, or `grpc://host:port` of a
    /// backend serving Centrifugo's proxy service.
    endpoint: String = String::new(),
    /// How long to wait for the backend's whole answer.
    timeout: ConfigDuration = ConfigDuration::from_secs(1),
    /// Headers of the client's connection request (e.g. the WebSocket upgrade) to forward.
    http_headers: Vec<String> = Vec::new(),
    /// Metadata keys to forward to a gRPC proxy: a client connection's request headers of these
    /// names go as metadata, like `http_headers` (Rotor's client transports all run over HTTP,
    /// so a connection's metadata is its request headers).
    grpc_metadata: Vec<String> = Vec::new(),
    /// Headers to forward from the `headers` map of the client's connect command (client-set).
    emulated_headers: Vec<String> = Vec::new(),
    /// Send payloads base64-encoded (`b64data`, `encoding: "binary"`) instead of as JSON.
    binary_encoding: bool = false,
    /// Add the connection's `meta` to every request but connect.
    include_connection_meta: bool = false,
    /// HTTP-specific options.
    http: ProxyHttp = ProxyHttp::default(),
    /// gRPC-specific options.
    grpc: ProxyGrpc = ProxyGrpc::default(),
}

impl ProxyOptions {
    /// A proxy to `endpoint` with default options.
    pub fn to(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            ..Default::default()
        }
    }
}

/// `http.*` of a proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ProxyHttp {
    /// Headers added to every request (forwarded client headers win).
    pub static_headers: BTreeMap<String, String>,
    /// Turn a non-200 HTTP status into an error or a disconnect for the client.
    pub status_to_code_transforms: Vec<StatusToCodeTransform>,
}

/// One status transform: exactly one of `to_error` and `to_disconnect` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct StatusToCodeTransform {
    pub status_code: u16,
    pub to_error: TransformError,
    pub to_disconnect: TransformDisconnect,
}

/// The client error a status becomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TransformError {
    pub code: u32,
    pub message: String,
    pub temporary: bool,
}

/// The disconnect a status becomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TransformDisconnect {
    pub code: u32,
    pub reason: String,
}

/// `client.proxy.*`: connection-wide proxies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ClientProxies {
    /// Asked to authenticate connections that come without a token.
    pub connect: SwitchedProxy,
    /// Asked to extend connections when they expire (instead of the client sending a token).
    pub refresh: SwitchedProxy,
}

/// `channel.proxy.*`: the proxies namespaces refer to as `default`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ChannelProxies {
    pub subscribe: ProxyOptions,
    pub publish: ProxyOptions,
    pub sub_refresh: ProxyOptions,
    /// The gRPC backend of subscribe streams (`grpc://` only).
    pub subscribe_stream: ProxyOptions,
}

/// `rpc.*`: how client `rpc` commands reach the backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcSection {
    /// The RPC proxy called `default`.
    pub proxy: ProxyOptions,
    /// Options of methods without a namespace.
    pub without_namespace: RpcOptions,
    /// RPC namespaces: methods `name:…` take these options.
    pub namespaces: Vec<RpcNamespace>,
    /// Separates an RPC namespace from the method name.
    pub namespace_boundary: String,
}

impl Default for RpcSection {
    fn default() -> Self {
        Self {
            proxy: ProxyOptions::default(),
            without_namespace: RpcOptions::default(),
            namespaces: Vec::new(),
            namespace_boundary: ":".into(),
        }
    }
}

/// Options of a group of RPC methods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcOptions {
    /// Send these methods to the backend.
    pub proxy_enabled: bool,
    /// Which proxy: `default` (`rpc.proxy`) or a named one.
    pub proxy_name: String,
}

impl Default for RpcOptions {
    fn default() -> Self {
        Self {
            proxy_enabled: false,
            proxy_name: default_proxy_name(),
        }
    }
}

/// A named RPC namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcNamespace {
    /// Namespace name, `^[-a-zA-Z0-9_]{2,}$`.
    pub name: String,
    /// Send these methods to the backend.
    pub proxy_enabled: bool,
    /// Which proxy: `default` (`rpc.proxy`) or a named one.
    pub proxy_name: String,
}

impl Default for RpcNamespace {
    fn default() -> Self {
        Self {
            name: String::new(),
            proxy_enabled: false,
            proxy_name: default_proxy_name(),
        }
    }
}

impl RpcNamespace {
    /// This namespace's options.
    pub fn options(&self) -> RpcOptions {
        RpcOptions {
            proxy_enabled: self.proxy_enabled,
            proxy_name: self.proxy_name.clone(),
        }
    }
}

/// The channel events a namespace can send to a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelProxyKind {
    Subscribe,
    Publish,
    SubRefresh,
    /// A gRPC stream per subscription (unidirectional or bidirectional).
    SubscribeStream,
}

impl ChannelProxyKind {
    /// Every kind.
    pub const ALL: [Self; 4] = [
        Self::Subscribe,
        Self::Publish,
        Self::SubRefresh,
        Self::SubscribeStream,
    ];

    /// The option name prefix (`subscribe`, `publish`, `sub_refresh`, `subscribe_stream`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subscribe => "subscribe",
            Self::Publish => "publish",
            Self::SubRefresh => "sub_refresh",
            Self::SubscribeStream => "subscribe_stream",
        }
    }

    /// Whether `options` turn this proxy on, and the proxy name they pick.
    pub fn of(self, options: &ChannelOptions) -> (bool, &str) {
        match self {
            Self::Subscribe => (
                options.subscribe_proxy_enabled,
                &options.subscribe_proxy_name,
            ),
            Self::Publish => (options.publish_proxy_enabled, &options.publish_proxy_name),
            Self::SubRefresh => (
                options.sub_refresh_proxy_enabled,
                &options.sub_refresh_proxy_name,
            ),
            Self::SubscribeStream => (
                options.subscribe_stream_proxy_enabled,
                &options.subscribe_stream_proxy_name,
            ),
        }
    }
}

impl ChannelProxies {
    /// The `default` proxy of one kind.
    pub fn get(&self, kind: ChannelProxyKind) -> &ProxyOptions {
        match kind {
            ChannelProxyKind::Subscribe => &self.subscribe,
            ChannelProxyKind::Publish => &self.publish,
            ChannelProxyKind::SubRefresh => &self.sub_refresh,
            ChannelProxyKind::SubscribeStream => &self.subscribe_stream,
        }
    }
}

/// Checks a proxy name against [`PROXY_NAME_PATTERN`].
fn valid_proxy_name(name: &str) -> bool {
    name.len() >= 2
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// An HTTP header name (RFC 9110 token).
pub(crate) fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// An HTTP header value Rotor can send (visible ASCII, spaces and tabs).
pub(crate) fn valid_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// Validates one proxy found at `path`. `used` proxies need an endpoint; any endpoint must be
/// HTTP(S).
fn validate_proxy(path: &str, p: &ProxyOptions, used: bool) -> Result<(), ConfigError> {
    let at = |field: &str| format!("{path}.{field}");
    let endpoint = p.endpoint.trim();
    let grpc = endpoint.starts_with("grpc://");
    if endpoint.is_empty() {
        if used {
            return Err(ConfigError::invalid(
                at("endpoint"),
                "is required for an enabled proxy",
            ));
        }
    } else if grpc {
        if grpc_authority(endpoint).is_none() {
            return Err(ConfigError::invalid(
                at("endpoint"),
                "a gRPC endpoint is grpc://host:port (a host name or IP address and a port, nothing after)",
            ));
        }
    } else if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(ConfigError::invalid(
            at("endpoint"),
            "must be an http:// or https:// URL, or grpc://host:port for a gRPC proxy",
        ));
    }
    if grpc && p.http != ProxyHttp::default() {
        return Err(ConfigError::invalid(
            at("http"),
            "HTTP options do not apply to a grpc:// endpoint (see `grpc`)",
        ));
    }
    if !grpc && !endpoint.is_empty() && p.grpc.is_set() {
        return Err(ConfigError::invalid(
            at("grpc"),
            "gRPC options apply to grpc:// endpoints only",
        ));
    }
    validate_grpc(&at("grpc"), &p.grpc)?;
    for (i, name) in p.grpc_metadata.iter().enumerate() {
        if !valid_metadata_key(name) {
            return Err(ConfigError::invalid(
                format!("{}[{i}]", at("grpc_metadata")),
                format!(
                    "{name:?} is not a valid gRPC metadata key (a header name, not ending in -bin)"
                ),
            ));
        }
    }
    if p.timeout.is_zero() {
        return Err(ConfigError::invalid(
            at("timeout"),
            "must be greater than 0",
        ));
    }
    for (field, names) in [
        ("http_headers", &p.http_headers),
        ("emulated_headers", &p.emulated_headers),
    ] {
        for (i, name) in names.iter().enumerate() {
            if !valid_header_name(name) {
                return Err(ConfigError::invalid(
                    format!("{}[{i}]", at(field)),
                    format!("{name:?} is not a valid HTTP header name"),
                ));
            }
        }
    }
    for (name, value) in &p.http.static_headers {
        if !valid_header_name(name) || !valid_header_value(value) {
            return Err(ConfigError::invalid(
                format!("{}.{name}", at("http.static_headers")),
                "is not a valid HTTP header",
            ));
        }
    }
    for (i, t) in p.http.status_to_code_transforms.iter().enumerate() {
        let here = format!("{}[{i}]", at("http.status_to_code_transforms"));
        let bad = |m: &str| Err(ConfigError::invalid(here.clone(), m.to_owned()));
        if t.status_code == 0 {
            return bad("status_code is required");
        }
        match (t.to_error.code > 0, t.to_disconnect.code > 0) {
            (false, false) => return bad("set to_error.code or to_disconnect.code"),
            (true, true) => return bad("set only one of to_error and to_disconnect"),
            _ => {}
        }
        if t.to_disconnect.code > 0 && !(3000..=4999).contains(&t.to_disconnect.code) {
            return bad("to_disconnect.code must be between 3000 and 4999");
        }
        for text in [&t.to_error.message, &t.to_disconnect.reason] {
            if !text.is_ascii() || text.len() > MAX_REASON_LEN {
                return bad("messages and reasons must be ASCII and at most 123 bytes");
            }
        }
    }
    Ok(())
}

/// Validates every proxy and every reference to one.
pub(crate) fn validate(config: &TenantConfig) -> Result<(), ConfigError> {
    let client = &config.client.proxy;
    validate_proxy(
        "client.proxy.connect",
        &client.connect.options(),
        client.connect.enabled,
    )?;
    validate_proxy(
        "client.proxy.refresh",
        &client.refresh.options(),
        client.refresh.enabled,
    )?;

    let mut names: Vec<&str> = Vec::new();
    for (i, p) in config.proxies.iter().enumerate() {
        let path = format!("proxies[{i}]");
        if p.name == DEFAULT_PROXY_NAME {
            return Err(ConfigError::invalid(
                format!("{path}.name"),
                "the name \"default\" is reserved",
            ));
        }
        if !valid_proxy_name(&p.name) {
            return Err(ConfigError::invalid(
                format!("{path}.name"),
                format!("proxy name {:?} must match {PROXY_NAME_PATTERN}", p.name),
            ));
        }
        if names.contains(&p.name.as_str()) {
            return Err(ConfigError::invalid(
                format!("{path}.name"),
                format!("proxy {:?} is defined twice", p.name),
            ));
        }
        names.push(&p.name);
        validate_proxy(&path, &p.options(), true)?;
    }

    let channel = &config.channel;
    let mut scopes: Vec<(String, ChannelOptions)> = vec![(
        "channel.without_namespace".into(),
        channel.without_namespace.clone(),
    )];
    scopes.extend(
        channel
            .namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| (format!("channel.namespaces[{i}]"), ns.options())),
    );
    let mut used_defaults = [false; ChannelProxyKind::ALL.len()];
    for (path, options) in &scopes {
        crate::stream_proxy::check_scope(path, options, config)?;
        for (k, kind) in ChannelProxyKind::ALL.into_iter().enumerate() {
            let (enabled, name) = kind.of(options);
            let field = format!("{path}.{}_proxy_name", kind.as_str());
            if name != DEFAULT_PROXY_NAME && !names.contains(&name) {
                return Err(ConfigError::invalid(
                    field,
                    format!("no proxy named {name:?} in `proxies`"),
                ));
            }
            if enabled && name == DEFAULT_PROXY_NAME {
                used_defaults[k] = true;
            }
        }
    }
    for (k, kind) in ChannelProxyKind::ALL.into_iter().enumerate() {
        validate_proxy(
            &format!("channel.proxy.{}", kind.as_str()),
            channel.proxy.get(kind),
            used_defaults[k],
        )?;
    }
    crate::stream_proxy::check_default(&channel.proxy.subscribe_stream)?;

    let rpc = &config.rpc;
    if rpc.namespace_boundary.is_empty() {
        return Err(ConfigError::invalid(
            "rpc.namespace_boundary",
            "must not be empty",
        ));
    }
    let mut rpc_scopes = vec![(
        "rpc.without_namespace".to_owned(),
        rpc.without_namespace.clone(),
    )];
    let mut seen = Vec::new();
    for (i, ns) in rpc.namespaces.iter().enumerate() {
        let path = format!("rpc.namespaces[{i}]");
        crate::validate::validate_namespace_name(&ns.name)
            .map_err(|m| ConfigError::invalid(format!("{path}.name"), m))?;
        if seen.contains(&ns.name.as_str()) {
            return Err(ConfigError::invalid(
                format!("{path}.name"),
                format!("RPC namespace {:?} is defined twice", ns.name),
            ));
        }
        seen.push(&ns.name);
        rpc_scopes.push((path, ns.options()));
    }
    let mut rpc_default_used = false;
    for (path, o) in &rpc_scopes {
        if o.proxy_name != DEFAULT_PROXY_NAME && !names.contains(&o.proxy_name.as_str()) {
            return Err(ConfigError::invalid(
                format!("{path}.proxy_name"),
                format!("no proxy named {:?} in `proxies`", o.proxy_name),
            ));
        }
        rpc_default_used |= o.proxy_enabled && o.proxy_name == DEFAULT_PROXY_NAME;
    }
    validate_proxy("rpc.proxy", &rpc.proxy, rpc_default_used)
}

#[cfg(test)]
mod tests {
    use crate::test_support::refused;
    use crate::{Format, TenantConfig};

    #[test]
    fn a_centrifugo_v6_proxy_config_loads() {
        let text = r#"{
            "client": {"proxy": {
                "connect": {"enabled": true, "endpoint": "http://app/connect", "timeout": "2s",
                            "http_headers": ["Cookie", "Authorization"], "grpc_metadata": []},
                "refresh": {"enabled": true, "endpoint": "http://app/refresh"}
            }},
            "channel": {
                "proxy": {"subscribe": {"endpoint": "http://app/subscribe"},
                          "publish": {"endpoint": "https://app/publish", "binary_encoding": true}},
                "namespaces": [{"name": "chat", "subscribe_proxy_enabled": true,
                                "publish_proxy_enabled": true, "publish_proxy_name": "special"}]
            },
            "proxies": [{"name": "special", "endpoint": "http://other/publish",
                         "http": {"static_headers": {"X-Tenant": "t1"},
                                  "status_to_code_transforms": [{"status_code": 404, "to_error": {"code": 404, "message": "not found"}}]}}],
            "rpc": {"proxy": {"endpoint": "http://app/rpc"},
                    "without_namespace": {"proxy_enabled": true},
                    "namespaces": [{"name": "admin", "proxy_enabled": true, "proxy_name": "special"}]}
        }"#;
        let c = TenantConfig::parse(text, Format::Json).unwrap().config;
        assert!(c.client.proxy.connect.enabled);
        assert_eq!(c.client.proxy.connect.timeout.get().as_secs(), 2);
        assert_eq!(c.client.proxy.refresh.timeout.get().as_secs(), 1);
        assert_eq!(c.proxies[0].http.static_headers["X-Tenant"], "t1");
        assert_eq!(c.rpc.namespaces[0].proxy_name, "special");
        let back = TenantConfig::parse(&c.to_json(), Format::Json).unwrap();
        assert_eq!(back.config, c);
    }

    #[test]
    fn unknown_proxy_options_are_refused_with_their_path() {
        let (path, _) =
            refused(r#"{"client": {"proxy": {"connect": {"endpoint": "http://a", "frob": 1}}}}"#);
        assert_eq!(path, "client.proxy.connect.frob");
        let (path, _) = refused(
            r#"{"channel": {"proxy": {"subscribe_stream": {"endpoint": "grpc://b:9000", "frob": 1}}}}"#,
        );
        assert_eq!(path, "channel.proxy.subscribe_stream.frob");
    }

    #[test]
    fn an_enabled_proxy_needs_an_http_or_grpc_endpoint() {
        assert_eq!(
            refused(r#"{"client": {"proxy": {"connect": {"enabled": true}}}}"#).0,
            "client.proxy.connect.endpoint"
        );
        for bad in [
            "grpc://backend",
            "grpc://backend:0",
            "grpc://backend:9000/path",
            "grpc://user@backend:9000",
            "grpc://:9000",
            "grpc://[not-v6]:9000",
            "tcp://backend:9000",
        ] {
            let (path, msg) = refused(&format!(
                r#"{{"client": {{"proxy": {{"refresh": {{"endpoint": "{bad}"}}}}}}}}"#
            ));
            assert_eq!(path, "client.proxy.refresh.endpoint", "{bad}");
            assert!(msg.contains("grpc://host:port"), "{bad}: {msg}");
        }
        assert_eq!(
            refused(
                r#"{"channel": {"namespaces": [{"name": "ns", "subscribe_proxy_enabled": true}]}}"#
            )
            .0,
            "channel.proxy.subscribe.endpoint"
        );
        assert_eq!(
            refused(r#"{"rpc": {"without_namespace": {"proxy_enabled": true}}}"#).0,
            "rpc.proxy.endpoint"
        );
    }

    #[test]
    fn grpc_endpoints_load_with_centrifugo_v6_grpc_options() {
        let text = r#"{
            "client": {"proxy": {"connect": {"enabled": true, "endpoint": "grpc://backend:9000",
                "grpc_metadata": ["x-request-id"], "http_headers": ["authorization"],
                "grpc": {"credentials_key": "x-api-key", "credentials_value": "s3cret",
                         "compression": true, "static_metadata": {"x-tenant": "t1"},
                         "tls": {"enabled": true, "server_name": "backend.internal",
                                 "server_ca_pem": "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n"}}}}},
            "proxies": [{"name": "v6", "endpoint": "grpc://[::1]:10001"}]
        }"#;
        let c = TenantConfig::parse(text, Format::Json).unwrap().config;
        let g = &c.client.proxy.connect.grpc;
        assert!(g.compression && g.tls.enabled);
        assert_eq!(g.static_metadata["x-tenant"], "t1");
        assert_eq!(
            super::grpc_authority("grpc://[::1]:10001"),
            Some(("[::1]", 10001))
        );
        assert_eq!(
            super::grpc_authority("grpc://b.example:1/"),
            Some(("b.example", 1))
        );
        let back = TenantConfig::parse(&c.to_json(), Format::Json).unwrap();
        assert_eq!(back.config, c);
    }

    #[test]
    fn bad_grpc_options_are_refused_with_their_path() {
        let at = |proxy: &str| {
            refused(&format!(
                r#"{{"client": {{"proxy": {{"connect": {{"enabled": true, {proxy}}}}}}}}}"#
            ))
        };
        for (proxy, path) in [
            (
                r#""endpoint": "http://a", "grpc": {"compression": true}"#,
                "client.proxy.connect.grpc",
            ),
            (
                r#""endpoint": "grpc://a:1", "http": {"static_headers": {"x": "y"}}"#,
                "client.proxy.connect.http",
            ),
            (
                r#""endpoint": "grpc://a:1", "grpc_metadata": ["trace-bin"]"#,
                "client.proxy.connect.grpc_metadata[0]",
            ),
            (
                r#""endpoint": "grpc://a:1", "grpc": {"static_metadata": {"bad key": "v"}}"#,
                "client.proxy.connect.grpc.static_metadata.bad key",
            ),
            (
                r#""endpoint": "grpc://a:1", "grpc": {"credentials_value": "v"}"#,
                "client.proxy.connect.grpc.credentials_value",
            ),
            (
                r#""endpoint": "grpc://a:1", "grpc": {"tls": {"server_name": "b"}}"#,
                "client.proxy.connect.grpc.tls",
            ),
            (
                r#""endpoint": "grpc://a:1", "grpc": {"tls": {"enabled": true, "server_ca_pem": "/etc/ssl/ca.pem"}}"#,
                "client.proxy.connect.grpc.tls.server_ca_pem",
            ),
            (
                r#""endpoint": "grpc://a:1", "grpc": {"tls": {"enabled": true, "cert_pem": "-----BEGIN CERTIFICATE-----"}}"#,
                "client.proxy.connect.grpc.tls",
            ),
            (
                r#""endpoint": "grpc://a:1", "grpc": {"tls": {"enabled": true, "cert_pem_file": "/etc/passwd"}}"#,
                "client.proxy.connect.grpc.tls.cert_pem_file",
            ),
        ] {
            assert_eq!(at(proxy).0, path, "{proxy}");
        }
    }

    #[test]
    fn proxy_names_must_exist_and_be_unique() {
        assert_eq!(
            refused(r#"{"channel": {"without_namespace": {"publish_proxy_name": "nope"}}}"#).0,
            "channel.without_namespace.publish_proxy_name"
        );
        assert_eq!(
            refused(r#"{"proxies": [{"name": "default", "endpoint": "http://a"}]}"#).0,
            "proxies[0].name"
        );
        assert_eq!(
            refused(r#"{"proxies": [{"name": "ab", "endpoint": "http://a"}, {"name": "ab", "endpoint": "http://b"}]}"#).0,
            "proxies[1].name"
        );
        assert_eq!(
            refused(r#"{"rpc": {"namespaces": [{"name": "x1", "proxy_name": "missing"}]}}"#).0,
            "rpc.namespaces[0].proxy_name"
        );
    }

    #[test]
    fn bad_headers_and_transforms_are_refused_with_their_path() {
        assert_eq!(
            refused(r#"{"client": {"proxy": {"connect": {"endpoint": "http://a", "http_headers": ["ok", "bad header"]}}}}"#).0,
            "client.proxy.connect.http_headers[1]"
        );
        assert_eq!(
            refused(r#"{"rpc": {"proxy": {"endpoint": "http://a", "http": {"status_to_code_transforms": [{"status_code": 500}]}}}}"#).0,
            "rpc.proxy.http.status_to_code_transforms[0]"
        );
    }
}
