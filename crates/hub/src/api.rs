//! The HTTP API. See docs/format.md ("StrataHub API") and `/v1/openapi.json`.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::Router;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use strata_remote::{
    decode_segment, encode_segment, ByteStream, CursorToken, RemoteError, RemotePath,
};

use crate::error::ApiError;
use crate::store::{check_name, glob_match, KeyDoc, Member, ProjectDoc, Role};
use crate::Hub;

type ApiResult<T> = Result<T, ApiError>;
type Q = Result<Query<BTreeMap<String, String>>, QueryRejection>;

/// The OpenAPI document of this API (kept in docs/stratahub-openapi.json).
pub(crate) const OPENAPI: &str = include_str!("../../../docs/stratahub-openapi.json");

pub(crate) fn router(hub: Hub) -> Router {
    let project = "/v1/projects/{owner}/{name}";
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/keys", axum::routing::post(create_key))
        .route("/v1/keys/{id}", delete(revoke_key))
        .route("/v1/projects", get(list_projects).post(create_project))
        .route(project, get(get_project).delete(delete_project))
        .route(
            &format!("{project}/members/{{key_id}}"),
            put(set_member).delete(remove_member),
        )
        .route(
            &format!("{project}/blob"),
            get(get_blob).put(put_blob).delete(delete_blob),
        )
        .route(&format!("{project}/blobs"), get(list_blobs))
        .route(
            &format!("{project}/cursor"),
            get(read_cursor).put(write_cursor),
        )
        .route(&format!("{project}/cursors"), get(list_cursors))
        .route(&format!("{project}/branches"), get(list_branches))
        .route(
            &format!("{project}/branches/{{branch}}/cursor"),
            get(branch_cursor),
        )
        .route(&format!("{project}/branches/{{branch}}/push"), put(push))
        .route(&format!("{project}/branches/{{branch}}/pull"), get(pull))
        .route(
            &format!("{project}/branches/{{branch}}/bundle"),
            get(bundle),
        )
        .merge(crate::web::routes())
        .fallback(|| async { ApiError::not_found("no such endpoint (see /v1/openapi.json)") })
        .layer(axum::middleware::from_fn_with_state(
            hub.clone(),
            crate::serve::limits,
        ))
        .layer(axum::middleware::from_fn_with_state(hub.clone(), observe))
        .with_state(hub)
}

/// Request logs (method, path, status, time; never headers, so never keys) and metrics.
async fn observe(State(hub): State<Hub>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    hub.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let resp = next.run(req).await;
    hub.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    let micros = start.elapsed().as_micros() as u64;
    let status = resp.status().as_u16();
    hub.metrics.record(method.as_str(), status, micros);
    tracing::info!(target: "stratahub::request", %method, %path, status, micros, "request");
    resp
}

async fn metrics(State(hub): State<Hub>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        hub.metrics.render(),
    )
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

// ----- auth ---------------------------------------------------------------------------------------

/// Who is asking.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// `--open` mode: anyone, allowed everything.
    Open,
    /// A valid key.
    Key(KeyDoc),
}

impl Caller {
    fn is_admin(&self) -> bool {
        match self {
            Caller::Open => true,
            Caller::Key(k) => k.admin,
        }
    }

    fn key_id(&self) -> Option<&str> {
        match self {
            Caller::Open => None,
            Caller::Key(k) => Some(&k.id),
        }
    }
}

/// What a request needs of a project.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Need<'a> {
    Read,
    /// Writing (or deleting) this path of the project's data.
    Write(&'a RemotePath),
    Owner,
}

/// The caller, from the `Authorization: Bearer` header (401 if absent or not valid).
pub(crate) async fn caller(hub: &Hub, headers: &HeaderMap) -> ApiResult<Caller> {
    if hub.config.open {
        return Ok(Caller::Open);
    }
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Err(ApiError::unauthorized());
    };
    key_caller(hub, token.trim()).await
}

pub(crate) async fn key_caller(hub: &Hub, token: &str) -> ApiResult<Caller> {
    match hub.store.authenticate(token).await? {
        Some(k) => Ok(Caller::Key(k)),
        None => Err(ApiError::unauthorized()),
    }
}

/// The branch a project path belongs to under the sync layout (`branches/<enc(branch)>/…`), if any.
fn branch_of(path: &RemotePath) -> Option<String> {
    let mut segs = path.segments();
    match (segs.next(), segs.next()) {
        (Some("branches"), Some(enc)) => decode_segment(enc).ok(),
        _ => None,
    }
}

