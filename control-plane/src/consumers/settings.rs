//! `settings.consumers` of a hosted project: a list in Centrifugo's shape (`enabled`, `name`,
//! `type` and the section of that type), landing unchanged in the tenant's `consumers`. The
//! data plane's own rules check every field; here are the bounds of a hosted project, so one
//! project cannot hold more of the machine than another or make its process read a file of the
//! box:
//!
//! - at most [`HOSTED_MAX_CONSUMERS`] consumers, of the kinds `postgresql`, `redis_stream` and
//!   `nats_jetstream`;
//! - PostgreSQL: at most [`HOSTED_MAX_PARTITIONS`] partitions and
//!   [`HOSTED_MAX_SELECT_LIMIT`] rows a query, polled at most every
//!   [`HOSTED_MIN_POLL_INTERVAL_MS`] ms; a DSN with a host, no file options, no `sslmode` that
//!   needs TLS (the consumers' client has none);
//! - Redis: at most [`HOSTED_MAX_WORKERS`] workers a stream and [`HOSTED_MAX_STREAMS`]
//!   streams, no `*_pem_file`, no `insecure_skip_verify`;
//! - NATS: no `credentials_file`, no `tls://` with a host name (see
//!   [`rotor_tenant_config::consumer_egress`]), at most [`HOSTED_MAX_ACK_PENDING`] messages
//!   in flight.
//!
//! Where the servers are is checked when a consumer connects (public addresses only, pinned);
//! a DSN or URL is not resolved here, so a name that resolves later is not refused early.
//!
//! Credentials are sealed at rest ([`map_secrets`], purpose
//! [`crate::sealed::Purpose::ConsumerCredential`]): a PostgreSQL `dsn`, Redis `address`es and
//! `tls.key_pem`, a NATS `url`, `password` and `token`.

use rotor_tenant_config::consumer_egress::{
    hosted_dsn_refusal, hosted_nats_url_refusal, REDIS_INSECURE_REFUSED,
};
use serde_json::Value;

use crate::project_settings::SettingsError;

/// Consumers a hosted project may have.
pub const HOSTED_MAX_CONSUMERS: usize = 4;
/// Partitions of a hosted PostgreSQL consumer (one worker and connection each).
pub const HOSTED_MAX_PARTITIONS: u64 = 8;
/// Rows a hosted PostgreSQL consumer takes per query.
pub const HOSTED_MAX_SELECT_LIMIT: u64 = 1000;
/// The shortest poll interval of a hosted PostgreSQL consumer.
pub const HOSTED_MIN_POLL_INTERVAL_MS: u64 = 100;
/// Workers per stream of a hosted Redis consumer.
pub const HOSTED_MAX_WORKERS: u64 = 4;
/// Streams of a hosted Redis consumer.
pub const HOSTED_MAX_STREAMS: usize = 8;
/// Unacknowledged messages of a hosted NATS consumer.
pub const HOSTED_MAX_ACK_PENDING: u64 = 1000;

/// The kinds a hosted project may use.
const KINDS: [&str; 3] = ["postgresql", "redis_stream", "nats_jetstream"];

/// Checks `settings.consumers` against the hosted bounds; the value lands in the tenant's
/// `consumers` as it is.
pub fn hosted_consumers(value: &Value) -> Result<Value, SettingsError> {
    let Value::Array(list) = value else {
        return Err(SettingsError::new(
            "settings.consumers",
            "must be a list such as [{\"enabled\": true, \"name\": \"outbox\", \"type\": \"postgresql\", \"postgresql\": {…}}]",
        ));
    };
    if list.len() > HOSTED_MAX_CONSUMERS {
        return Err(SettingsError::new(
            "settings.consumers",
            format!("at most {HOSTED_MAX_CONSUMERS} consumers for hosted projects"),
        ));
    }
    for (i, consumer) in list.iter().enumerate() {
        let at = |field: &str| format!("settings.consumers[{i}].{field}");
        let Value::Object(fields) = consumer else {
            return Err(SettingsError::new(
                format!("settings.consumers[{i}]"),
                "must be an object",
            ));
        };
        let kind = fields.get("type").and_then(Value::as_str).unwrap_or("");
        if !KINDS.contains(&kind) {
            return Err(SettingsError::new(
                at("type"),
                format!("{kind:?} is not available to hosted projects: postgresql, redis_stream or nats_jetstream"),
            ));
        }
        let section = |name: &str| fields.get(name).and_then(Value::as_object);
        if let Some(pg) = section("postgresql") {
            postgresql(&|f| at(&format!("postgresql.{f}")), pg)?;
        }
        if let Some(rs) = section("redis_stream") {
            redis_stream(&|f| at(&format!("redis_stream.{f}")), rs)?;
        }
        if let Some(nats) = section("nats_jetstream") {
            nats_jetstream(&|f| at(&format!("nats_jetstream.{f}")), nats)?;
        }
    }
    Ok(value.clone())
}

