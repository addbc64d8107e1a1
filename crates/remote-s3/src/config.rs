//! Options of a bucket remote, credentials from the environment, and building the object store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "aws")]
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3CopyIfNotExists};
#[cfg(feature = "azure")]
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
#[cfg(feature = "gcp")]
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::ObjectStore;
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
use strata_remote::ErrorDetail;
use strata_remote::{RemoteError, Result};

use crate::counting::RequestCounter;
use crate::url::{BucketUrl, Provider};

/// Azurite's well-known development account (public, documented by Microsoft; not a secret).
#[cfg(feature = "azure")]
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
#[cfg(feature = "azure")]
const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The option keys a bucket remote accepts (`strata remote add NAME URL -o KEY=VALUE`).
pub const OPTION_KEYS: &[&str] = &[
    "endpoint",
    "region",
    "allow_http",
    "virtual_hosted_style",
    "skip_signature",
    "account",
    "use_emulator",
    "timeout",
    "connect_timeout",
    "max_retries",
    "retry_timeout",
    "part_size",
    "upload_concurrency",
];

/// Settings of a bucket remote. None of them is a secret: credentials come only from the standard
/// environment variables and files of each cloud (see the crate documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketOptions {
    /// The store's base URL, for S3-compatible stores (MinIO, R2, moto), Azurite or a GCS stand-in.
    pub endpoint: Option<String>,
    /// The S3 region (default: `AWS_REGION`, then the profile's, then `us-east-1`).
    pub region: Option<String>,
    /// Allow plain `http://` endpoints.
    pub allow_http: bool,
    /// S3 only: virtual-hosted-style requests (`bucket.host`) instead of path-style (`host/bucket`).
    pub virtual_hosted_style: Option<bool>,
    /// Send unsigned requests (public buckets).
    pub skip_signature: bool,
    /// Azure only: the storage account (default: `AZURE_STORAGE_ACCOUNT_NAME`).
    pub account: Option<String>,
    /// Azure only: talk to Azurite with its well-known development account.
    pub use_emulator: bool,
    /// Timeout of each HTTP request (default 30 s).
    pub timeout: Option<Duration>,
    /// Timeout to connect (default 5 s).
    pub connect_timeout: Option<Duration>,
    /// Retries of a failed retryable request (default 10).
    pub max_retries: Option<usize>,
    /// Give up retrying a request after this long (default 3 min).
    pub retry_timeout: Option<Duration>,
    /// Blobs up to this size go up in one request; larger ones go up in parts of this size, with a
    /// multipart upload (default 8 MiB; S3 needs at least 5 MiB).
    pub part_size: usize,
    /// Parts of one blob uploaded at once (default 4). Memory in use is at most about
    /// `part_size * (upload_concurrency + 1)` per upload.
    pub upload_concurrency: usize,
}

impl Default for BucketOptions {
    fn default() -> Self {
        BucketOptions {
            endpoint: None,
            region: None,
            allow_http: false,
            virtual_hosted_style: None,
            skip_signature: false,
            account: None,
            use_emulator: false,
            timeout: None,
            connect_timeout: None,
            max_retries: None,
            retry_timeout: None,
            part_size: 8 * 1024 * 1024,
            upload_concurrency: 4,
        }
    }
}

/// Whether an option key looks like it carries a secret (refused: secrets stay in the environment).
fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "password", "token", "key", "sas", "credential"]
        .iter()
        .any(|s| k.contains(s))
}