/// Whether `caller` may do `need` on `doc`: `Ok(role)` or 404 (not a member) / 403 (not allowed).
pub(crate) fn authorize(caller: &Caller, doc: &ProjectDoc, need: Need<'_>) -> ApiResult<()> {
    if caller.is_admin() {
        return Ok(());
    }
    let member = caller
        .key_id()
        .and_then(|id| doc.members.get(id))
        .ok_or_else(|| ApiError::no_project(&doc.owner, &doc.name))?;
    match need {
        Need::Read => Ok(()),
        Need::Owner if member.role >= Role::Owner => Ok(()),
        Need::Owner => Err(ApiError::forbidden(format!(
            "your key has the {:?} role in {}/{}; this needs owner",
            member.role, doc.owner, doc.name
        ))),
        Need::Write(_) if member.role < Role::Write => Err(ApiError::forbidden(format!(
            "your key may only read {}/{}; ask an owner for write access",
            doc.owner, doc.name
        ))),
        Need::Write(path) => match &member.branches {
            None => Ok(()),
            Some(patterns) => {
                // The remote's marker may be written by any writer; anything else must be a
                // branch's cursor or blob, on a branch the key may write.
                if path.as_str() == "strata-remote.json" {
                    return Ok(());
                }
                match branch_of(path) {
                    Some(b) if patterns.iter().any(|p| glob_match(p, &b)) => Ok(()),
                    Some(b) => Err(ApiError::forbidden(format!(
                        "your key may write only branches matching {patterns:?}, not {b:?}"
                    ))),
                    None => Err(ApiError::forbidden(format!(
                        "your key may write only branches matching {patterns:?}"
                    ))),
                }
            }
        },
    }
}

/// The project named in the URL, if the caller may do `need` on it.
async fn project_for(
    hub: &Hub,
    headers: &HeaderMap,
    owner: &str,
    name: &str,
    need: Need<'_>,
) -> ApiResult<ProjectDoc> {
    Ok(caller_and_project(hub, headers, owner, name, need).await?.1)
}

/// The caller and the project named in the URL, if the caller may do `need` on it.
async fn caller_and_project(
    hub: &Hub,
    headers: &HeaderMap,
    owner: &str,
    name: &str,
    need: Need<'_>,
) -> ApiResult<(Caller, ProjectDoc)> {
    // The key and the project are read at once (two storage reads, one wait); the key is judged
    // first, so a request without a valid key learns nothing about the project.
    let project = async {
        check_name("owner", owner)?;
        check_name("project", name)?;
        hub.store.project(owner, name).await
    };
    let (caller, project) = tokio::join!(caller(hub, headers), project);
    let caller = caller?;
    let (doc, _) = project?.ok_or_else(|| ApiError::no_project(owner, name))?;
    authorize(&caller, &doc, need)?;
    Ok((caller, doc))
}

// ----- helpers ------------------------------------------------------------------------------------

fn path_of(p: Result<Path<(String, String)>, PathRejection>) -> ApiResult<(String, String)> {
    p.map(|Path(v)| v)
        .map_err(|e| ApiError::invalid(e.body_text()))
}

fn query_of(q: Q) -> ApiResult<BTreeMap<String, String>> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::invalid(e.body_text()))
}

fn required<'a>(q: &'a BTreeMap<String, String>, key: &str) -> ApiResult<&'a str> {
    q.get(key)
        .map(String::as_str)
        .ok_or_else(|| ApiError::invalid(format!("the query parameter {key:?} is missing")))
}

fn remote_path(s: &str) -> ApiResult<RemotePath> {
    RemotePath::parse(s).map_err(ApiError::from)
}

/// Reads a small body whole, with a limit (413 beyond).
async fn small_body(body: Body, limit: usize) -> ApiResult<Bytes> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.to_string().contains("length limit"))
            || e.to_string().contains("length limit");
        if too_large {
            ApiError::too_large(limit as u64)
        } else {
            ApiError::invalid(format!("the request body could not be read: {e}"))
        }
    })
}

fn json_body<T: for<'de> Deserialize<'de>>(b: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(b)
        .map_err(|e| ApiError::invalid(format!("the JSON body is not valid: {e}")))
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(v).expect("serializes"),
    )
        .into_response()
}

fn etag(token: &CursorToken) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}\"", hex::encode(token.0.as_bytes())))
        .expect("hex is a valid header")
}

fn parse_etag(v: &str) -> Option<CursorToken> {
    let inner = v.trim().strip_prefix('"')?.strip_suffix('"')?;
    String::from_utf8(hex::decode(inner).ok()?)
        .ok()
        .map(CursorToken)
}

// ----- keys and projects --------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyReq {
    name: String,
    #[serde(default)]
    admin: bool,
}

async fn create_key(State(hub): State<Hub>, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let caller = caller(&hub, &headers).await?;
    if !caller.is_admin() {
        return Err(ApiError::forbidden("only admin keys may create keys"));
    }
    let req: NewKeyReq = json_body(&small_body(body, 64 << 10).await?)?;
    let k = hub.store.create_key(&req.name, req.admin).await?;
    tracing::info!(key_id = %k.doc.id, admin = k.doc.admin, "key created");
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({"id": k.doc.id, "name": k.doc.name, "admin": k.doc.admin, "key": k.key}),
    ))
}

