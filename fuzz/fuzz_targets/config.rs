//! The tenant config parser: JSON, TOML and YAML text → validated `TenantConfig`. Beyond "no
//! panic": an accepted config renders (`to_json`, what the control plane pushes) and reloads
//! to the same config (nothing refused), and the data plane can compile it. The first byte
//! picks the format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rotor_data_plane::config::RuntimeConfig;
use rotor_tenant_config::{format_go_duration, parse_go_duration, Format, TenantConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let format = match selector % 3 {
        0 => Format::Json,
        1 => Format::Toml,
        _ => Format::Yaml,
    };

    // Durations are the one hand-written parser inside the config: parse → print → parse.
    if let Ok(d) = parse_go_duration(text) {
        let printed = format_go_duration(d);
        assert_eq!(
            parse_go_duration(&printed),
            Ok(d),
            "{text:?} printed as {printed:?}"
        );
    }

    let Ok(loaded) = TenantConfig::parse(text, format) else {
        return;
    };
    let rendered = loaded.config.to_json();
    let back = TenantConfig::parse(&rendered, Format::Json).expect("a rendered config reloads");
    assert_eq!(
        loaded.config, back.config,
        "render → reload changed the config"
    );
    // Compiling may refuse (e.g. a PEM key that does not parse) but never panics.
    let _ = RuntimeConfig::compile(loaded.config);
});