impl BucketOptions {
    /// Parses `KEY=VALUE` options (as stored in a remote's configuration). Unknown keys and keys that
    /// look like credentials are refused with [`RemoteError::Invalid`], naming the key.
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<BucketOptions> {
        let mut o = BucketOptions::default();
        for (key, value) in map {
            let bad = |why: &str| {
                RemoteError::Invalid(format!("bucket remote option {key}={value:?}: {why}").into())
            };
            let v = value.trim();
            match key.as_str() {
                "endpoint" => o.endpoint = Some(v.trim_end_matches('/').to_string()),
                "region" => o.region = Some(v.to_string()),
                "allow_http" => o.allow_http = parse_bool(v).ok_or_else(|| bad("not a boolean"))?,
                "virtual_hosted_style" => {
                    o.virtual_hosted_style =
                        Some(parse_bool(v).ok_or_else(|| bad("not a boolean"))?)
                }
                "skip_signature" => {
                    o.skip_signature = parse_bool(v).ok_or_else(|| bad("not a boolean"))?
                }
                "account" => o.account = Some(v.to_string()),
                "use_emulator" => {
                    o.use_emulator = parse_bool(v).ok_or_else(|| bad("not a boolean"))?
                }
                "timeout" => o.timeout = Some(parse_duration(v).ok_or_else(|| bad(DURATION))?),
                "connect_timeout" => {
                    o.connect_timeout = Some(parse_duration(v).ok_or_else(|| bad(DURATION))?)
                }
                "max_retries" => {
                    o.max_retries = Some(v.parse().map_err(|_| bad("not a whole number"))?)
                }
                "retry_timeout" => {
                    o.retry_timeout = Some(parse_duration(v).ok_or_else(|| bad(DURATION))?)
                }
                "part_size" => {
                    o.part_size = parse_size(v)
                        .filter(|&n| (5 * 1024 * 1024..=5 * 1024 * 1024 * 1024).contains(&n))
                        .ok_or_else(|| bad("want a size from 5MiB to 5GiB, like 8MiB"))?
                }
                "upload_concurrency" => {
                    o.upload_concurrency = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=64).contains(n))
                        .ok_or_else(|| bad("want a number from 1 to 64"))?
                }
                other if looks_secret(other) => {
                    return Err(RemoteError::Invalid(format!(
                        "bucket remote option {other:?} looks like a credential; Strata never stores \
                         credentials: set the cloud's standard environment variables instead \
                         (AWS_ACCESS_KEY_ID…, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCOUNT_KEY…)"
                    ).into()))
                }
                other => {
                    return Err(RemoteError::Invalid(format!(
                        "unknown bucket remote option {other:?} (known: {})",
                        OPTION_KEYS.join(", ")
                    ).into()))
                }
            }
        }
        Ok(o)
    }

    /// Like [`from_map`](Self::from_map) from `(key, value)` pairs.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<BucketOptions> {
        BucketOptions::from_map(
            &pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

const DURATION: &str = "want a duration like 30s, 500ms or 2m";

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_duration(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

fn parse_size(v: &str) -> Option<usize> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: usize = n.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1024,
        "mib" | "m" => 1024 * 1024,
        "gib" | "g" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Where credentials and settings are looked up: the process environment, or a given map (tests).
#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: Option<BTreeMap<String, String>>,
}

impl Env {
    /// The process environment.
    pub fn process() -> Env {
        Env { vars: None }
    }

    /// Exactly these variables, and nothing from the process.
    pub fn from_map(vars: BTreeMap<String, String>) -> Env {
        Env { vars: Some(vars) }
    }

    #[allow(dead_code)] // unused in builds without any provider
    pub(crate) fn get(&self, key: &str) -> Option<String> {
        match &self.vars {
            Some(m) => m.get(key).cloned(),
            None => std::env::var(key).ok(),
        }
        .filter(|v| !v.is_empty())
    }

    #[allow(dead_code)] // unused in builds without any provider
    pub(crate) fn with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let all: Vec<(String, String)> = match &self.vars {
            Some(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            None => std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        };
        all.into_iter()
            .filter(|(k, v)| k.starts_with(prefix) && !v.is_empty())
            .collect()
    }
}

/// Builds the object store for a bucket URL. A provider this build was compiled without is refused
/// with [`RemoteError::Invalid`] naming the feature to build with.
pub(crate) fn build_store(
    url: &BucketUrl,
    opts: &BucketOptions,
    env: &Env,
    counter: Option<&RequestCounter>,
) -> Result<Arc<dyn ObjectStore>> {
    match url.provider {
        #[cfg(feature = "aws")]
        Provider::S3 => s3(url, opts, env, counter),
        #[cfg(feature = "gcp")]
        Provider::Gcs => gcs(url, opts, env, counter),
        #[cfg(feature = "azure")]
        Provider::Azure => azure(url, opts, env, counter),
        #[allow(unreachable_patterns)] // every provider is compiled in by default
        other => {
            let _ = (opts, env, counter);
            Err(not_compiled(other))
        }
    }
}

/// The error for a URL of a provider this build was compiled without.
fn not_compiled(provider: Provider) -> RemoteError {
    let (feature, own) = match provider {
        Provider::S3 => ("s3", "aws"),
        Provider::Gcs => ("gcs", "gcp"),
        Provider::Azure => ("azure", "azure"),
    };
    RemoteError::Invalid(
        format!(
            "this build of Strata has no {}:// support; rebuild with feature {feature} \
             (feature {own} of strata-remote-s3)",
            provider.scheme()
        )
        .into(),
    )
}

/// The error for a store `object_store` refuses to build.
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn invalid(url: &BucketUrl, e: object_store::Error) -> RemoteError {
    RemoteError::Invalid(ErrorDetail::with_source(
        format!("bucket remote {url}: the store cannot be set up"),
        e,
    ))
}

/// HTTP client settings and the retry policy from the options.
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
pub(crate) fn client_and_retry(opts: &BucketOptions) -> (ClientOptions, RetryConfig) {
    let mut client = ClientOptions::new().with_allow_http(opts.allow_http);
    if let Some(t) = opts.timeout {
        client = client.with_timeout(t);
    }
    if let Some(t) = opts.connect_timeout {
        client = client.with_connect_timeout(t);
    }
    let mut retry = RetryConfig::default();
    if let Some(n) = opts.max_retries {
        retry.max_retries = n;
        if n <= 2 {
            retry.backoff = BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
            };
        }
    }
    if let Some(t) = opts.retry_timeout {
        retry.retry_timeout = t;
    }
    (client, retry)
}

