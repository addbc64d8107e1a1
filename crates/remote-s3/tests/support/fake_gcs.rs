//! An in-memory fake of the part of the GCS XML API that object_store 0.14's
//! `GoogleCloudStorage` client uses: object PUT/GET/HEAD/DELETE with
//! `x-goog-if-generation-match` preconditions, server-side copy, V2-style
//! listing with pagination, and XML multipart uploads. Every request is
//! handled under one lock, so conditional writes are atomic.
//!
//! Include it with `#[path = "support/fake_gcs.rs"] mod fake_gcs;`.
#![allow(dead_code)]

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request, Response, Uri};
use md5::{Digest, Md5};
use percent_encoding::percent_decode_str;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

type Resp = Response<Full<Bytes>>;
type Query = HashMap<String, String>;

/// One request the fake answered.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: String,
    /// Path and query exactly as sent (still percent-encoded).
    pub uri: String,
    /// Every request header, names lower-case.
    pub headers: Vec<(String, String)>,
    pub status: u16,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut it = self.headers.iter();
        it.find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The decoded `(bucket, object name)` the request addressed.
    pub fn target(&self) -> (String, Option<String>) {
        let path = self
            .uri
            .split('?')
            .next()
            .unwrap_or("")
            .trim_start_matches('/');
        match path.split_once('/') {
            Some((b, k)) if !k.is_empty() => (decode(b), Some(decode(k))),
            Some((b, _)) => (decode(b), None),
            None => (decode(path), None),
        }
    }
    pub fn query(&self) -> Query {
        parse_query(self.uri.split_once('?').map(|(_, q)| q).unwrap_or(""))
    }
}

#[derive(Clone)]
struct Obj {
    data: Bytes,
    generation: u64,
    etag: String,
    modified: DateTime<Utc>,
    content_type: String,
}

struct Upload {
    bucket: String,
    key: String,
    content_type: String,
    parts: BTreeMap<u32, (String, Bytes)>,
}

struct State {
    buckets: BTreeMap<String, BTreeMap<String, Obj>>,
    uploads: HashMap<String, Upload>,
    last_generation: u64,
    next_upload: u64,
    page_size: usize,
    min_part_size: usize,
    requests: Vec<SeenRequest>,
}

