//! A hosted project's gRPC API over connections the edge hands over (see
//! `rotor_handoff::grpc`): a tonic client's HTTP/2 connection, read by a stand-in
//! edge up to the preface and handed to the process with its mark, is served by the project's
//! gRPC API; calls on it are held to the marked rate; switching the API off refuses calls on
//! the open connection at once; and a process without a gRPC API closes such a connection.

mod common;

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;

use common::{TestServer, WAIT};
use rotor_data_plane::grpc_api::proto::centrifugo_api_client::CentrifugoApiClient;
use rotor_data_plane::grpc_api::proto::*;
use rotor_data_plane::grpc_api::Handed;
use rotor_data_plane::handoff::HandoffListener;
use rotor_data_plane::server::Mode;
use rotor_handoff::grpc::{self, PREFACE};
use rotor_handoff::{hand_off, Outcome};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// A node with a hand-off socket; `grpc` gives it the gRPC API of handed-off connections.
async fn start(grpc: bool) -> (TestServer, PathBuf) {
    let server = TestServer::start(json!({"grpc_api": {"enabled": true}})).await;
    let path = std::env::temp_dir().join(format!(
        "rotor-grpc-handoff-{}.sock",
        uuid::Uuid::new_v4().simple()
    ));
    let mut listener = HandoffListener::bind(&path).expect("bind hand-off socket");
    if grpc {
        let handed = Handed::new(server.node.clone(), server.node.shutdown.clone());
        listener = listener.with_grpc(Arc::new(handed));
    }
    let app = rotor_data_plane::server::router(server.node.clone(), Mode::Hosted);
    tokio::spawn(listener.serve(app, server.node.shutdown.clone(), server.node.clone()));
    (server, path)
}

/// What the edge does with a gRPC client: reads the preface, then hands the connection over
/// with the plan's `rate`. Returns the client over that connection.
async fn client_via_handoff(path: &std::path::Path, rate: u32) -> CentrifugoApiClient<Channel> {
    let edge = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = edge.local_addr().unwrap();
    let path = path.to_owned();
    tokio::spawn(async move {
        let (mut socket, _) = edge.accept().await.unwrap();
        let mut early = vec![0u8; PREFACE.len()];
        socket.read_exact(&mut early).await.unwrap();
        assert_eq!(
            early, PREFACE,
            "a tonic client opens with the HTTP/2 preface"
        );
        let payload = grpc::payload(rate, &early);
        let outcome = hand_off(&path, socket.as_fd(), &payload).await;
        assert!(matches!(outcome, Outcome::Accepted), "{outcome:?}");
    });
    let channel = tokio::time::timeout(
        WAIT,
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect(),
    )
    .await
    .expect("connect timeout")
    .expect("connect");
    CentrifugoApiClient::new(channel)
}

fn publish(n: u32) -> Request<PublishRequest> {
    let mut r = Request::new(PublishRequest {
        channel: "chat:handed".into(),
        data: format!("{{\"n\":{n}}}").into_bytes(),
        ..Default::default()
    });
    r.metadata_mut()
        .insert("authorization", "apikey api-key".parse().unwrap());
    r.set_timeout(WAIT);
    r
}

