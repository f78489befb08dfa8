//! Subscribe stream proxies in the config (Centrifugo v6 names): `channel.proxy.subscribe_stream`
//! and the namespace options `subscribe_stream_proxy_enabled`, `subscribe_stream_proxy_name`
//! and `subscribe_stream_proxy_bidirectional`. Streams are gRPC streams, so only `grpc://`
//! endpoints can serve them; and, as in Centrifugo, a namespace that streams uses no subscribe,
//! publish or sub_refresh proxy. The rest of a stream proxy's options are checked like any
//! proxy's ([`crate::proxy`]).

use crate::channel::ChannelOptions;
use crate::load::ConfigError;
use crate::proxy::ProxyOptions;
use crate::sections::TenantConfig;

/// Why a subscribe stream proxy with an HTTP endpoint is refused.
const STREAM_NEEDS_GRPC: &str =
    "subscribe streams are gRPC streams: the endpoint must be grpc://host:port (as in Centrifugo)";

/// The subscribe stream rules of one channel scope at `path`: not together with the
/// subscribe, publish or sub_refresh proxy (as in Centrifugo), and a named proxy it uses must
/// be gRPC.
pub(crate) fn check_scope(
    path: &str,
    o: &ChannelOptions,
    config: &TenantConfig,
) -> Result<(), ConfigError> {
    if !o.subscribe_stream_proxy_enabled {
        return Ok(());
    }
    if o.subscribe_proxy_enabled || o.publish_proxy_enabled || o.sub_refresh_proxy_enabled {
        return Err(ConfigError::invalid(
            format!("{path}.subscribe_stream_proxy_enabled"),
            "a subscribe stream proxy cannot be combined with the subscribe, publish or sub_refresh proxy in the same namespace",
        ));
    }
    let named = config
        .proxies
        .iter()
        .enumerate()
        .find(|(_, p)| p.name == o.subscribe_stream_proxy_name);
    if let Some((i, p)) = named {
        if !p.endpoint.trim().starts_with("grpc://") {
            return Err(ConfigError::invalid(
                format!("proxies[{i}].endpoint"),
                format!("{STREAM_NEEDS_GRPC}; {path} streams through this proxy"),
            ));
        }
    }
    Ok(())
}

/// `channel.proxy.subscribe_stream` may only point at a gRPC backend.
pub(crate) fn check_default(p: &ProxyOptions) -> Result<(), ConfigError> {
    let endpoint = p.endpoint.trim();
    if !endpoint.is_empty() && !endpoint.starts_with("grpc://") {
        return Err(ConfigError::invalid(
            "channel.proxy.subscribe_stream.endpoint",
            STREAM_NEEDS_GRPC,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::test_support::refused;
    use crate::{Format, TenantConfig};

    #[test]
    fn subscribe_stream_proxies_load_with_centrifugo_v6_names() {
        let text = r#"{
            "channel": {
                "proxy": {"subscribe_stream": {"endpoint": "grpc://backend:9000", "timeout": "3s"}},
                "namespaces": [
                    {"name": "uni", "subscribe_stream_proxy_enabled": true},
                    {"name": "bidi", "subscribe_stream_proxy_enabled": true,
                     "subscribe_stream_proxy_bidirectional": true, "subscribe_stream_proxy_name": "other",
                     "presence": true, "join_leave": true}
                ]
            },
            "proxies": [{"name": "other", "endpoint": "grpc://other:9001"}]
        }"#;
        let c = TenantConfig::parse(text, Format::Json).unwrap().config;
        let bidi = &c.channel.namespaces[1];
        assert!(bidi.subscribe_stream_proxy_enabled && bidi.subscribe_stream_proxy_bidirectional);
        assert_eq!(bidi.subscribe_stream_proxy_name, "other");
        assert_eq!(c.channel.proxy.subscribe_stream.timeout.get().as_secs(), 3);
        let back = TenantConfig::parse(&c.to_json(), Format::Json).unwrap();
        assert_eq!(back.config, c);
    }

    #[test]
    fn subscribe_stream_proxies_must_be_grpc_and_alone_in_their_namespace() {
        let ns = |options: &str| {
            refused(&format!(
                r#"{{"channel": {{"proxy": {{"subscribe_stream": {{"endpoint": "grpc://b:1"}},
                     "subscribe": {{"endpoint": "http://a"}}, "publish": {{"endpoint": "http://a"}}}},
                     "namespaces": [{{"name": "ns", "subscribe_stream_proxy_enabled": true, {options}}}]}},
                   "proxies": [{{"name": "web", "endpoint": "http://backend/stream"}}]}}"#
            ))
        };
        for other in ["subscribe_proxy_enabled", "publish_proxy_enabled"] {
            let (path, msg) = ns(&format!(r#""{other}": true"#));
            assert_eq!(path, "channel.namespaces[0].subscribe_stream_proxy_enabled");
            assert!(msg.contains("cannot be combined"), "{msg}");
        }
        let (path, msg) = ns(r#""subscribe_stream_proxy_name": "web""#);
        assert_eq!(path, "proxies[0].endpoint");
        assert!(
            msg.contains("grpc://") && msg.contains("channel.namespaces[0]"),
            "{msg}"
        );
        let (path, msg) = refused(
            r#"{"channel": {"proxy": {"subscribe_stream": {"endpoint": "http://backend/stream"}}}}"#,
        );
        assert_eq!(path, "channel.proxy.subscribe_stream.endpoint");
        assert!(msg.contains("grpc://"), "{msg}");
        assert_eq!(
            refused(
                r#"{"channel": {"without_namespace": {"subscribe_stream_proxy_enabled": true}}}"#
            )
            .0,
            "channel.proxy.subscribe_stream.endpoint"
        );
        assert_eq!(
            refused(
                r#"{"channel": {"without_namespace": {"subscribe_stream_proxy_name": "nope"}}}"#
            )
            .0,
            "channel.without_namespace.subscribe_stream_proxy_name"
        );
    }
}