async fn revoke_key(
    State(hub): State<Hub>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    let caller = caller(&hub, &headers).await?;
    if !caller.is_admin() {
        return Err(ApiError::forbidden("only admin keys may revoke keys"));
    }
    let Path(id) = id.map_err(|e| ApiError::invalid(e.body_text()))?;
    if hub.store.revoke_key(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no key {id:?}")))
    }
}

#[derive(Serialize)]
struct ProjectView<'a> {
    owner: &'a str,
    name: &'a str,
    created_micros: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<&'a BTreeMap<String, Member>>,
}

fn view<'a>(caller: &Caller, doc: &'a ProjectDoc) -> ProjectView<'a> {
    let role = if caller.is_admin() {
        Some(Role::Owner)
    } else {
        caller
            .key_id()
            .and_then(|id| doc.members.get(id))
            .map(|m| m.role)
    };
    ProjectView {
        owner: &doc.owner,
        name: &doc.name,
        created_micros: doc.created_micros,
        role,
        members: (role == Some(Role::Owner)).then_some(&doc.members),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProjectReq {
    owner: String,
    name: String,
}

async fn create_project(
    State(hub): State<Hub>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let caller = caller(&hub, &headers).await?;
    let req: NewProjectReq = json_body(&small_body(body, 64 << 10).await?)?;
    match hub
        .store
        .create_project(&req.owner, &req.name, caller.key_id())
        .await?
    {
        Some(doc) => {
            tracing::info!(owner = %doc.owner, name = %doc.name, "project created");
            Ok(json(StatusCode::CREATED, &view(&caller, &doc)))
        }
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_exists",
            format!("project {}/{} already exists", req.owner, req.name),
        )),
    }
}

pub(crate) async fn visible_projects(hub: &Hub, caller: &Caller) -> ApiResult<Vec<ProjectDoc>> {
    let all = hub.store.projects().await?;
    Ok(all
        .into_iter()
        .filter(|d| authorize(caller, d, Need::Read).is_ok())
        .collect())
}

async fn list_projects(State(hub): State<Hub>, headers: HeaderMap) -> ApiResult<Response> {
    let caller = caller(&hub, &headers).await?;
    let docs = visible_projects(&hub, &caller).await?;
    let views: Vec<_> = docs.iter().map(|d| view(&caller, d)).collect();
    Ok(json(StatusCode::OK, &views))
}

async fn get_project(
    State(hub): State<Hub>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Response> {
    let (owner, name) = path_of(p)?;
    let (caller, doc) = caller_and_project(&hub, &headers, &owner, &name, Need::Read).await?;
    Ok(json(StatusCode::OK, &view(&caller, &doc)))
}

async fn delete_project(
    State(hub): State<Hub>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<StatusCode> {
    let (owner, name) = path_of(p)?;
    project_for(&hub, &headers, &owner, &name, Need::Owner).await?;
    if hub.store.delete_project(&owner, &name).await? {
        tracing::info!(%owner, %name, "project deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::no_project(&owner, &name))
    }
}

fn member_path(
    p: Result<Path<(String, String, String)>, PathRejection>,
) -> ApiResult<(String, String, String)> {
    p.map(|Path(v)| v)
        .map_err(|e| ApiError::invalid(e.body_text()))
}

async fn set_member(
    State(hub): State<Hub>,
    headers: HeaderMap,
    p: Result<Path<(String, String, String)>, PathRejection>,
    body: Body,
) -> ApiResult<Response> {
    let (owner, name, key_id) = member_path(p)?;
    project_for(&hub, &headers, &owner, &name, Need::Owner).await?;
    let m: Member = json_body(&small_body(body, 64 << 10).await?)?;
    if key_id.len() != 16 || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(format!("{key_id:?} is not a key id")));
    }
    let doc = hub
        .store
        .update_project(&owner, &name, |d| {
            d.members.insert(key_id.clone(), m.clone());
            Ok(())
        })
        .await?
        .ok_or_else(|| ApiError::no_project(&owner, &name))?;
    Ok(json(StatusCode::OK, &doc.members))
}

async fn remove_member(
    State(hub): State<Hub>,
    headers: HeaderMap,
    p: Result<Path<(String, String, String)>, PathRejection>,
) -> ApiResult<StatusCode> {
    let (owner, name, key_id) = member_path(p)?;
    project_for(&hub, &headers, &owner, &name, Need::Owner).await?;
    hub.store
        .update_project(&owner, &name, |d| {
            d.members.remove(&key_id);
            Ok(())
        })
        .await?
        .ok_or_else(|| ApiError::no_project(&owner, &name))?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- blobs --------------------------------------------------------------------------------------

/// How an upload ended, when it did not end well.
type UploadOutcome = Arc<Mutex<Option<ApiError>>>;

/// A client's upload on its way to storage: counts bytes against the limit, hashes them, and turns
/// a short, long or mismatching body into a failed stream (so the storage stores nothing).
struct Upload {
    inner: Pin<Box<dyn Stream<Item = Result<Bytes, axum::Error>> + Send>>,
    hasher: Sha256,
    count: u64,
    limit: u64,
    declared_sha256: Option<String>,
    outcome: UploadOutcome,
    hub: Hub,
    done: bool,
}

impl Upload {
    fn fail(&mut self, err: ApiError) -> Poll<Option<strata_remote::Result<Bytes>>> {
        let msg = err.message.clone();
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(err);
        self.done = true;
        Poll::Ready(Some(Err(RemoteError::Invalid(msg.into()))))
    }
}

impl Stream for Upload {
    type Item = strata_remote::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(b))) => {
                self.count += b.len() as u64;
                self.hub
                    .metrics
                    .blob_bytes_in
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
                if self.count > self.limit {
                    let limit = self.limit;
                    return self.fail(ApiError::too_large(limit));
                }
                self.hasher.update(&b);
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => self.fail(ApiError::new(
                StatusCode::BAD_REQUEST,
                "incomplete",
                format!("the upload broke before its end: {e}"),
            )),
            Poll::Ready(None) => {
                if let Some(want) = self.declared_sha256.clone() {
                    let got = hex::encode(std::mem::take(&mut self.hasher).finalize());
                    if !got.eq_ignore_ascii_case(&want) {
                        return self.fail(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "body_mismatch",
                            format!("the body's SHA-256 is {got}, not the declared {want}; nothing was stored"),
                        ));
                    }
                }
                self.done = true;
                Poll::Ready(None)
            }
        }
    }
}