#[cfg(feature = "aws")]
fn s3(
    url: &BucketUrl,
    opts: &BucketOptions,
    env: &Env,
    counter: Option<&RequestCounter>,
) -> Result<Arc<dyn ObjectStore>> {
    let (mut client, retry) = client_and_retry(opts);
    let mut b = AmazonS3Builder::new();
    for (k, v) in env.with_prefix("AWS_") {
        if let Ok(key) = k.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            b = b.with_config(key, v);
        }
    }
    if let Some(e) = &opts.endpoint {
        b = b.with_endpoint(e);
        if e.starts_with("http://") {
            client = client.with_allow_http(true);
        }
    }
    if let Some(r) = &opts.region {
        b = b.with_region(r);
    }
    if let Some(v) = opts.virtual_hosted_style {
        b = b.with_virtual_hosted_style_request(v);
    }
    if let Some(c) = counter {
        b = b.with_http_connector(c.connector());
    }
    let b = b
        .with_bucket_name(&url.bucket)
        .with_skip_signature(opts.skip_signature)
        // Put-if-absent of a large blob: multipart upload to tmp/, then a copy that S3
        // completes only if the destination does not exist.
        .with_copy_if_not_exists(S3CopyIfNotExists::Multipart)
        .with_client_options(client)
        .with_retry(retry);
    // Credentials (and the profile's region and endpoint, unless set otherwise).
    let b = crate::aws_credentials::configure(b, url, opts, env)?;
    b.build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| invalid(url, e))
}

#[cfg(feature = "gcp")]
fn gcs(
    url: &BucketUrl,
    opts: &BucketOptions,
    env: &Env,
    counter: Option<&RequestCounter>,
) -> Result<Arc<dyn ObjectStore>> {
    let (mut client, retry) = client_and_retry(opts);
    let mut b = GoogleCloudStorageBuilder::new();
    if let Some(p) = env.get("SERVICE_ACCOUNT") {
        b = b.with_service_account_path(p);
    }
    for (k, v) in env.with_prefix("GOOGLE_") {
        if let Ok(key) = k.to_ascii_lowercase().parse::<GoogleConfigKey>() {
            b = b.with_config(key, v);
        }
    }
    if let Some(e) = &opts.endpoint {
        b = b.with_base_url(e);
        if e.starts_with("http://") {
            client = client.with_allow_http(true);
        }
    }
    if let Some(c) = counter {
        b = b.with_http_connector(c.connector());
    }
    b.with_bucket_name(&url.bucket)
        .with_skip_signature(opts.skip_signature)
        .with_client_options(client)
        .with_retry(retry)
        .build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| invalid(url, e))
}

