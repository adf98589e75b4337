//! Listeners: accept TCP, TLS, WebSocket and secure WebSocket connections and
//! hand each to [`connection::serve`]. A semaphore per listener enforces
//! `max_connections`; a client over the limit gets CONNACK "quota exceeded".

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::broker::Broker;
use super::codec::{self, reason, ConnAck, Packet, Protocol};
use super::connection::{self, ConnSettings};

/// The transport of a listener.
#[derive(Clone)]
pub enum Transport {
    Tcp,
    Ws { path: String },
    Ssl { acceptor: TlsAcceptor },
    Wss { acceptor: TlsAcceptor, path: String },
}

impl Transport {
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Ws { .. } => "ws",
            Transport::Ssl { .. } => "ssl",
            Transport::Wss { .. } => "wss",
        }
    }
}

/// What to listen on and how.
#[derive(Clone)]
pub struct ListenerSpec {
    pub name: String,
    pub bind: SocketAddr,
    pub transport: Transport,
    pub max_connections: Option<usize>,
    pub settings: ConnSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("cannot bind {kind} listener `{name}` to {addr}: {source}")]
    Bind {
        kind: &'static str,
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS setup: cannot read {path}: {source}")]
    TlsFile { path: PathBuf, source: std::io::Error },
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// A bound listener, ready to accept.
pub struct Bound {
    pub spec: ListenerSpec,
    pub listener: TcpListener,
    pub local_addr: SocketAddr,
}

pub async fn bind(spec: ListenerSpec) -> Result<Bound, ListenerError> {
    let listener = TcpListener::bind(spec.bind)
        .await
        .map_err(|source| ListenerError::Bind {
            kind: spec.transport.kind(),
            name: spec.name.clone(),
            addr: spec.bind,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ListenerError::Bind {
        kind: spec.transport.kind(),
        name: spec.name.clone(),
        addr: spec.bind,
        source,
    })?;
    Ok(Bound {
        spec,
        listener,
        local_addr,
    })
}

/// Accept connections until `shutdown`; each connection is a tracked task.
pub fn spawn(broker: Arc<Broker>, bound: Bound, shutdown: CancellationToken, tracker: TaskTracker) {
    let t2 = tracker.clone();
    tracker.spawn(async move {
        let Bound { spec, listener, .. } = bound;
        let limit = spec.max_connections.map(|n| Arc::new(Semaphore::new(n)));
        let settings = Arc::new(spec.settings.clone());
        loop {
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "Accept failed.");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.cancelled() => break,
            };
            let _ = stream.set_nodelay(true);
            let permit = match &limit {
                None => None,
                Some(sem) => match sem.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        broker.metrics.connections_refused.inc();
                        t2.spawn(refuse(stream, broker.cfg.max_packet_size));
                        continue;
                    }
                },
            };
            let (broker, settings, shutdown, transport) = (
                broker.clone(),
                settings.clone(),
                shutdown.clone(),
                spec.transport.clone(),
            );
            // One task per transport, each sized for its own future: a single
            // `match` inside one task would give every plain TCP connection the
            // memory of the largest (TLS + WebSocket) state.
            match transport {
                Transport::Tcp => {
                    // Not `async move { let _permit = permit; serve.await }`: an async block keeps
                    // its captures apart from its locals, so the connection's whole future
                    // would be in the task twice (the task cell is sized in 128-byte steps).
                    let serve = connection::serve(broker, stream, peer, settings, shutdown);
                    t2.spawn(serve.map(move |()| drop(permit)));
                }
                Transport::Ssl { acceptor } => {
                    t2.spawn(async move {
                        let _permit = permit;
                        if let Ok(tls) = acceptor.accept(stream).await {
                            connection::serve(broker, tls, peer, settings, shutdown).await;
                        }
                    });
                }
                Transport::Ws { path } => {
                    t2.spawn(async move {
                        let _permit = permit;
                        serve_ws(broker, stream, peer, settings, shutdown, path).await;
                    });
                }
                Transport::Wss { acceptor, path } => {
                    t2.spawn(async move {
                        let _permit = permit;
                        if let Ok(tls) = acceptor.accept(stream).await {
                            serve_ws(broker, tls, peer, settings, shutdown, path).await;
                        }
                    });
                }
            }
        }
    });
}

