//! The channel options of a namespace as Terraform attributes: one typed attribute per option
//! (names, help text and rules come from `rotor-tenant-config`, the data plane's own schema),
//! its Centrifugo default, and the conversions between Terraform values and the REST API's JSON.

use std::collections::BTreeMap;

use rotor_tenant_config::{parse_go_duration, ChannelOptions, TenantConfig, CHANNEL_OPTION_DOCS};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};
use tf_provider::schema::{Attribute, AttributeConstraint, AttributeType};
use tf_provider::value::Value;

pub use crate::diags::Invalid;
use crate::schema::attribute;

/// What kind of value an option holds, which decides its Terraform type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `bool`, default `false`.
    Flag,
    /// A non-negative whole number (`u32`), default `0`.
    Count,
    /// A Go duration string (`"300s"`, `"1m30s"`), default `"0s"`.
    Duration,
    /// Free text with the given default.
    Text(&'static str),
    /// One of a fixed set of strings; the first is the default.
    Choice(&'static [&'static str]),
    /// A list of strings, each from a fixed set; default empty.
    List(&'static [&'static str]),
}

/// One channel option: its name and kind.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    pub name: &'static str,
    pub kind: Kind,
}

const fn spec(name: &'static str, kind: Kind) -> OptionSpec {
    OptionSpec { name, kind }
}

/// Every channel option, in the data plane's declaration order (a unit test keeps this list
/// equal to `CHANNEL_OPTION_NAMES` and its defaults equal to `ChannelOptions::default()`).
pub const OPTIONS: &[OptionSpec] = &[
    spec("presence", Kind::Flag),
    spec("join_leave", Kind::Flag),
    spec("force_push_join_leave", Kind::Flag),
    spec("history_size", Kind::Count),
    spec("history_ttl", Kind::Duration),
    spec("history_meta_ttl", Kind::Duration),
    spec("force_positioning", Kind::Flag),
    spec("allow_positioning", Kind::Flag),
    spec("force_recovery", Kind::Flag),
    spec("allow_recovery", Kind::Flag),
    spec("force_recovery_mode", Kind::Choice(&["stream", "cache"])),
    spec("auto_cache_recover", Kind::Flag),
    spec("allow_subscribe_for_anonymous", Kind::Flag),
    spec("allow_subscribe_for_client", Kind::Flag),
    spec("allow_publish_for_anonymous", Kind::Flag),
    spec("allow_publish_for_subscriber", Kind::Flag),
    spec("allow_publish_for_client", Kind::Flag),
    spec("allow_presence_for_anonymous", Kind::Flag),
    spec("allow_presence_for_subscriber", Kind::Flag),
    spec("allow_presence_for_client", Kind::Flag),
    spec("allow_history_for_anonymous", Kind::Flag),
    spec("allow_history_for_subscriber", Kind::Flag),
    spec("allow_history_for_client", Kind::Flag),
    spec("allow_user_limited_channels", Kind::Flag),
    spec("channel_regex", Kind::Text("")),
    spec(
        "publication_data_format",
        Kind::Choice(&["", "json", "json_object", "binary"]),
    ),
    spec("allowed_delta_types", Kind::List(&["fossil"])),
    spec("delta_publish", Kind::Flag),
    spec("allow_tags_filter", Kind::Flag),
    spec("exclude_publisher", Kind::Flag),
    spec("subscribe_proxy_enabled", Kind::Flag),
    spec("subscribe_proxy_name", Kind::Text("default")),
    spec("publish_proxy_enabled", Kind::Flag),
    spec("publish_proxy_name", Kind::Text("default")),
    spec("sub_refresh_proxy_enabled", Kind::Flag),
    spec("sub_refresh_proxy_name", Kind::Text("default")),
    spec("subscribe_stream_proxy_enabled", Kind::Flag),
    spec("subscribe_stream_proxy_name", Kind::Text("default")),
    spec("subscribe_stream_proxy_bidirectional", Kind::Flag),
];

/// A known Terraform value of any option type. Numbers that are not whole arrive as `Float`
/// so validation can name the attribute instead of failing to decode the whole object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    List(Vec<String>),
}

/// A resource's attributes by name (the namespace resource keeps its whole state this way,
/// since the option set is data-driven).
pub type Attrs = BTreeMap<String, Value<Scalar>>;

