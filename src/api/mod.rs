//! HTTP on `dashboard.listeners.http.bind`: Prometheus `/metrics` and the
//! EMQX-compatible REST API (`/api/v5/...`). Reads broker state through the
//! same handles the broker uses; holds no copy of it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::connectors::ConnectorSet;
use crate::mqtt::broker::Broker;
use crate::rules::engine::RuleEngine;

mod connectors;
mod rules;

/// What the handlers read.
#[derive(Clone)]
pub struct ApiState {
    pub broker: Arc<Broker>,
    pub rules: Option<RuleEngine>,
    pub connectors: Option<ConnectorSet>,
}

pub fn router(broker: Arc<Broker>, rules: Option<RuleEngine>, connectors: Option<ConnectorSet>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v5/status", get(status))
        .merge(rules::routes())
        .merge(connectors::routes())
        .with_state(ApiState {
            broker,
            rules,
            connectors,
        })
}

async fn metrics(State(s): State<ApiState>) -> impl IntoResponse {
    let mut text = s.broker.metrics.render_prometheus();
    if let Some(r) = &s.rules {
        r.render_prometheus(&mut text);
    }
    if let Some(c) = &s.connectors {
        c.render_prometheus(&mut text);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn status(State(s): State<ApiState>) -> impl IntoResponse {
    let b = &s.broker;
    Json(serde_json::json!({
        "node": b.cfg.node_name,
        "status": "running",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": b.started.elapsed().as_secs(),
        "connections": b.metrics.connections.get(),
        "sessions": b.session_count(),
        "subscriptions": b.subscription_count(),
        "retained": b.retained_count(),
    }))
}

/// Serve until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    rules: Option<RuleEngine>,
    connectors: Option<ConnectorSet>,
    shutdown: CancellationToken,
) {
    let app = router(broker, rules, connectors);
    let r = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "HTTP server failed.");
    }
}
