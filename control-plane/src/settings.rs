//! Process settings from the environment, with local-development defaults.

use std::path::PathBuf;

use crate::edge::caps::EdgeLimits;
use crate::edge::proxy_protocol::{TrustedProxies, TrustedProxiesError};

/// How the control plane is run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Postgres URL; the database is created if missing.
    pub database_url: String,
    /// Redis URL offered to tenants on the Redis engine.
    pub redis_url: Option<String>,
    /// Public listener: edge, REST API and dashboard.
    pub listen: String,
    /// Base URL users see (endpoints shown in the API and dashboard).
    pub public_url: String,
    /// The `rotor-data-plane` binary to spawn per tenant.
    pub data_plane_bin: PathBuf,
    /// `ROTOR_TENANT_PRIVATE_EGRESS=1`: tenants' proxies and JWKS fetches may reach private
    /// and loopback addresses (development; hosted tenants reach public addresses only).
    pub tenant_private_egress: bool,
    /// `ROTOR_TENANT_HOST` (e.g. `{slug}.rt.example.com`): each tenant is served from its own
    /// origin, so nothing a browser keeps for the dashboard's origin is ever sent to a tenant.
    /// Without it tenants are reached under `/t/{slug}/` of the public URL (local use).
    pub tenant_host: Option<TenantHost>,
    /// Caps on the edge's connections: `ROTOR_EDGE_MAX_CONNECTIONS` (default 90 % of the
    /// open-file soft limit less its reserve, see [`EdgeLimits::defaults`]) and
    /// `ROTOR_EDGE_MAX_CONNECTIONS_PER_ADDRESS` (default 1,000; IPv6 counted by /64).
    pub edge: EdgeLimits,
    /// `ROTOR_METRICS_LISTEN` (e.g. `127.0.0.1:9464`): the operator's listener for `GET
    /// /metrics`; none when unset. Never the public listener.
    pub metrics_listen: Option<String>,
    /// `ROTOR_SMTP_URL` (with `ROTOR_MAIL_FROM`): the relay the control plane's mail (password
    /// reset links) goes out through; none when unset, and then no mail is sent.
    pub mail: Option<crate::mail::SmtpConfig>,
}

/// `ROTOR_EDGE_TRUSTED_PROXIES`: the operator's balancers (addresses and CIDR blocks, separated
/// by commas or spaces) whose PROXY protocol headers name the client of each connection; none
/// when unset. A list that does not parse is an error: the control plane does not start.
pub fn trusted_proxies_from_env() -> Result<TrustedProxies, TrustedProxiesError> {
    TrustedProxies::parse(&std::env::var("ROTOR_EDGE_TRUSTED_PROXIES").unwrap_or_default())
}

/// A positive integer from the environment variable `key`; `default` when it is unset or
/// blank, and (with an error logged) when it is anything but a positive integer.
pub fn positive_env<T>(key: &str, default: T) -> T
where
    T: std::str::FromStr + PartialOrd + Default + std::fmt::Display + Copy,
{
    match std::env::var(key) {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<T>() {
            Ok(n) if n > T::default() => n,
            _ => {
                tracing::error!(value = %v, %default, "{key} ignored: not a positive integer");
                default
            }
        },
        _ => default,
    }
}

impl Settings {
    /// Reads `DATABASE_URL`, `REDIS_URL`, `ROTOR_LISTEN`, `ROTOR_PUBLIC_URL`,
    /// `ROTOR_DATA_PLANE_BIN`, `ROTOR_TENANT_PRIVATE_EGRESS`, `ROTOR_TENANT_HOST`, the edge's
    /// caps, `ROTOR_METRICS_LISTEN`, `ROTOR_SMTP_URL` and `ROTOR_MAIL_FROM`. The default caps follow the open-file limit in force,
    /// so read the settings after raising it.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let defaults = EdgeLimits::defaults(rotor_tenant_config::fdlimit::soft_limit());
        let cap = positive_env::<usize>;
        let listen = var("ROTOR_LISTEN").unwrap_or_else(|| "127.0.0.1:8000".into());
        let public_url = var("ROTOR_PUBLIC_URL").unwrap_or_else(|| format!("http://{listen}"));
        let mail = var("ROTOR_SMTP_URL").and_then(|url| {
            let from = var("ROTOR_MAIL_FROM");
            crate::mail::SmtpConfig::parse(&url, from.as_deref(), &public_url)
                .inspect_err(|e| tracing::error!("mail disabled: {e}"))
                .ok()
        });
        Self {
            database_url: var("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/rotor".into()),
            redis_url: var("REDIS_URL"),
            public_url,
            listen,
            data_plane_bin: var("ROTOR_DATA_PLANE_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(default_data_plane_bin),
            tenant_private_egress: var("ROTOR_TENANT_PRIVATE_EGRESS")
                .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")),
            tenant_host: var("ROTOR_TENANT_HOST").and_then(|v| {
                TenantHost::parse(&v)
                    .inspect_err(|e| tracing::error!(value = %v, "ROTOR_TENANT_HOST ignored: {e}"))
                    .ok()
            }),
            edge: EdgeLimits {
                max_connections: cap("ROTOR_EDGE_MAX_CONNECTIONS", defaults.max_connections),
                max_per_address: cap(
                    "ROTOR_EDGE_MAX_CONNECTIONS_PER_ADDRESS",
                    defaults.max_per_address,
                ),
            },
            metrics_listen: var("ROTOR_METRICS_LISTEN"),
            mail,
        }
    }