async fn put_blob(
    State(hub): State<Hub>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Q,
    body: Body,
) -> ApiResult<StatusCode> {
    let (owner, name) = path_of(p)?;
    let q = query_of(q)?;
    let path = remote_path(required(&q, "path")?)?;
    let doc = project_for(&hub, &headers, &owner, &name, Need::Write(&path)).await?;
    if let Some(v) = headers.get(header::IF_NONE_MATCH) {
        if v.as_bytes() != b"*" {
            return Err(ApiError::invalid(
                "a blob is only ever put if absent: send `If-None-Match: *` or nothing",
            ));
        }
    }
    let limit = hub.config.max_blob_bytes;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit {
            return Err(ApiError::too_large(limit));
        }
    }
    let declared_sha256 = match headers.get("x-strata-sha256") {
        None => None,
        Some(v) => {
            let s = v.to_str().unwrap_or("").to_string();
            if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ApiError::invalid("X-Strata-Sha256 must be 64 hex digits"));
            }
            Some(s)
        }
    };
    let outcome = UploadOutcome::default();
    let upload = Upload {
        inner: Box::pin(body.into_data_stream()),
        hasher: Sha256::new(),
        count: 0,
        limit,
        declared_sha256,
        outcome: outcome.clone(),
        hub: hub.clone(),
        done: false,
    };
    let stream: ByteStream = Box::pin(upload);
    let res = hub
        .store
        .remote()
        .put_blob_if_absent(&doc.data_path(&path)?, stream)
        .await;
    if let Some(err) = outcome.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(err);
    }
    match res {
        Ok(()) => Ok(StatusCode::CREATED),
        Err(RemoteError::AlreadyExists(_)) => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "already_exists",
            format!("a blob is already stored at {path}"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// `bytes=N-` or `bytes=N-M`.
fn parse_range(v: &str) -> Option<(u64, Option<u64>)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let end = if b.trim().is_empty() {
        None
    } else {
        Some(b.trim().parse().ok()?)
    };
    if end.is_some_and(|e| e < start) {
        return None;
    }
    Some((start, end))
}

/// Skips `skip` bytes of a stream and stops after `take` more.
fn slice_stream(s: ByteStream, skip: u64, take: u64) -> ByteStream {
    let mut skip = skip;
    let mut left = take;
    Box::pin(
        s.map(move |r| {
            r.map(|mut b| {
                if skip > 0 {
                    let n = (skip.min(b.len() as u64)) as usize;
                    skip -= n as u64;
                    b = b.slice(n..);
                }
                let n = (left.min(b.len() as u64)) as usize;
                left -= n as u64;
                b.slice(..n)
            })
        })
        .filter(|r| futures::future::ready(!matches!(r, Ok(b) if b.is_empty()))),
    )
}

async fn get_blob(
    State(hub): State<Hub>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Q,
) -> ApiResult<Response> {
    let (owner, name) = path_of(p)?;
    let q = query_of(q)?;
    let path = remote_path(required(&q, "path")?)?;
    let doc = project_for(&hub, &headers, &owner, &name, Need::Read).await?;
    let stored = doc.data_path(&path)?;
    let range = match headers.get(header::RANGE) {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(parse_range).ok_or_else(|| {
            ApiError::invalid("only `Range: bytes=N-` or `bytes=N-M` is supported")
        })?),
    };
    let remote = hub.store.remote();
    let stream = match remote.get_blob(&stored).await {
        Ok(s) => s,
        Err(RemoteError::NotFound(_)) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_blob",
                format!("no blob at {path}"),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let counted = {
        let hub = hub.clone();
        move |s: ByteStream| -> ByteStream {
            Box::pin(s.inspect(move |r| {
                if let Ok(b) = r {
                    hub.metrics
                        .blob_bytes_out
                        .fetch_add(b.len() as u64, Ordering::Relaxed);
                }
            }))
        }
    };
    let Some((start, end)) = range else {
        let mut resp = Response::new(Body::from_stream(counted(stream)));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        resp.headers_mut()
            .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        return Ok(resp);
    };
    // A ranged read needs the size: one listing of exactly this path.
    let size = remote
        .list_blobs(stored.as_str())
        .await?
        .into_iter()
        .find(|m| m.path == stored)
        .map(|m| m.size)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_blob",
                format!("no blob at {path}"),
            )
        })?;
    if start >= size && !(start == 0 && size == 0) {
        let mut resp = ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range",
            format!("the blob has {size} bytes; the range starts at {start}"),
        )
        .into_response();
        resp.headers_mut().insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes */{size}")).expect("valid"),
        );
        return Ok(resp);
    }
    let last = end.unwrap_or(u64::MAX).min(size.saturating_sub(1));
    let len = if size == 0 { 0 } else { last - start + 1 };
    let mut resp = Response::new(Body::from_stream(counted(slice_stream(stream, start, len))));
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&format!("bytes {start}-{last}/{size}")).expect("valid"),
    );
    Ok(resp)
}