#[cfg(feature = "azure")]
fn azure(
    url: &BucketUrl,
    opts: &BucketOptions,
    env: &Env,
    counter: Option<&RequestCounter>,
) -> Result<Arc<dyn ObjectStore>> {
    let (mut client, retry) = client_and_retry(opts);
    let mut b = MicrosoftAzureBuilder::new();
    for (k, v) in env.with_prefix("AZURE_") {
        if let Ok(key) = k.to_ascii_lowercase().parse::<AzureConfigKey>() {
            // The emulator switch is handled below, with an explicit endpoint.
            if key != AzureConfigKey::UseEmulator {
                b = b.with_config(key, v);
            }
        }
    }
    let emulator = opts.use_emulator
        || env
            .get("AZURE_STORAGE_USE_EMULATOR")
            .and_then(|v| parse_bool(&v))
            .unwrap_or(false);
    let mut endpoint = opts.endpoint.clone();
    if emulator {
        let account = opts
            .account
            .clone()
            .unwrap_or_else(|| EMULATOR_ACCOUNT.to_string());
        b = b.with_account(&account);
        if env.get("AZURE_STORAGE_ACCOUNT_KEY").is_none()
            && env.get("AZURE_STORAGE_ACCESS_KEY").is_none()
        {
            b = b.with_access_key(EMULATOR_KEY);
        }
        // Azurite serves accounts path-style: http://host:port/<account>.
        let base = endpoint
            .or_else(|| env.get("AZURITE_BLOB_STORAGE_URL"))
            .unwrap_or_else(|| "http://127.0.0.1:10000".to_string());
        let base = base.trim_end_matches('/').to_string();
        endpoint = Some(if base.ends_with(&format!("/{account}")) {
            base
        } else {
            format!("{base}/{account}")
        });
    } else if let Some(a) = &opts.account {
        b = b.with_account(a);
    }
    if let Some(e) = &endpoint {
        b = b.with_endpoint(e.clone());
        if e.starts_with("http://") {
            client = client.with_allow_http(true);
        }
    }
    if let Some(c) = counter {
        b = b.with_http_connector(c.connector());
    }
    b.with_container_name(&url.bucket)
        .with_skip_signature(opts.skip_signature)
        .with_client_options(client)
        .with_retry(retry)
        .build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| invalid(url, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_parse_and_refuse_secrets_and_unknown_keys() {
        let o = BucketOptions::from_map(&map(&[
            ("endpoint", "http://127.0.0.1:9000/"),
            ("allow_http", "true"),
            ("timeout", "1.5s"),
            ("retry_timeout", "2m"),
            ("max_retries", "1"),
            ("part_size", "16MiB"),
        ]))
        .unwrap();
        assert_eq!(o.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(o.allow_http);
        assert_eq!(o.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(o.retry_timeout, Some(Duration::from_secs(120)));
        assert_eq!(o.max_retries, Some(1));
        assert_eq!(o.part_size, 16 * 1024 * 1024);

        for (k, v, needle) in [
            ("secret_access_key", "x", "never stores credentials"),
            ("access_key", "x", "never stores credentials"),
            ("sas", "x", "never stores credentials"),
            ("colour", "x", "unknown bucket remote option"),
            ("allow_http", "maybe", "not a boolean"),
            ("timeout", "soon", "duration"),
            ("part_size", "1MiB", "5MiB"),
        ] {
            match BucketOptions::from_map(&map(&[(k, v)])) {
                Err(RemoteError::Invalid(m)) => {
                    assert!(m.contains(needle), "{k}={v}: {m}");
                    assert!(!m.contains("=\"x\"") || !looks_secret(k), "{m}");
                }
                other => panic!("{k}={v}: {other:?}"),
            }
        }
    }
}
