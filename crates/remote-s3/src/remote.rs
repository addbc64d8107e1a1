//! [`ObjectStoreRemote`]: the `Remote` implementation shared by the S3, GCS and Azure backends.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, MultipartUpload, ObjectStore, ObjectStoreExt, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UpdateVersion,
};
use strata_remote::layout::{
    blob_key, cursor_dir_key, cursor_name_of_dir, decode_head, encode_head, record_seq, BLOBS_DIR,
    CURSORS_DIR, HEAD_NAME, TMP_DIR,
};
use strata_remote::{
    report, BlobMeta, ByteStream, Cursor, CursorToken, ErrorDetail, Remote, RemoteError,
    RemotePath, Result,
};

use crate::classify::{classify, take_credential_error, Class, Classified};
use crate::config::{build_store, BucketOptions, Env};
use crate::counting::RequestCounter;
use crate::url::BucketUrl;

/// Staged uploads older than this are removed by the sweep that runs before a remote's first large
/// put (left by a crashed writer between its upload and its publishing copy).
pub const STALE_TMP_AGE: Duration = Duration::from_secs(24 * 3600);

/// A Strata remote in a bucket: S3 (or an S3-compatible store), GCS or Azure Blob, through
/// `object_store`. See the crate documentation for the layout and the guarantees.
pub struct ObjectStoreRemote {
    store: Arc<dyn ObjectStore>,
    url: BucketUrl,
    root: String,
    part_size: usize,
    upload_concurrency: usize,
    swept_tmp: AtomicBool,
}

impl fmt::Debug for ObjectStoreRemote {
    // Only the URL: the store's own Debug output could include credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreRemote")
            .field("url", &self.url.to_string())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ObjectStoreRemote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.url, f)
    }
}

impl ObjectStoreRemote {
    /// Opens the remote at `url` (`s3://bucket/prefix`, `gs://…`, `az://…`) with credentials from the
    /// process environment. Makes no request: a missing bucket or bad credentials show on first use,
    /// with an error that says so.
    pub fn open(url: &str, options: &BucketOptions) -> Result<ObjectStoreRemote> {
        ObjectStoreRemote::open_with_env(url, options, &Env::process())
    }

    /// Like [`open`](Self::open), looking credentials and settings up in `env` instead of the
    /// process environment.
    pub fn open_with_env(
        url: &str,
        options: &BucketOptions,
        env: &Env,
    ) -> Result<ObjectStoreRemote> {
        let parsed = BucketUrl::parse(url)?;
        let store = build_store(&parsed, options, env, None)?;
        Ok(ObjectStoreRemote::with_store(store, parsed, options))
    }

    /// Like [`open_with_env`](Self::open_with_env), counting every HTTP request in `counter`.
    pub fn open_counted(
        url: &str,
        options: &BucketOptions,
        env: &Env,
        counter: &RequestCounter,
    ) -> Result<ObjectStoreRemote> {
        ObjectStoreRemote::build(url, options, env, Some(counter))
    }

    fn build(
        url: &str,
        options: &BucketOptions,
        env: &Env,
        counter: Option<&RequestCounter>,
    ) -> Result<ObjectStoreRemote> {
        let parsed = BucketUrl::parse(url)?;
        let store = build_store(&parsed, options, env, counter)?;
        Ok(ObjectStoreRemote::with_store(store, parsed, options))
    }

