//! # strata-remote-http
//!
//! [`HttpRemote`]: a Strata [`Remote`] served by a StrataHub (`stratahub serve`) over HTTP or HTTPS,
//! scoped to one project. The URL names the hub and the project:
//! `http://127.0.0.1:8080/acme/agent-memory` (a hub mounted below a path works too:
//! `https://example.com/hub/acme/agent-memory`).
//!
//! Every [`Remote`] operation is one request to the hub's project API (docs/format.md, "StrataHub
//! API"):
//!
//! | operation | request |
//! |---|---|
//! | `put_blob_if_absent` | `PUT /v1/projects/:owner/:name/blob?path=P`, `If-None-Match: *`, streamed body |
//! | `get_blob` | `GET …/blob?path=P` (and `Range: bytes=N-` to resume a broken download) |
//! | `list_blobs` | `GET …/blobs?prefix=X` (JSON) |
//! | `delete_blob` | `DELETE …/blob?path=P` |
//! | `read_cursor` | `GET …/cursor?name=N`: the value, its token as the `ETag` |
//! | `write_cursor` | `PUT …/cursor?name=N` with `If-Match: <etag>` or `If-None-Match: *` |
//! | `list_cursors` | `GET …/cursors?prefix=X` (JSON) |
//!
//! Errors come back as JSON `{"error": {"code": "...", "message": "..."}}`; the code picks the
//! [`RemoteError`] variant (`not_found`, `already_exists`, `conflict`, `unauthorized`, `forbidden`,
//! `invalid`, `too_large`, `unavailable`…).
//!
//! ## Credentials
//! The API key comes from the remote's `token` option (`strata remote add hub URL --token …`, kept
//! in the local database only) or else from the `STRATA_TOKEN` environment variable. It is sent as
//! `Authorization: Bearer …` and never printed: `Debug` and `Display` show the URL only.
//!
//! ## Retries
//! Reads, listings and deletes are retried on transient failures (connection errors, 502/503/504)
//! with exponential backoff. A blob upload is never re-sent (its body stream is consumed; the sync
//! layer retries the whole step). A cursor write is re-sent only when the connection failed before
//! the request went out, since a compare-and-swap whose answer was lost cannot be told apart from
//! one that lost. A download broken in the middle resumes with a `Range` request from the last byte
//! received.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{HeaderValue, AUTHORIZATION, ETAG, IF_MATCH, IF_NONE_MATCH, RANGE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;
use strata_remote::{
    BlobMeta, ByteStream, Cursor, CursorToken, ErrorDetail, Remote, RemoteError, RemotePath, Result,
};

/// The environment variable read for the API key when the remote has no `token` option.
pub const TOKEN_ENV: &str = "STRATA_TOKEN";

/// The options an HTTP remote accepts.
pub const OPTION_KEYS: &[&str] = &["token", "timeout", "connect_timeout", "max_retries"];

/// Attempts for an idempotent request (1 + retries) unless `max_retries` says otherwise.
const DEFAULT_RETRIES: u32 = 4;

/// A remote served by a StrataHub, scoped to one project. See the crate documentation.
#[derive(Clone)]
pub struct HttpRemote {
    client: reqwest::Client,
    /// `…/v1/projects/<owner>/<name>/`, ready to join.
    api: Url,
    /// The URL as given (without credentials), for messages.
    shown: String,
    token: Option<String>,
    retries: u32,
}

impl fmt::Debug for HttpRemote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRemote")
            .field("url", &self.shown)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl fmt::Display for HttpRemote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hub remote {}", self.shown)
    }
}

