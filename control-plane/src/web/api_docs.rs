//! The REST API reference page: the OpenAPI document the API serves
//! ([`crate::rest::openapi::spec`]) read into plain rows for a template — operations grouped
//! by tag with their method, path, summary, parameters, request body and answers, then every
//! schema with its fields — so the page is rendered on the server, needs no script, and always
//! says what `/v1/openapi.json` says.

use serde_json::{Map, Value};

/// One parameter of an operation.
pub struct ApiParam {
    pub name: String,
    /// `path` or `query`.
    pub location: String,
    pub required: bool,
    pub description: String,
}

/// One operation.
pub struct ApiOp {
    /// The anchor of its card.
    pub anchor: String,
    /// `GET`, `POST`, …
    pub method: String,
    /// `get`, `post`, … (for its badge's colour).
    pub method_class: String,
    pub path: String,
    pub summary: String,
    /// Whether it needs a management token.
    pub bearer: bool,
    pub params: Vec<ApiParam>,
    /// The schema its JSON body follows.
    pub body: Option<String>,
    /// The success status, then the error statuses.
    pub success: String,
    pub errors: Vec<String>,
}

/// The operations of one tag.
pub struct ApiGroup {
    pub anchor: String,
    pub name: String,
    pub description: String,
    pub ops: Vec<ApiOp>,
}

/// One field of a schema.
pub struct ApiField {
    pub name: String,
    /// Its type in words (`string`, `integer or null`, `array of string`, a schema name).
    pub kind: String,
    /// The schema its type names, to link to.
    pub link: Option<String>,
    pub required: bool,
    /// Description, allowed values, default and bounds.
    pub notes: String,
}

/// One schema.
pub struct ApiSchema {
    pub name: String,
    pub description: String,
    pub fields: Vec<ApiField>,
    /// Long schemas (the channel options) start folded.
    pub folded: bool,
}

/// A schema's name from `#/components/schemas/NAME`.
fn ref_name(v: &Value) -> Option<String> {
    v.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
        .map(str::to_owned)
}

/// A property's type in words, and the schema it links to.
fn kind_of(schema: &Value) -> (String, Option<String>) {
    if let Some(name) = ref_name(schema) {
        return (name.clone(), Some(name));
    }
    match schema.get("type") {
        Some(Value::String(t)) if t == "array" => {
            let (item, link) = schema
                .get("items")
                .map(kind_of)
                .unwrap_or_else(|| ("any".into(), None));
            (format!("array of {item}"), link)
        }
        Some(Value::String(t)) if t == "object" => match schema.get("additionalProperties") {
            Some(Value::Object(values)) => {
                let (v, link) = kind_of(&Value::Object(values.clone()));
                (format!("map of {v}"), link)
            }
            _ => ("object".into(), None),
        },
        Some(Value::String(t)) => (t.clone(), None),
        Some(Value::Array(ts)) => (
            ts.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" or "),
            None,
        ),
        _ => ("any".into(), None),
    }
}

/// What else a property's schema says, in one line.
fn notes_of(schema: &Value) -> String {
    let mut notes = Vec::new();
    if let Some(d) = schema.get("description").and_then(Value::as_str) {
        notes.push(d.to_owned());
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        notes.push(format!("one of {}", values.join(", ")));
    }
    if let Some(f) = schema.get("format").and_then(Value::as_str) {
        notes.push(format!("format {f}"));
    }
    for (key, words) in [
        ("minimum", "at least"),
        ("maximum", "at most"),
        ("minLength", "at least this many characters:"),
    ] {
        if let Some(n) = schema.get(key) {
            notes.push(format!("{words} {n}"));
        }
    }
    if let Some(d) = schema.get("default") {
        notes.push(format!("default {d}"));
    }
    if let Some(e) = schema.get("example") {
        notes.push(format!("e.g. {e}"));
    }
    notes.join("; ")
}

fn fields_of(schema: &Value) -> Vec<ApiField> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let empty = Map::new();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    props
        .iter()
        .map(|(name, p)| {
            let (kind, link) = kind_of(p);
            ApiField {
                name: name.clone(),
                kind,
                link,
                required: required.contains(&name.as_str()),
                notes: notes_of(p),
            }
        })
        .collect()
}