    /// Wraps an object store built by the caller (for tests, or settings this crate does not expose).
    /// `url` names the bucket and prefix, for paths and messages.
    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        url: BucketUrl,
        options: &BucketOptions,
    ) -> ObjectStoreRemote {
        let root = url
            .prefix
            .as_ref()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        ObjectStoreRemote {
            store,
            url,
            root,
            part_size: options.part_size.max(1),
            upload_concurrency: options.upload_concurrency.max(1),
            swept_tmp: AtomicBool::new(false),
        }
    }

    /// The remote's URL.
    pub fn url(&self) -> &BucketUrl {
        &self.url
    }

    /// The underlying object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn key(&self, rel: &str) -> Path {
        let full = if self.root.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.root)
        };
        // Every key is built from validated remote paths, which Path::parse accepts as they are
        // (no percent-encoding), so the object names equal the folder remote's file names.
        Path::parse(&full).expect("remote paths are valid object keys")
    }

    /// The part of `key` after `<root>/<dir>/`, if it is under it.
    fn rel_under<'a>(&self, key: &'a Path, dir: &str) -> Option<&'a str> {
        let k = key.as_ref();
        let k = if self.root.is_empty() {
            k
        } else {
            k.strip_prefix(self.root.as_str())?.strip_prefix('/')?
        };
        k.strip_prefix(dir)?.strip_prefix('/')
    }

    /// Maps a store error, for the operation `what` ("get blobs/x"). The class comes from
    /// [`classify`] (the error's type, HTTP status and error code); the message says what failed and
    /// how in a few words, and the store's error is kept as the source. A lost condition (409, 412)
    /// is a `Conflict` here; put-if-absent callers use [`put_err`](Self::put_err) instead.
    fn err(&self, what: &str, e: object_store::Error) -> RemoteError {
        let e = match take_credential_error(e) {
            Ok(c) => {
                let msg = format!("{self}: {what}: {}", c.message);
                return RemoteError::Unauthorized(match c.source {
                    Some(s) => ErrorDetail::with_source(msg, s),
                    None => ErrorDetail::new(msg),
                });
            }
            Err(e) => e,
        };
        let c = classify(&e);
        let note = c.note();
        let paren = if note.is_empty() {
            String::new()
        } else {
            format!(" ({note})")
        };
        let hint = self.url.provider.credential_hint();
        if c.class == Class::MissingBucket {
            return self.missing_bucket(&c, e);
        }
        let detail = |msg: String| ErrorDetail::with_source(msg, e);
        match c.class {
            Class::Transient => {
                let how = if note.is_empty() { "failed" } else { &note };
                RemoteError::Transient(detail(format!("{self}: {what}: {how}")))
            }
            Class::Credentials => RemoteError::Unauthorized(detail(format!(
                "{self}: {what}: the credentials were refused{paren}; {hint}"
            ))),
            Class::Forbidden => RemoteError::PermissionDenied(detail(format!(
                "{self}: {what}: access denied{paren}; {hint}"
            ))),
            Class::NotFound | Class::MissingBucket => {
                RemoteError::NotFound(detail(format!("{self}: {what}{paren}")))
            }
            Class::Condition => RemoteError::Conflict(detail(format!(
                "{self}: {what}: a condition of the request did not hold{paren}"
            ))),
            Class::Invalid => RemoteError::Invalid(detail(format!(
                "{self}: {what}: the store refused the request as invalid"
            ))),
            Class::Other => RemoteError::Other(detail(format!("{self}: {what} failed{paren}"))),
        }
    }

    /// Maps the error of a put-if-absent of blob `path`: a lost condition means the blob exists.
    fn put_err(&self, path: &RemotePath, e: object_store::Error) -> RemoteError {
        if classify(&e).class == Class::Condition {
            return RemoteError::AlreadyExists(ErrorDetail::with_source(
                format!("{self}: blob {path} already exists"),
                e,
            ));
        }
        self.err(&format!("put {path}"), e)
    }

    /// The error for a missing bucket.
    fn missing_bucket(&self, c: &Classified, e: object_store::Error) -> RemoteError {
        let note = c.note();
        let paren = if note.is_empty() {
            String::new()
        } else {
            format!(" ({note})")
        };
        RemoteError::NotFound(ErrorDetail::with_source(
            format!(
                "{self}: the {} {:?} does not exist{paren}",
                self.url.provider.bucket_word(),
                self.url.bucket,
            ),
            e,
        ))
    }

    /// The error of a listing: there, a 404 means the bucket is missing.
    fn list_err(&self, what: &str, e: object_store::Error) -> RemoteError {
        let c = classify(&e);
        match c.class {
            Class::NotFound | Class::MissingBucket => self.missing_bucket(&c, e),
            _ => self.err(what, e),
        }
    }

    /// One listing page of a folder: the objects directly in it. A 404 means the bucket is missing.
    async fn list_dir(&self, dir: &Path) -> Result<Vec<object_store::ObjectMeta>> {
        self.store
            .list_with_delimiter(Some(dir))
            .await
            .map(|r| r.objects)
            .map_err(|e| self.list_err(&format!("list {dir}"), e))
    }

    /// After a 404 on `what`: whether the bucket exists (one listing request). Turns the 404 into
    /// "the bucket does not exist" when it does not.
    async fn not_found(&self, what: String, e: object_store::Error) -> RemoteError {
        let c = classify(&e);
        if c.class == Class::MissingBucket {
            return self.missing_bucket(&c, e);
        }
        match self.list_dir(&self.key(BLOBS_DIR)).await {
            Ok(_) => self.err(&what, e),
            Err(bucket) => bucket,
        }
    }

    /// All objects under `prefix/` (recursive), sorted by the store.
    async fn list_all(&self, prefix: &Path) -> Result<Vec<object_store::ObjectMeta>> {
        let res: std::result::Result<Vec<_>, _> = self.store.list(Some(prefix)).try_collect().await;
        res.map_err(|e| self.list_err(&format!("list {prefix}"), e))
    }

    /// Removes staged uploads older than [`STALE_TMP_AGE`], once per remote handle. Best effort.
    async fn sweep_tmp(&self) {
        if self.swept_tmp.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(objects) = self.list_all(&self.key(TMP_DIR)).await else {
            return;
        };
        let now = SystemTime::now();
        for o in objects {
            let modified: SystemTime = o.last_modified.into();
            if now.duration_since(modified).unwrap_or_default() > STALE_TMP_AGE {
                if let Err(e) = self.store.delete(&o.location).await {
                    tracing::debug!(key = %o.location, error = %report(&e), "could not remove a stale upload");
                }
            }
        }
    }

    /// Put-if-absent of a blob larger than one part: a multipart upload to `tmp/<uuid>`, invisible
    /// until complete, then a copy that the store performs only if the destination does not exist,
    /// then removal of the staged object.
    async fn put_large(
        &self,
        path: &RemotePath,
        first: Vec<Bytes>,
        rest: ByteStream,
    ) -> Result<()> {
        let dest = self.key(&blob_key(path));
        let what = format!("put {path}");
        // Refuse early (and cheaply) when the blob is already there.
        match self.store.head(&dest).await {
            Ok(_) => {
                return Err(RemoteError::AlreadyExists(
                    format!("{self}: blob {path} already exists").into(),
                ))
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.err(&what, e)),
        }
        self.sweep_tmp().await;
        let staged = self.key(&format!("{TMP_DIR}/{}", uuid::Uuid::new_v4().simple()));
        let upload = self
            .store
            .put_multipart_opts(&staged, PutMultipartOptions::default())
            .await
            .map_err(|e| self.err(&what, e))?;
        let mut guard = UploadGuard {
            upload: Some(upload),
        };
        let uploaded = self.upload_parts(&mut guard, first, rest, &what).await;
        let mut upload = guard
            .upload
            .take()
            .expect("the guard still holds the upload");
        if let Err(e) = uploaded {
            if let Err(abort) = upload.abort().await {
                tracing::debug!(error = %report(&abort), "could not abort a multipart upload");
            }
            return Err(e);
        }
        upload.complete().await.map_err(|e| self.err(&what, e))?;
        // The guard removes the staged object if this future is dropped mid-copy; otherwise it is
        // removed here, before returning, so a finished put leaves nothing in tmp/.
        let mut staged_guard = StagedGuard {
            store: self.store.clone(),
            key: Some(staged.clone()),
        };
        let copied = self
            .store
            .copy_opts(
                &staged,
                &dest,
                CopyOptions::new().with_mode(CopyMode::Create),
            )
            .await;
        staged_guard.key = None;
        if let Err(e) = self.store.delete(&staged).await {
            tracing::debug!(key = %staged, error = %report(&e), "could not remove a staged upload");
        }
        match copied {
            Ok(()) => Ok(()),
            Err(e) => Err(self.put_err(path, e)),
        }
    }

    /// Streams the body into parts of `part_size`, with at most `upload_concurrency` in flight.
    async fn upload_parts(
        &self,
        guard: &mut UploadGuard,
        first: Vec<Bytes>,
        mut rest: ByteStream,
        what: &str,
    ) -> Result<()> {
        let upload = guard.upload.as_mut().expect("an upload in progress");
        let mut in_flight = FuturesUnordered::new();
        let mut part: Vec<Bytes> = Vec::new();
        let mut part_len = 0usize;
        let mut pending: std::collections::VecDeque<Bytes> = first.into();
        loop {
            let chunk = match pending.pop_front() {
                Some(c) => Some(c),
                None => rest.next().await.transpose()?,
            };
            let done = chunk.is_none();
            if let Some(mut c) = chunk {
                while !c.is_empty() {
                    let take = c.len().min(self.part_size - part_len);
                    part.push(c.split_to(take));
                    part_len += take;
                    if part_len == self.part_size {
                        in_flight.push(upload.put_part(PutPayload::from_iter(part.drain(..))));
                        part_len = 0;
                        while in_flight.len() >= self.upload_concurrency {
                            if let Some(r) = in_flight.next().await {
                                r.map_err(|e| self.err(what, e))?;
                            }
                        }
                    }
                }
            }
            if done {
                break;
            }
        }
        if part_len > 0 {
            in_flight.push(upload.put_part(PutPayload::from_iter(part.drain(..))));
        }
        while let Some(r) = in_flight.next().await {
            r.map_err(|e| self.err(what, e))?;
        }
        Ok(())
    }

    fn head_token(seq: u64, put: &UpdateVersion) -> CursorToken {
        CursorToken(format!(
            "h{seq}|{}|{}",
            put.e_tag.as_deref().unwrap_or(""),
            put.version.as_deref().unwrap_or("")
        ))
    }

    /// Writes the head object of a cursor folder; maps a lost condition to `Conflict`.
    ///
    /// The token returned names the version the store gave the new head (e_tag and version). A store
    /// that names neither gets a token that holds only the sequence number `seq`. The version is
    /// deliberately NOT fetched with a separate request here: by then another writer may have replaced
    /// the head, and its version would let this writer's next compare-and-swap overwrite that value
    /// unseen. [`write_cursor`](Remote::write_cursor) resolves such a token when it is used instead
    /// (see [`current_version`](Self::current_version)).
    async fn put_head(
        &self,
        name: &RemotePath,
        head: &Path,
        seq: u64,
        value: &[u8],
        mode: PutMode,
    ) -> Result<CursorToken> {
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        let payload = PutPayload::from(encode_head(seq, value));
        match self.store.put_opts(head, payload, opts).await {
            Ok(PutResult { e_tag, version, .. }) => {
                Ok(Self::head_token(seq, &UpdateVersion { e_tag, version }))
            }
            Err(e) => match classify(&e).class {
                // Created meanwhile, changed meanwhile, or removed meanwhile.
                Class::Condition | Class::NotFound => {
                    Err(RemoteError::Conflict(ErrorDetail::with_source(
                        format!("{self}: cursor {name} changed since it was read"),
                        e,
                    )))
                }
                _ => Err(self.err(&format!("write cursor {name}"), e)),
            },
        }
    }

    /// The head of a cursor as it is now: its sequence number, its value and the version the store
    /// names for it; `None` if there is no head.
    async fn read_head(
        &self,
        name: &RemotePath,
        head: &Path,
    ) -> Result<Option<(u64, Bytes, UpdateVersion)>> {
        let what = format!("read cursor {name}");
        match self.store.get_opts(head, GetOptions::default()).await {
            Ok(res) => {
                let v = UpdateVersion {
                    e_tag: res.meta.e_tag.clone(),
                    version: res.meta.version.clone(),
                };
                let bytes = res.bytes().await.map_err(|e| self.err(&what, e))?;
                let (seq, value) = decode_head(&bytes, &format!("{self}/{}", head_rel(name)))?;
                Ok(Some((seq, value, v)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(&what, e)),
        }
    }

    /// For a token that holds only sequence number `seq` (its store named no version, see
    /// [`put_head`](Self::put_head)): the version of the head if the head is still number `seq`.
    ///
    /// This is safe because head numbers only grow and each number is written by exactly one
    /// conditional write (the one that replaced number `seq - 1`, or the create): a head still at
    /// `seq` is the very value the token was issued for. The write that follows is conditional on the
    /// version read here, so a change after this read still makes it fail.
    async fn current_version(
        &self,
        name: &RemotePath,
        head: &Path,
        seq: u64,
    ) -> Result<UpdateVersion> {
        match self.read_head(name, head).await? {
            Some((now, _, v)) if now == seq => {
                if v.e_tag.is_none() && v.version.is_none() {
                    return Err(RemoteError::Invalid(
                        format!(
                            "{self}: cursor {name}: the store names no version (ETag) for its \
                             objects, so a compare-and-swap cannot be made conditional"
                        )
                        .into(),
                    ));
                }
                Ok(v)
            }
            _ => Err(RemoteError::Conflict(
                format!("{self}: cursor {name} changed since it was read").into(),
            )),
        }
    }
}

/// The head object's path relative to the remote, for messages.
fn head_rel(name: &RemotePath) -> String {
    format!("{}/{HEAD_NAME}", cursor_dir_key(name))
}

/// Aborts a multipart upload whose future was dropped before it finished (in the background, if a
/// runtime is there to run it), so no parts are left billed.
struct UploadGuard {
    upload: Option<Box<dyn MultipartUpload>>,
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        if let Some(mut upload) = self.upload.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = upload.abort().await;
                });
            }
        }
    }
}

