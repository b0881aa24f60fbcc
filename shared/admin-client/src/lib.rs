//! A typed client of the coordinator admin API with leader following, for the CLI, tests and tools.
//!
//! Client of the Tailsift coordinator admin API (see `docs/coordinator-admin.md`): one typed
//! method per operation, a bearer token, an optional CA file for `https://` coordinators, a
//! request timeout, and leader forwarding: membership changes answered `421 Misdirected Request`
//! by a follower are sent once more to the leader it names (other writes are forwarded by the
//! coordinators themselves). Answers are the coordinator's JSON, unchanged.
//!
//! Used by the `tailsift policy|seed|cluster` subcommands, tests and load tools; it depends on
//! neither the coordinator nor Raft.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CA file {path}: not PEM certificates: {source}")]
    CaFile {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("building the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
    /// The request was not answered (connection, TLS, timeout, reading the answer).
    #[error("{method} {url}: {source}")]
    Transport {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The coordinator answered with an error status; `message` is its `error` field.
    #[error("{method} {url}: {status}: {message}")]
    Api {
        method: Method,
        url: String,
        status: StatusCode,
        message: String,
        /// The JSON answer, when it was JSON (e.g. with `issues` for an invalid policy).
        body: Option<Value>,
    },
}

/// How to reach the admin API.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Base URL of any coordinator, e.g. `http://127.0.0.1:9710`.
    pub base_url: String,
    /// Bearer token (role `admin` for writes).
    pub token: Option<String>,
    /// PEM CA certificates trusted in addition to the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl ClientOptions {
    pub fn new(base_url: impl Into<String>) -> Self {
        ClientOptions {
            base_url: base_url.into(),
            token: None,
            ca_file: None,
            timeout: Duration::from_secs(30),
        }
    }

    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
}

/// A policy document and its format (`yaml`, `json`, `otel_tail_sampling`, `refinery_rules`;
/// absent: the coordinator tells it from the content), the body of `PUT /v1/policy`,
/// `POST /v1/policy/validate` and `PUT /v1/policy/shadow`.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyDocument {
    pub document: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `PUT /v1/policy` only: the author's note kept with the version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl PolicyDocument {
    pub fn yaml(document: impl Into<String>) -> Self {
        PolicyDocument {
            document: document.into(),
            format: Some("yaml".into()),
            note: None,
        }
    }

    /// Reads `path`; without `format` the coordinator detects it.
    pub fn read(path: &Path, format: Option<&str>) -> Result<Self, ClientError> {
        let document = std::fs::read_to_string(path).map_err(|source| ClientError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(PolicyDocument {
            document,
            format: format.map(str::to_string),
            note: None,
        })
    }
}

/// An admin API client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl AdminClient {
    pub fn new(o: &ClientOptions) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder().timeout(o.timeout);
        if let Some(path) = &o.ca_file {
            let pem = std::fs::read(path).map_err(|source| ClientError::Read {
                path: path.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| ClientError::CaFile {
                path: path.clone(),
                source,
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(AdminClient {
            http: builder.build().map_err(ClientError::Build)?,
            base: o.base_url.trim_end_matches('/').to_string(),
            token: o.token.clone(),
        })
    }

    /// `GET /v1/policy`.
    pub async fn get_policy(&self) -> Result<Value, ClientError> {
        self.call(Method::GET, "/v1/policy", None).await
    }

    /// `PUT /v1/policy`: validate and publish as a new version.
    pub async fn put_policy(&self, doc: &PolicyDocument) -> Result<Value, ClientError> {
        self.call(Method::PUT, "/v1/policy", Some(json!(doc))).await
    }

    /// `POST /v1/policy/validate`.
    pub async fn validate_policy(&self, doc: &PolicyDocument) -> Result<Value, ClientError> {
        self.call(Method::POST, "/v1/policy/validate", Some(json!(doc))).await
    }

    /// `GET /v1/policy/history`.
    pub async fn history(&self) -> Result<Value, ClientError> {
        self.call(Method::GET, "/v1/policy/history", None).await
    }

    /// `POST /v1/policy/rollback`: publish `version` again as a new version.
    pub async fn rollback(&self, version: u64) -> Result<Value, ClientError> {
        self.call(Method::POST, "/v1/policy/rollback", Some(json!({ "version": version })))
            .await
    }

    /// `GET /v1/policy/shadow`.
    pub async fn get_shadow(&self) -> Result<Value, ClientError> {
        self.call(Method::GET, "/v1/policy/shadow", None).await
    }

    /// `PUT /v1/policy/shadow`.
    pub async fn put_shadow(&self, doc: &PolicyDocument) -> Result<Value, ClientError> {
        self.call(Method::PUT, "/v1/policy/shadow", Some(json!(doc))).await
    }

    /// `DELETE /v1/policy/shadow`.
    pub async fn delete_shadow(&self) -> Result<Value, ClientError> {
        self.call(Method::DELETE, "/v1/policy/shadow", None).await
    }

    /// `POST /v1/policy/shadow/promote`: publish shadow `revision` as live and remove it.
    pub async fn promote_shadow(&self, revision: u64) -> Result<Value, ClientError> {
        self.call(
            Method::POST,
            "/v1/policy/shadow/promote",
            Some(json!({ "revision": revision })),
        )
        .await
    }

    /// `GET /v1/settings`.
    pub async fn get_settings(&self) -> Result<Value, ClientError> {
        self.call(Method::GET, "/v1/settings", None).await
    }

    /// `PUT /v1/settings` with the whole settings object.
    pub async fn put_settings(&self, settings: &Value) -> Result<Value, ClientError> {
        self.call(Method::PUT, "/v1/settings", Some(json!({ "settings": settings })))
            .await
    }

    /// `POST /v1/seed/rotate`.
    pub async fn rotate_seed(&self) -> Result<Value, ClientError> {
        self.call(Method::POST, "/v1/seed/rotate", None).await
    }

    /// `GET /v1/cluster/status`.
    pub async fn cluster_status(&self) -> Result<Value, ClientError> {
        self.call(Method::GET, "/v1/cluster/status", None).await
    }

    /// `POST /v1/cluster/members` (on the leader: followed once on 421).
    pub async fn add_member(&self, id: u64, raft_addr: &str, admin_addr: &str) -> Result<Value, ClientError> {
        let body = json!({ "id": id, "raft_addr": raft_addr, "admin_addr": admin_addr });
        self.call(Method::POST, "/v1/cluster/members", Some(body)).await
    }

    /// `DELETE /v1/cluster/members/{id}` (on the leader: followed once on 421).
    pub async fn remove_member(&self, id: u64) -> Result<Value, ClientError> {
        self.call(Method::DELETE, &format!("/v1/cluster/members/{id}"), None)
            .await
    }

    /// `GET /v1/workers`.
    pub async fn workers(&self) -> Result<Value, ClientError> {
        self.call(Method::GET, "/v1/workers", None).await
    }

    /// `POST /v1/captures` with `body` (`match` or `policy`, `since` or `since_unix_ms`, ...).
    pub async fn start_capture(&self, body: &Value) -> Result<Value, ClientError> {
        self.call(Method::POST, "/v1/captures", Some(body.clone())).await
    }

    /// `GET /v1/captures`.
    pub async fn captures(&self) -> Result<Value, ClientError> {
        self.call(Method::GET, "/v1/captures", None).await
    }

    /// `GET /v1/captures/{id}`.
    pub async fn capture(&self, id: u64) -> Result<Value, ClientError> {
        self.call(Method::GET, &format!("/v1/captures/{id}"), None).await
    }

    /// `POST /v1/policy/whatif`: a what-if replay on the workers.
    pub async fn start_whatif(
        &self,
        doc: &PolicyDocument,
        since_unix_ms: i64,
        until_unix_ms: Option<i64>,
    ) -> Result<Value, ClientError> {
        let mut body = json!({ "document": doc.document, "since_unix_ms": since_unix_ms });
        if let Some(f) = &doc.format {
            body["format"] = json!(f);
        }
        if let Some(u) = until_unix_ms {
            body["until_unix_ms"] = json!(u);
        }
        self.call(Method::POST, "/v1/policy/whatif", Some(body)).await
    }

    /// `GET /v1/policy/whatif/{id}`.
    pub async fn whatif(&self, id: u64) -> Result<Value, ClientError> {
        self.call(Method::GET, &format!("/v1/policy/whatif/{id}"), None).await
    }

    /// `DELETE /v1/captures/{id}`.
    pub async fn cancel_capture(&self, id: u64) -> Result<Value, ClientError> {
        self.call(Method::DELETE, &format!("/v1/captures/{id}"), None).await
    }

    /// Sends one request; a 421 naming the leader's admin address is sent once more there, with
    /// the scheme of the base URL (the leader's admin port has the same TLS).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let (status, text, json) = self.send(&method, &url, body.as_ref()).await?;
        if status == StatusCode::MISDIRECTED_REQUEST {
            if let Some(leader) = json.as_ref().and_then(|b| b["leader_admin_addr"].as_str()) {
                let scheme = if self.base.starts_with("https://") {
                    "https"
                } else {
                    "http"
                };
                let url = format!("{scheme}://{leader}{path}");
                let (status, text, json) = self.send(&method, &url, body.as_ref()).await?;
                return answer(method, url, status, text, json);
            }
        }
        answer(method, url, status, text, json)
    }

    async fn send(
        &self,
        method: &Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, String, Option<Value>), ClientError> {
        let transport = |source| ClientError::Transport {
            method: method.clone(),
            url: url.to_string(),
            source,
        };
        let mut r = self.http.request(method.clone(), url);
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r.send().await.map_err(transport)?;
        let status = resp.status();
        let text = resp.text().await.map_err(transport)?;
        let json = serde_json::from_str(&text).ok();
        Ok((status, text, json))
    }
}

fn answer(
    method: Method,
    url: String,
    status: StatusCode,
    text: String,
    json: Option<Value>,
) -> Result<Value, ClientError> {
    if status.is_success() {
        return Ok(json.unwrap_or(Value::String(text)));
    }
    let message = json
        .as_ref()
        .and_then(|b| b["error"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| text.trim().to_string());
    Err(ClientError::Api {
        method,
        url,
        status,
        message,
        body: json,
    })
}