/// An anchor from any text: lower-case letters and digits, other runs as `-`.
fn anchor(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// The operations of `spec`, grouped by tag in the order of its `tags`.
pub fn groups(spec: &Value) -> Vec<ApiGroup> {
    let mut groups: Vec<ApiGroup> = spec["tags"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|t| {
            let name = t["name"].as_str().unwrap_or_default().to_owned();
            ApiGroup {
                anchor: format!("tag-{}", anchor(&name)),
                description: t["description"].as_str().unwrap_or_default().to_owned(),
                name,
                ops: Vec::new(),
            }
        })
        .collect();
    let empty = Map::new();
    let paths = spec["paths"].as_object().unwrap_or(&empty);
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            let Some(op) = item.get(method) else {
                continue;
            };
            let tag = op["tags"][0].as_str().unwrap_or("Other");
            let group = match groups.iter().position(|g| g.name == tag) {
                Some(i) => &mut groups[i],
                None => {
                    groups.push(ApiGroup {
                        anchor: format!("tag-{}", anchor(tag)),
                        name: tag.to_owned(),
                        description: String::new(),
                        ops: Vec::new(),
                    });
                    groups.last_mut().expect("just pushed")
                }
            };
            let mut statuses: Vec<&String> = op["responses"]
                .as_object()
                .map(|r| r.keys().collect())
                .unwrap_or_default();
            statuses.sort();
            let (errors, success): (Vec<&String>, Vec<&String>) =
                statuses.into_iter().partition(|s| s.as_str() >= "400");
            group.ops.push(ApiOp {
                anchor: format!("op-{method}-{}", anchor(path)),
                method: method.to_ascii_uppercase(),
                method_class: method.to_owned(),
                path: path.clone(),
                summary: op["summary"].as_str().unwrap_or_default().to_owned(),
                bearer: op.get("security").is_some(),
                params: op["parameters"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|p| ApiParam {
                        name: p["name"].as_str().unwrap_or_default().to_owned(),
                        location: p["in"].as_str().unwrap_or_default().to_owned(),
                        required: p["required"].as_bool().unwrap_or(false),
                        description: p["description"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect(),
                body: ref_name(&op["requestBody"]["content"]["application/json"]["schema"]),
                success: success.into_iter().cloned().collect::<Vec<_>>().join(", "),
                errors: errors.into_iter().cloned().collect(),
            });
        }
    }
    groups.retain(|g| !g.ops.is_empty());
    groups
}

/// Every schema of `spec`, in name order.
pub fn schemas(spec: &Value) -> Vec<ApiSchema> {
    let empty = Map::new();
    let mut out: Vec<ApiSchema> = spec["components"]["schemas"]
        .as_object()
        .unwrap_or(&empty)
        .iter()
        .map(|(name, schema)| {
            let fields = fields_of(schema);
            ApiSchema {
                name: name.clone(),
                description: schema["description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                folded: fields.len() > 12,
                fields,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::openapi::{spec, TAGS};
    use crate::rest::ROUTES;

    #[test]
    fn every_route_is_listed_once_under_its_tag_with_its_parameters_and_body() {
        let spec = spec();
        let groups = groups(&spec);
        assert_eq!(
            groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
            TAGS.iter().map(|t| t.0).collect::<Vec<_>>()
        );
        let ops: Vec<&ApiOp> = groups.iter().flat_map(|g| &g.ops).collect();
        assert_eq!(ops.len(), ROUTES.len());
        let put = ops
            .iter()
            .find(|o| o.method == "PUT" && o.path == "/v1/projects/{id}/namespaces/{name}")
            .expect("namespace PUT");
        assert_eq!(put.body.as_deref(), Some("ChannelOptions"));
        assert!(put.bearer);
        assert_eq!(
            put.params
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            ["id", "name"]
        );
        assert_eq!(put.success, "200, 201", "replaced or created");
        assert!(put.errors.contains(&"404".to_owned()));
        let signup = ops.iter().find(|o| o.path == "/v1/signup").expect("signup");
        assert!(!signup.bearer);
        let usage = ops
            .iter()
            .find(|o| o.path == "/v1/projects/{id}/usage")
            .expect("usage");
        assert!(usage
            .params
            .iter()
            .any(|p| p.name == "step" && p.location == "query"));
        let anchors: std::collections::HashSet<&str> =
            ops.iter().map(|o| o.anchor.as_str()).collect();
        assert_eq!(anchors.len(), ops.len(), "anchors are unique");
    }

    #[test]
    fn schemas_list_their_fields_with_types_in_words() {
        let schemas = schemas(&spec());
        let token = schemas
            .iter()
            .find(|s| s.name == "TokenRequest")
            .expect("TokenRequest");
        let days = token
            .fields
            .iter()
            .find(|f| f.name == "expires_in_days")
            .expect("expires_in_days");
        assert_eq!(days.kind, "integer or null");
        assert!(days.notes.contains("at most 365"), "{}", days.notes);
        assert!(token.fields.iter().any(|f| f.name == "email" && f.required));
        let patch = schemas.iter().find(|s| s.name == "ProjectPatch").unwrap();
        let settings = patch.fields.iter().find(|f| f.name == "settings").unwrap();
        assert_eq!(settings.kind, "object");
        let options = schemas.iter().find(|s| s.name == "ChannelOptions").unwrap();
        assert!(options.folded);
        let proxy = schemas.iter().find(|s| s.name == "Proxy").unwrap();
        let headers = proxy
            .fields
            .iter()
            .find(|f| f.name == "http_headers")
            .unwrap();
        assert_eq!(headers.kind, "array of string");
    }
}