/// Removes a staged object when dropped (also when the put's future is dropped mid-copy).
struct StagedGuard {
    store: Arc<dyn ObjectStore>,
    key: Option<Path>,
}

impl Drop for StagedGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let store = self.store.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = store.delete(&key).await {
                        tracing::debug!(key = %key, error = %report(&e), "could not remove a staged upload");
                    }
                });
            }
        }
    }
}

#[async_trait]
impl Remote for ObjectStoreRemote {
    async fn put_blob_if_absent(&self, path: &RemotePath, mut body: ByteStream) -> Result<()> {
        // Read up to one part: a blob that fits goes up in one conditional request.
        let mut first = Vec::new();
        let mut len = 0usize;
        let mut large = false;
        while let Some(chunk) = body.next().await.transpose()? {
            len += chunk.len();
            first.push(chunk);
            if len > self.part_size {
                large = true;
                break;
            }
        }
        if large {
            return self.put_large(path, first, body).await;
        }
        let key = self.key(&blob_key(path));
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&key, PutPayload::from_iter(first), opts)
            .await
        {
            Ok(_) => Ok(()),
            Err(e @ object_store::Error::NotFound { .. }) => {
                Err(self.not_found(format!("put {path}"), e).await)
            }
            Err(e) => Err(self.put_err(path, e)),
        }
    }

    async fn get_blob(&self, path: &RemotePath) -> Result<ByteStream> {
        let key = self.key(&blob_key(path));
        match self.store.get_opts(&key, GetOptions::default()).await {
            Ok(res) => {
                let this = self.to_string();
                let p = path.clone();
                // A download that breaks after it started is worth retrying whatever the cause.
                Ok(Box::pin(res.into_stream().map_err(move |e| {
                    RemoteError::transient(format!("{this}: download of {p} broke"), e)
                })))
            }
            Err(e @ object_store::Error::NotFound { .. }) => {
                Err(self.not_found(format!("blob {path}"), e).await)
            }
            Err(e) => Err(self.err(&format!("get {path}"), e)),
        }
    }

    async fn list_blobs(&self, prefix: &str) -> Result<Vec<BlobMeta>> {
        let prefix = RemotePath::parse_prefix(prefix)?;
        let dir = match &prefix {
            None => self.key(BLOBS_DIR),
            Some(p) => self.key(&blob_key(p)),
        };
        let mut out = Vec::new();
        for o in self.list_all(&dir).await? {
            let Some(rel) = self.rel_under(&o.location, BLOBS_DIR) else {
                continue;
            };
            let Ok(path) = RemotePath::parse(rel) else {
                continue;
            };
            if path.matches_prefix(prefix.as_ref()) {
                out.push(BlobMeta {
                    path,
                    size: o.size,
                    modified_millis: o.last_modified.timestamp_millis().max(0) as u64,
                });
            }
        }
        // The prefix may name a blob itself (listing covers only what is below it).
        if let (Some(p), true) = (&prefix, out.is_empty()) {
            match self.store.head(&dir).await {
                Ok(o) => out.push(BlobMeta {
                    path: p.clone(),
                    size: o.size,
                    modified_millis: o.last_modified.timestamp_millis().max(0) as u64,
                }),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err(&format!("list {p}"), e)),
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn delete_blob(&self, path: &RemotePath) -> Result<()> {
        match self.store.delete(&self.key(&blob_key(path))).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(&format!("delete {path}"), e)),
        }
    }

    async fn read_cursor(&self, name: &RemotePath) -> Result<Option<Cursor>> {
        let dir = cursor_dir_key(name);
        let head = self.key(&format!("{dir}/{HEAD_NAME}"));
        let what = format!("read cursor {name}");
        if let Some((seq, value, v)) = self.read_head(name, &head).await? {
            return Ok(Some(Cursor {
                value,
                token: Self::head_token(seq, &v),
            }));
        }
        // No head: records left by a folder remote whose files were copied here, if any.
        let newest = self
            .list_dir(&self.key(&dir))
            .await?
            .iter()
            .filter_map(|o| o.location.filename().and_then(record_seq))
            .max();
        let Some(seq) = newest else {
            return Ok(None);
        };
        let record = self.key(&format!(
            "{dir}/{}",
            strata_remote::layout::record_name(seq)
        ));
        let bytes = self
            .store
            .get(&record)
            .await
            .map_err(|e| self.err(&what, e))?
            .bytes()
            .await
            .map_err(|e| self.err(&what, e))?;
        Ok(Some(Cursor {
            value: bytes,
            token: CursorToken(format!("r{seq}")),
        }))
    }

    async fn write_cursor(
        &self,
        name: &RemotePath,
        value: Bytes,
        expected: Option<&CursorToken>,
    ) -> Result<CursorToken> {
        let dir = cursor_dir_key(name);
        let head = self.key(&format!("{dir}/{HEAD_NAME}"));
        let conflict = |why: String| {
            Err(RemoteError::Conflict(
                format!("{self}: cursor {name}: {why}").into(),
            ))
        };
        match expected {
            None => {
                // Absent means no head and no records (a copied folder's).
                let existing = self.list_dir(&self.key(&dir)).await?;
                if existing.iter().any(|o| {
                    o.location
                        .filename()
                        .is_some_and(|f| f == HEAD_NAME || record_seq(f).is_some())
                }) {
                    return conflict("already exists".into());
                }
                self.put_head(name, &head, 1, &value, PutMode::Create).await
            }
            Some(t) => {
                let tok = t.0.as_str();
                if let Some(rest) = tok.strip_prefix('h') {
                    let mut parts = rest.splitn(3, '|');
                    let (Some(seq), Some(etag), Some(version)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        return conflict(format!("token {tok:?} is not a version of this remote"));
                    };
                    let Ok(seq) = seq.parse::<u64>() else {
                        return conflict(format!("token {tok:?} is not a version of this remote"));
                    };
                    let v = if etag.is_empty() && version.is_empty() {
                        self.current_version(name, &head, seq).await?
                    } else {
                        UpdateVersion {
                            e_tag: (!etag.is_empty()).then(|| etag.to_string()),
                            version: (!version.is_empty()).then(|| version.to_string()),
                        }
                    };
                    self.put_head(name, &head, seq + 1, &value, PutMode::Update(v))
                        .await
                } else if let Some(seq) = tok.strip_prefix('r').and_then(|s| s.parse::<u64>().ok())
                {
                    // Read from records (a copied folder): in a bucket they never change, so the
                    // first head to be created wins.
                    self.put_head(name, &head, seq + 1, &value, PutMode::Create)
                        .await
                } else {
                    conflict(format!("token {tok:?} is not a version of this remote"))
                }
            }
        }
    }

    async fn list_cursors(&self, prefix: &str) -> Result<Vec<RemotePath>> {
        let prefix = RemotePath::parse_prefix(prefix)?;
        let dir = match &prefix {
            None => self.key(CURSORS_DIR),
            Some(p) => self.key(&cursor_dir_key(p)),
        };
        let mut names = BTreeSet::new();
        for o in self.list_all(&dir).await? {
            let Some(rel) = self.rel_under(&o.location, CURSORS_DIR) else {
                continue;
            };
            let Some((parent, file)) = rel.rsplit_once('/') else {
                continue;
            };
            if file != HEAD_NAME && record_seq(file).is_none() {
                continue;
            }
            if let Some(name) = cursor_name_of_dir(parent) {
                if name.matches_prefix(prefix.as_ref()) {
                    names.insert(name);
                }
            }
        }
        Ok(names.into_iter().collect())
    }
}