/// A parsed hub remote URL and its options, before any I/O.
#[derive(Clone)]
pub struct HttpConfig {
    base: Url,
    owner: String,
    name: String,
    token: Option<String>,
    timeout: Option<Duration>,
    connect_timeout: Duration,
    retries: u32,
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("base", &self.base.as_str())
            .field("owner", &self.owner)
            .field("name", &self.name)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Checks a project owner or name as the hub does: 1–64 of `A-Z a-z 0-9 . _ -`, starting with a
/// letter or digit.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl HttpConfig {
    /// Parses `http(s)://host[:port][/mount]/<owner>/<name>` and the options (`token`, `timeout`
    /// and `connect_timeout` in seconds, `max_retries`). Without a `token` option the key is read
    /// from [`TOKEN_ENV`]. No I/O.
    pub fn parse(url: &str, options: &BTreeMap<String, String>) -> Result<HttpConfig> {
        let bad = |why: String| RemoteError::Invalid(format!("remote URL {url:?}: {why}").into());
        let parsed = Url::parse(url).map_err(|e| bad(format!("not a URL ({e})")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("a hub URL starts with http:// or https://".into()));
        }
        if parsed.host_str().is_none_or(|h| h.is_empty()) {
            return Err(bad("names no host".into()));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(
                "must not carry credentials; give the key with --token or STRATA_TOKEN".into(),
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad("must not have a query or a fragment".into()));
        }
        let segs: Vec<&str> = parsed
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        if segs.len() < 2 {
            return Err(bad(
                "names no project: use http(s)://HOST[:PORT]/OWNER/PROJECT".into(),
            ));
        }
        let (owner, name) = (segs[segs.len() - 2], segs[segs.len() - 1]);
        for (what, v) in [("owner", owner), ("project", name)] {
            if !valid_name(v) {
                return Err(bad(format!(
                    "{what} {v:?} is not a valid name (1-64 letters, digits, '.', '_', '-', starting with a letter or digit)"
                )));
            }
        }
        let mut base = parsed.clone();
        let mount: Vec<&str> = segs[..segs.len() - 2].to_vec();
        base.set_path(&format!(
            "/{}",
            mount.iter().map(|s| format!("{s}/")).collect::<String>()
        ));
        let mut cfg = HttpConfig {
            base,
            owner: owner.to_string(),
            name: name.to_string(),
            token: None,
            timeout: None,
            connect_timeout: Duration::from_secs(10),
            retries: DEFAULT_RETRIES,
        };
        let secs = |k: &str, v: &str| -> Result<Duration> {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| bad(format!("option {k}: {v:?} is not a number of seconds")))
        };
        for (k, v) in options {
            match k.as_str() {
                "token" => {
                    if v.is_empty() {
                        return Err(bad("option token is empty".into()));
                    }
                    cfg.token = Some(v.clone())
                }
                "timeout" => cfg.timeout = Some(secs(k, v)?),
                "connect_timeout" => cfg.connect_timeout = secs(k, v)?,
                "max_retries" => {
                    cfg.retries = v
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("option max_retries: {v:?} is not a count")))?
                }
                _ => {
                    return Err(bad(format!(
                        "option {k:?}: hub remotes take {}",
                        OPTION_KEYS.join(", ")
                    )))
                }
            }
        }
        if cfg.token.is_none() {
            cfg.token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty());
        }
        Ok(cfg)
    }

    /// The hub's base URL (scheme, host, port and mount path), e.g. `http://127.0.0.1:8080/`.
    pub fn hub_url(&self) -> &str {
        self.base.as_str()
    }

    /// The project: `(owner, name)`.
    pub fn project(&self) -> (&str, &str) {
        (&self.owner, &self.name)
    }
}

