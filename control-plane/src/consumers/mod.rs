//! Hosted projects' asynchronous consumers (Centrifugo's `consumers`): the `consumers` project
//! setting with its hosted bounds and sealed credentials ([`settings`]), the outbox table
//! provisioned in the customer's own database ([`outbox`], its database work run in a child
//! process, [`isolated`]), and the addresses of the service's
//! own databases that tenants' consumers may never reach ([`service_addresses`], handed to
//! every tenant process as `ROTOR_EGRESS_DENY`; see `rotor_tenant_config::consumer_egress`).

pub mod isolated;
pub mod outbox;
pub mod settings;

use std::net::SocketAddr;

/// The addresses the control plane's own PostgreSQL (`database_url`) and Redis (`redis_url`)
/// resolve to now, with their ports (5432 and 6379 when the URL has none). Names that do not
/// resolve are logged and skipped: a database this process cannot resolve is not one it uses.
pub async fn service_addresses(database_url: &str, redis_url: Option<&str>) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for (url, default_port) in [(Some(database_url), 5432), (redis_url, 6379)] {
        let Some(url) = url.and_then(|u| url::Url::parse(u).ok()) else {
            continue;
        };
        let Some(host) = url.host_str() else { continue };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(default_port);
        let resolved = tokio::net::lookup_host((host.as_str(), port)).await;
        match resolved {
            Ok(addrs) => out.extend(addrs),
            Err(e) => {
                tracing::warn!(%host, error = %e, "a service database's address did not resolve")
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `addrs` as a `ROTOR_EGRESS_DENY` value.
pub fn deny_list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_service_databases_resolve_into_the_deny_list() {
        let addrs = service_addresses(
            "postgres://rotor:pw@127.0.0.1/rotor",
            Some("redis://:pw@[::1]:6380/0"),
        )
        .await;
        let list = deny_list(&addrs);
        assert_eq!(list, "127.0.0.1:5432,[::1]:6380");
        let parsed = rotor_tenant_config::consumer_egress::parse_denied(&list).unwrap();
        assert_eq!(parsed, addrs);
    }
}