pub struct FakeGcs {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl FakeGcs {
    /// Starts on 127.0.0.1:0 in the current tokio runtime. Any bucket name is
    /// served; buckets are created on first use.
    pub async fn start() -> FakeGcs {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            buckets: BTreeMap::new(),
            uploads: HashMap::new(),
            last_generation: 0,
            next_upload: 0,
            page_size: 1000,
            min_part_size: 5 * 1024 * 1024,
            requests: Vec::new(),
        }));
        let st = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, std::convert::Infallible>(serve(st, req).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(sock);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
        });
        FakeGcs {
            addr,
            state,
            accept,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A service-account JSON that makes object_store skip OAuth entirely.
    pub fn service_account_key(&self) -> String {
        format!(
            r#"{{"private_key":"","private_key_id":"","client_email":"","disable_oauth":true,"gcs_base_url":"{}"}}"#,
            self.base_url()
        )
    }

    /// An object_store client for `bucket` that makes no token calls and fails fast.
    /// `with_skip_signature` alone would still fetch a token (from the GCE metadata
    /// server) for PUT/DELETE/multipart initiate; the `disable_oauth` key prevents that.
    pub fn client(&self, bucket: &str) -> object_store::gcp::GoogleCloudStorage {
        let retry = object_store::RetryConfig {
            max_retries: 1,
            backoff: object_store::BackoffConfig {
                init_backoff: std::time::Duration::from_millis(10),
                max_backoff: std::time::Duration::from_millis(50),
                base: 2.0,
            },
            retry_timeout: std::time::Duration::from_secs(5),
        };
        object_store::gcp::GoogleCloudStorageBuilder::new()
            .with_bucket_name(bucket)
            .with_base_url(&self.base_url())
            .with_service_account_key(self.service_account_key())
            .with_skip_signature(true)
            .with_retry(retry)
            .build()
            .unwrap()
    }

    pub fn create_bucket(&self, name: &str) {
        self.lock().buckets.entry(name.to_string()).or_default();
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    pub fn object(&self, bucket: &str, name: &str) -> Option<Bytes> {
        self.lock().obj(bucket, name).map(|o| o.data.clone())
    }

    pub fn generation(&self, bucket: &str, name: &str) -> Option<u64> {
        self.lock().obj(bucket, name).map(|o| o.generation)
    }

    /// Sets or overwrites an object behind the client's back (new generation).
    pub fn set_object(&self, bucket: &str, name: &str, data: Bytes) {
        let etag = md5_etag(&data);
        self.lock()
            .store(bucket, name, data, etag, "application/octet-stream".into());
    }

    pub fn delete_object(&self, bucket: &str, name: &str) -> bool {
        let mut st = self.lock();
        st.buckets
            .get_mut(bucket)
            .and_then(|b| b.remove(name))
            .is_some()
    }

    /// Object names in `bucket`, sorted.
    pub fn object_names(&self, bucket: &str) -> Vec<String> {
        self.lock()
            .buckets
            .get(bucket)
            .map(|b| b.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Default list page size when the client sends no `max-keys` (GCS: 1000).
    pub fn set_list_page_size(&self, n: usize) {
        self.lock().page_size = n.clamp(1, 1000);
    }

    /// Minimum size of every multipart part but the last (GCS: 5 MiB).
    pub fn set_min_part_size(&self, n: usize) {
        self.lock().min_part_size = n;
    }

    /// Multipart uploads initiated but neither completed nor aborted.
    pub fn pending_uploads(&self) -> usize {
        self.lock().uploads.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn serve(state: Arc<Mutex<State>>, req: Request<hyper::body::Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return err(400, "InvalidRequest", "Could not read the request body."),
    };
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    let resp = st.route(&parts.method, &parts.uri, &parts.headers, body);
    let headers = parts.headers.iter();
    st.requests.push(SeenRequest {
        method: parts.method.to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: headers
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect(),
        status: resp.status().as_u16(),
    });
    resp
}

impl State {
    fn route(&mut self, m: &Method, uri: &Uri, h: &HeaderMap, body: Bytes) -> Resp {
        let q = parse_query(uri.query().unwrap_or(""));
        let path = uri.path().trim_start_matches('/');
        let (b, k) = path.split_once('/').unwrap_or((path, ""));
        let (bucket, key) = (decode(b), decode(k));
        if bucket.is_empty() {
            return err(
                400,
                "InvalidBucketName",
                "The specified bucket is not valid.",
            );
        }
        self.buckets.entry(bucket.clone()).or_default();
        let (b, k) = (bucket.as_str(), key.as_str());
        let has = |n: &str| q.contains_key(n);
        match *m {
            Method::GET if k.is_empty() => self.list(b, &q),
            Method::PUT if k.is_empty() => reply(200, vec![], ""),
            _ if k.is_empty() => err(405, "MethodNotAllowed", "Not allowed on a bucket."),
            Method::POST if has("uploads") => self.initiate(b, k, h),
            Method::POST if has("uploadId") => self.complete(b, k, h, &q, &body),
            Method::PUT if has("uploadId") => self.put_part(b, k, &q, body),
            Method::DELETE if has("uploadId") => self.abort(b, k, &q),
            Method::PUT if h.contains_key("x-goog-copy-source") => self.copy(b, k, h),
            Method::PUT => {
                if let Some(r) = precondition(h, self.obj(b, k)) {
                    return r;
                }
                let ct = hdr(h, "content-type").unwrap_or("application/octet-stream");
                let o = self.store(b, k, body.clone(), md5_etag(&body), ct.into());
                reply(200, obj_headers(&o), "")
            }
            Method::GET | Method::HEAD => self.get(*m == Method::HEAD, b, k, h, &q),
            Method::DELETE => {
                let Some(cur) = self.obj(b, k) else {
                    return no_such_key();
                };
                if let Some(r) = precondition(h, Some(cur)) {
                    return r;
                }
                self.buckets.get_mut(b).unwrap().remove(k);
                reply(204, vec![], "")
            }
            _ => err(405, "MethodNotAllowed", "The method is not allowed."),
        }
    }

    fn obj(&self, bucket: &str, key: &str) -> Option<&Obj> {
        self.buckets.get(bucket)?.get(key)
    }

    fn store(&mut self, bucket: &str, key: &str, data: Bytes, etag: String, ct: String) -> Obj {
        // GCS generations are microsecond timestamps; keep them strictly increasing.
        let now = Utc::now();
        self.last_generation = (self.last_generation + 1).max(now.timestamp_micros() as u64);
        let o = Obj {
            data,
            generation: self.last_generation,
            etag,
            modified: now,
            content_type: ct,
        };
        self.buckets
            .entry(bucket.into())
            .or_default()
            .insert(key.into(), o.clone());
        o
    }

    fn get(&self, head: bool, bucket: &str, key: &str, h: &HeaderMap, q: &Query) -> Resp {
        let Some(o) = self.obj(bucket, key) else {
            return no_such_key();
        };
        if q.get("generation")
            .is_some_and(|g| g.parse::<u64>().ok() != Some(o.generation))
        {
            return no_such_key();
        }
        let secs = o.modified.timestamp();
        let date = |n: &str| hdr(h, n).and_then(|d| DateTime::parse_from_rfc2822(d).ok());
        if hdr(h, "if-match").is_some_and(|m| !etag_matches(m, &o.etag))
            || date("if-unmodified-since").is_some_and(|d| secs > d.timestamp())
        {
            return precondition_failed();
        }
        match hdr(h, "if-none-match") {
            Some(m) if etag_matches(m, &o.etag) => return reply(304, obj_headers(o), ""),
            None if date("if-modified-since").is_some_and(|d| secs <= d.timestamp()) => {
                return reply(304, obj_headers(o), "")
            }
            _ => {}
        }
        let len = o.data.len();
        let mut headers = obj_headers(o);
        let (status, data) = match hdr(h, "range") {
            None => (200, o.data.clone()),
            Some(r) => match parse_range(r, len) {
                Some((s, e)) => {
                    headers.push(("content-range", format!("bytes {s}-{}/{len}", e - 1)));
                    (206, o.data.slice(s..e))
                }
                None => {
                    let mut r = err(
                        416,
                        "InvalidRange",
                        "The requested range cannot be satisfied.",
                    );
                    r.headers_mut()
                        .insert("content-range", format!("bytes */{len}").parse().unwrap());
                    return r;
                }
            },
        };
        headers.push(("content-length", data.len().to_string()));
        reply(status, headers, if head { Bytes::new() } else { data })
    }

    fn copy(&mut self, bucket: &str, key: &str, h: &HeaderMap) -> Resp {
        let src = hdr(h, "x-goog-copy-source")
            .unwrap_or("")
            .trim_start_matches('/');
        let Some((sb, sk)) = src.split_once('/') else {
            return err(400, "InvalidArgument", "Invalid x-goog-copy-source.");
        };
        let Some(s) = self.obj(&decode(sb), &decode(sk)).cloned() else {
            return no_such_key();
        };
        if let Some(r) = precondition(h, self.obj(bucket, key)) {
            return r;
        }
        let o = self.store(bucket, key, s.data, s.etag, s.content_type);
        let body = format!(
            "{XML}<CopyObjectResult><LastModified>{}</LastModified><ETag>{}</ETag></CopyObjectResult>",
            rfc3339(&o.modified),
            esc(&o.etag)
        );
        reply(
            200,
            vec![("x-goog-generation", o.generation.to_string()), ct_xml()],
            body,
        )
    }

    fn list(&self, bucket: &str, q: &Query) -> Resp {
        let prefix = q.get("prefix").cloned().unwrap_or_default();
        let delim = q.get("delimiter").filter(|d| !d.is_empty());
        let max = match q.get("max-keys").map(|m| m.parse::<usize>()) {
            None => self.page_size,
            Some(Ok(m)) => m.clamp(1, 1000),
            Some(Err(_)) => return err(400, "InvalidArgument", "Invalid max-keys."),
        };
        // Continuation token: hex of 'K'+key or 'P'+common prefix last returned.
        let token = match q.get("continuation-token").map(|t| unhex(t)) {
            None => None,
            Some(Some(t)) if t.len() > 1 => Some(t),
            Some(_) => return err(400, "InvalidArgument", "Invalid continuation-token."),
        };
        let after = q.get("start-after");
        let (mut contents, mut prefixes, mut count) = (String::new(), String::new(), 0);
        let (mut last, mut truncated) = (String::new(), false);
        let objects = self
            .buckets
            .get(bucket)
            .into_iter()
            .flat_map(|b| b.range(prefix.clone()..));
        for (k, o) in objects.take_while(|(k, _)| k.starts_with(&prefix)) {
            if after.is_some_and(|a| k <= a) {
                continue;
            }
            if let Some(t) = &token {
                let skip = match t.split_at(1) {
                    ("P", p) => k.as_str() <= p || k.starts_with(p),
                    (_, key) => k.as_str() <= key,
                };
                if skip {
                    continue;
                }
            }
            let rest = &k[prefix.len()..];
            let cp = delim.and_then(|d| {
                rest.find(d.as_str())
                    .map(|i| &k[..prefix.len() + i + d.len()])
            });
            if cp.is_some_and(|cp| last.strip_prefix('P') == Some(cp)) {
                continue;
            }
            if count == max {
                truncated = true;
                break;
            }
            count += 1;
            if let Some(cp) = cp {
                prefixes += &format!(
                    "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
                    esc(cp)
                );
                last = format!("P{cp}");
            } else {
                contents += &format!(
                    "<Contents><Key>{}</Key><Generation>{}</Generation><MetaGeneration>1</MetaGeneration><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size></Contents>",
                    esc(k), o.generation, rfc3339(&o.modified), esc(&o.etag), o.data.len()
                );
                last = format!("K{k}");
            }
        }
        let next = match truncated {
            true => format!(
                "<NextContinuationToken>{}</NextContinuationToken>",
                hex(last.as_bytes())
            ),
            false => String::new(),
        };
        let body = format!(
            "{XML}<ListBucketResult xmlns='http://doc.s3.amazonaws.com/2006-03-01'><Name>{}</Name><Prefix>{}</Prefix><MaxKeys>{max}</MaxKeys><KeyCount>{count}</KeyCount><IsTruncated>{truncated}</IsTruncated>{contents}{prefixes}{next}</ListBucketResult>",
            esc(bucket), esc(&prefix)
        );
        reply(200, vec![ct_xml()], body)
    }

    fn initiate(&mut self, bucket: &str, key: &str, h: &HeaderMap) -> Resp {
        self.next_upload += 1;
        let id = format!("fake-upload-{}", self.next_upload);
        let content_type = hdr(h, "content-type")
            .unwrap_or("application/octet-stream")
            .into();
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let body = format!(
            "{XML}<InitiateMultipartUploadResult xmlns='http://s3.amazonaws.com/doc/2006-03-01/'><Bucket>{}</Bucket><Key>{}</Key><UploadId>{id}</UploadId></InitiateMultipartUploadResult>",
            esc(&bucket), esc(&key)
        );
        let parts = BTreeMap::new();
        self.uploads.insert(
            id,
            Upload {
                bucket,
                key,
                content_type,
                parts,
            },
        );
        reply(200, vec![ct_xml()], body)
    }

    fn upload(&mut self, bucket: &str, key: &str, q: &Query) -> Option<&mut Upload> {
        let u = self.uploads.get_mut(q.get("uploadId")?)?;
        (u.bucket == bucket && u.key == key).then_some(u)
    }

    fn put_part(&mut self, bucket: &str, key: &str, q: &Query, body: Bytes) -> Resp {
        let n = q.get("partNumber").and_then(|n| n.parse::<u32>().ok());
        let Some(n) = n.filter(|n| (1..=10000).contains(n)) else {
            return err(400, "InvalidArgument", "Invalid partNumber.");
        };
        let Some(u) = self.upload(bucket, key, q) else {
            return no_such_upload();
        };
        let etag = md5_etag(&body);
        u.parts.insert(n, (etag.clone(), body));
        reply(200, vec![("etag", etag)], "")
    }

    fn complete(&mut self, bucket: &str, key: &str, h: &HeaderMap, q: &Query, body: &[u8]) -> Resp {
        let min_part = self.min_part_size;
        let Some(u) = self.upload(bucket, key, q) else {
            return no_such_upload();
        };
        let xml = String::from_utf8_lossy(body);
        let listed = match parse_parts(&xml) {
            Some(l) if !l.is_empty() && xml.contains("<CompleteMultipartUpload") => l,
            _ => {
                return err(
                    400,
                    "MalformedXML",
                    "The XML you provided was not well-formed.",
                )
            }
        };
        if !listed.windows(2).all(|w| w[0].0 < w[1].0) {
            return err(
                400,
                "InvalidPartOrder",
                "The list of parts was not in ascending order.",
            );
        }
        let (mut data, mut md5s) = (Vec::new(), Vec::new());
        for (i, (n, etag)) in listed.iter().enumerate() {
            match u.parts.get(n) {
                Some((e, d)) if e.trim_matches('"') == etag.trim_matches('"') => {
                    if i + 1 < listed.len() && d.len() < min_part {
                        return err(
                            400,
                            "EntityTooSmall",
                            "Your proposed upload is smaller than the minimum allowed object size.",
                        );
                    }
                    data.extend_from_slice(d);
                    md5s.extend_from_slice(&Md5::digest(d));
                }
                _ => {
                    return err(
                        400,
                        "InvalidPart",
                        "One or more of the specified parts could not be found.",
                    )
                }
            }
        }
        let ct = u.content_type.clone();
        if let Some(r) = precondition(h, self.obj(bucket, key)) {
            return r;
        }
        self.uploads.remove(q.get("uploadId").unwrap());
        let etag = format!("\"{}-{}\"", hex(&Md5::digest(&md5s)), listed.len());
        let o = self.store(bucket, key, data.into(), etag, ct);
        let body = format!(
            "{XML}<CompleteMultipartUploadResult xmlns='http://s3.amazonaws.com/doc/2006-03-01/'><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></CompleteMultipartUploadResult>",
            esc(bucket), esc(key), esc(&o.etag)
        );
        reply(
            200,
            vec![("x-goog-generation", o.generation.to_string()), ct_xml()],
            body,
        )
    }

    fn abort(&mut self, bucket: &str, key: &str, q: &Query) -> Resp {
        if self.upload(bucket, key, q).is_none() {
            return no_such_upload();
        }
        self.uploads.remove(q.get("uploadId").unwrap());
        reply(204, vec![], "")
    }
}

const XML: &str = "<?xml version='1.0' encoding='UTF-8'?>";

fn ct_xml() -> (&'static str, String) {
    ("content-type", "application/xml; charset=UTF-8".into())
}

fn reply(status: u16, headers: Vec<(&str, String)>, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(k, v);
    }
    r.body(Full::new(body.into())).unwrap()
}

fn err(status: u16, code: &str, message: &str) -> Resp {
    let body = format!("{XML}<Error><Code>{code}</Code><Message>{message}</Message></Error>");
    reply(status, vec![ct_xml()], body)
}

fn no_such_key() -> Resp {
    err(404, "NoSuchKey", "The specified key does not exist.")
}

fn no_such_upload() -> Resp {
    err(404, "NoSuchUpload", "The requested upload was not found.")
}

fn precondition_failed() -> Resp {
    err(
        412,
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold.",
    )
}

/// `x-goog-if-generation-match`: 0 means "must not exist", N means "current generation is N".
/// Returns the error response when the precondition does not hold.
fn precondition(h: &HeaderMap, cur: Option<&Obj>) -> Option<Resp> {
    let v = hdr(h, "x-goog-if-generation-match")?;
    let Ok(want) = v.trim().parse::<u64>() else {
        let msg = "Invalid x-goog-if-generation-match.";
        return Some(err(400, "InvalidArgument", msg));
    };
    (cur.map_or(0, |o| o.generation) != want).then(precondition_failed)
}

fn obj_headers(o: &Obj) -> Vec<(&'static str, String)> {
    vec![
        ("etag", o.etag.clone()),
        ("x-goog-generation", o.generation.to_string()),
        ("x-goog-metageneration", "1".into()),
        ("x-goog-stored-content-length", o.data.len().to_string()),
        (
            "last-modified",
            o.modified.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        ),
        ("content-type", o.content_type.clone()),
    ]
}

fn hdr<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn etag_matches(cond: &str, etag: &str) -> bool {
    cond.split(',').any(|c| {
        let c = c.trim().trim_start_matches("W/");
        c == "*" || c.trim_matches('"') == etag.trim_matches('"')
    })
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → half-open `(start, end)`, or None if unsatisfiable.
fn parse_range(r: &str, len: usize) -> Option<(usize, usize)> {
    let (a, b) = r.trim().strip_prefix("bytes=")?.split_once('-')?;
    if a.is_empty() {
        let n: usize = b.parse().ok()?;
        return (n > 0 && len > 0).then(|| (len - n.min(len), len));
    }
    let s: usize = a.parse().ok()?;
    let e = if b.is_empty() {
        len
    } else {
        b.parse::<usize>().ok()?.saturating_add(1).min(len)
    };
    (s < len && s < e).then_some((s, e))
}

fn parse_parts(xml: &str) -> Option<Vec<(u32, String)>> {
    fn tag<'a>(s: &'a str, name: &str) -> Option<&'a str> {
        let start = s.find(&format!("<{name}>"))? + name.len() + 2;
        Some(&s[start..start + s[start..].find(&format!("</{name}>"))?])
    }
    let (mut out, mut rest) = (Vec::new(), xml);
    while let Some(i) = rest.find("<Part>") {
        let after = &rest[i + 6..];
        let end = after.find("</Part>")?;
        let n = tag(&after[..end], "PartNumber")?.trim().parse().ok()?;
        let etag = tag(&after[..end], "ETag")?
            .replace("&quot;", "\"")
            .replace("&amp;", "&");
        out.push((n, etag));
        rest = &after[end + 7..];
    }
    Some(out)
}

fn parse_query(q: &str) -> Query {
    let dec = |s: &str| decode(&s.replace('+', " "));
    let pairs = q.split('&').filter(|s| !s.is_empty());
    pairs
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .map(|(k, v)| (dec(k), dec(v)))
        .collect()
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn esc(s: &str) -> String {
    let s = s
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    s.replace('"', "&quot;").replace('\'', "&apos;")
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn md5_etag(data: &[u8]) -> String {
    format!("\"{}\"", hex(&Md5::digest(data)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}