/// A text attribute of `attrs`, if known.
pub fn text<'a>(attrs: &'a Attrs, name: &str) -> Option<&'a str> {
    match attrs.get(name) {
        Some(Value::Value(Scalar::Text(s))) => Some(s),
        _ => None,
    }
}

impl OptionSpec {
    /// The option's default, as Centrifugo and the data plane apply it.
    pub fn default_value(&self) -> Scalar {
        match self.kind {
            Kind::Flag => Scalar::Bool(false),
            Kind::Count => Scalar::Int(0),
            Kind::Duration => Scalar::Text("0s".into()),
            Kind::Text(default) => Scalar::Text(default.into()),
            Kind::Choice(choices) => Scalar::Text(choices[0].into()),
            Kind::List(_) => Scalar::List(Vec::new()),
        }
    }

    /// The Terraform type of the attribute.
    pub fn attr_type(&self) -> AttributeType {
        match self.kind {
            Kind::Flag => AttributeType::Bool,
            Kind::Count => AttributeType::Number,
            Kind::Duration | Kind::Text(_) | Kind::Choice(_) => AttributeType::String,
            Kind::List(_) => AttributeType::List(Box::new(AttributeType::String)),
        }
    }

    /// The option's help text from the data plane's schema, with its default.
    pub fn description(&self) -> String {
        let doc = CHANNEL_OPTION_DOCS
            .iter()
            .find(|(name, _)| *name == self.name)
            .map(|(_, doc)| doc.trim())
            .unwrap_or_default();
        let default = match self.default_value() {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(n) => n.to_string(),
            Scalar::Text(s) => format!("{s:?}"),
            Scalar::Float(f) => f.to_string(),
            Scalar::List(items) => format!("{items:?}"),
        };
        let mut text = doc.to_owned();
        if let Kind::Choice(choices) = self.kind {
            text.push_str(&format!(" One of {choices:?}."));
        }
        if let Kind::List(choices) = self.kind {
            text.push_str(&format!(" Each one of {choices:?}."));
        }
        if self.kind == Kind::Duration {
            text.push_str(" A Go duration such as \"300s\" or \"1h30m\".");
        }
        text.push_str(&format!(" Default: {default}."));
        text
    }

    /// The schema attribute: optional, computed (filled with the default when left out, so a
    /// plan after apply is clean).
    pub fn attribute(&self) -> Attribute {
        attribute(
            self.attr_type(),
            self.description(),
            AttributeConstraint::OptionalComputed,
        )
    }

    /// The REST API's JSON for a known Terraform value.
    pub fn to_json(&self, value: &Scalar) -> Json {
        match value {
            Scalar::Bool(b) => json!(b),
            Scalar::Int(n) => json!(n),
            Scalar::Float(f) => json!(f),
            Scalar::Text(s) => json!(s),
            Scalar::List(items) => json!(items),
        }
    }

    /// The Terraform value for the API's JSON (`None`: absent, i.e. the default).
    pub fn from_json(&self, value: Option<&Json>) -> Scalar {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return self.default_value();
        };
        match (self.kind, value) {
            (Kind::Flag, Json::Bool(b)) => Scalar::Bool(*b),
            (Kind::Count, Json::Number(n)) => n
                .as_i64()
                .map(Scalar::Int)
                .unwrap_or_else(|| Scalar::Float(n.as_f64().unwrap_or_default())),
            (Kind::List(_), Json::Array(items)) => Scalar::List(
                items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect(),
            ),
            (_, Json::String(s)) => Scalar::Text(s.clone()),
            (_, other) => Scalar::Text(other.to_string()),
        }
    }

    /// True when two known values mean the same (durations compare by length of time, so
    /// `"300s"` equals the API's canonical `"5m0s"`).
    pub fn same(&self, a: &Scalar, b: &Scalar) -> bool {
        if a == b {
            return true;
        }
        match (self.kind, a, b) {
            (Kind::Duration, Scalar::Text(a), Scalar::Text(b)) => {
                matches!((parse_go_duration(a), parse_go_duration(b)), (Ok(x), Ok(y)) if x == y)
            }
            _ => false,
        }
    }
}

