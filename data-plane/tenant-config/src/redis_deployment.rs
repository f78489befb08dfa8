//! The forms of the Redis engine's deployment (`engine.redis.*`): standalone servers in
//! `address` (one, or several as shards), a Redis Cluster named by its seed nodes in
//! `cluster_address`, or a Sentinel-managed primary, either as Centrifugo's `sentinel_address`
//! with `sentinel_master_name`, or as a `redis+sentinel://` (`rediss+sentinel://` for TLS)
//! address, which may stand for one shard among others in `address`:
//! `redis+sentinel://[user:password@]host:port[,host:port…]/<master name>[/<db>]`, the
//! credentials and database being those of the primary.

use serde_json::{Map, Value};

use crate::load::ConfigError;
use crate::sections::{RedisEngine, TenantConfig};

/// The default port of a Sentinel.
pub const SENTINEL_PORT: u16 = 26379;

/// A `redis+sentinel://` address, taken apart (credentials still percent-encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// `rediss+sentinel://`: TLS to the Sentinels and to the primary.
    pub tls: bool,
    /// `user:password` of the primary as written (may be empty).
    pub userinfo: String,
    /// The Sentinels as `host:port`.
    pub sentinels: Vec<String>,
    /// The group the Sentinels monitor.
    pub master_name: String,
    /// The primary's database number (0 when not given).
    pub db: i64,
}

/// The Redis engine that a deployment's options (the keys of `engine.redis`) describe, read as
/// the loader reads `engine.redis`: an unknown or refused option is an error naming its path
/// (`engine.redis.…`). Not validated alone: the whole config it goes into is.
pub fn engine_from_options(options: &Map<String, Value>) -> Result<RedisEngine, ConfigError> {
    let mut engine = Map::new();
    engine.insert("redis".to_owned(), Value::Object(options.clone()));
    let mut config = Map::new();
    config.insert("engine".to_owned(), Value::Object(engine));
    Ok(
        TenantConfig::from_value_unvalidated(&Value::Object(config))?
            .engine
            .redis,
    )
}

/// Whether `address` is a Sentinel URL.
pub fn is_sentinel_url(address: &str) -> bool {
    let a = address.trim_start();
    a.starts_with("redis+sentinel://") || a.starts_with("rediss+sentinel://")
}

/// `host:port` (or `[v6]:port`) with a non-empty host and a valid port, `default_port` when
/// the port is left out.
fn host_port(s: &str, default_port: u16) -> Option<String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse::<u16>().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (format!("[{host}]"), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse::<u16>().ok()?),
            None => (s.to_owned(), default_port),
        }
    };
    let valid = !host.is_empty()
        && port != 0
        && !host.contains(['/', '@', '?', '#', ' ', ','])
        && (host.starts_with('[') || !host.contains(':'));
    valid.then(|| format!("{host}:{port}"))
}

/// Takes a `redis+sentinel://` address apart; the error says what is wrong, never the
/// credentials.
pub fn parse_sentinel_url(address: &str) -> Result<SentinelUrl, String> {
    let a = address.trim();
    let (tls, rest) = if let Some(r) = a.strip_prefix("rediss+sentinel://") {
        (true, r)
    } else if let Some(r) = a.strip_prefix("redis+sentinel://") {
        (false, r)
    } else {
        return Err("not a redis+sentinel:// address".into());
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (u.to_owned(), h),
        None => (String::new(), authority),
    };
    let sentinels = hosts
        .split(',')
        .map(|h| host_port(h.trim(), SENTINEL_PORT))
        .collect::<Option<Vec<_>>>()
        .filter(|s| !s.is_empty())
        .ok_or(
            "a redis+sentinel:// address lists the Sentinels as host:port separated by commas",
        )?;
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut segments = path.split('/');
    let master_name = segments.next().unwrap_or("").to_owned();
    if master_name.is_empty() {
        return Err(
            "a redis+sentinel:// address names the master group after the Sentinels: redis+sentinel://host:26379/mymaster"
                .into(),
        );
    }
    let db = match segments.next() {
        None | Some("") => 0,
        Some(d) => d
            .parse::<i64>()
            .ok()
            .filter(|d| *d >= 0)
            .ok_or("the database after the master name must be a number")?,
    };
    if segments.next().is_some() {
        return Err("a redis+sentinel:// address has at most a master name and a database".into());
    }
    Ok(SentinelUrl {
        tls,
        userinfo,
        sentinels,
        master_name,
        db,
    })
}