impl HttpRemote {
    /// `GET /<kind>?prefix=…` (kind `blobs` or `cursors`): the hub's JSON list of what lies under a
    /// prefix.
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        prefix: &str,
    ) -> Result<Vec<T>> {
        RemotePath::parse_prefix(prefix)?;
        let url = self.url(kind, &[("prefix", prefix)]);
        let what = format!("list {kind} under {prefix:?}");
        let resp = self
            .send(&what, true, || self.request(Method::GET, url.clone()))
            .await?;
        if !resp.status().is_success() {
            return Err(self.error_of(&what, resp).await);
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(&what, e))?;
        serde_json::from_slice(&body).map_err(|e| {
            RemoteError::Other(ErrorDetail::with_source(
                format!("{self}: {what}: the hub's answer is not a list of {kind}"),
                e,
            ))
        })
    }

    /// Opens the remote `url` names (see [`HttpConfig::parse`]). No I/O.
    pub fn open(url: &str, options: &BTreeMap<String, String>) -> Result<HttpRemote> {
        HttpRemote::from_config(HttpConfig::parse(url, options)?, url)
    }

    /// Opens a remote from a parsed configuration; `shown` is the URL used in messages.
    pub fn from_config(cfg: HttpConfig, shown: &str) -> Result<HttpRemote> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            // Below the hub's default --header-timeout (30 s), which closes idle connections: a
            // connection is dropped here before the hub can close it under a new request.
            .pool_idle_timeout(Duration::from_secs(20))
            .user_agent(concat!("strata-remote-http/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = cfg.timeout {
            b = b.timeout(t);
        }
        if cfg.base.scheme() == "http" {
            // A plain-HTTP hub needs no TLS: skip loading the system's CA roots, which costs more
            // (~20 ms) than a whole small pull. With no roots, no https:// redirect is followed.
            b = b.tls_certs_only(std::iter::empty());
        }
        let client = b.build().map_err(|e| {
            RemoteError::Other(ErrorDetail::with_source("cannot build an HTTP client", e))
        })?;
        let api = cfg
            .base
            .join(&format!("v1/projects/{}/{}/", cfg.owner, cfg.name))
            .map_err(|e| {
                RemoteError::Invalid(ErrorDetail::with_source(format!("remote URL {shown:?}"), e))
            })?;
        Ok(HttpRemote {
            client,
            api,
            shown: shown.to_string(),
            token: cfg.token,
            retries: cfg.retries,
        })
    }

    fn url(&self, endpoint: &str, query: &[(&str, &str)]) -> Url {
        let mut u = self.api.join(endpoint).expect("a fixed endpoint joins");
        if !query.is_empty() {
            u.query_pairs_mut().extend_pairs(query);
        }
        u
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let mut rb = self.client.request(method, url);
        if let Some(t) = &self.token {
            let mut v = HeaderValue::from_str(&format!("Bearer {t}"))
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
            v.set_sensitive(true);
            rb = rb.header(AUTHORIZATION, v);
        }
        rb
    }

    /// Sends a request built by `make`, retrying transient failures when `idempotent` (or, when not,
    /// only failures to connect, where the request never left). Returns the response of any status.
    async fn send(
        &self,
        what: &str,
        idempotent: bool,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response> {
        let mut attempt = 0u32;
        loop {
            let res = make().send().await;
            let retry_status = matches!(
                res.as_ref().map(|r| r.status()),
                Ok(StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT)
            );
            let retryable = match &res {
                Ok(_) => retry_status && idempotent,
                Err(e) => e.is_connect() || (idempotent && (e.is_timeout() || e.is_request())),
            };
            if retryable && attempt < self.retries {
                attempt += 1;
                let wait = Duration::from_millis(100u64 << attempt.min(6));
                tracing::debug!(remote = %self, what, attempt, ?wait, "retrying a hub request");
                tokio::time::sleep(wait).await;
                continue;
            }
            return res.map_err(|e| self.transport_error(what, e));
        }
    }

    fn transport_error(&self, what: &str, e: reqwest::Error) -> RemoteError {
        // reqwest's messages name the URL, which carries no secret (the key is a header).
        let msg = format!("{self}: {what}");
        if e.is_builder() {
            RemoteError::Invalid(ErrorDetail::with_source(msg, e))
        } else {
            RemoteError::Transient(ErrorDetail::with_source(
                format!("{msg}: the hub could not be reached or the connection broke"),
                e,
            ))
        }
    }

    /// Turns an error response into a [`RemoteError`] from its JSON code (or its status).
    async fn error_of(&self, what: &str, resp: Response) -> RemoteError {
        self.error_with_code(what, resp).await.1
    }

    /// [`error_of`](Self::error_of), also giving the hub's error code.
    async fn error_with_code(&self, what: &str, resp: Response) -> (String, RemoteError) {
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        let parsed: Option<ErrorBody> = serde_json::from_slice(&body).ok();
        let (code, message) = match parsed {
            Some(b) => (b.error.code, b.error.message),
            None => (
                String::new(),
                String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            ),
        };
        let msg = format!("{self}: {what}: {message} (HTTP {})", status.as_u16());
        let d = ErrorDetail::new(msg);
        let err = match (code.as_str(), status) {
            ("not_found" | "no_such_cursor" | "no_such_blob", _) | (_, StatusCode::NOT_FOUND) => {
                RemoteError::NotFound(d)
            }
            ("already_exists", _) => RemoteError::AlreadyExists(d),
            ("conflict" | "pull_first", _) | (_, StatusCode::CONFLICT) => RemoteError::Conflict(d),
            (_, StatusCode::PRECONDITION_FAILED) => RemoteError::Conflict(d),
            ("unauthorized", _) | (_, StatusCode::UNAUTHORIZED) => RemoteError::Unauthorized(d),
            ("forbidden", _) | (_, StatusCode::FORBIDDEN) => RemoteError::PermissionDenied(d),
            ("corrupt", _) => RemoteError::Corrupt(d),
            ("invalid" | "too_large" | "body_mismatch", _) => RemoteError::Invalid(d),
            ("unavailable" | "timeout" | "overloaded", _)
            | (
                _,
                StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
                | StatusCode::TOO_MANY_REQUESTS
                | StatusCode::REQUEST_TIMEOUT,
            ) => RemoteError::Transient(d),
            (_, s) if s.is_client_error() => RemoteError::Invalid(d),
            _ => RemoteError::Other(d),
        };
        (code, err)
    }

    /// A ranged GET of a blob from byte `from`.
    async fn open_blob(&self, path: &RemotePath, from: u64) -> Result<Response> {
        let url = self.url("blob", &[("path", path.as_str())]);
        let what = format!("get blob {path}");
        let resp = self
            .send(&what, true, || {
                let rb = self.request(Method::GET, url.clone());
                if from > 0 {
                    rb.header(RANGE, format!("bytes={from}-"))
                } else {
                    rb
                }
            })
            .await?;
        let ok = if from > 0 {
            resp.status() == StatusCode::PARTIAL_CONTENT
        } else {
            resp.status() == StatusCode::OK
        };
        if !ok {
            if resp.status().is_success() {
                return Err(RemoteError::Other(
                    format!(
                        "{self}: {what}: the hub answered {} to a request from byte {from}",
                        resp.status()
                    )
                    .into(),
                ));
            }
            return Err(self.error_of(&what, resp).await);
        }
        Ok(resp)
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorFields,
}

#[derive(Deserialize)]
struct ErrorFields {
    code: String,
    message: String,
}

#[derive(Deserialize)]
struct WireBlob {
    path: String,
    size: u64,
    #[serde(default)]
    modified_millis: u64,
}

/// The ETag form of a cursor token: its hex in quotes (tokens are opaque and may hold any byte).
pub fn token_to_etag(token: &CursorToken) -> String {
    format!("\"{}\"", hex::encode(token.0.as_bytes()))
}

/// The cursor token an ETag carries (see [`token_to_etag`]).
pub fn etag_to_token(etag: &str) -> Option<CursorToken> {
    let inner = etag
        .trim()
        .strip_prefix("W/")
        .unwrap_or(etag.trim())
        .strip_prefix('"')?
        .strip_suffix('"')?;
    let raw = hex::decode(inner).ok()?;
    String::from_utf8(raw).ok().map(CursorToken)
}

/// What a resuming download is doing.
struct Download {
    remote: HttpRemote,
    path: RemotePath,
    offset: u64,
    total: Option<u64>,
    body: Option<futures::stream::BoxStream<'static, reqwest::Result<Bytes>>>,
    resumes: u32,
    done: bool,
}

fn body_of(resp: Response) -> futures::stream::BoxStream<'static, reqwest::Result<Bytes>> {
    resp.bytes_stream().boxed()
}

