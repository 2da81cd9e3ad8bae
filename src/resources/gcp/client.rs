//! The Cloud Storage JSON API over HTTP: where requests go and how they are
//! authenticated. Nothing here knows what strata wants; [`super`] decides that.
//!
//! Endpoint and credentials, in order:
//! - `STORAGE_EMULATOR_HOST` set: requests go to that host (`http://` added when it has
//!   no scheme) and carry no credentials, as Google's own client libraries do.
//! - `GOOGLE_OAUTH_ACCESS_TOKEN` set: that token is sent as is.
//! - otherwise application-default credentials through `gcp_auth` (service account
//!   key, `gcloud auth application-default login`, or the metadata server).
//!
//! Tokens are never part of an error message.
//!
//! Transient failures (HTTP 408, 429, 500, 502, 503, 504, or no connection) are retried
//! up to [`ATTEMPTS`] times with doubling waits, as Google's retry strategy advises for
//! requests that are idempotent or carry a precondition. Every request strata sends is
//! one of those: reads, bucket insert (a repeat finds the bucket and gets 409), PATCH
//! with `ifMetagenerationMatch`, and setIamPolicy with the policy's etag.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::error::{Error, Result};

const GOOGLE_BASE: &str = "https://storage.googleapis.com/storage/v1";
/// Enough to read and write buckets and their IAM policies.
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.full_control";

enum Auth {
    /// The emulator: no credentials.
    Anonymous,
    Token(String),
    Provider(Arc<dyn gcp_auth::TokenProvider>),
}

/// A client of the Cloud Storage JSON API (or, from [`Client::iam_from_env`], of the
/// IAM API: the same transport, another base and scope).
pub struct Client {
    http: reqwest::Client,
    /// `…/storage/v1`, without a trailing slash.
    base: String,
    auth: Auth,
    scope: &'static str,
}

const IAM_BASE: &str = "https://iam.googleapis.com/v1";
const IAM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// gcloud's own override of the IAM endpoint (a base URL; `v1` is added).
pub const IAM_ENDPOINT_VAR: &str = "CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM";

/// How many times a request is sent at most, and the wait before the first retry.
pub const ATTEMPTS: u32 = 4;
const FIRST_WAIT: Duration = Duration::from_millis(250);

/// Answers worth asking again: timeouts, rate limits and server errors.
fn transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// An answer from the API: the status and the parsed body (`null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// How many times the request was sent to get this answer.
    pub attempts: u32,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The API's own explanation of a failure, for error messages.
    pub fn message(&self) -> String {
        self.body["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| "no error message in the response".into())
    }

    /// An error naming the resource, the action and what the API said.
    pub fn error(&self, what: &str) -> Error {
        Error::Cloud(format!(
            "{what}: HTTP {}: {}{}",
            self.status,
            self.message(),
            after(self.attempts)
        ))
    }
}

/// The API base URL for an emulator host as `STORAGE_EMULATOR_HOST` gives it
/// (`127.0.0.1:9023` or `http://127.0.0.1:9023/`).
pub fn emulator_base(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    let with_scheme = if host.contains("://") {
        host.to_owned()
    } else {
        format!("http://{host}")
    };
    format!("{with_scheme}/storage/v1")
}

impl Client {
    /// The client the environment asks for (see the module doc).
    pub async fn from_env() -> Result<Client> {
        let non_empty = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(host) = non_empty("STORAGE_EMULATOR_HOST") {
            return Client::emulator(&host);
        }
        let auth = match non_empty("GOOGLE_OAUTH_ACCESS_TOKEN") {
            Some(token) => Auth::Token(token.trim().to_owned()),
            None => Auth::Provider(gcp_auth::provider().await.map_err(|e| {
                Error::Cloud(format!(
                    "gcp credentials: no application-default credentials found ({e})\n  hint: run `gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS, or set GOOGLE_OAUTH_ACCESS_TOKEN"
                ))
            })?),
        };
        Ok(Client {
            http: http_client()?,
            base: GOOGLE_BASE.to_owned(),
            auth,
            scope: SCOPE,
        })
    }

    /// A client of the IAM API: `CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM` when set (a test
    /// stand-in), else Google's; credentials as for storage (an emulator of IAM needs a
    /// token too: set GOOGLE_OAUTH_ACCESS_TOKEN).
    pub async fn iam_from_env() -> Result<Client> {
        Client::google_api_from_env(IAM_ENDPOINT_VAR, IAM_BASE).await
    }

