//! The HTTP side of the proxies: one shared connection pool for the whole process, one POST per
//! event with the proxy's own deadline over the entire exchange (connect, send, read), and the
//! answer decoded into a result, the backend's error, or its disconnect.

use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::types::{Answer, DisconnectAnswer, ErrorAnswer};
use super::{ClientHeaders, Endpoint, ProxyError};
use crate::egress::Egress;
use crate::protocol::{ClientError, Disconnect};

/// Largest answer accepted from a backend.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Longest disconnect reason a WebSocket close frame can carry.
const MAX_REASON_BYTES: usize = 123;

/// Calls proxies. Cheap to share: every call reuses one pool of keep-alive connections.
#[derive(Debug, Clone)]
pub struct ProxyClient {
    http: reqwest::Client,
    egress: Egress,
}

impl Default for ProxyClient {
    fn default() -> Self {
        Self::new()
    }
}

impl ProxyClient {
    /// A client with its own connection pool. Redirects are not followed and no HTTP proxy
    /// from the environment is used: a proxy endpoint is the exact URL the tenant configured.
    pub fn new() -> Self {
        let egress = Egress::current();
        let http = egress.http_client(concat!("rotor/", env!("CARGO_PKG_VERSION")));
        Self { http, egress }
    }

    /// POSTs `body` to the proxy and decodes its answer. `Ok(None)` is an answer without a
    /// result; the backend's `error` and `disconnect` come back as [`ProxyError::Refused`] and
    /// [`ProxyError::Disconnect`].
    pub async fn call<B, R>(
        &self,
        endpoint: &Endpoint,
        headers: &ClientHeaders,
        body: &B,
    ) -> Result<Option<R>, ProxyError>
    where
        B: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.egress
            .check(&endpoint.url)
            .map_err(|e| ProxyError::Egress(e.to_string()))?;
        let body = serde_json::to_vec(body).map_err(|e| ProxyError::Encode(e.to_string()))?;
        let request = self
            .http
            .post(endpoint.url.clone())
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

/// Decodes an answer body; `disconnect` wins over `error`, which wins over `result`.
fn decode<R: DeserializeOwned>(bytes: &[u8]) -> Result<Option<R>, ProxyError> {
    let answer: Answer<R> =
        serde_json::from_slice(bytes).map_err(|e| ProxyError::Malformed(e.to_string()))?;
    if let Some(d) = answer.disconnect {
        return Err(ProxyError::Disconnect(disconnect(d)?));
    }
    if let Some(e) = answer.error {
        return Err(ProxyError::Refused(client_error(e)?));
    }
    Ok(answer.result)
}

fn client_error(e: ErrorAnswer) -> Result<ClientError, ProxyError> {
    if e.code == 0 {
        return Err(ProxyError::Malformed("error without a code".into()));
    }
    Ok(ClientError {
        code: e.code,
        message: e.message.into(),
        temporary: e.temporary,
    })
}

fn disconnect(d: DisconnectAnswer) -> Result<Disconnect, ProxyError> {
    let code = u16::try_from(d.code)
        .ok()
        .filter(|c| (3000..=4999).contains(c))
        .ok_or_else(|| {
            ProxyError::Malformed(format!("disconnect code {} is not in 3000-4999", d.code))
        })?;
    let mut reason = d.reason;
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    Ok(Disconnect::custom(code, reason))
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
