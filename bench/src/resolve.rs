//! Where the load generators connect when projects are served at their own host
//! (`ROTOR_TENANT_HOST`): the bench names each project `{slug}.tenants.bench`, a name no resolver
//! knows, and `ROTOR_BENCH_CONNECT_TO` (the edge's address) says where such names go. HTTP
//! clients resolve every name to it; WebSocket clients dial it and send the name in `Host`.
//! Addresses given as IPs are dialled as they are.

use std::net::{IpAddr, SocketAddr};

/// `ROTOR_BENCH_CONNECT_TO`, when set.
pub fn connect_to() -> Option<SocketAddr> {
    std::env::var("ROTOR_BENCH_CONNECT_TO").ok()?.parse().ok()
}

/// The host of `url` when it is a name (not an IP) and names go to [`connect_to`].
fn named_host(url: &str) -> Option<(String, SocketAddr)> {
    let to = connect_to()?;
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty() && ip.parse::<IpAddr>().is_err()).then(|| (host.to_owned(), to))
}

/// `builder`, resolving every name to [`connect_to`] when it is set.
pub fn http_client(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    match connect_to() {
        Some(to) => builder.dns_resolver(std::sync::Arc::new(ToEdge(to))),
        None => builder,
    }
}

/// A resolver answering every name with the edge's address.
struct ToEdge(SocketAddr);

impl reqwest::dns::Resolve for ToEdge {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let addr = self.0;
        Box::pin(async move {
            let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(addr));
            Ok(addrs)
        })
    }
}

/// The address to dial for `url` instead of resolving its host, when it is a name.
pub fn dial_addr(url: &str) -> Option<SocketAddr> {
    named_host(url).map(|(_, to)| to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_are_redirected() {
        std::env::set_var("ROTOR_BENCH_CONNECT_TO", "127.0.0.1:9");
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            dial_addr("ws://abc.tenants.bench:8000/connection/websocket"),
            Some(to)
        );
        assert_eq!(dial_addr("http://abc.tenants.bench/api/publish"), Some(to));
        assert_eq!(dial_addr("http://127.0.0.1:8000/t/abc/api"), None);
        assert_eq!(dial_addr("http://[::1]:8000/api"), None);
    }
}