    /// Refuses a configuration whose parts contradict each other: a public URL whose host is
    /// itself a tenant host (`ROTOR_PUBLIC_URL=https://app.example.com` with
    /// `ROTOR_TENANT_HOST={slug}.example.com`) would let the project with that slug answer
    /// for the dashboard and receive its cookies.
    pub fn check(&self) -> Result<(), SettingsError> {
        let Some(tenant_host) = &self.tenant_host else {
            return Ok(());
        };
        let authority = self
            .public_url
            .split_once("://")
            .map_or(self.public_url.as_str(), |(_, rest)| rest)
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default();
        // Credentials before the host, if any, are not part of it.
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        match tenant_host.slug_of(host) {
            Some(slug) => Err(SettingsError::PublicUrlIsTenantHost {
                public_url: self.public_url.clone(),
                slug: slug.to_ascii_lowercase(),
            }),
            None => Ok(()),
        }
    }

    /// Base URL of a tenant's endpoints over HTTP: `https://{slug}.rt.example.com` with a
    /// tenant host, else `{public_url}/t/{slug}`.
    pub fn tenant_http_base(&self, slug: &str) -> String {
        match &self.tenant_host {
            Some(host) => host.base(&self.public_url, slug),
            None => format!("{}/t/{slug}", self.public_url.trim_end_matches('/')),
        }
    }

    /// [`Settings::tenant_http_base`] with `ws`/`wss` for WebSocket endpoints.
    pub fn tenant_ws_base(&self, slug: &str) -> String {
        to_ws(&self.tenant_http_base(slug))
    }

    /// The public URL with `http` replaced by `ws` (for WebSocket endpoints).
    pub fn public_ws_url(&self) -> String {
        to_ws(&self.public_url)
    }
}

fn to_ws(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url.to_owned()
    }
}

/// A configuration the control plane refuses to start with.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SettingsError {
    #[error("ROTOR_PUBLIC_URL ({public_url}) is itself a tenant host under ROTOR_TENANT_HOST (the project with slug {slug:?} would answer for the dashboard): serve the dashboard from a host outside the tenant pattern, e.g. ROTOR_TENANT_HOST={{slug}}.rt.example.com")]
    PublicUrlIsTenantHost { public_url: String, slug: String },
}

/// The host pattern tenants are served under: `{slug}.domain`, optionally with a port.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantHost {
    /// Lower-case `.domain` after the slug.
    suffix: String,
    port: Option<u16>,
}

/// Why a tenant host pattern was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TenantHostError {
    #[error("the pattern must contain {{slug}} exactly once")]
    Placeholder,
    #[error("{{slug}} must be the first label, followed by a domain of at least two labels (e.g. {{slug}}.rt.example.com)")]
    Shape,
    #[error("invalid character in the host pattern")]
    Character,
    #[error("invalid port")]
    Port,
}

impl TenantHost {
    /// Parses `{slug}.rt.example.com` or `{slug}.rt.example.com:8443`. The slug must be the
    /// whole first label, so a tenant host can never equal the dashboard's host or a parent
    /// domain that browsers would share cookies with.
    pub fn parse(pattern: &str) -> Result<Self, TenantHostError> {
        let pattern = pattern.trim().to_ascii_lowercase();
        if pattern.matches("{slug}").count() != 1 {
            return Err(TenantHostError::Placeholder);
        }
        let (host, port) = match pattern.rsplit_once(':') {
            Some((h, p)) => (
                h,
                Some(p.parse::<u16>().map_err(|_| TenantHostError::Port)?),
            ),
            None => (pattern.as_str(), None),
        };
        let Some(suffix) = host.strip_prefix("{slug}") else {
            return Err(TenantHostError::Shape);
        };
        let domain = suffix.strip_prefix('.').ok_or(TenantHostError::Shape)?;
        if domain.split('.').count() < 2 || domain.split('.').any(str::is_empty) {
            return Err(TenantHostError::Shape);
        }
        if !domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(TenantHostError::Character);
        }
        Ok(Self {
            suffix: suffix.to_owned(),
            port,
        })
    }

    /// The slug a request's `Host` header names, if it is a tenant host.
    pub fn slug_of<'a>(&self, host_header: &'a str) -> Option<&'a str> {
        let host = host_header.trim();
        // Ignore the port: what matters is the origin's host name.
        let host = match host.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.len() <= self.suffix.len() || !host.is_char_boundary(host.len() - self.suffix.len())
        {
            return None;
        }
        let (slug, tail) = host.split_at(host.len() - self.suffix.len());
        if !tail.eq_ignore_ascii_case(&self.suffix) {
            return None;
        }
        (!slug.is_empty() && slug.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .then_some(slug)
    }

    /// `scheme://{slug}.domain[:port]`, the scheme (and, when the pattern names none, the port)
    /// taken from the public URL.
    pub fn base(&self, public_url: &str, slug: &str) -> String {
        let (scheme, rest) = public_url.split_once("://").unwrap_or(("https", ""));
        let public_port = rest
            .split('/')
            .next()
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse::<u16>().ok());
        let port = self
            .port
            .or(public_port)
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        format!("{scheme}://{slug}{}{port}", self.suffix)
    }
}