type Fields = serde_json::Map<String, Value>;

/// `field` as a number at most `max` (absent: the data plane's default, within the bound).
fn at_most(
    at: &dyn Fn(&str) -> String,
    fields: &Fields,
    field: &str,
    max: u64,
) -> Result<(), SettingsError> {
    match fields.get(field) {
        None => Ok(()),
        Some(v) if v.as_u64().is_some_and(|n| n <= max) => Ok(()),
        Some(_) => Err(SettingsError::new(
            at(field),
            format!("must be a number at most {max} for hosted projects"),
        )),
    }
}

fn postgresql(at: &dyn Fn(&str) -> String, pg: &Fields) -> Result<(), SettingsError> {
    let dsn = pg.get("dsn").and_then(Value::as_str).unwrap_or("");
    if let Some(why) = hosted_dsn_refusal(dsn) {
        return Err(SettingsError::new(at("dsn"), why));
    }
    at_most(at, pg, "num_partitions", HOSTED_MAX_PARTITIONS)?;
    at_most(at, pg, "partition_select_limit", HOSTED_MAX_SELECT_LIMIT)?;
    if let Some(v) = pg.get("partition_poll_interval") {
        let interval: rotor_tenant_config::ConfigDuration = serde_json::from_value(v.clone())
            .map_err(|e| {
                SettingsError::new(
                    at("partition_poll_interval"),
                    format!("must be a duration: {e}"),
                )
            })?;
        if interval.get() < std::time::Duration::from_millis(HOSTED_MIN_POLL_INTERVAL_MS) {
            return Err(SettingsError::new(
                at("partition_poll_interval"),
                format!("must be at least {HOSTED_MIN_POLL_INTERVAL_MS}ms for hosted projects"),
            ));
        }
    }
    Ok(())
}

fn redis_stream(at: &dyn Fn(&str) -> String, rs: &Fields) -> Result<(), SettingsError> {
    at_most(at, rs, "num_workers", HOSTED_MAX_WORKERS)?;
    if rs
        .get("streams")
        .and_then(Value::as_array)
        .is_some_and(|s| s.len() > HOSTED_MAX_STREAMS)
    {
        return Err(SettingsError::new(
            at("streams"),
            format!("at most {HOSTED_MAX_STREAMS} streams for hosted projects"),
        ));
    }
    let addresses: Vec<&str> = match rs.get("address") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if addresses.iter().any(|a| a.contains("unix")) {
        return Err(SettingsError::new(
            at("address"),
            rotor_tenant_config::consumer_egress::SOCKET_REFUSED,
        ));
    }
    if addresses.iter().any(|a| a.contains("#insecure")) {
        return Err(SettingsError::new(at("address"), REDIS_INSECURE_REFUSED));
    }
    if let Some(tls) = rs.get("tls").and_then(Value::as_object) {
        for file in rotor_tenant_config::TLS_FILE_OPTIONS {
            if tls.contains_key(file) {
                return Err(SettingsError::new(
                    at(&format!("tls.{file}")),
                    "TLS options naming files are not available to hosted projects: give PEM text in the option without _file",
                ));
            }
        }
        if tls.get("insecure_skip_verify") == Some(&Value::Bool(true)) {
            return Err(SettingsError::new(
                at("tls.insecure_skip_verify"),
                REDIS_INSECURE_REFUSED,
            ));
        }
    }
    Ok(())
}

