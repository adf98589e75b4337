//! The webhook connector (reqwest, rustls with ring): an HTTP request per output, or one
//! request with a JSON array body per batch when the connector's `batch_size` is above 1.
//!
//! Connector file:
//! ```toml
//! type = "webhook"
//! url = "https://hooks.example.com/api"      # base URL; an action's `path` is appended
//! headers = { authorization = "Bearer x" }   # sent with every request
//! tls = { verify = true, cacertfile = "ca.pem" }   # certfile, keyfile: mutual TLS (see connectors::tls)
//! ```
//! Rule action:
//! ```toml
//! [[rules.actions]]
//! type = "webhook"
//! connector = "hooks"
//! method = "post"                            # get, post, put, patch, delete (default post)
//! path = "/devices/${clientid}"              # template, appended to the connector's url
//! headers = { "x-topic" = "${topic}" }       # templates
//! body = '{"t": ${payload.temp}}'            # template, default ${.} (the output as JSON)
//! ```
//! Errors: connection errors and timeouts, 5xx, 408 and 429 are retried; other 4xx are
//! failed with the server's answer. In a batch, the path and headers are rendered from the
//! first output.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde_json::json;

use super::{ActionSettings, CommonSettings, Connector, SendError};
use crate::config::walk::{Fields, FileError};
use crate::rules::template::Template;
use crate::rules::value::Map;

/// Longest server answer kept in an error message.
const MAX_MESSAGE: usize = 1024;

/// A webhook connector.
pub struct Webhook {
    client: reqwest::Client,
    base: Url,
    headers: HeaderMap,
    /// Send a JSON array per batch (`batch_size > 1`).
    batch: bool,
    connect_timeout: std::time::Duration,
}

/// A webhook action's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookAction {
    pub method: Method,
    pub path: Template,
    pub headers: Vec<(HeaderName, Template)>,
    pub body: Template,
}

impl ActionSettings for WebhookAction {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Parses a webhook connector (the registry's entry).
pub fn parse(f: &mut Fields<'_, '_>, common: &CommonSettings) -> Result<Arc<dyn Connector>, FileError> {
    let url = f.req_string("url")?;
    let base = Url::parse(&url.value).map_err(|e| f.error("url", format!("not a URL: {e}")))?;
    if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
        return Err(f.error("url", "expected an http:// or https:// URL with a host"));
    }
    let https = base.scheme() == "https";
    if common.tls.enable == Some(true) && !https {
        return Err(f.error("url", "`tls.enable = true` needs an https:// URL"));
    }
    if common.tls.enable == Some(false) && https {
        return Err(f.error("url", "an https:// URL with `tls.enable = false`"));
    }
    let mut headers = HeaderMap::new();
    if let Some(mut t) = f.table("headers")? {
        for (k, item, span) in t.entries() {
            let bad = |m: String| t.doc.error_span(span.clone(), format!("connector.headers.{k}: {m}"));
            let Some(v) = item.as_str() else {
                return Err(bad("expected a string".into()));
            };
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| bad(e.to_string()))?;
            let value = HeaderValue::from_str(v).map_err(|e| bad(e.to_string()))?;
            headers.insert(name, value);
        }
    }
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(common.connect_timeout)
        .timeout(common.request_timeout)
        .pool_max_idle_per_host(common.pool_size)
        .danger_accept_invalid_certs(!common.tls.verify);
    if let Some(ca) = &common.tls.cacertfile {
        let pem = std::fs::read(ca).map_err(|e| f.error("tls", format!("cannot read {}: {e}", ca.display())))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| f.error("tls", format!("bad certificate in {}: {e}", ca.display())))?;
        b = b.add_root_certificate(cert);
    }
    if let (Some(cert), Some(key)) = (&common.tls.files.cert_pem, &common.tls.files.key_pem) {
        // Mutual TLS: reqwest takes the key and the chain as one PEM.
        let mut pem = key.clone();
        pem.push(b'\n');
        pem.extend_from_slice(cert);
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|e| f.error("tls", format!("bad client certificate or key: {e}")))?;
        b = b.identity(id);
    }
    let client = b
        .build()
        .map_err(|e| f.error("url", format!("cannot build the HTTP client: {e}")))?;
    Ok(Arc::new(Webhook {
        client,
        base,
        headers,
        batch: common.batch_size > 1,
        connect_timeout: common.connect_timeout,
    }))
}

