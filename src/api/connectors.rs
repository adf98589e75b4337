//! `GET /api/v5/connectors` and `GET /api/v5/connectors/{name}`: each connector's type,
//! status (`connecting`, `connected`, `disconnected`), last error and the metrics of every
//! rule action that sends to it. Connectors are files, so there is no POST/PUT.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::ApiState;
use crate::connectors::runtime::ConnectorInfo;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v5/connectors", get(list))
        .route("/api/v5/connectors/:name", get(one))
}

fn connector_json(c: &ConnectorInfo) -> Value {
    json!({
        "name": &*c.name,
        "type": c.kind,
        "status": c.status.as_str(),
        "status_reason": c.last_error,
        "file": c.file.display().to_string(),
        "actions": c.actions.iter().map(|a| json!({
            "rule_id": &*a.rule_id,
            "index": a.index,
            "metrics": a.metrics.to_json(),
            "last_error": a.last_error,
        })).collect::<Vec<_>>(),
    })
}

fn infos(s: &ApiState) -> Vec<ConnectorInfo> {
    s.connectors.as_ref().map(|c| c.connectors()).unwrap_or_default()
}

async fn list(State(s): State<ApiState>) -> Response {
    let data: Vec<Value> = infos(&s).iter().map(connector_json).collect();
    Json(Value::Array(data)).into_response()
}

async fn one(State(s): State<ApiState>, Path(name): Path<String>) -> Response {
    match infos(&s).iter().find(|c| *c.name == *name) {
        Some(c) => Json(connector_json(c)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"code": "NOT_FOUND", "message": format!("connector not found: {name}")})),
        )
            .into_response(),
    }
}
