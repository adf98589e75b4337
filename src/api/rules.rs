//! Rule engine endpoints, EMQX-compatible where EMQX has them:
//! `GET /api/v5/rules`, `GET /api/v5/rules/{id}`, `GET /api/v5/rules/{id}/metrics`,
//! `POST /api/v5/rule_test`; and Junction's `GET /api/v5/rule_engine` (reload status) and
//! `POST /api/v5/rule_engine/reload`. Rules are files, so there is no POST/PUT of rules.

// Handlers return a ready `Response` as their error: it is built once per failed request.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value as Json_};

use super::ApiState;
use crate::rules::compile::{compile_with, CompileOptions, RuleSqlError};
use crate::rules::engine::{RuleEngine, RuleInfo};
use crate::rules::parse;
use crate::rules::tester::{evaluate, Evaluation, RuleTestArgs};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v5/rules", get(list))
        .route("/api/v5/rules/:id", get(one))
        .route("/api/v5/rules/:id/metrics", get(metrics))
        .route("/api/v5/rule_test", post(rule_test))
        .route("/api/v5/rule_engine", get(engine_status))
        .route("/api/v5/rule_engine/reload", post(reload))
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"code": code, "message": message.into()}))).into_response()
}

fn engine(s: &ApiState) -> Result<&RuleEngine, Response> {
    s.rules.as_ref().ok_or_else(|| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "the rule engine is disabled",
        )
    })
}

fn rule_json(i: &RuleInfo) -> Json_ {
    let d = &i.def;
    json!({
        "id": &*d.id,
        "name": &*d.id,
        "sql": d.sql,
        "enable": d.enabled,
        "description": d.description,
        "from": d.rule.from_text(),
        "actions": d.actions.iter().map(|a| a.kind()).collect::<Vec<_>>(),
        "file": d.file.display().to_string(),
        "line": d.line,
        "tests": d.tests.len(),
        "status": if d.enabled { "running" } else { "disabled" },
        "metrics": i.metrics.to_json(),
    })
}

async fn list(State(s): State<ApiState>) -> Response {
    let e = match engine(&s) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let data: Vec<Json_> = e.rules().iter().map(rule_json).collect();
    let n = data.len();
    Json(json!({"data": data, "meta": {"page": 1, "limit": n.max(1), "count": n, "hasnext": false}})).into_response()
}

fn find(e: &RuleEngine, id: &str) -> Result<RuleInfo, Response> {
    e.rules()
        .into_iter()
        .find(|i| &*i.def.id == id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "NOT_FOUND", format!("Rule Id Not Found: {id}")))
}

async fn one(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    match engine(&s).and_then(|e| find(e, &id)) {
        Ok(i) => Json(rule_json(&i)).into_response(),
        Err(r) => r,
    }
}

async fn metrics(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    match engine(&s).and_then(|e| find(e, &id)) {
        Ok(i) => {
            let m = i.metrics.to_json();
            let node = &s.broker.cfg.node_name;
            Json(json!({"id": id, "metrics": m, "node_metrics": [{"node": node, "metrics": m}]})).into_response()
        }
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
struct RuleTestBody {
    sql: String,
    #[serde(default)]
    context: Option<Json_>,
}

/// EMQX's rule tester: 200 with the output (a list for FOREACH), 412 `NOT_MATCH` when FROM
/// or WHERE does not match, 400 `BAD_REQUEST` for bad SQL or context.
async fn rule_test(State(s): State<ApiState>, body: Option<Json<RuleTestBody>>) -> Response {
    let Some(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "expected a JSON body {\"sql\": ..., \"context\": {...}}",
        );
    };
    let opts = match &s.rules {
        Some(e) => e.compile_options().unwrap_or_default(),
        None => CompileOptions::default(),
    };
    let compiled = parse::parse(&body.sql)
        .map_err(RuleSqlError::from)
        .and_then(|st| compile_with(&st, &opts).map_err(RuleSqlError::from));
    let rule = match compiled {
        Ok(r) => Arc::new(r),
        Err(e) => return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", e.render(&body.sql)),
    };
    let args = RuleTestArgs {
        sql: body.sql.clone(),
        context: body.context.map(|c| c.to_string()),
        ..RuleTestArgs::default()
    };
    let foreach = rule.is_foreach();
    match tokio::task::spawn_blocking(move || evaluate(&rule, &args)).await {
        Ok(Evaluation::Outputs(outs)) => {
            let mut outs: Vec<Json_> = outs.iter().map(|o| o.to_json()).collect();
            if foreach || outs.len() != 1 {
                Json(Json_::Array(outs)).into_response()
            } else {
                Json(outs.remove(0)).into_response()
            }
        }
        Ok(Evaluation::NoOutput(why)) => error(
            StatusCode::PRECONDITION_FAILED,
            "NOT_MATCH",
            format!("SQL Not Match: {why}"),
        ),
        Ok(Evaluation::BadInput(msg)) => error(StatusCode::BAD_REQUEST, "BAD_REQUEST", msg),
        Ok(Evaluation::Failed(e)) => error(StatusCode::BAD_REQUEST, "BAD_REQUEST", e.render(&body.sql)),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", e.to_string()),
    }
}

async fn engine_status(State(s): State<ApiState>) -> Response {
    match engine(&s) {
        Ok(e) => {
            let c = e.config();
            Json(json!({
                "rules_dir": c.rules_dir.display().to_string(),
                "functions_dir": c.functions_dir.display().to_string(),
                "reload": e.status(),
            }))
            .into_response()
        }
        Err(r) => r,
    }
}

async fn reload(State(s): State<ApiState>) -> Response {
    let e = match engine(&s) {
        Ok(e) => e.clone(),
        Err(r) => return r,
    };
    match tokio::task::spawn_blocking(move || e.reload()).await {
        Ok(Ok(n)) => Json(json!({"rules": n})).into_response(),
        Ok(Err(errors)) => error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", e.to_string()),
    }
}