async fn call(
    client: &mut CentrifugoApiClient<Channel>,
    n: u32,
) -> Result<PublishResponse, tonic::Status> {
    tokio::time::timeout(WAIT, client.publish(publish(n)))
        .await
        .expect("gRPC call timed out")
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_handed_off_connection_is_served_and_held_to_the_projects_rate() {
    let (s, path) = start(true).await;
    let mut client = client_via_handoff(&path, 2).await;
    for n in 1..=2 {
        let reply = call(&mut client, n).await.expect("within the rate");
        assert!(reply.error.is_none(), "{reply:?}");
        assert_eq!(reply.result.expect("result").offset, u64::from(n));
    }
    // Two a second: a burst of calls on the same connection runs into the limit.
    let mut refused = None;
    for n in 3..=20 {
        match call(&mut client, n).await {
            Ok(_) => {}
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let status = refused.expect("a burst past the rate is refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // The rate comes before the key: a call without one is refused for the rate as well.
    let missing_key = tokio::time::timeout(WAIT, client.publish(without_key(99)))
        .await
        .unwrap();
    assert_eq!(missing_key.unwrap_err().code(), Code::ResourceExhausted);
    drop(s);
}

/// A publish whose key is wrong.
fn without_key(n: u32) -> Request<PublishRequest> {
    let mut r = publish(n);
    r.metadata_mut()
        .insert("authorization", "apikey wrong-key".parse().unwrap());
    r
}

/// Calls with a bad key cost the project's rate like any other, so a connection cannot try
/// keys faster than the plan allows.
#[tokio::test]
async fn calls_with_a_bad_key_are_held_to_the_projects_rate() {
    let (_s, path) = start(true).await;
    let mut client = client_via_handoff(&path, 2).await;
    let mut codes = Vec::new();
    for n in 0..3 {
        let r = tokio::time::timeout(WAIT, client.publish(without_key(n)))
            .await
            .expect("gRPC call timed out");
        codes.push(r.unwrap_err().code());
    }
    assert_eq!(
        codes,
        [
            Code::Unauthenticated,
            Code::Unauthenticated,
            Code::ResourceExhausted
        ]
    );
}

/// A connection whose calls keep failing authentication is ended by the server after a few,
/// as a kept HTTP connection ends on a 401.
#[tokio::test]
async fn a_connection_that_keeps_failing_authentication_is_closed() {
    let (_s, path) = start(true).await;
    let mut client = client_via_handoff(&path, 0).await;
    let max = rotor_data_plane::grpc_api::MAX_AUTH_FAILURES;
    for n in 0..max - 1 {
        let r = tokio::time::timeout(WAIT, client.publish(without_key(n)))
            .await
            .expect("gRPC call timed out");
        assert_eq!(r.unwrap_err().code(), Code::Unauthenticated);
    }
    // The last allowed failure ends the connection (its own answer may not arrive); the stand-in
    // edge accepts one connection only, so nothing after it reaches the server.
    let last = tokio::time::timeout(WAIT, client.publish(without_key(max)))
        .await
        .expect("gRPC call timed out");
    assert!(last.is_err());
    let after = tokio::time::timeout(WAIT, client.publish(publish(1)))
        .await
        .expect("gRPC call timed out");
    let status = after.expect_err("the connection is gone, even for a good key");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[tokio::test]
async fn switching_the_api_off_refuses_calls_on_an_open_connection() {
    let (s, path) = start(true).await;
    let mut client = client_via_handoff(&path, 0).await;
    call(&mut client, 1).await.expect("the API is on");
    let mut config = s.node.config.load().tenant.clone();
    config.grpc_api.enabled = false;
    s.node.config.apply(config).expect("config applies");
    let status = call(&mut client, 2).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("not enabled"), "{status:?}");
}

#[tokio::test]
async fn without_a_grpc_api_a_handed_off_grpc_connection_is_closed() {
    let (_s, path) = start(false).await;
    let edge = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = edge.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = edge.accept().await.unwrap();
        let mut early = vec![0u8; PREFACE.len()];
        socket.read_exact(&mut early).await.unwrap();
        hand_off(&path, socket.as_fd(), &grpc::payload(0, &early)).await
    });
    let connected = tokio::time::timeout(
        WAIT,
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect(),
    )
    .await
    .expect("connect timeout");
    let result = match connected {
        Err(_) => return,
        Ok(channel) => {
            let mut client = CentrifugoApiClient::new(channel);
            tokio::time::timeout(WAIT, client.publish(publish(1)))
                .await
                .expect("the closed connection ends the call")
        }
    };
    // The connection closes under the call (tonic says UNAVAILABLE or UNKNOWN for that).
    let code = result.unwrap_err().code();
    assert!(
        matches!(code, Code::Unavailable | Code::Unknown),
        "{code:?}"
    );
}
