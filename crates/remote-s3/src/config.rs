//! Options of a bucket remote, credentials from the environment, and building the object store.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3CopyIfNotExists};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use strata_remote::{RemoteError, Result};

use crate::counting::RequestCounter;
use crate::url::{BucketUrl, Provider};

/// Azurite's well-known development account (public, documented by Microsoft; not a secret).
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
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

    fn get(&self, key: &str) -> Option<String> {
        match &self.vars {
            Some(m) => m.get(key).cloned(),
            None => std::env::var(key).ok(),
        }
        .filter(|v| !v.is_empty())
    }

    fn with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
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

/// Builds the object store for a bucket URL.
pub(crate) fn build_store(
    url: &BucketUrl,
    opts: &BucketOptions,
    env: &Env,
    counter: Option<&RequestCounter>,
) -> Result<Arc<dyn ObjectStore>> {
    let invalid = |e: object_store::Error| {
        RemoteError::Invalid(format!("bucket remote {url}: {}", crate::remote::clean(&e)).into())
    };
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
    let store: Arc<dyn ObjectStore> = match url.provider {
        Provider::S3 => {
            let mut b = AmazonS3Builder::new();
            for (k, v) in env.with_prefix("AWS_") {
                if let Ok(key) = k.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                    b = b.with_config(key, v);
                }
            }
            if env.get("AWS_ACCESS_KEY_ID").is_none() && !opts.skip_signature {
                if let Some(p) = aws_profile(env)? {
                    if let (Some(id), Some(secret)) = (p.access_key_id, p.secret_access_key) {
                        b = b.with_access_key_id(id).with_secret_access_key(secret);
                        if let Some(t) = p.session_token {
                            b = b.with_token(t);
                        }
                    }
                    if env.get("AWS_REGION").is_none() && env.get("AWS_DEFAULT_REGION").is_none() {
                        if let Some(r) = p.region {
                            b = b.with_region(r);
                        }
                    }
                    if env.get("AWS_ENDPOINT_URL").is_none() && env.get("AWS_ENDPOINT").is_none() {
                        if let Some(e) = p.endpoint_url {
                            b = b.with_endpoint(e);
                        }
                    }
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
            b.with_bucket_name(&url.bucket)
                .with_skip_signature(opts.skip_signature)
                // Put-if-absent of a large blob: multipart upload to tmp/, then a copy that S3
                // completes only if the destination does not exist.
                .with_copy_if_not_exists(S3CopyIfNotExists::Multipart)
                .with_client_options(client)
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
                .map_err(invalid)?
        }
        Provider::Gcs => {
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
                .map_err(invalid)?
        }
        Provider::Azure => {
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
                .map_err(invalid)?
        }
    };
    Ok(store)
}

/// What an AWS profile gives.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct AwsProfile {
    pub(crate) access_key_id: Option<String>,
    pub(crate) secret_access_key: Option<String>,
    pub(crate) session_token: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) endpoint_url: Option<String>,
}

/// Reads the profile named by `AWS_PROFILE` (default `default`) from the shared credentials file
/// (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`) and the config file (`AWS_CONFIG_FILE`,
/// default `~/.aws/config`), as the AWS CLI and SDKs do. A profile named explicitly but found in
/// neither file is an error; the absent default profile is not.
pub(crate) fn aws_profile(env: &Env) -> Result<Option<AwsProfile>> {
    let explicit = env.get("AWS_PROFILE");
    let name = explicit.clone().unwrap_or_else(|| "default".to_string());
    let home = env.get("HOME").map(PathBuf::from);
    let file = |var: &str, rel: &str| {
        env.get(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(rel)))
    };
    let creds_file = file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
    let config_file = file("AWS_CONFIG_FILE", ".aws/config");
    let read = |p: &Option<PathBuf>| p.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
    let creds = read(&creds_file)
        .map(|t| ini_section(&t, &name))
        .unwrap_or_default();
    let config_section = if name == "default" {
        "default".to_string()
    } else {
        format!("profile {name}")
    };
    let config = read(&config_file)
        .map(|t| ini_section(&t, &config_section))
        .unwrap_or_default();
    if creds.is_none() && config.is_none() {
        return match explicit {
            Some(_) => Err(RemoteError::Invalid(
                format!(
                    "AWS_PROFILE={name:?} names a profile found neither in {} nor in {}",
                    creds_file
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "~/.aws/credentials".into()),
                    config_file
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "~/.aws/config".into()),
                )
                .into(),
            )),
            None => Ok(None),
        };
    }
    let (creds, config) = (creds.unwrap_or_default(), config.unwrap_or_default());
    let pick = |k: &str| creds.get(k).or_else(|| config.get(k)).cloned();
    Ok(Some(AwsProfile {
        access_key_id: pick("aws_access_key_id"),
        secret_access_key: pick("aws_secret_access_key"),
        session_token: pick("aws_session_token"),
        region: pick("region"),
        endpoint_url: pick("endpoint_url"),
    }))
}

/// The `key = value` pairs of section `[name]` of an INI text; `None` if there is no such section.
/// Nested (indented) settings, such as a config file's `s3 =` block, are skipped.
fn ini_section(text: &str, name: &str) -> Option<BTreeMap<String, String>> {
    let mut found = None;
    let mut current: Option<bool> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(sec) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let here = sec.trim() == name;
            if here && found.is_none() {
                found = Some(BTreeMap::new());
            }
            current = Some(here);
            continue;
        }
        if current != Some(true) || raw.starts_with([' ', '\t']) {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            if !v.is_empty() {
                found
                    .as_mut()
                    .expect("inside the section")
                    .insert(k.trim().to_ascii_lowercase(), v.to_string());
            }
        }
    }
    found
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

    #[test]
    fn aws_profiles_are_read_like_the_cli_does() {
        let dir = std::env::temp_dir().join(format!("strata-aws-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let creds = dir.join("credentials");
        let config = dir.join("config");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = s1\n\n\
             # comment\n[work]\naws_access_key_id=AKWORK\naws_secret_access_key = s2\naws_session_token = t2\n",
        )
        .unwrap();
        std::fs::write(
            &config,
            "[default]\nregion = eu-west-1\n[profile work]\nregion = us-west-2\ns3 =\n  addressing_style = path\nendpoint_url = http://minio:9000\n",
        )
        .unwrap();
        let env = |profile: Option<&str>| {
            let mut m = map(&[
                ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
                ("AWS_CONFIG_FILE", config.to_str().unwrap()),
            ]);
            if let Some(p) = profile {
                m.insert("AWS_PROFILE".into(), p.into());
            }
            Env::from_map(m)
        };
        let d = aws_profile(&env(None)).unwrap().unwrap();
        assert_eq!(d.access_key_id.as_deref(), Some("AKDEFAULT"));
        assert_eq!(d.region.as_deref(), Some("eu-west-1"));
        let w = aws_profile(&env(Some("work"))).unwrap().unwrap();
        assert_eq!(
            w,
            AwsProfile {
                access_key_id: Some("AKWORK".into()),
                secret_access_key: Some("s2".into()),
                session_token: Some("t2".into()),
                region: Some("us-west-2".into()),
                endpoint_url: Some("http://minio:9000".into()),
            }
        );
        match aws_profile(&env(Some("nope"))) {
            Err(RemoteError::Invalid(m)) => assert!(m.contains("\"nope\""), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(aws_profile(&Env::from_map(BTreeMap::new())).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
