//! A gRPC connection at the edge: a hosted project's gRPC server API over HTTP/2 with prior
//! knowledge. The first request's headers ([`h2::first_request`]) name the project — its own
//! host in `:authority` when projects are served at their own host, else the `rotor-project`
//! metadata entry — and the connection is charged against the project's budget like one
//! request (a keyed call like one of its backend's API calls), then handed whole to the
//! project's process with the plan's request rate, which the process holds every call on the
//! connection to. Whatever the edge refuses is answered as a gRPC status (see [`h2::refusal`]).
//!
//! gRPC clients wait for the server's settings before sending a request, so the edge sends
//! its own (none changed) at once and keeps the client's acknowledgement of them out of what
//! it hands over; the process then sends its settings as any server does.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Duration;

use bytes::BytesMut;
use rotor_handoff::grpc;
use rotor_handoff::Outcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::h2::{self, FirstRequest, GrpcStatus, H2Error};
use super::{budget_refusal, budgets, head_timeout, resolve, Active, Edge, Unroutable};
use crate::settings::TenantHost;

/// How long a refused client has to read the edge's answer before the socket closes.
const LINGER: Duration = Duration::from_secs(1);

/// Serves a connection whose first bytes (in `buf`) are the HTTP/2 preface.
pub(super) async fn serve(
    mut stream: TcpStream,
    mut buf: BytesMut,
    peer: SocketAddr,
    edge: &Edge,
    tenant_host: Option<&TenantHost>,
) -> io::Result<()> {
    // gRPC clients wait for the server's settings before their first request.
    stream.write_all(&h2::settings()).await?;
    let first = match tokio::time::timeout(head_timeout(), read_first(&mut stream, &mut buf)).await
    {
        Ok(Ok(Some(first))) => first,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(ReadError::H2(e))) => {
            tracing::debug!(%peer, error = %e, "HTTP/2 connection refused");
            return finish(&mut stream, &h2::protocol_error()).await;
        }
        Ok(Err(ReadError::Io(e))) => return Err(e),
        Err(_) => return Ok(()),
    };
    if !first.grpc {
        // The dashboard and the other endpoints speak HTTP/1.1; only gRPC is routed over h2.
        return finish(&mut stream, &h2::http_1_1_required()).await;
    }
    let refuse = |status, message: &str| h2::refusal(first.stream_id, status, message);
    let slug = match project_of(&first, tenant_host) {
        Ok(slug) => slug,
        Err((status, message)) => return finish(&mut stream, &refuse(status, message)).await,
    };
    let Active {
        handoff,
        budget,
        api_keys,
        ..
    } = match resolve(&edge.routes, &edge.wakes, &slug, peer).await {
        Ok(active) => active,
        Err(unroutable) => {
            let (status, message) = unroutable_status(unroutable);
            return finish(&mut stream, &refuse(status, message)).await;
        }
    };
    let kind = if first.api_key.is_some_and(|k| api_keys.holds(&k)) {
        budgets::Kind::Api
    } else {
        budgets::Kind::Request
    };
    if let Err(refusal) = edge.routes.budgets().charge(&slug, budget, kind, peer.ip()) {
        let (_, message) = budget_refusal(kind, refusal);
        return finish(&mut stream, &refuse(GrpcStatus::ResourceExhausted, message)).await;
    }
    let Some(path) = handoff else {
        return finish(
            &mut stream,
            &refuse(GrpcStatus::Unavailable, "project unavailable"),
        )
        .await;
    };
    // The acknowledgement of the edge's settings is the edge's: the process sends its own.
    let early = match first.settings_ack_at {
        Some(at) => h2::without_ack(&buf, at),
        None => buf.to_vec(),
    };
    let payload = grpc::payload(budget.requests_per_second, &early);
    match rotor_handoff::hand_off(&path, stream.as_fd(), &payload).await {
        Outcome::Accepted => Ok(()),
        Outcome::NotTaken(e) => {
            tracing::info!(%slug, %peer, error = %e, "gRPC hand-off not taken");
            finish(
                &mut stream,
                &refuse(GrpcStatus::Unavailable, "project unavailable"),
            )
            .await
        }
        Outcome::Unknown(e) => {
            tracing::warn!(%slug, %peer, error = %e, "gRPC hand-off unacknowledged; closing");
            Ok(())
        }
    }
}

enum ReadError {
    H2(H2Error),
    Io(io::Error),
}

/// Reads until the first request's headers are complete; `None` when the client left first.
async fn read_first(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<Option<FirstRequest>, ReadError> {
    loop {
        if !h2::may_be_preface(buf) {
            return Err(ReadError::H2(H2Error::Malformed("not the HTTP/2 preface")));
        }
        if buf.len() >= h2::PREFACE.len() {
            if let Some(first) = h2::first_request(buf).map_err(ReadError::H2)? {
                return Ok(Some(first));
            }
        }
        if stream.read_buf(buf).await.map_err(ReadError::Io)? == 0 {
            return Ok(None);
        }
    }
}

/// The project the first request names, or the status refusing it.
fn project_of(
    first: &FirstRequest,
    tenant_host: Option<&TenantHost>,
) -> Result<String, (GrpcStatus, &'static str)> {
    match tenant_host {
        Some(pattern) => first
            .authority
            .as_deref()
            .and_then(|a| pattern.slug_of(a))
            .map(str::to_ascii_lowercase)
            .ok_or((
                GrpcStatus::NotFound,
                "no project is served at this host: connect to the project's own host",
            )),
        None => first
            .project
            .as_deref()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .map(str::to_owned)
            .ok_or((
                GrpcStatus::InvalidArgument,
                "name the project in the rotor-project metadata (its slug)",
            )),
    }
}

/// The gRPC status of a request whose project cannot take it.
fn unroutable_status(unroutable: Unroutable) -> (GrpcStatus, &'static str) {
    match unroutable {
        Unroutable::WakeBudget(_) => (
            GrpcStatus::ResourceExhausted,
            "too many sleeping projects woken from this address; retry later",
        ),
        Unroutable::Capacity => (
            GrpcStatus::Unavailable,
            "the service is at capacity and cannot start this project now; retry shortly",
        ),
        Unroutable::Parked => (GrpcStatus::Unavailable, "project is waking up"),
        Unroutable::Suspended => (GrpcStatus::PermissionDenied, "project is suspended"),
        Unroutable::Starting => (GrpcStatus::Unavailable, "project is starting"),
        Unroutable::Moving => (
            GrpcStatus::Unavailable,
            "the project is moving to another Redis deployment; retry shortly",
        ),
        Unroutable::Unknown => (GrpcStatus::NotFound, "unknown project"),
    }
}

/// Writes the edge's answer, then closes once the client has read it (or [`LINGER`] passed):
/// closing with unread input would reset the connection and lose the answer.
async fn finish(stream: &mut TcpStream, answer: &[u8]) -> io::Result<()> {
    stream.write_all(answer).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 4096];
    let drain = async { while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {} };
    let _ = tokio::time::timeout(LINGER, drain).await;
    Ok(())
}