fn download_stream(d: Download) -> ByteStream {
    Box::pin(futures::stream::unfold(d, |mut d| async move {
        if d.done {
            return None;
        }
        loop {
            let body = match d.body.as_mut() {
                Some(b) => b,
                None => match d.remote.open_blob(&d.path, d.offset).await {
                    Ok(resp) => d.body.insert(body_of(resp)),
                    Err(e) => {
                        d.done = true;
                        return Some((Err(e), d));
                    }
                },
            };
            match body.next().await {
                Some(Ok(chunk)) => {
                    d.offset += chunk.len() as u64;
                    return Some((Ok(chunk), d));
                }
                None => {
                    if let Some(t) = d.total {
                        if d.offset < t {
                            // The body ended early without an error: treat it as a break.
                            d.body = None;
                            if d.resumes < d.remote.retries {
                                d.resumes += 1;
                                continue;
                            }
                            d.done = true;
                            let msg = format!(
                                "{}: get blob {}: the download ended at byte {} of {t}",
                                d.remote, d.path, d.offset
                            );
                            return Some((Err(RemoteError::Transient(msg.into())), d));
                        }
                    }
                    return None;
                }
                Some(Err(e)) => {
                    d.body = None;
                    if d.resumes < d.remote.retries {
                        d.resumes += 1;
                        tracing::debug!(remote = %d.remote, path = %d.path, offset = d.offset,
                            "a download broke; resuming with a Range request");
                        tokio::time::sleep(Duration::from_millis(50u64 << d.resumes.min(6))).await;
                        continue;
                    }
                    d.done = true;
                    let err = d.remote.transport_error(&format!("get blob {}", d.path), e);
                    return Some((Err(err), d));
                }
            }
        }
    }))
}

