//! `rotor-bare-ws --port N`: the "bare" peer of the benchmarks — the least a Rust broadcast
//! server can do. hyper accepts HTTP; `GET /ws` upgrades to a tokio-tungstenite WebSocket;
//! `POST /publish` (body = payload) or a text frame from any client goes to every connection
//! through one `tokio::sync::broadcast` channel. Each connection writes what is queued as one
//! flush. No protocol, no auth, no channels: the floor the others are compared with.
//! `GET /echo` upgrades too, but answers each text frame to its sender alone: the floor of a
//! connection that, like a Centrifugo client's connect, sends one frame and waits for the answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

#[derive(Parser, Debug)]
#[command(
    name = "rotor-bare-ws",
    about = "Bare tokio-tungstenite broadcast server"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
    #[arg(long, default_value_t = 8100)]
    port: u16,
    /// Messages a connection may fall behind before it skips (broadcast channel capacity).
    #[arg(long, default_value_t = 4096)]
    capacity: usize,
    /// WebSocket read buffer per connection (Rotor's default is 1 KiB too).
    #[arg(long, default_value_t = 1024)]
    read_buffer: usize,
}

struct Shared {
    tx: broadcast::Sender<Utf8Bytes>,
    ws_config: WebSocketConfig,
    lagged: AtomicU64,
}

type Body = Full<Bytes>;

fn respond(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

async fn handle(
    mut req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, path @ ("/ws" | "/echo")) => {
            let echo = path == "/echo";
            let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY) else {
                return Ok(respond(StatusCode::BAD_REQUEST, "websocket only"));
            };
            let accept = derive_accept_key(key.as_bytes());
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(shared.ws_config),
                    )
                    .await;
                    if echo {
                        echo_connection(ws).await;
                    } else {
                        connection(ws, shared).await;
                    }
                }
            });
            let mut r = respond(StatusCode::SWITCHING_PROTOCOLS, "");
            let h = r.headers_mut();
            h.insert(UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
            if let Ok(v) = HeaderValue::from_str(&accept) {
                h.insert(SEC_WEBSOCKET_ACCEPT, v);
            }
            Ok(r)
        }
        (Method::POST, "/publish") => {
            let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
                return Ok(respond(StatusCode::BAD_REQUEST, "body"));
            };
            match Utf8Bytes::try_from(body) {
                Ok(text) => {
                    let _ = shared.tx.send(text);
                    Ok(respond(StatusCode::OK, "{}"))
                }
                Err(_) => Ok(respond(StatusCode::BAD_REQUEST, "text only")),
            }
        }
        (Method::GET, "/health") => Ok(respond(StatusCode::OK, "{}")),
        _ => Ok(respond(StatusCode::NOT_FOUND, "not found")),
    }
}

async fn connection<S>(mut ws: WebSocketStream<S>, shared: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut rx = shared.tx.subscribe();
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let first = match msg {
                    Ok(m) => m,
                    Err(RecvError::Lagged(n)) => {
                        shared.lagged.fetch_add(n, Ordering::Relaxed);
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                if ws.feed(Message::Text(first)).await.is_err() {
                    return;
                }
                loop {
                    match rx.try_recv() {
                        Ok(m) => {
                            if ws.feed(Message::Text(m)).await.is_err() {
                                return;
                            }
                        }
                        Err(TryRecvError::Lagged(n)) => {
                            shared.lagged.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(_) => break,
                    }
                }
                if ws.flush().await.is_err() {
                    return;
                }
            }
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(t))) => {
                    let _ = shared.tx.send(t);
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    }
}

/// Answers every text frame to its sender, until the socket ends.
async fn echo_connection<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(msg)) = ws.next().await {
        let answer = match msg {
            Message::Text(t) => Message::Text(t),
            Message::Close(_) => return,
            _ => continue,
        };
        if ws.send(answer).await.is_err() {
            return;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    rotor_bench::procstat::raise_fd_limit();
    let (tx, _) = broadcast::channel(args.capacity);
    let shared = Arc::new(Shared {
        tx,
        ws_config: WebSocketConfig::default()
            .read_buffer_size(args.read_buffer)
            .write_buffer_size(0),
        lagged: AtomicU64::new(0),
    });
    let addr: SocketAddr = format!("{}:{}", args.address, args.port).parse()?;
    let listener = rotor_data_plane::listen::bind(addr).await?;
    println!("rotor-bare-ws listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, shared.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}