async fn delete_blob(
    State(hub): State<Hub>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Q,
) -> ApiResult<StatusCode> {
    let (owner, name) = path_of(p)?;
    let q = query_of(q)?;
    let path = remote_path(required(&q, "path")?)?;
    let doc = project_for(&hub, &headers, &owner, &name, Need::Write(&path)).await?;
    hub.store
        .remote()
        .delete_blob(&doc.data_path(&path)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The storage prefix for a client's listing prefix inside the project.
fn storage_prefix(doc: &ProjectDoc, prefix: &str) -> ApiResult<(String, usize)> {
    let root = doc.data_root();
    let strip = root.len() + 1;
    Ok(match RemotePath::parse_prefix(prefix)? {
        None => (root, strip),
        Some(p) => (format!("{root}/{}", p.as_str()), strip),
    })
}

#[derive(Serialize)]
struct WireBlob {
    path: String,
    size: u64,
    modified_millis: u64,
}

async fn list_blobs(
    State(hub): State<Hub>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Q,
) -> ApiResult<Response> {
    let (owner, name) = path_of(p)?;
    let q = query_of(q)?;
    let doc = project_for(&hub, &headers, &owner, &name, Need::Read).await?;
    let (prefix, strip) = storage_prefix(&doc, q.get("prefix").map_or("", String::as_str))?;
    let metas = hub.store.remote().list_blobs(&prefix).await?;
    let out: Vec<WireBlob> = metas
        .into_iter()
        .filter(|m| m.path.as_str().len() > strip)
        .map(|m| WireBlob {
            path: m.path.as_str()[strip..].to_string(),
            size: m.size,
            modified_millis: m.modified_millis,
        })
        .collect();
    Ok(json(StatusCode::OK, &out))
}

// ----- cursors ------------------------------------------------------------------------------------

fn cursor_response(value: Bytes, token: &CursorToken) -> Response {
    let mut resp = Response::new(Body::from(value));
    resp.headers_mut().insert(header::ETAG, etag(token));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

fn no_cursor(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_cursor",
        format!("no cursor {name}"),
    )
}

async fn read_cursor(
    State(hub): State<Hub>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Q,
) -> ApiResult<Response> {
    let (owner, name) = path_of(p)?;
    let q = query_of(q)?;
    let cname = remote_path(required(&q, "name")?)?;
    let doc = project_for(&hub, &headers, &owner, &name, Need::Read).await?;
    match hub
        .store
        .remote()
        .read_cursor(&doc.data_path(&cname)?)
        .await?
    {
        Some(c) => Ok(cursor_response(c.value, &c.token)),
        None => Err(no_cursor(cname.as_str())),
    }
}

async fn write_cursor(
    State(hub): State<Hub>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Q,
    body: Body,
) -> ApiResult<Response> {
    let (owner, name) = path_of(p)?;
    let q = query_of(q)?;
    let cname = remote_path(required(&q, "name")?)?;
    let doc = project_for(&hub, &headers, &owner, &name, Need::Write(&cname)).await?;
    let expected =
        match (
            headers.get(header::IF_MATCH),
            headers.get(header::IF_NONE_MATCH),
        ) {
            (Some(m), None) => Some(
                m.to_str()
                    .ok()
                    .and_then(parse_etag)
                    .ok_or_else(|| ApiError::invalid("If-Match must be an ETag this hub gave"))?,
            ),
            (None, Some(v)) if v.as_bytes() == b"*" => None,
            _ => return Err(ApiError::new(
                StatusCode::PRECONDITION_REQUIRED,
                "precondition_required",
                "a cursor write needs `If-Match: <etag>` (replace) or `If-None-Match: *` (create)",
            )),
        };
    let value = small_body(body, hub.config.max_doc_bytes).await?;
    match hub
        .store
        .remote()
        .write_cursor(&doc.data_path(&cname)?, value, expected.as_ref())
        .await
    {
        Ok(t) => {
            let mut resp = StatusCode::OK.into_response();
            resp.headers_mut().insert(header::ETAG, etag(&t));
            Ok(resp)
        }
        Err(RemoteError::Conflict(_)) => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "conflict",
            format!("cursor {cname} changed since it was read (or exists already): read it again"),
        )),
        Err(e) => Err(e.into()),
    }
}