fn nats_jetstream(at: &dyn Fn(&str) -> String, nats: &Fields) -> Result<(), SettingsError> {
    if nats
        .get("credentials_file")
        .is_some_and(|v| v.as_str() != Some(""))
    {
        return Err(SettingsError::new(
            at("credentials_file"),
            "names a file of the box: not available to hosted projects (give username and password, or token)",
        ));
    }
    // The data plane's default URL is the box's own NATS: a hosted project names its server.
    let url = nats.get("url").and_then(Value::as_str).unwrap_or("");
    if url.is_empty() {
        return Err(SettingsError::new(
            at("url"),
            "is required (nats://host:port)",
        ));
    }
    if let Some(why) = hosted_nats_url_refusal(url) {
        return Err(SettingsError::new(at("url"), why));
    }
    at_most(at, nats, "max_ack_pending", HOSTED_MAX_ACK_PENDING)
}

/// Applies `f` to every credential of `settings.consumers` (a PostgreSQL `dsn`, Redis
/// `address`es and `tls.key_pem`, a NATS `url`, `password` and `token`), skipping empty ones.
pub fn map_secrets<E>(
    settings: &mut Value,
    f: &mut impl FnMut(&str) -> Result<String, E>,
) -> Result<(), E> {
    let Some(Value::Array(list)) = settings.get_mut("consumers") else {
        return Ok(());
    };
    let mut one = |v: &mut Value| -> Result<(), E> {
        if let Value::String(s) = v {
            if !s.is_empty() {
                *s = f(s)?;
            }
        }
        Ok(())
    };
    for consumer in list {
        if let Some(dsn) = consumer.pointer_mut("/postgresql/dsn") {
            one(dsn)?;
        }
        match consumer.pointer_mut("/redis_stream/address") {
            Some(Value::Array(addresses)) => {
                for a in addresses {
                    one(a)?;
                }
            }
            Some(address) => one(address)?,
            None => {}
        }
        for pointer in [
            "/redis_stream/tls/key_pem",
            "/nats_jetstream/url",
            "/nats_jetstream/password",
            "/nats_jetstream/token",
        ] {
            if let Some(v) = consumer.pointer_mut(pointer) {
                one(v)?;
            }
        }
    }
    Ok(())
}