/// The options of `attrs` as the REST API's request body: known values that differ from the
/// default (the API fills defaults itself, and leaving them out keeps older control planes
/// happy).
pub fn request_body(attrs: &Attrs) -> Map<String, Json> {
    let mut body = Map::new();
    for spec in OPTIONS {
        if let Some(Value::Value(v)) = attrs.get(spec.name) {
            if !spec.same(v, &spec.default_value()) {
                body.insert(spec.name.to_owned(), spec.to_json(v));
            }
        }
    }
    body
}

/// Sets every option of `attrs` from the API's (canonical) options. Where `prior` holds a
/// value that means the same, that spelling is kept, so `"300s"` does not flip to `"5m0s"`.
pub fn fill_from_api(attrs: &mut Attrs, api: &Map<String, Json>, prior: &Attrs) {
    for spec in OPTIONS {
        let from_api = spec.from_json(api.get(spec.name));
        let value = match prior.get(spec.name) {
            Some(Value::Value(old)) if spec.same(old, &from_api) => old.clone(),
            _ => from_api,
        };
        attrs.insert(spec.name.to_owned(), Value::Value(value));
    }
}

/// Plans the options: a value set in the configuration is kept as written (or unknown); one
/// left out takes the default, so removing an option from the configuration resets it.
pub fn plan(planned: &mut Attrs, config: &Attrs) {
    for spec in OPTIONS {
        let value = match config.get(spec.name) {
            None | Some(Value::Null) => Value::Value(spec.default_value()),
            Some(other) => other.clone(),
        };
        planned.insert(spec.name.to_owned(), value);
    }
}

/// Validates one known value on its own: its type and format (`history_size` must fit a
/// `u32`, durations must parse, choices must be one of the allowed strings).
fn check_value(spec: &OptionSpec, value: &Scalar) -> Result<(), Invalid> {
    match (spec.kind, value) {
        (Kind::Count, Scalar::Float(_)) => {
            return Err(Invalid::new(spec.name, "must be a whole number"));
        }
        (Kind::Count, Scalar::Int(n)) if *n < 0 => {
            return Err(Invalid::new(
                spec.name,
                format!("must not be negative (got {n})"),
            ));
        }
        (Kind::Count, Scalar::Int(n)) if *n > i64::from(u32::MAX) => {
            return Err(Invalid::new(
                spec.name,
                format!("must be at most {} (got {n})", u32::MAX),
            ));
        }
        (Kind::Choice(choices), Scalar::Text(s)) if !choices.contains(&s.as_str()) => {
            return Err(Invalid::new(
                spec.name,
                format!("{s:?} is not one of {choices:?}"),
            ));
        }
        (Kind::List(choices), Scalar::List(items)) => {
            if let Some(bad) = items.iter().find(|i| !choices.contains(&i.as_str())) {
                return Err(Invalid::new(
                    spec.name,
                    format!("{bad:?} is not one of {choices:?}"),
                ));
            }
        }
        _ => {}
    }
    let only = json!({ spec.name: spec.to_json(value) });
    serde_json::from_value::<ChannelOptions>(only)
        .map(drop)
        .map_err(|e| Invalid::new(spec.name, e.to_string()))
}

/// True for options whose validity depends on project-level settings (named proxies), which
/// the control plane checks when the namespace is saved.
fn depends_on_project(name: &str) -> bool {
    name.contains("_proxy_")
}