/// Over the connection limit: read the CONNECT and answer "quota exceeded".
async fn refuse(mut stream: TcpStream, max_packet_size: usize) {
    let mut buf = BytesMut::with_capacity(512);
    let read = async {
        loop {
            match codec::decode(&mut buf, None, max_packet_size) {
                Ok(Some(Packet::Connect(c))) => return c.protocol,
                Ok(None) => {}
                _ => return None,
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    };
    let Ok(Some(protocol)) = tokio::time::timeout(std::time::Duration::from_secs(5), read).await else {
        return;
    };
    let mut out = BytesMut::new();
    let ack = Packet::ConnAck(ConnAck {
        session_present: false,
        code: if protocol == Protocol::V5 {
            reason::QUOTA_EXCEEDED
        } else {
            reason::SERVER_UNAVAILABLE
        },
        properties: Default::default(),
    });
    if codec::encode(&ack, protocol, &mut out).is_ok() {
        let _ = stream.write_all(&out).await;
    }
}

/// WebSocket: check the path, pick the `mqtt` subprotocol, and pump binary frames
/// through an in-memory pipe to the ordinary connection task.
async fn serve_ws<S>(
    broker: Arc<Broker>,
    stream: S,
    peer: SocketAddr,
    settings: Arc<ConnSettings>,
    shutdown: CancellationToken,
    path: String,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The callback's error type is tungstenite's (an HTTP response); its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() != path {
            let mut e = ErrorResponse::new(Some("not found".into()));
            *e.status_mut() = StatusCode::NOT_FOUND;
            return Err(e);
        }
        let offered = req
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if let Some(p) = offered
            .split(',')
            .map(str::trim)
            .find(|p| matches!(*p, "mqtt" | "mqttv3.1" | "mqttv3.1.1"))
        {
            if let Ok(v) = HeaderValue::from_str(p) {
                resp.headers_mut().insert("Sec-WebSocket-Protocol", v);
            }
        }
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let (pipe_ours, pipe_conn) = tokio::io::duplex(64 * 1024);
    let conn = tokio::spawn(connection::serve(broker, pipe_conn, peer, settings, shutdown));
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (mut pipe_rx, mut pipe_tx) = tokio::io::split(pipe_ours);
    let mut buf = BytesMut::with_capacity(8192);
    loop {
        tokio::select! {
            m = ws_rx.next() => match m {
                Some(Ok(WsMessage::Binary(data))) => {
                    if pipe_tx.write_all(&data).await.is_err() { break; }
                }
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => {}
                // MQTT over WebSocket is binary only (MQTT 5 §6).
                Some(Ok(WsMessage::Text(_))) | Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
            },
            r = pipe_rx.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let data = buf.split().freeze();
                    if ws_tx.send(WsMessage::Binary(data.to_vec())).await.is_err() { break; }
                }
            },
        }
    }
    // Closing our write side gives the connection task EOF (an abnormal close: the will goes out).
    let _ = pipe_tx.shutdown().await;
    drop(pipe_tx);
    drop(pipe_rx);
    let _ = ws_tx.close().await;
    let _ = conn.await;
}

/// Build a TLS acceptor from PEM files; with `cacertfile` and `verify_peer`,
/// client certificates are verified (and required if `fail_if_no_peer_cert`).
pub fn tls_acceptor(
    certfile: &Path,
    keyfile: &Path,
    cacertfile: Option<&Path>,
    verify_peer: bool,
    fail_if_no_peer_cert: bool,
) -> Result<TlsAcceptor, ListenerError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| ListenerError::TlsFile {
            path: p.to_owned(),
            source,
        })
    };
    let cert_pem = read(certfile)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| ListenerError::Tls(format!("{}: {e}", certfile.display())))?;
    let key_pem = read(keyfile)?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| ListenerError::Tls(format!("{}: {e}", keyfile.display())))?
        .ok_or_else(|| ListenerError::Tls(format!("{}: no private key found", keyfile.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ListenerError::Tls(e.to_string()))?;
    let builder = match (verify_peer, cacertfile) {
        (true, Some(ca)) => {
            let ca_pem = read(ca)?;
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut ca_pem.as_slice()) {
                let c = c.map_err(|e| ListenerError::Tls(format!("{}: {e}", ca.display())))?;
                roots.add(c).map_err(|e| ListenerError::Tls(e.to_string()))?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if fail_if_no_peer_cert {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| ListenerError::Tls(e.to_string()))?)
        }
        (true, None) => return Err(ListenerError::Tls("verify_peer needs ssl_options.cacertfile".into())),
        (false, _) => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| ListenerError::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
