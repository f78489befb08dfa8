//! The HTTP side of the proxies: one shared connection pool for the whole process, one POST per
//! event with the proxy's own deadline over the entire exchange (connect, send, read), and the
//! JSON answer decoded into a result, the backend's error, or its disconnect.

use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::types::Answer;
use super::{settle, ClientHeaders, Endpoint, ProxyError};
use crate::egress::Egress;

/// Largest answer accepted from a backend.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// The HTTP transport. Cheap to share: every call reuses one pool of keep-alive connections.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    http: reqwest::Client,
    egress: Egress,
}

impl HttpTransport {
    /// A transport with its own connection pool under `egress`. Redirects are not followed and
    /// no HTTP proxy from the environment is used: a proxy endpoint is the exact URL the tenant
    /// configured.
    pub fn new(egress: Egress) -> Self {
        let http = egress.http_client(concat!("rotor/", env!("CARGO_PKG_VERSION")));
        Self { http, egress }
    }

    /// POSTs `body` to `url` (the endpoint's) and decodes the answer.
    pub(super) async fn call<B, R>(
        &self,
        endpoint: &Endpoint,
        url: &reqwest::Url,
        headers: &ClientHeaders,
        body: &B,
    ) -> Result<Option<R>, ProxyError>
    where
        B: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.egress
            .check(url)
            .map_err(|e| ProxyError::Egress(e.to_string()))?;
        let body = serde_json::to_vec(body).map_err(|e| ProxyError::Encode(e.to_string()))?;
        let request = self
            .http
            .post(url.clone())
            .headers(endpoint.request_headers(headers))
            .body(body);
        let exchange = async {
            let mut response = request
                .send()
                .await
                .map_err(|e| ProxyError::Transport(e.without_url()))?;
            let status = response.status().as_u16();
            if status != 200 {
                return Err(endpoint.status_error(status));
            }
            let mut buf = BytesMut::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| ProxyError::Transport(e.without_url()))?
            {
                if buf.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(ProxyError::Malformed("answer is too large".into()));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok::<Bytes, ProxyError>(buf.freeze())
        };
        let bytes = tokio::time::timeout(endpoint.timeout, exchange)
            .await
            .map_err(|_| ProxyError::Timeout(endpoint.timeout))??;
        decode(&bytes)
    }
}

/// Decodes an answer body (see [`settle`]).
fn decode<R: DeserializeOwned>(bytes: &[u8]) -> Result<Option<R>, ProxyError> {
    let answer: Answer<R> =
        serde_json::from_slice(bytes).map_err(|e| ProxyError::Malformed(e.to_string()))?;
    settle(answer.disconnect, answer.error, answer.result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::types::RpcResult;

    #[test]
    fn answers_map_to_results_errors_and_disconnects() {
        let r: Option<RpcResult> = decode(br#"{"result":{"data":{"x":1}}}"#).unwrap();
        assert!(r.unwrap().data.is_some());
        assert!(decode::<RpcResult>(b"{}").unwrap().is_none());
        match decode::<RpcResult>(br#"{"error":{"code":1001,"message":"nope","temporary":true}}"#) {
            Err(ProxyError::Refused(e)) => {
                assert_eq!((e.code, e.temporary), (1001, true));
                assert_eq!(e.message, "nope");
            }
            other => panic!("{other:?}"),
        }
        match decode::<RpcResult>(
            br#"{"disconnect":{"code":4500,"reason":"bye"},"error":{"code":1}}"#,
        ) {
            Err(ProxyError::Disconnect(d)) => assert_eq!((d.code, &*d.reason), (4500, "bye")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode::<RpcResult>(br#"{"disconnect":{"code":1000}}"#),
            Err(ProxyError::Malformed(_))
        ));
        assert!(matches!(
            decode::<RpcResult>(b"not json"),
            Err(ProxyError::Malformed(_))
        ));
    }
}