/// Validates a namespace configuration the way the data plane will: each known value on its
/// own, then (when every value it depends on is known) the whole namespace with the data
/// plane's rules, e.g. `history_size` and `history_ttl` go together and `force_recovery` needs
/// history. `name` is the namespace name when known.
pub fn validate(name: Option<&str>, config: &Attrs) -> Vec<Invalid> {
    let mut problems = Vec::new();
    if let Some(name) = name {
        if let Err(message) = rotor_tenant_config::validate_namespace_name(name) {
            problems.push(Invalid::new("name", message));
        }
    }
    let mut all_known = true;
    let mut namespace = Map::new();
    namespace.insert("name".into(), json!("ns"));
    for spec in OPTIONS {
        match config.get(spec.name) {
            None | Some(Value::Null) => {}
            Some(Value::Unknown) => all_known = false,
            Some(Value::Value(value)) => match check_value(spec, value) {
                Err(problem) => problems.push(problem),
                Ok(()) if !depends_on_project(spec.name) => {
                    namespace.insert(spec.name.to_owned(), spec.to_json(value));
                }
                Ok(()) => {}
            },
        }
    }
    if problems.iter().all(|p| p.path == "name") && all_known {
        let config = json!({"channel": {"namespaces": [Json::Object(namespace)]}});
        match TenantConfig::from_value(config) {
            Ok(_) => {}
            Err(e) => {
                let path = e.path().unwrap_or_default();
                let path = path.trim_start_matches("channel.namespaces[0].");
                problems.push(Invalid::new(path, e.reason()));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use rotor_tenant_config::CHANNEL_OPTION_NAMES;

    #[test]
    fn the_table_matches_the_data_plane_schema() {
        let names: Vec<&str> = OPTIONS.iter().map(|s| s.name).collect();
        assert_eq!(names, CHANNEL_OPTION_NAMES);
        assert_eq!(CHANNEL_OPTION_DOCS.len(), OPTIONS.len());
    }

    #[test]
    fn defaults_are_the_data_plane_defaults() {
        let mut all = Map::new();
        for spec in OPTIONS {
            all.insert(spec.name.into(), spec.to_json(&spec.default_value()));
        }
        let parsed: ChannelOptions = serde_json::from_value(Json::Object(all)).unwrap();
        assert_eq!(parsed, ChannelOptions::default());
        // The canonical form of the defaults is empty: the API leaves them all out.
        assert_eq!(
            serde_json::to_value(ChannelOptions::default()).unwrap(),
            json!({})
        );
    }

    #[test]
    fn every_option_has_help_text() {
        for spec in OPTIONS {
            let text = spec.description();
            assert!(text.len() > 20, "{}: {text}", spec.name);
            assert!(text.contains("Default:"), "{}", spec.name);
        }
    }

    fn attrs(pairs: &[(&str, Scalar)]) -> Attrs {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::Value(v.clone())))
            .collect()
    }

    #[test]
    fn api_options_fill_defaults_and_keep_equal_durations_as_written() {
        let prior = attrs(&[("history_ttl", Scalar::Text("300s".into()))]);
        let api =
            json!({"history_size": 10, "history_ttl": "5m0s", "force_recovery_mode": "cache"});
        let mut state = Attrs::new();
        fill_from_api(&mut state, api.as_object().unwrap(), &prior);
        assert_eq!(state.len(), OPTIONS.len());
        assert_eq!(
            state["history_ttl"],
            Value::Value(Scalar::Text("300s".into()))
        );
        assert_eq!(state["history_size"], Value::Value(Scalar::Int(10)));
        assert_eq!(state["presence"], Value::Value(Scalar::Bool(false)));
        assert_eq!(
            state["subscribe_proxy_name"],
            Value::Value(Scalar::Text("default".into()))
        );
        assert_eq!(
            state["force_recovery_mode"],
            Value::Value(Scalar::Text("cache".into()))
        );
        // Changed on the server: the server's value wins.
        let api = json!({"history_size": 10, "history_ttl": "10m0s"});
        fill_from_api(&mut state, api.as_object().unwrap(), &prior);
        assert_eq!(
            state["history_ttl"],
            Value::Value(Scalar::Text("10m0s".into()))
        );
    }

    #[test]
    fn the_request_body_leaves_defaults_out() {
        let a = attrs(&[
            ("presence", Scalar::Bool(true)),
            ("join_leave", Scalar::Bool(false)),
            ("history_ttl", Scalar::Text("0s".into())),
            ("history_size", Scalar::Int(5)),
            ("subscribe_proxy_name", Scalar::Text("default".into())),
        ]);
        assert_eq!(
            Json::Object(request_body(&a)),
            json!({"presence": true, "history_size": 5})
        );
    }

    #[test]
    fn unset_options_plan_their_default_and_set_ones_their_value() {
        let config = attrs(&[("presence", Scalar::Bool(true))]);
        let mut planned = Attrs::new();
        planned.insert("history_size".into(), Value::Value(Scalar::Int(7)));
        plan(&mut planned, &config);
        assert_eq!(planned["presence"], Value::Value(Scalar::Bool(true)));
        assert_eq!(planned["history_size"], Value::Value(Scalar::Int(0)));
    }

    fn paths(problems: Vec<Invalid>) -> Vec<String> {
        problems.into_iter().map(|p| p.path).collect()
    }

    #[test]
    fn validation_names_the_attribute() {
        assert_eq!(
            paths(validate(Some("a b"), &Attrs::new())),
            vec!["name".to_owned()]
        );
        assert_eq!(
            paths(validate(
                Some("chat"),
                &attrs(&[("history_size", Scalar::Int(-1))])
            )),
            vec!["history_size".to_owned()]
        );
        assert_eq!(
            paths(validate(
                Some("chat"),
                &attrs(&[("history_size", Scalar::Float(1.5))])
            )),
            vec!["history_size".to_owned()]
        );
        assert_eq!(
            paths(validate(
                Some("chat"),
                &attrs(&[("history_ttl", Scalar::Text("10".into()))])
            )),
            vec!["history_ttl".to_owned()]
        );
        assert_eq!(
            paths(validate(
                Some("chat"),
                &attrs(&[("force_recovery_mode", Scalar::Text("fast".into()))])
            )),
            vec!["force_recovery_mode".to_owned()]
        );
        // Whole-namespace rules from the data plane.
        assert_eq!(
            paths(validate(
                Some("chat"),
                &attrs(&[("history_size", Scalar::Int(10))])
            )),
            vec!["history_ttl".to_owned()]
        );
        assert_eq!(
            paths(validate(
                Some("chat"),
                &attrs(&[("force_recovery", Scalar::Bool(true))])
            )),
            vec!["force_recovery".to_owned()]
        );
        assert_eq!(
            paths(validate(
                Some("chat"),
                &attrs(&[
                    ("history_size", Scalar::Int(1)),
                    ("history_ttl", Scalar::Text("60s".into())),
                    ("force_recovery", Scalar::Bool(true)),
                    ("auto_cache_recover", Scalar::Bool(true)),
                ])
            )),
            vec!["auto_cache_recover".to_owned()]
        );
        assert_eq!(
            paths(validate(
                Some("chat"),
                &attrs(&[("channel_regex", Scalar::Text("(".into()))])
            )),
            vec!["channel_regex".to_owned()]
        );
        // A valid namespace, and one whose cross-field rules wait for unknown values.
        let good = attrs(&[
            ("history_size", Scalar::Int(10)),
            ("history_ttl", Scalar::Text("300s".into())),
            ("force_recovery", Scalar::Bool(true)),
            ("presence", Scalar::Bool(true)),
        ]);
        assert!(validate(Some("chat"), &good).is_empty());
        let mut pending = attrs(&[("history_size", Scalar::Int(10))]);
        pending.insert("history_ttl".into(), Value::Unknown);
        assert!(validate(None, &pending).is_empty());
    }

    #[test]
    fn delta_types_are_a_list_of_known_names_both_ways() {
        let spec = OPTIONS
            .iter()
            .find(|s| s.name == "allowed_delta_types")
            .unwrap();
        assert_eq!(
            spec.attr_type(),
            AttributeType::List(Box::new(AttributeType::String))
        );
        let fossil = Scalar::List(vec!["fossil".into()]);
        let a = attrs(&[
            ("allowed_delta_types", fossil.clone()),
            ("delta_publish", Scalar::Bool(true)),
        ]);
        assert!(validate(Some("chat"), &a).is_empty());
        assert_eq!(
            Json::Object(request_body(&a)),
            json!({"allowed_delta_types": ["fossil"], "delta_publish": true})
        );
        assert_eq!(
            spec.from_json(Some(&json!(["fossil"]))),
            fossil,
            "read back from the API"
        );
        assert_eq!(spec.from_json(None), Scalar::List(Vec::new()));
        assert_eq!(
            paths(validate(
                Some("chat"),
                &attrs(&[("allowed_delta_types", Scalar::List(vec!["xdelta".into()]))])
            )),
            vec!["allowed_delta_types".to_owned()]
        );
        // State round-trips through the untagged value type.
        let state: Scalar = serde_json::from_value(json!(["fossil"])).unwrap();
        assert_eq!(state, fossil);
    }
}
