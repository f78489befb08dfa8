//! Where a verifier's JWKS keys come from: one fixed endpoint, or a template
//! (`https://auth.example.com/{{tenant}}/jwks`) filled per token from the named groups of the
//! token's `iss`/`aud` matched against `issuer_regex`/`audience_regex`. The config loader has
//! already checked that every placeholder stands in the URL's path and can take only the fixed
//! values the operator listed ([`rotor_tenant_config::jwks_template`]); here a token's values
//! are checked against those lists again before any URL is built, so a forged claim can only
//! pick one of the listed endpoints. Each resolved endpoint keeps its own key cache.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::Mutex;
use rotor_tenant_config::TokenSection;

use super::jwks::Jwks;
use super::jwt::TokenError;

/// Most resolved endpoints one template keeps key caches for.
const MAX_ENDPOINTS: usize = 1024;

/// A templated endpoint and the key caches of the URLs it resolved to.
pub struct JwksTemplate {
    template: String,
    values: BTreeMap<String, BTreeSet<String>>,
    endpoints: Mutex<HashMap<String, Arc<Jwks>>>,
}

/// A verifier's JWKS keys.
pub enum JwksSource {
    Fixed(Jwks),
    Template(JwksTemplate),
}

impl JwksSource {
    /// The source `cfg.jwks_public_endpoint` describes (`None` when it is empty).
    pub fn new(cfg: &TokenSection) -> Result<Option<Self>, String> {
        let url = cfg.jwks_public_endpoint.trim();
        if url.is_empty() {
            return Ok(None);
        }
        let values = rotor_tenant_config::jwks_template::template_values(cfg)
            .map_err(|e| format!("jwks_public_endpoint: {e}"))?;
        if values.is_empty() {
            return Jwks::new(url).map(|j| Some(Self::Fixed(j)));
        }
        Ok(Some(Self::Template(JwksTemplate {
            template: url.to_owned(),
            values,
            endpoints: Mutex::new(HashMap::new()),
        })))
    }

    /// Whether keys depend on the token's variables.
    pub fn is_template(&self) -> bool {
        matches!(self, Self::Template(_))
    }

    /// The key a token names; `vars` are the token's named-group values (templates only).
    pub async fn key(
        &self,
        vars: &HashMap<String, String>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<DecodingKey>, TokenError> {
        match self {
            Self::Fixed(jwks) => jwks.key(kid, alg).await,
            Self::Template(t) => t.endpoint(vars)?.key(kid, alg).await,
        }
    }
}

impl JwksTemplate {
    /// The endpoint for a token's variables, each of which must be one of its listed values.
    fn endpoint(&self, vars: &HashMap<String, String>) -> Result<Arc<Jwks>, TokenError> {
        let mut url = self.template.clone();
        for (name, allowed) in &self.values {
            let value = vars.get(name).ok_or_else(|| {
                TokenError::Invalid(format!("the token gives no value for {{{{{name}}}}}"))
            })?;
            if !allowed.contains(value) {
                return Err(TokenError::Invalid(format!(
                    "{{{{{name}}}}} may not be {value:?}"
                )));
            }
            url = url.replace(&format!("{{{{{name}}}}}"), value);
        }
        let mut endpoints = self.endpoints.lock();
        if let Some(jwks) = endpoints.get(&url) {
            return Ok(jwks.clone());
        }
        if endpoints.len() >= MAX_ENDPOINTS {
            return Err(TokenError::Unavailable("too many JWKS endpoints".into()));
        }
        let jwks = Arc::new(Jwks::new(&url).map_err(TokenError::Invalid)?);
        endpoints.insert(url, jwks.clone());
        Ok(jwks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> JwksSource {
        JwksSource::new(&TokenSection {
            jwks_public_endpoint: "http://127.0.0.1:9/{{tenant}}/jwks".into(),
            issuer_regex: r"^https://auth\.example/(?P<tenant>acme|globex)$".into(),
            ..Default::default()
        })
        .unwrap()
        .unwrap()
    }

    #[test]
    fn only_listed_values_resolve_to_endpoints() {
        let JwksSource::Template(t) = template() else {
            panic!("a template")
        };
        let vars = |v: &str| HashMap::from([("tenant".to_owned(), v.to_owned())]);
        assert!(t.endpoint(&vars("acme")).is_ok());
        assert!(t.endpoint(&vars("globex")).is_ok());
        for forged in ["evil", "../evil", "acme/../../evil", "evil.example#", ""] {
            assert!(
                matches!(t.endpoint(&vars(forged)), Err(TokenError::Invalid(_))),
                "{forged}"
            );
        }
        assert!(matches!(
            t.endpoint(&HashMap::new()),
            Err(TokenError::Invalid(_))
        ));
        assert_eq!(t.endpoints.lock().len(), 2);
    }
}