async fn list_cursors(
    State(hub): State<Hub>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Q,
) -> ApiResult<Response> {
    let (owner, name) = path_of(p)?;
    let q = query_of(q)?;
    let doc = project_for(&hub, &headers, &owner, &name, Need::Read).await?;
    let (prefix, strip) = storage_prefix(&doc, q.get("prefix").map_or("", String::as_str))?;
    let names = hub.store.remote().list_cursors(&prefix).await?;
    let out: Vec<&str> = names
        .iter()
        .filter(|n| n.as_str().len() > strip)
        .map(|n| &n.as_str()[strip..])
        .collect();
    Ok(json(StatusCode::OK, &out))
}

// ----- branches (read from the cursors' JSON summary fields) --------------------------------------

/// One push as the client recorded it in the branch cursor (`pushes`, newest last).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct PushSummary {
    #[serde(default)]
    pub(crate) time_micros: u64,
    #[serde(default)]
    pub(crate) author: Option<String>,
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default)]
    pub(crate) from: u64,
    #[serde(default)]
    pub(crate) to: u64,
    #[serde(default)]
    pub(crate) entries: u64,
}

/// The fields of a branch cursor the hub reads; everything else is ignored.
#[derive(Clone, Debug, Default, Deserialize)]
struct CursorSummary {
    #[serde(default)]
    version: u64,
    #[serde(default)]
    updated_micros: u64,
    #[serde(default)]
    pushes: Vec<PushSummary>,
}

/// A branch as listed.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct BranchView {
    pub(crate) name: String,
    pub(crate) version: u64,
    pub(crate) updated_micros: u64,
    pub(crate) pushes: Vec<PushSummary>,
}

pub(crate) async fn branches(hub: &Hub, doc: &ProjectDoc) -> ApiResult<Vec<BranchView>> {
    let (prefix, strip) = storage_prefix(doc, "branches")?;
    let remote = hub.store.remote();
    let mut out = Vec::new();
    for n in remote.list_cursors(&prefix).await? {
        let rel = &n.as_str()[strip..];
        let Some(enc) = rel.strip_prefix("branches/") else {
            continue;
        };
        if enc.contains('/') {
            continue;
        }
        let Ok(branch) = decode_segment(enc) else {
            continue;
        };
        let Some(c) = remote.read_cursor(&n).await? else {
            continue;
        };
        // A cursor the hub cannot read is listed with what it can show (it never fails the page).
        let s: CursorSummary = serde_json::from_slice(&c.value).unwrap_or_default();
        out.push(BranchView {
            name: branch,
            version: s.version,
            updated_micros: s.updated_micros,
            pushes: s.pushes,
        });
    }
    Ok(out)
}

async fn list_branches(
    State(hub): State<Hub>,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Response> {
    let (owner, name) = path_of(p)?;
    let doc = project_for(&hub, &headers, &owner, &name, Need::Read).await?;
    Ok(json(StatusCode::OK, &branches(&hub, &doc).await?))
}

async fn branch_cursor(
    State(hub): State<Hub>,
    headers: HeaderMap,
    p: Result<Path<(String, String, String)>, PathRejection>,
) -> ApiResult<Response> {
    let (owner, name, branch) = member_path(p)?;
    let doc = project_for(&hub, &headers, &owner, &name, Need::Read).await?;
    let cname = remote_path(&format!("branches/{}", encode_segment(&branch)))?;
    match hub
        .store
        .remote()
        .read_cursor(&doc.data_path(&cname)?)
        .await?
    {
        Some(c) => Ok(cursor_response(c.value, &c.token)),
        None => Err(no_cursor(cname.as_str())),
    }
}

// ----- push, pull, bundle: the seed's higher-level endpoints, for clients without the Remote trait --

/// A blob a branch cursor names (the fields the hub reads of it).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct BlobRefView {
    path: String,
    #[serde(default)]
    from: u64,
    #[serde(default)]
    to: u64,
    #[serde(default)]
    bytes: u64,
    #[serde(default)]
    sha256: String,
}

