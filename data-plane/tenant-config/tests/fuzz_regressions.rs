//! Inputs the `config` fuzz target (`fuzz/`, `make fuzz`) found, fed through the public parser.

use std::time::Duration;

use rotor_tenant_config::{parse_go_duration, Format, TenantConfig};

/// `"2026ms"` is printed back as `"2.026s"`, which the floating-point parser read as
/// 2.025999999 s: a config the control plane renders (`to_json`) did not reload equal.
#[test]
fn a_rendered_config_with_millisecond_durations_reloads_equal() {
    assert_eq!(parse_go_duration("2.026s"), Ok(Duration::from_millis(2026)));
    let text = r#"{"client": {"ping_interval": "2026ms", "pong_timeout": "1.001s"},
        "channel": {"namespaces": [{"name": "chat", "history_size": 3,
                                    "history_ttl": "72026ms", "history_meta_ttl": "0.3h"}]}}"#;
    for format in [Format::Json, Format::Yaml] {
        let loaded = TenantConfig::parse(text, format).unwrap().config;
        assert_eq!(
            loaded.client.ping_interval.get(),
            Duration::from_millis(2026)
        );
        let rendered = loaded.to_json();
        assert!(
            rendered.contains(r#""ping_interval": "2.026s""#),
            "{rendered}"
        );
        let back = TenantConfig::parse(&rendered, Format::Json).unwrap();
        assert_eq!(back.config, loaded);
        let chat = back.config.namespace("chat").unwrap();
        assert_eq!(chat.history_ttl.get(), Duration::from_millis(72_026));
        assert_eq!(chat.history_meta_ttl.get(), Duration::from_secs(1080));
    }
}