fn template(f: &Fields<'_, '_>, key: &str, text: &str) -> Result<Template, FileError> {
    Template::parse(text).map_err(|e| f.error(key, format!("bad template: {e} (at byte {} of the value)", e.offset)))
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

impl Webhook {
    fn url(&self, a: &WebhookAction, out: &Map) -> Result<Url, SendError> {
        let path = a.path.render(out);
        if path.is_empty() {
            return Ok(self.base.clone());
        }
        let mut s = self.base.as_str().trim_end_matches('/').to_string();
        if !path.starts_with('/') && !path.starts_with('?') {
            s.push('/');
        }
        s.push_str(&path);
        Url::parse(&s).map_err(|e| SendError::fatal(format!("rendered URL {s:?} is not valid: {e}")))
    }

    fn body(&self, a: &WebhookAction, batch: &[Arc<Map>]) -> Vec<u8> {
        if !self.batch {
            return batch.first().map(|o| a.body.render_bytes(o)).unwrap_or_default();
        }
        let items: Vec<serde_json::Value> = batch
            .iter()
            .map(|o| {
                let bytes = a.body.render_bytes(o);
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()))
            })
            .collect();
        serde_json::to_vec(&items).unwrap_or_default()
    }

    async fn send(&self, a: &WebhookAction, batch: &[Arc<Map>]) -> Result<(), SendError> {
        let Some(first) = batch.first() else { return Ok(()) };
        if !self.batch && batch.len() > 1 {
            for one in batch {
                Box::pin(self.send(a, std::slice::from_ref(one))).await?;
            }
            return Ok(());
        }
        let url = self.url(a, first)?;
        let mut headers = self.headers.clone();
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for (name, t) in &a.headers {
            let v =
                HeaderValue::from_str(&t.render(first)).map_err(|e| SendError::fatal(format!("header {name}: {e}")))?;
            headers.insert(name.clone(), v);
        }
        let req = self.client.request(a.method.clone(), url).headers(headers);
        let req = if a.method == Method::GET {
            req
        } else {
            req.body(self.body(a, batch))
        };
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                SendError::disconnected(format!("cannot connect: {e}"))
            } else if e.is_timeout() || e.is_request() {
                SendError::retryable(e.to_string())
            } else {
                SendError::fatal(e.to_string())
            }
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        let message = clip(format!("HTTP {status}: {}", text.trim()));
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(SendError::retryable(message))
        } else {
            Err(SendError::fatal(message))
        }
    }

    async fn tcp_check(&self) -> Result<(), SendError> {
        let host = self.base.host_str().unwrap_or_default().to_string();
        let port = self.base.port_or_known_default().unwrap_or(80);
        match tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(SendError::disconnected(format!("cannot connect to {host}:{port}: {e}"))),
            Err(_) => Err(SendError::disconnected(format!(
                "connecting to {host}:{port} timed out"
            ))),
        }
    }
}

fn action(a: &dyn ActionSettings) -> Result<&WebhookAction, SendError> {
    a.as_any()
        .downcast_ref::<WebhookAction>()
        .ok_or_else(|| SendError::fatal("not a webhook action"))
}

impl Connector for Webhook {
    fn connect(&self) -> BoxFuture<'_, Result<(), SendError>> {
        self.tcp_check().boxed()
    }

    fn send_batch<'a>(
        &'a self,
        a: &'a dyn ActionSettings,
        batch: &'a [Arc<Map>],
    ) -> BoxFuture<'a, Result<(), SendError>> {
        async move { self.send(action(a)?, batch).await }.boxed()
    }

    fn health_check(&self) -> BoxFuture<'_, Result<(), SendError>> {
        self.tcp_check().boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }

    fn parse_action(&self, f: &mut Fields<'_, '_>) -> Result<Arc<dyn ActionSettings>, FileError> {
        let method = match f.string("method")? {
            None => Method::POST,
            Some(m) => match m.value.to_ascii_lowercase().as_str() {
                "get" => Method::GET,
                "post" => Method::POST,
                "put" => Method::PUT,
                "patch" => Method::PATCH,
                "delete" => Method::DELETE,
                other => return Err(f.error("method", format!("`{other}`: expected get, post, put, patch or delete"))),
            },
        };
        let path = match f.string("path")? {
            None => Template::default(),
            Some(p) => template(f, "path", &p.value)?,
        };
        let body = match f.string("body")? {
            None => Template::parse("${.}").map_err(|e| f.error("body", e))?,
            Some(b) => template(f, "body", &b.value)?,
        };
        let mut headers = Vec::new();
        if let Some(mut t) = f.table("headers")? {
            for (k, item, span) in t.entries() {
                let bad = |m: String| t.doc.error_span(span.clone(), format!("{}.{k}: {m}", t.name));
                let Some(v) = item.as_str() else {
                    return Err(bad("expected a string template".into()));
                };
                let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| bad(e.to_string()))?;
                let tpl = Template::parse(v).map_err(|e| bad(format!("bad template: {e}")))?;
                headers.push((name, tpl));
            }
        }
        Ok(Arc::new(WebhookAction {
            method,
            path,
            headers,
            body,
        }))
    }

    fn preview(&self, a: &dyn ActionSettings, out: &Map) -> serde_json::Value {
        let Ok(a) = action(a) else {
            return json!({"type": "webhook", "error": "not a webhook action"});
        };
        let url = self.url(a, out).map(|u| u.to_string()).unwrap_or_else(|e| e.message);
        let headers: serde_json::Map<String, serde_json::Value> = a
            .headers
            .iter()
            .map(|(k, t)| (k.to_string(), serde_json::Value::String(t.render(out))))
            .collect();
        json!({
            "type": "webhook",
            "method": a.method.as_str(),
            "url": url,
            "headers": headers,
            "body": String::from_utf8_lossy(&a.body.render_bytes(out)),
        })
    }
}