#[async_trait]
impl Remote for HttpRemote {
    async fn put_blob_if_absent(&self, path: &RemotePath, body: ByteStream) -> Result<()> {
        let url = self.url("blob", &[("path", path.as_str())]);
        let what = format!("put blob {path}");
        // The body is consumed by the first send: no retry (see the crate documentation).
        let stream =
            body.map(|r| r.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>));
        let resp = self
            .request(Method::PUT, url)
            .header(IF_NONE_MATCH, "*")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .map_err(|e| self.transport_error(&what, e))?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(self.error_of(&what, resp).await)
    }

    async fn get_blob(&self, path: &RemotePath) -> Result<ByteStream> {
        let resp = self.open_blob(path, 0).await?;
        let total = resp.content_length();
        Ok(download_stream(Download {
            remote: self.clone(),
            path: path.clone(),
            offset: 0,
            total,
            body: Some(body_of(resp)),
            resumes: 0,
            done: false,
        }))
    }

    async fn list_blobs(&self, prefix: &str) -> Result<Vec<BlobMeta>> {
        let items: Vec<WireBlob> = self.list("blobs", prefix).await?;
        items
            .into_iter()
            .map(|b| {
                Ok(BlobMeta {
                    path: RemotePath::parse(&b.path)?,
                    size: b.size,
                    modified_millis: b.modified_millis,
                })
            })
            .collect()
    }

    async fn delete_blob(&self, path: &RemotePath) -> Result<()> {
        let url = self.url("blob", &[("path", path.as_str())]);
        let what = format!("delete blob {path}");
        let resp = self
            .send(&what, true, || self.request(Method::DELETE, url.clone()))
            .await?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(self.error_of(&what, resp).await)
    }

    async fn read_cursor(&self, name: &RemotePath) -> Result<Option<Cursor>> {
        let url = self.url("cursor", &[("name", name.as_str())]);
        let what = format!("read cursor {name}");
        let resp = self
            .send(&what, true, || self.request(Method::GET, url.clone()))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            // A missing project is an error; a missing cursor is `None`.
            let (code, err) = self.error_with_code(&what, resp).await;
            if code == "no_such_cursor" {
                return Ok(None);
            }
            return Err(err);
        }
        if !resp.status().is_success() {
            return Err(self.error_of(&what, resp).await);
        }
        let token = resp
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .and_then(etag_to_token)
            .ok_or_else(|| {
                RemoteError::Other(format!("{self}: {what}: the hub sent no valid ETag").into())
            })?;
        let value = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(&what, e))?;
        Ok(Some(Cursor { value, token }))
    }

    async fn write_cursor(
        &self,
        name: &RemotePath,
        value: Bytes,
        expected: Option<&CursorToken>,
    ) -> Result<CursorToken> {
        let url = self.url("cursor", &[("name", name.as_str())]);
        let what = format!("write cursor {name}");
        let resp = self
            .send(&what, false, || {
                let rb = self.request(Method::PUT, url.clone()).body(value.clone());
                match expected {
                    Some(t) => rb.header(IF_MATCH, token_to_etag(t)),
                    None => rb.header(IF_NONE_MATCH, "*"),
                }
            })
            .await?;
        if !resp.status().is_success() {
            return Err(self.error_of(&what, resp).await);
        }
        resp.headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .and_then(etag_to_token)
            .ok_or_else(|| {
                RemoteError::Other(format!("{self}: {what}: the hub sent no valid ETag").into())
            })
    }

    async fn list_cursors(&self, prefix: &str) -> Result<Vec<RemotePath>> {
        let names: Vec<String> = self.list("cursors", prefix).await?;
        names.iter().map(|n| RemotePath::parse(n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_hub_and_a_project() {
        let none = BTreeMap::new();
        let c = HttpConfig::parse("http://127.0.0.1:8080/acme/agent-memory", &none).unwrap();
        assert_eq!(c.hub_url(), "http://127.0.0.1:8080/");
        assert_eq!(c.project(), ("acme", "agent-memory"));
        let c = HttpConfig::parse("https://example.com/hub/acme/x/", &none).unwrap();
        assert_eq!(c.hub_url(), "https://example.com/hub/");
        assert_eq!(c.project(), ("acme", "x"));
        for bad in [
            "http://127.0.0.1:8080/",
            "http://127.0.0.1:8080/acme",
            "http://u:p@127.0.0.1/acme/x",
            "http://127.0.0.1/acme/x?a=b",
            "http://127.0.0.1/acme/..",
            "http://127.0.0.1/acme/-x",
            "ftp://127.0.0.1/acme/x",
        ] {
            let e = HttpConfig::parse(bad, &none).unwrap_err();
            assert!(matches!(e, RemoteError::Invalid(_)), "{bad}: {e:?}");
            assert!(e.message().contains(bad), "{bad}: {e}");
        }
        let opts = BTreeMap::from([("endpoint".to_string(), "x".to_string())]);
        assert!(HttpConfig::parse("http://h/a/b", &opts).is_err());
    }

    #[test]
    fn the_token_is_never_shown() {
        let opts = BTreeMap::from([("token".to_string(), "shub_secretvalue".to_string())]);
        let r = HttpRemote::open("http://127.0.0.1:1/acme/x", &opts).unwrap();
        assert!(!format!("{r:?} {r}").contains("secretvalue"));
        let c = HttpConfig::parse("http://127.0.0.1:1/acme/x", &opts).unwrap();
        assert!(!format!("{c:?}").contains("secretvalue"));
    }

    #[test]
    fn etags_carry_any_token() {
        for t in ["", "abc", "a\"b", "1/2:3 é"] {
            let tok = CursorToken(t.to_string());
            assert_eq!(etag_to_token(&token_to_etag(&tok)), Some(tok));
        }
        assert_eq!(etag_to_token("abc"), None);
    }
}