/// `rotor-data-plane` next to this executable.
fn default_data_plane_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("rotor-data-plane")))
        .unwrap_or_else(|| PathBuf::from("rotor-data-plane"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_hosts_need_the_slug_as_the_first_label_of_a_real_domain() {
        assert_eq!(
            TenantHost::parse("rt.example.com"),
            Err(TenantHostError::Placeholder)
        );
        assert_eq!(
            TenantHost::parse("x{slug}.example.com"),
            Err(TenantHostError::Shape)
        );
        assert_eq!(
            TenantHost::parse("{slug}x.example.com"),
            Err(TenantHostError::Shape)
        );
        assert_eq!(TenantHost::parse("{slug}.com"), Err(TenantHostError::Shape));
        assert_eq!(
            TenantHost::parse("{slug}.a..b"),
            Err(TenantHostError::Shape)
        );
        assert_eq!(
            TenantHost::parse("{slug}.a/b.c"),
            Err(TenantHostError::Character)
        );
        assert_eq!(
            TenantHost::parse("{slug}.a.b:x"),
            Err(TenantHostError::Port)
        );
        assert!(TenantHost::parse("{slug}.rt.example.com:8443").is_ok());
    }

    #[test]
    fn tenant_hosts_name_their_slug_and_nothing_else() {
        let h = TenantHost::parse("{slug}.RT.example.com").unwrap();
        assert_eq!(h.slug_of("acme.rt.example.com"), Some("acme"));
        assert_eq!(h.slug_of("acme.rt.example.com:8443"), Some("acme"));
        assert_eq!(h.slug_of("Acme.RT.Example.com."), Some("Acme"));
        assert_eq!(h.slug_of("rt.example.com"), None);
        assert_eq!(h.slug_of(".rt.example.com"), None);
        assert_eq!(h.slug_of("a.b.rt.example.com"), None);
        assert_eq!(h.slug_of("acme.rt.example.com.evil"), None);
        assert_eq!(h.slug_of("acmert.example.com"), None);
        assert_eq!(h.slug_of("dashboard.example.com"), None);
    }

    #[test]
    fn a_public_url_inside_the_tenant_host_pattern_is_refused_at_start_up() {
        let settings = |public_url: &str, pattern: Option<&str>| Settings {
            database_url: String::new(),
            redis_url: None,
            listen: String::new(),
            public_url: public_url.into(),
            data_plane_bin: PathBuf::new(),
            tenant_private_egress: false,
            tenant_host: pattern.map(|p| TenantHost::parse(p).unwrap()),
            edge: EdgeLimits::defaults(1024),
            metrics_listen: None,
            mail: None,
        };
        for url in [
            "https://app.example.com",
            "https://App.Example.com:8443/",
            "https://user@app.example.com/dashboard",
        ] {
            let refused = settings(url, Some("{slug}.example.com")).check();
            assert!(
                matches!(&refused, Err(SettingsError::PublicUrlIsTenantHost { slug, .. }) if slug == "app"),
                "{url}: {refused:?}"
            );
        }
        for (url, pattern) in [
            ("https://app.example.com", Some("{slug}.rt.example.com")),
            ("https://example.com", Some("{slug}.example.com")),
            ("https://app.example.com", None),
            ("http://127.0.0.1:8000", Some("{slug}.localhost.test")),
        ] {
            assert_eq!(settings(url, pattern).check(), Ok(()), "{url} {pattern:?}");
        }
    }

    #[test]
    fn tenant_bases_follow_the_public_scheme_and_port() {
        let h = TenantHost::parse("{slug}.rt.example.com").unwrap();
        assert_eq!(
            h.base("https://rotor.example.com", "acme"),
            "https://acme.rt.example.com"
        );
        assert_eq!(
            h.base("http://127.0.0.1:8000/", "acme"),
            "http://acme.rt.example.com:8000"
        );
        let h = TenantHost::parse("{slug}.rt.example.com:9443").unwrap();
        assert_eq!(
            h.base("https://x.example.com:8000", "a"),
            "https://a.rt.example.com:9443"
        );
        let s = Settings {
            database_url: String::new(),
            redis_url: None,
            listen: String::new(),
            public_url: "https://rotor.example.com".into(),
            data_plane_bin: PathBuf::new(),
            tenant_private_egress: false,
            tenant_host: Some(h),
            edge: EdgeLimits::defaults(1024),
            metrics_listen: None,
            mail: None,
        };
        assert_eq!(s.tenant_ws_base("a"), "wss://a.rt.example.com:9443");
        let s = Settings {
            tenant_host: None,
            ..s
        };
        assert_eq!(s.tenant_ws_base("a"), "wss://rotor.example.com/t/a");
    }
}
