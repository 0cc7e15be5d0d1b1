//! A client for a Confluent-compatible schema registry, with a local cache.
//!
//! Capture registers each table's key and value schema once per schema version
//! and frames every message with the id it got back; apply looks each id up
//! once. Both go through this client, whose caches mean the registry is asked
//! once per schema, not once per event: ids are immutable in the Confluent model,
//! so a cached id is never stale.
//!
//! Basic auth comes from the URL's user info (`http://user:pass@host:8081`) and
//! is sent as a header; the URL is printed without the password. An https
//! registry is verified against the system's CAs or the one given, and may be
//! shown a client certificate ([`RegistryAccess`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value as Json};
use url::Url;

use crate::config::{RegistryAccess, SecretUrl};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A registry call that failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("schema registry at {url} answered {status}: {message} (error code {code})")]
    Rejected {
        url: String,
        status: u16,
        code: i64,
        message: String,
    },
    #[error("schema registry at {url} gave an unexpected answer: {reason}")]
    BadResponse { url: String, reason: String },
    #[error("schema {id} from the registry is not valid Avro: {reason}")]
    InvalidSchema { id: u32, reason: String },
    #[error("schema registry TLS: {0}")]
    Tls(String),
}

impl RegistryError {
    /// Whether trying again later may succeed: the registry was down or failed
    /// inside; a refused schema or a missing id stays refused.
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } => true,
            RegistryError::Rejected { status, .. } => *status >= 500,
            RegistryError::BadResponse { .. } | RegistryError::InvalidSchema { .. } | RegistryError::Tls(_) => false,
        }
    }
}

/// A schema as the registry holds it.
#[derive(Debug)]
pub struct RegisteredSchema {
    pub id: u32,
    pub json: Json,
    pub avro: apache_avro::Schema,
}

/// The client; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct RegistryClient {
    base: Url,
    shown: String,
    auth: Option<(String, String)>,
    http: reqwest::Client,
    by_id: RwLock<HashMap<u32, Arc<RegisteredSchema>>>,
    by_subject: RwLock<HashMap<(String, String), u32>>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error_code: i64,
    message: String,
}

impl RegistryClient {
    /// A failed request, with every cause (reqwest's own message alone is
    /// "error sending request"); an untrusted certificate is final, as
    /// trying again cannot change it.
    fn unreachable(&self, e: reqwest::Error) -> RegistryError {
        let e = e.without_url();
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            reason = format!("{reason}: {cause}");
            source = cause.source();
        }
        if reason.contains("certificate") {
            RegistryError::Tls(format!(
                "{} presented a certificate that is not trusted ({reason}): give its CA with --registry-ca",
                self.shown
            ))
        } else {
            RegistryError::Unreachable {
                url: self.shown.clone(),
                reason,
            }
        }
    }
    /// A client of the registry at `url`, trusting the system's CAs.
    pub fn new(url: &SecretUrl) -> Result<Self, RegistryError> {
        Self::with_access(&RegistryAccess::new(url.clone()))
    }

    /// A client as `access` says.
    pub fn with_access(access: &RegistryAccess) -> Result<Self, RegistryError> {
        let url = &access.url;
        let mut base = url.expose().clone();
        let auth = (!base.username().is_empty()).then(|| {
            (
                base.username().to_owned(),
                base.password().unwrap_or_default().to_owned(),
            )
        });
        let shown = url.redacted().to_string();
        // Cannot fail for an http(s) URL with a host.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| RegistryError::Tls(format!("cannot read {}: {e}", path.display())))
        };
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5));
        if let Some(ca) = &access.ca {
            let pem = read(ca)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| RegistryError::Tls(format!("{} holds no PEM certificate: {e}", ca.display())))?;
            builder = builder.tls_certs_only(certs);
        }
        if let Some((cert, key)) = &access.identity {
            let identity = reqwest::Identity::from_pkcs8_pem(&read(cert)?, &read(key)?).map_err(|e| {
                RegistryError::Tls(format!(
                    "{} and {} are not a PEM certificate and PKCS#8 key: {e}",
                    cert.display(),
                    key.display()
                ))
            })?;
            builder = builder.identity(identity);
        }
        let http = builder.build().map_err(|e| RegistryError::Unreachable {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            base,
            shown,
            auth,
            http,
            by_id: RwLock::default(),
            by_subject: RwLock::default(),
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Json, RegistryError> {
        let request = match &self.auth {
            Some((user, pass)) => request.basic_auth(user, Some(pass)),
            None => request,
        };
        let response = request
            .header(reqwest::header::ACCEPT, CONTENT_TYPE)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            let ErrorBody { error_code, message } = serde_json::from_slice(&body).unwrap_or(ErrorBody {
                error_code: i64::from(status.as_u16()),
                message: String::from_utf8_lossy(&body).chars().take(200).collect(),
            });
            return Err(RegistryError::Rejected {
                url: self.shown.clone(),
                status: status.as_u16(),
                code: error_code,
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| RegistryError::BadResponse {
            url: self.shown.clone(),
            reason: e.to_string(),
        })
    }

    fn id_of(&self, body: &Json) -> Result<u32, RegistryError> {
        body["id"]
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| RegistryError::BadResponse {
                url: self.shown.clone(),
                reason: format!("no schema id in {body}"),
            })
    }

    /// Registers `schema` under `subject` (or finds it there) and returns its id.
    pub async fn register(&self, subject: &str, schema: &Json) -> Result<u32, RegistryError> {
        let text = schema.to_string();
        let cache_key = (subject.to_owned(), text);
        if let Some(id) = self
            .by_subject
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cache_key)
        {
            return Ok(*id);
        }
        let url = self.url(&["subjects", subject, "versions"]);
        let body = self
            .call(
                self.http
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                    .body(json!({ "schema": cache_key.1 }).to_string()),
            )
            .await?;
        let id = self.id_of(&body)?;
        self.by_subject
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cache_key, id);
        Ok(id)
    }

    /// Every subject the registry holds.
    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        let body = self.call(self.http.get(self.url(&["subjects"]))).await?;
        Ok(body
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default())
    }

    /// The latest version of `subject` and its schema id.
    pub async fn latest(&self, subject: &str) -> Result<(u32, u32), RegistryError> {
        let body = self
            .call(self.http.get(self.url(&["subjects", subject, "versions", "latest"])))
            .await?;
        let version = body["version"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| RegistryError::BadResponse {
                url: self.shown.clone(),
                reason: format!("no version in {body}"),
            })?;
        Ok((version, self.id_of(&body)?))
    }

    /// The schema with id `id`.
    pub async fn schema(&self, id: u32) -> Result<Arc<RegisteredSchema>, RegistryError> {
        if let Some(s) = self.by_id.read().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Ok(Arc::clone(s));
        }
        let body = self
            .call(self.http.get(self.url(&["schemas", "ids", &id.to_string()])))
            .await?;
        let text = body["schema"].as_str().ok_or_else(|| RegistryError::BadResponse {
            url: self.shown.clone(),
            reason: format!("no schema in the answer for id {id}"),
        })?;
        let invalid = |reason: String| RegistryError::InvalidSchema { id, reason };
        let json: Json = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let avro = apache_avro::Schema::parse(&json).map_err(|e| invalid(e.to_string()))?;
        let schema = Arc::new(RegisteredSchema { id, json, avro });
        self.by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::clone(&schema));
        Ok(schema)
    }
}