    /// A client of a Google API at `default_base` (`https://container.googleapis.com/v1`),
    /// or at the base URL gcloud's override variable `endpoint_var` gives (the version
    /// is kept from `default_base`); credentials as for IAM.
    pub async fn google_api_from_env(endpoint_var: &str, default_base: &str) -> Result<Client> {
        let non_empty = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let version = default_base.rsplit('/').next().unwrap_or("v1");
        let base = match non_empty(endpoint_var) {
            Some(url) => format!(
                "{}/{version}",
                url.trim()
                    .trim_end_matches('/')
                    .trim_end_matches(&format!("/{version}"))
            ),
            None => default_base.to_owned(),
        };
        let auth = match non_empty("GOOGLE_OAUTH_ACCESS_TOKEN") {
            Some(token) => Auth::Token(token.trim().to_owned()),
            None => Auth::Provider(gcp_auth::provider().await.map_err(|e| {
                Error::Cloud(format!(
                    "gcp credentials: no application-default credentials found ({e})\n  hint: run `gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS, or set GOOGLE_OAUTH_ACCESS_TOKEN"
                ))
            })?),
        };
        Ok(Client {
            http: http_client()?,
            base,
            auth,
            scope: IAM_SCOPE,
        })
    }

    /// A client of an emulator at `host`, sending no credentials.
    pub fn emulator(host: &str) -> Result<Client> {
        Ok(Client {
            http: http_client()?,
            base: emulator_base(host),
            auth: Auth::Anonymous,
            scope: SCOPE,
        })
    }

    /// Sends a request to `path` (below `…/storage/v1`), retrying transient failures
    /// (see the module doc). Transport failures are errors naming `what`; HTTP failures
    /// come back as a [`Reply`] for the caller to judge (a 404 is an answer, not an
    /// error).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        what: &str,
    ) -> Result<Reply> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .query(query);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send_request(request, what).await
    }

    /// A POST to the upload endpoint (`…/upload/storage/v1`): an object whose content
    /// is `body` (`uploadType=media`, sent as bytes so no server reads it as metadata).
    pub async fn send_upload(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: &Value,
        what: &str,
    ) -> Result<Reply> {
        let base = match self.base.strip_suffix("/storage/v1") {
            Some(host) => format!("{host}/upload/storage/v1"),
            None => self.base.clone(),
        };
        let request = self
            .http
            .request(Method::POST, format!("{base}{path}"))
            .query(query)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body.to_string());
        self.send_request(request, what).await
    }

    async fn send_request(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Reply> {
        let mut wait = FIRST_WAIT;
        let mut attempt = 1;
        loop {
            let last = attempt == ATTEMPTS;
            // A JSON body is in memory, so the request can always be built again.
            let again = request
                .try_clone()
                .expect("a request with a JSON body clones");
            match self.send_once(again, what).await {
                Ok(reply) if last || !transient(reply.status) => {
                    return Ok(Reply {
                        attempts: attempt,
                        ..reply
                    });
                }
                Err(Failure::Connect(e)) if last => {
                    return Err(Error::Cloud(format!("{e}{}", after(attempt))));
                }
                Err(Failure::Other(e)) => return Err(e),
                Ok(_) | Err(Failure::Connect(_)) => {}
            }
            crate::engine::retries::count();
            tokio::time::sleep(wait).await;
            wait *= 2;
            attempt += 1;
        }
    }

    /// One sending of `request`, with credentials added.
    async fn send_once(
        &self,
        mut request: reqwest::RequestBuilder,
        what: &str,
    ) -> std::result::Result<Reply, Failure> {
        match &self.auth {
            Auth::Anonymous => {}
            Auth::Token(token) => request = request.bearer_auth(token),
            Auth::Provider(provider) => {
                let token = provider.token(&[self.scope]).await.map_err(|e| {
                    Failure::Other(Error::Cloud(format!(
                        "{what}: could not get a gcp access token: {e}"
                    )))
                })?;
                request = request.bearer_auth(token.as_str());
            }
        }
        let response = request.send().await.map_err(|e| {
            let message = format!("{what}: request to {} failed: {e}", self.base);
            if e.is_connect() {
                Failure::Connect(message)
            } else {
                Failure::Other(Error::Cloud(message))
            }
        })?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| {
            Failure::Other(Error::Cloud(format!(
                "{what}: reading the response failed: {e}"
            )))
        })?;
        let body = if bytes.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Reply {
            status,
            body,
            attempts: 1,
        })
    }
}

/// Why one sending failed: no connection (the request never left, so it may be sent
/// again), or anything else.
enum Failure {
    Connect(String),
    Other(Error),
}

/// ` (after 4 attempts)` when a request was retried, for error messages.
fn after(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

fn http_client() -> Result<reqwest::Client> {
    crate::resources::http::reqwest_builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| Error::Cloud(format!("gcs: could not build the HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::emulator_base;

    #[test]
    fn emulator_host_gets_a_scheme_and_the_api_path() {
        assert_eq!(
            emulator_base("127.0.0.1:9023"),
            "http://127.0.0.1:9023/storage/v1"
        );
        assert_eq!(
            emulator_base("http://127.0.0.1:9023/"),
            "http://127.0.0.1:9023/storage/v1"
        );
        assert_eq!(
            emulator_base("https://gcs.local"),
            "https://gcs.local/storage/v1"
        );
    }
}