/// The DSN of the PostgreSQL consumer `name` in (opened) settings, when there is one.
pub fn postgres_dsn<'a>(settings: &'a Value, name: &str) -> Option<(&'a str, &'a Value)> {
    settings
        .get("consumers")?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
        .filter(|c| c.get("type").and_then(Value::as_str) == Some("postgresql"))
        .and_then(|c| {
            let pg = c.get("postgresql")?;
            Some((pg.get("dsn")?.as_str()?, pg))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pg(extra: Value) -> Value {
        let mut pg = json!({"dsn": "postgresql://app:pw@db.example.com:5432/app",
                            "outbox_table_name": "rotor_outbox"});
        pg.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!([{"enabled": true, "name": "outbox", "type": "postgresql", "postgresql": pg}])
    }

    #[test]
    fn hosted_bounds_name_the_setting_at_fault() {
        hosted_consumers(&pg(json!({}))).unwrap();
        for (consumers, field) in [
            (
                pg(json!({"num_partitions": 64})),
                "settings.consumers[0].postgresql.num_partitions",
            ),
            (
                pg(json!({"partition_select_limit": 5000})),
                "settings.consumers[0].postgresql.partition_select_limit",
            ),
            (
                pg(json!({"partition_poll_interval": "1ms"})),
                "settings.consumers[0].postgresql.partition_poll_interval",
            ),
            (
                pg(json!({"dsn": "postgresql://app@db.example.com/app?sslrootcert=/etc/passwd"})),
                "settings.consumers[0].postgresql.dsn",
            ),
            (
                pg(json!({"dsn": "postgresql:///app?host=/var/run/postgresql"})),
                "settings.consumers[0].postgresql.dsn",
            ),
            (
                json!([{"name": "k", "type": "kafka"}]),
                "settings.consumers[0].type",
            ),
            (
                json!([{"name": "r", "type": "redis_stream", "redis_stream": {"address": "redis://r.example.com:6379", "num_workers": 32}}]),
                "settings.consumers[0].redis_stream.num_workers",
            ),
            (
                json!([{"name": "r", "type": "redis_stream", "redis_stream": {"address": "rediss://r.example.com:6379", "tls": {"server_ca_pem_file": "/etc/shadow"}}}]),
                "settings.consumers[0].redis_stream.tls.server_ca_pem_file",
            ),
            (
                json!([{"name": "r", "type": "redis_stream", "redis_stream": {"address": "rediss://r.example.com:6379", "tls": {"insecure_skip_verify": true}}}]),
                "settings.consumers[0].redis_stream.tls.insecure_skip_verify",
            ),
            (
                json!([{"name": "n", "type": "nats_jetstream", "nats_jetstream": {"url": "nats://n.example.com:4222", "credentials_file": "/root/nats.creds"}}]),
                "settings.consumers[0].nats_jetstream.credentials_file",
            ),
            (
                json!([{"name": "n", "type": "nats_jetstream", "nats_jetstream": {"url": "tls://n.example.com:4222"}}]),
                "settings.consumers[0].nats_jetstream.url",
            ),
            (
                json!([{"name": "n", "type": "nats_jetstream", "nats_jetstream": {}}]),
                "settings.consumers[0].nats_jetstream.url",
            ),
            (json!({"name": "x"}), "settings.consumers"),
            (json!([{}, {}, {}, {}, {}]), "settings.consumers"),
        ] {
            let e = hosted_consumers(&consumers).unwrap_err();
            assert_eq!(e.field, field, "{consumers}: {e}");
        }
    }

    #[test]
    fn credentials_are_the_values_mapped_and_a_dsn_is_found_by_name() {
        let mut settings = json!({"consumers": [
            {"name": "outbox", "type": "postgresql", "postgresql": {"dsn": "postgresql://a:pw1@h/d"}},
            {"name": "rs", "type": "redis_stream", "redis_stream": {"address": ["redis://:pw2@h:6379"], "tls": {"key_pem": "KEY"}}},
            {"name": "n", "type": "nats_jetstream", "nats_jetstream": {"url": "nats://u:pw3@h:4222", "password": "pw4", "token": ""}}
        ]});
        let mut seen = Vec::new();
        map_secrets::<()>(&mut settings, &mut |v| {
            seen.push(v.to_owned());
            Ok(format!("sealed:{}", seen.len()))
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                "postgresql://a:pw1@h/d",
                "redis://:pw2@h:6379",
                "KEY",
                "nats://u:pw3@h:4222",
                "pw4"
            ]
        );
        assert_eq!(postgres_dsn(&settings, "outbox").unwrap().0, "sealed:1");
        assert!(postgres_dsn(&settings, "rs").is_none());
        assert!(postgres_dsn(&settings, "nope").is_none());
    }

    #[test]
    fn consumers_are_checked_by_the_data_planes_rules_sealed_and_redacted() {
        use crate::project_settings::{open_secrets, redact_secrets, seal_secrets, validate};
        use crate::sealed::Keyring;
        let e = validate(
            &json!({"consumers": pg(json!({"outbox_table_name": "bad name"}))}),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e.field, "settings.consumers[0].postgresql.outbox_table_name",
            "{e}"
        );
        validate(&json!({"consumers": pg(json!({}))}), &[]).unwrap();
        let ring = Keyring::from_key([5; 32]);
        let project = crate::ids::ProjectId("prj_c".into());
        let plain = json!({"consumers": pg(json!({}))});
        let sealed = seal_secrets(&ring, &project, &plain);
        assert!(!sealed.to_string().contains("app:pw@"), "{sealed}");
        assert_eq!(open_secrets(&ring, &project, &sealed).unwrap(), plain);
        assert_eq!(
            redact_secrets(&sealed)["consumers"][0]["postgresql"]["dsn"],
            "[redacted]"
        );
    }
}