/// A seed node or Sentinel written as `host:port` or as a `redis://`/`rediss://` URL: the URL
/// to connect with.
pub fn node_url(address: &str) -> String {
    let a = address.trim();
    if a.contains("://") {
        a.to_owned()
    } else {
        format!("redis://{a}")
    }
}

fn invalid(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(path, message.into())
}

/// Checks that `engine.redis` names one deployment form, completely.
pub fn validate(redis: &RedisEngine) -> Result<(), ConfigError> {
    let cluster = !redis.cluster_address.0.is_empty();
    let sentinel = !redis.sentinel_address.0.is_empty();
    let address_set = !redis.address_is_default();
    if cluster && (sentinel || address_set) {
        return Err(invalid(
            "engine.redis.cluster_address",
            "set only one of `address`, `cluster_address` and `sentinel_address`",
        ));
    }
    if cluster && redis.prefix.contains(['{', '}']) {
        return Err(invalid(
            "engine.redis.prefix",
            "must not hold `{` or `}` on a Redis Cluster: the keys' hash tags are Rotor's",
        ));
    }
    if sentinel && address_set {
        return Err(invalid(
            "engine.redis.sentinel_address",
            "set only one of `address`, `cluster_address` and `sentinel_address`",
        ));
    }
    for (path, list) in [
        ("engine.redis.cluster_address", &redis.cluster_address.0),
        ("engine.redis.sentinel_address", &redis.sentinel_address.0),
    ] {
        for a in list {
            let a = a.trim();
            let ok = if let Some(rest) = a
                .strip_prefix("redis://")
                .or_else(|| a.strip_prefix("rediss://"))
            {
                let authority = rest.split(['/', '?']).next().unwrap_or("");
                let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                host_port(hostport, 6379).is_some()
            } else {
                !a.contains("://") && host_port(a, 6379).is_some()
            };
            if !ok {
                return Err(invalid(
                    path,
                    "each entry is host:port or a redis:// or rediss:// URL",
                ));
            }
        }
    }
    if sentinel && redis.sentinel_master_name.trim().is_empty() {
        return Err(invalid(
            "engine.redis.sentinel_master_name",
            "names the group the Sentinels of `sentinel_address` monitor; it must be set",
        ));
    }
    let sentinel_urls = redis
        .address
        .0
        .iter()
        .filter(|a| is_sentinel_url(a))
        .count();
    if !sentinel {
        for (path, set) in [
            (
                "engine.redis.sentinel_master_name",
                !redis.sentinel_master_name.is_empty(),
            ),
            (
                "engine.redis.sentinel_user",
                !redis.sentinel_user.is_empty(),
            ),
            (
                "engine.redis.sentinel_password",
                !redis.sentinel_password.is_empty(),
            ),
        ] {
            if set && (path.ends_with("master_name") || sentinel_urls == 0) {
                return Err(invalid(
                    path,
                    "only applies with Sentinels (`sentinel_address` or a redis+sentinel:// address)",
                ));
            }
        }
    }
    for a in redis.address.0.iter().filter(|a| is_sentinel_url(a)) {
        parse_sentinel_url(a).map_err(|m| invalid("engine.redis.address", m))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_options_read_as_the_engine_and_unknown_ones_are_refused_with_their_path() {
        let options = serde_json::json!({
            "cluster_address": ["10.0.0.1:7000", "10.0.0.2:7000"],
            "tls": {"enabled": true},
        });
        let Value::Object(options) = options else {
            unreachable!("an object literal")
        };
        let engine = engine_from_options(&options).unwrap();
        assert_eq!(engine.cluster_address.0.len(), 2);
        assert!(engine.tls.enabled);
        assert_eq!(engine.prefix, RedisEngine::default().prefix);
        let mut bad = options.clone();
        bad.insert("frobnicate".into(), Value::Bool(true));
        let err = engine_from_options(&bad).unwrap_err();
        assert_eq!(err.path(), Some("engine.redis.frobnicate"), "{err}");
    }

    #[test]
    fn sentinel_urls_are_taken_apart() {
        let u = parse_sentinel_url("redis+sentinel://:pw@10.0.0.1:26379,s2/mymaster/2").unwrap();
        assert_eq!(
            u,
            SentinelUrl {
                tls: false,
                userinfo: ":pw".into(),
                sentinels: vec!["10.0.0.1:26379".into(), "s2:26379".into()],
                master_name: "mymaster".into(),
                db: 2,
            }
        );
        let u = parse_sentinel_url("rediss+sentinel://[::1]:5000/m").unwrap();
        assert!(u.tls);
        assert_eq!(u.sentinels, vec!["[::1]:5000".to_owned()]);
        for bad in [
            "redis+sentinel://h:1",
            "redis+sentinel://h:1/",
            "redis+sentinel:///m",
            "redis+sentinel://h:notaport/m",
            "redis+sentinel://h:1/m/x",
            "redis+sentinel://h:1/m/1/2",
            "redis://h:1/m",
        ] {
            assert!(parse_sentinel_url(bad).is_err(), "{bad}");
        }
        let err = parse_sentinel_url("redis+sentinel://u:secretpw@h:x/m").unwrap_err();
        assert!(!err.contains("secretpw"), "{err}");
    }

    fn engine(json: serde_json::Value) -> RedisEngine {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn one_complete_deployment_form_is_accepted_and_anything_else_refused() {
        for ok in [
            serde_json::json!({}),
            serde_json::json!({"cluster_address": ["127.0.0.1:7000", "rediss://u:p@h:7001"]}),
            serde_json::json!({"sentinel_address": "h:26379", "sentinel_master_name": "m",
                "sentinel_password": "pw"}),
            serde_json::json!({"address": ["redis://a:6379", "redis+sentinel://s1,s2/m"],
                "sentinel_user": "u"}),
        ] {
            validate(&engine(ok.clone())).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, path) in [
            (
                serde_json::json!({"cluster_address": ["h:7000"], "address": "redis://x:6379"}),
                "engine.redis.cluster_address",
            ),
            (
                serde_json::json!({"cluster_address": ["h:7000"], "sentinel_address": ["s:1"],
                    "sentinel_master_name": "m"}),
                "engine.redis.cluster_address",
            ),
            (
                serde_json::json!({"sentinel_address": ["s:1"], "address": "redis://x:6379",
                    "sentinel_master_name": "m"}),
                "engine.redis.sentinel_address",
            ),
            (
                serde_json::json!({"sentinel_address": ["s:1"]}),
                "engine.redis.sentinel_master_name",
            ),
            (
                serde_json::json!({"sentinel_master_name": "m"}),
                "engine.redis.sentinel_master_name",
            ),
            (
                serde_json::json!({"sentinel_password": "pw"}),
                "engine.redis.sentinel_password",
            ),
            (
                serde_json::json!({"cluster_address": ["h:notaport"]}),
                "engine.redis.cluster_address",
            ),
            (
                serde_json::json!({"cluster_address": ["http://h:7000"]}),
                "engine.redis.cluster_address",
            ),
            (
                serde_json::json!({"cluster_address": ["h:7000"], "prefix": "a{b}:"}),
                "engine.redis.prefix",
            ),
            (
                serde_json::json!({"address": "redis+sentinel://s:1"}),
                "engine.redis.address",
            ),
        ] {
            let err = validate(&engine(bad.clone())).unwrap_err();
            assert_eq!(err.path(), Some(path), "{bad}: {err}");
        }
        let err = validate(&engine(
            serde_json::json!({"address": "redis+sentinel://u:hunter2@s:x/m"}),
        ))
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn node_urls_take_a_scheme_when_missing() {
        assert_eq!(node_url("127.0.0.1:7000"), "redis://127.0.0.1:7000");
        assert_eq!(node_url(" rediss://h:1 "), "rediss://h:1");
    }
}