/// The chain fields of a branch cursor.
#[derive(Clone, Debug, Default, Deserialize)]
struct CursorChain {
    #[serde(default)]
    version: u64,
    #[serde(default)]
    snapshot: Option<BlobRefView>,
    #[serde(default)]
    deltas: Vec<BlobRefView>,
    /// A state snapshot inside the chain for shallow clones (sync cursor format 2).
    #[serde(default)]
    shallow: Option<BlobRefView>,
}

fn branch_cursor_name(branch: &str) -> ApiResult<RemotePath> {
    if branch.is_empty() {
        return Err(ApiError::invalid("the branch name is empty"));
    }
    remote_path(&format!("branches/{}", encode_segment(branch)))
}

fn pull_first(current: u64, expected: u64) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "pull_first",
        format!(
            "the branch is at version {current} on the hub, not {expected}: pull first, then push again"
        ),
    )
    .with_extra(serde_json::json!({ "current_version": current }))
}

/// `PUT …/branches/:branch/push?expected_version=V[&path=P]`, header `X-Strata-Cursor-Length: N`:
/// the body's first N bytes are the new cursor document (JSON with a `version` above V), the rest
/// is the blob to store at `P` (a path under `branches/<enc(branch)>/`). Atomic: when the branch is
/// not at V, 409 `pull_first` with `current_version`, and nothing is stored; the blob is stored
/// before the cursor moves, by compare-and-swap, so a cursor never names a missing blob.
async fn push(
    State(hub): State<Hub>,
    headers: HeaderMap,
    p: Result<Path<(String, String, String)>, PathRejection>,
    q: Q,
    body: Body,
) -> ApiResult<Response> {
    let (owner, name, branch) = member_path(p)?;
    let q = query_of(q)?;
    let cname = branch_cursor_name(&branch)?;
    let doc = project_for(&hub, &headers, &owner, &name, Need::Write(&cname)).await?;
    let expected: u64 = required(&q, "expected_version")?
        .parse()
        .map_err(|_| ApiError::invalid("expected_version must be a number"))?;
    let blob_path = match q.get("path") {
        Some(p) => {
            let p = remote_path(p)?;
            if !p.starts_with(&cname) {
                return Err(ApiError::invalid(format!(
                    "the blob path must lie under {cname}/"
                )));
            }
            Some(p)
        }
        None => None,
    };
    let cursor_len: usize = headers
        .get("x-strata-cursor-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ApiError::invalid("X-Strata-Cursor-Length (a number of bytes) is missing")
        })?;
    if cursor_len > hub.config.max_doc_bytes {
        return Err(ApiError::too_large(hub.config.max_doc_bytes as u64));
    }
    // Split the body: the cursor document, then the blob, streamed.
    let mut stream = body.into_data_stream();
    let mut head = Vec::with_capacity(cursor_len);
    let mut rest: Option<Bytes> = None;
    while head.len() < cursor_len {
        match stream.next().await {
            Some(Ok(chunk)) => {
                let need = cursor_len - head.len();
                if chunk.len() > need {
                    head.extend_from_slice(&chunk[..need]);
                    rest = Some(chunk.slice(need..));
                } else {
                    head.extend_from_slice(&chunk);
                }
            }
            Some(Err(e)) => return Err(ApiError::invalid(format!("the upload broke: {e}"))),
            None => {
                return Err(ApiError::invalid(format!(
                    "the body ended after {} bytes, inside the {cursor_len}-byte cursor",
                    head.len()
                )))
            }
        }
    }
    let new: CursorChain = json_body(&head)?;
    if new.version <= expected {
        return Err(ApiError::invalid(format!(
            "the new cursor's version {} must be above the expected {expected}",
            new.version
        )));
    }
    let remote = hub.store.remote();
    let stored_cursor = doc.data_path(&cname)?;
    let current = remote.read_cursor(&stored_cursor).await?;
    let current_version = match &current {
        None => 0,
        Some(c) => serde_json::from_slice::<CursorChain>(&c.value)
            .map(|c| c.version)
            .unwrap_or(0),
    };
    if current_version != expected {
        return Err(pull_first(current_version, expected));
    }
    let first = futures::stream::iter(rest.map(Ok::<_, axum::Error>));
    let mut blob = Box::pin(first.chain(stream).peekable());
    let has_blob = blob.as_mut().peek().await.is_some();
    match (&blob_path, has_blob) {
        (Some(path), true) => {
            let outcome = UploadOutcome::default();
            let upload = Upload {
                inner: blob,
                hasher: Sha256::new(),
                count: 0,
                limit: hub.config.max_blob_bytes,
                declared_sha256: headers
                    .get("x-strata-sha256")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
                outcome: outcome.clone(),
                hub: hub.clone(),
                done: false,
            };
            let res = remote
                .put_blob_if_absent(&doc.data_path(path)?, Box::pin(upload))
                .await;
            if let Some(err) = outcome.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return Err(err);
            }
            res?;
        }
        (None, true) => {
            return Err(ApiError::invalid(
                "the body has a blob after the cursor but no path= to store it at",
            ))
        }
        _ => {}
    }
    let token = current.as_ref().map(|c| c.token.clone());
    match remote
        .write_cursor(&stored_cursor, Bytes::from(head), token.as_ref())
        .await
    {
        Ok(t) => {
            let mut resp = json(
                StatusCode::OK,
                &serde_json::json!({ "version": new.version }),
            );
            resp.headers_mut().insert(header::ETAG, etag(&t));
            Ok(resp)
        }
        Err(RemoteError::Conflict(_)) => {
            let now = match remote.read_cursor(&stored_cursor).await? {
                None => 0,
                Some(c) => serde_json::from_slice::<CursorChain>(&c.value)
                    .map(|c| c.version)
                    .unwrap_or(0),
            };
            Err(pull_first(now, expected))
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET …/branches/:branch/pull?since=V`: the branch's version and the blobs a client at version V
/// needs, in order (the deltas after V when the chain reaches back to V, else the snapshot and every
/// delta), read from the cursor's fields.
async fn pull(
    State(hub): State<Hub>,
    headers: HeaderMap,
    p: Result<Path<(String, String, String)>, PathRejection>,
    q: Q,
) -> ApiResult<Response> {
    let (owner, name, branch) = member_path(p)?;
    let q = query_of(q)?;
    let since: u64 = match q.get("since") {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| ApiError::invalid("since must be a number"))?,
    };
    let cname = branch_cursor_name(&branch)?;
    let doc = project_for(&hub, &headers, &owner, &name, Need::Read).await?;
    let Some(c) = hub
        .store
        .remote()
        .read_cursor(&doc.data_path(&cname)?)
        .await?
    else {
        return Err(no_cursor(cname.as_str()));
    };
    let chain: CursorChain = serde_json::from_slice(&c.value).unwrap_or_default();
    let base = chain.snapshot.as_ref().map_or(0, |s| s.to);
    let blobs: Vec<BlobRefView> = if since >= chain.version {
        Vec::new()
    } else if since >= base {
        chain
            .deltas
            .iter()
            .filter(|d| d.to > since)
            .cloned()
            .collect()
    } else {
        chain
            .snapshot
            .iter()
            .chain(chain.deltas.iter())
            .cloned()
            .collect()
    };
    let mut resp = json(
        StatusCode::OK,
        &serde_json::json!({ "version": chain.version, "since": since, "blobs": blobs }),
    );
    resp.headers_mut().insert(header::ETAG, etag(&c.token));
    Ok(resp)
}

/// `GET …/branches/:branch/bundle`: the latest snapshot blob, streamed, for a fast clone
/// (`X-Strata-Version` says its version); 404 `no_snapshot` when the branch has none yet.
async fn bundle(
    State(hub): State<Hub>,
    headers: HeaderMap,
    p: Result<Path<(String, String, String)>, PathRejection>,
) -> ApiResult<Response> {
    let (owner, name, branch) = member_path(p)?;
    let cname = branch_cursor_name(&branch)?;
    let doc = project_for(&hub, &headers, &owner, &name, Need::Read).await?;
    let remote = hub.store.remote();
    let Some(c) = remote.read_cursor(&doc.data_path(&cname)?).await? else {
        return Err(no_cursor(cname.as_str()));
    };
    let chain: CursorChain = serde_json::from_slice(&c.value).unwrap_or_default();
    // The newest full state: the chain's base snapshot or the shallow-clone snapshot.
    let newest = match (chain.snapshot, chain.shallow) {
        (Some(a), Some(b)) => Some(if b.to > a.to { b } else { a }),
        (a, b) => a.or(b),
    };
    let Some(snap) = newest else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_snapshot",
            format!("branch {branch:?} has no snapshot yet (`strata remote compact` writes one); pull its deltas"),
        ));
    };
    let path = remote_path(&snap.path)?;
    let stream = remote.get_blob(&doc.data_path(&path)?).await?;
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert("x-strata-version", HeaderValue::from(snap.to));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=5-"), Some((5, None)));
        assert_eq!(parse_range("bytes=5-9"), Some((5, Some(9))));
        assert_eq!(parse_range("bytes=9-5"), None);
        assert_eq!(parse_range("bytes=-5"), None);
        assert_eq!(parse_range("items=1-"), None);
    }

    #[test]
    fn branch_paths() {
        let p = RemotePath::parse(&format!("branches/{}/deltas/x", encode_segment("a/b"))).unwrap();
        assert_eq!(branch_of(&p).as_deref(), Some("a/b"));
        assert_eq!(branch_of(&RemotePath::parse("other/x").unwrap()), None);
    }
}
