//! # strata-remote-s3
//!
//! Strata remotes in cloud buckets, with no server in between: Amazon S3 and S3-compatible stores
//! (MinIO, Cloudflare R2, moto…), Google Cloud Storage and Azure Blob Storage, all through
//! [`object_store`]. One implementation, [`ObjectStoreRemote`], serves the three.
//!
//! ## URLs and options
//! - `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` ([`BucketUrl`]).
//! - Settings that are not secrets come as options ([`BucketOptions`], `strata remote add NAME URL -o
//!   endpoint=http://127.0.0.1:9000`): an endpoint for S3-compatible stores, region, timeouts,
//!   retries, part size.
//!
//! ## Credentials
//! Only each cloud's standard mechanisms, never the remote's configuration:
//! - **S3**: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//!   `AWS_ENDPOINT_URL`; or the profile named by `AWS_PROFILE` (default `default`) in
//!   `~/.aws/credentials` and `~/.aws/config`, with static keys or a `credential_process` (run as
//!   the AWS CLI runs it, again before its `Expiration`); or web identity, container and instance
//!   credentials (through `object_store`). Profiles that need a sign-in Strata does not implement
//!   (`sso_*`, `role_arn` / `source_profile`, `web_identity_token_file`) are refused, naming the key
//!   and how to export credentials instead. With no credentials anywhere, the error says where
//!   Strata looked rather than what the instance metadata address answered.
//! - **GCS**: `GOOGLE_APPLICATION_CREDENTIALS` or `GOOGLE_SERVICE_ACCOUNT` (a key file),
//!   `GOOGLE_SERVICE_ACCOUNT_KEY` (its contents), or application default credentials.
//! - **Azure**: `AZURE_STORAGE_ACCOUNT_NAME` with `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_KEY`,
//!   or a service principal / managed identity (`AZURE_CLIENT_ID`…); `AZURE_STORAGE_USE_EMULATOR`
//!   for Azurite.
//!
//! Neither [`ObjectStoreRemote`]'s `Debug` nor its `Display` nor its errors print a credential.
//!
//! ## Layout and guarantees
//! Objects follow [`strata_remote::layout`], byte for byte like the folder remote's files, so a folder
//! remote copied into a bucket is a valid bucket remote and the reverse holds too.
//! - **Blob put-if-absent**: a blob up to one part (8 MiB by default) goes up in one request with
//!   `PutMode::Create` (`If-None-Match: *` on S3 and Azure, `x-goog-if-generation-match: 0` on
//!   GCS). A larger one goes up as a multipart upload to `tmp/<uuid>`, which no reader ever sees
//!   before it completes, and is then published by a copy that the store performs only if the
//!   destination does not exist (S3: a one-part multipart copy completed with `If-None-Match`;
//!   Azure: `If-None-Match: *`; GCS: `x-goog-if-generation-match: 0`). Either way exactly one of
//!   racing puts wins and a failed or abandoned put leaves nothing under `blobs/`. A multipart upload
//!   whose future is dropped is aborted in the background; one cut short by a crash is invisible and
//!   should be cleaned by a lifecycle rule for incomplete multipart uploads. Staged objects older
//!   than a day are removed before a handle's first large put.
//! - **Cursor compare-and-swap** rides on the store's conditional writes on one object,
//!   `cursors/<name>/HEAD`: `PutMode::Create` to create, `PutMode::Update` with both the e_tag and
//!   the version (the generation on GCS) to replace. A cursor token carries both.
//! - **Reads stream**; listings paginate (inside `object_store`).
//! - **Retries**: `object_store` retries only retryable failures (timeouts, connection errors, 5xx,
//!   429), with exponential backoff, up to `max_retries` times within `retry_timeout`.
//!
//! ## Errors
//! A store error is classified by its `object_store` type, the transport failure's kind, the HTTP
//! status and the store's error code, never by the words of its message: 408, 429, 500, 502, 503,
//! 504, timeouts and connection failures are `Transient` (retryable); 401, and 400/403 whose code
//! says the credentials are wrong or expired, are `Unauthorized`; other 403s `PermissionDenied`;
//! 404 is `NotFound` (naming the bucket when its code says the bucket is missing); 409/412 are a
//! lost `Conflict` for cursors and `AlreadyExists` for blobs; anything else is `Other`. The message
//! says what failed and how (`HTTP 503, SlowDown`); the `object_store` error is the source.
//!
//! ## Features
//! `aws`, `gcp` and `azure` (all default) each compile one provider in. A URL for a provider left
//! out fails with `Invalid`, naming the feature to build with.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

#[cfg(feature = "aws")]
mod aws_credentials;
mod classify;
mod config;
mod counting;
mod remote;
mod url;

#[doc(hidden)]
pub mod testing;

pub use config::{BucketOptions, Env, OPTION_KEYS};
pub use counting::{RequestCounter, RequestRecord};
pub use object_store;
pub use remote::{ObjectStoreRemote, STALE_TMP_AGE};
pub use url::{is_bucket_url, BucketUrl, Provider};
