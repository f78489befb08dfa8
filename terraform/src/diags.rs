//! Failures as Terraform diagnostics: API errors and configuration problems carry the path of
//! the attribute they are about, so Terraform points at the offending line of the
//! configuration.

use tf_provider::{AttributePath, Diagnostics};

use crate::client::ApiError;

/// A configuration problem found before anything is sent: the attribute path (as the data
/// plane prints it, e.g. `history_ttl` or `events[1]`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub path: String,
    pub message: String,
}

impl Invalid {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// An attribute path from the dotted form the data plane and the API use (`history_size`,
/// `allowed_origins[1]`).
pub fn attribute_path(path: &str) -> AttributePath {
    let mut out = AttributePath::root();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.add_attribute(name.to_owned());
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else { break };
            if let Ok(index) = inner[..end].parse::<i64>() {
                out.add_index(index);
            }
            rest = &inner[end + 1..];
        }
    }
    out
}

/// Reports an API failure; when the API names a refused field that is one of `attributes`, the
/// error is attached to that attribute.
pub fn api_error(diags: &mut Diagnostics, summary: &str, err: &ApiError, attributes: &[&str]) {
    api_error_under(diags, summary, err, "", attributes);
}

/// Reports an API failure about a part of the request: when the refused field is `prefix`
/// followed by one of `attributes` (`settings.webhooks.` and `url`), the error is attached to
/// that attribute.
pub fn api_error_under(
    diags: &mut Diagnostics,
    summary: &str,
    err: &ApiError,
    prefix: &str,
    attributes: &[&str],
) {
    let path = err
        .field()
        .and_then(|field| field.strip_prefix(prefix))
        .filter(|field| {
            let head = field.split(['.', '[']).next().unwrap_or_default();
            attributes.contains(&head)
        });
    match path {
        Some(field) => diags.error(summary.to_owned(), err.to_string(), attribute_path(field)),
        None => diags.root_error(summary.to_owned(), err.to_string()),
    }
}

/// Reports every configuration problem at its attribute.
pub fn invalid_all(diags: &mut Diagnostics, problems: impl IntoIterator<Item = Invalid>) {
    for problem in problems {
        invalid(diags, &problem);
    }
}

/// Reports a configuration problem at its attribute.
pub fn invalid(diags: &mut Diagnostics, problem: &Invalid) {
    let summary = format!("Invalid value for {}", problem.path);
    if problem.path.is_empty() {
        diags.root_error(summary, problem.message.clone());
    } else {
        diags.error(
            summary,
            problem.message.clone(),
            attribute_path(&problem.path),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tf_provider::AttributePathStep;

    #[test]
    fn dotted_paths_become_attribute_steps() {
        let path = attribute_path("allowed_origins[1]");
        assert_eq!(
            path.steps,
            vec![
                AttributePathStep::Attribute("allowed_origins".into()),
                AttributePathStep::Index(1)
            ]
        );
        assert_eq!(attribute_path("name").steps.len(), 1);
    }

    #[test]
    fn api_errors_attach_to_known_attributes_only() {
        let err = ApiError::Api {
            status: 400,
            code: "bad_request".into(),
            message: "must be set together".into(),
            field: Some("history_ttl".into()),
        };
        let mut diags = Diagnostics::default();
        api_error(&mut diags, "cannot save", &err, &["history_ttl"]);
        assert_eq!(diags.errors[0].attribute.steps.len(), 1);
        let mut diags = Diagnostics::default();
        api_error(&mut diags, "cannot save", &err, &["name"]);
        assert!(diags.errors[0].attribute.steps.is_empty());
    }

    #[test]
    fn errors_under_a_prefix_attach_to_the_attribute_after_it() {
        let err = ApiError::Api {
            status: 400,
            code: "bad_request".into(),
            message: "not https".into(),
            field: Some("settings.webhooks.url".into()),
        };
        let mut diags = Diagnostics::default();
        api_error_under(
            &mut diags,
            "cannot save",
            &err,
            "settings.webhooks.",
            &["url"],
        );
        assert_eq!(
            diags.errors[0].attribute.steps,
            vec![AttributePathStep::Attribute("url".into())]
        );
        let mut diags = Diagnostics::default();
        api_error(&mut diags, "cannot save", &err, &["url"]);
        assert!(diags.errors[0].attribute.steps.is_empty());
    }
}
