//! AWS credentials, found the way the AWS CLI finds them, for the kinds Strata supports.
//!
//! In order: the `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` variables (given to `object_store`
//! as they are); else the profile named by `AWS_PROFILE` (default `default`) in the shared
//! credentials and config files, which may hold static keys or a `credential_process`; else web
//! identity, container or instance credentials, which `object_store` fetches itself.
//!
//! Profiles that need a sign-in flow Strata does not implement (IAM Identity Center `sso_*`, an
//! assumed role with `role_arn` / `source_profile`, `web_identity_token_file`, `aws login`) are
//! refused up front, naming the key and what to do instead. When nothing at all provides
//! credentials, the error of the instance metadata service (the last resort) is replaced by one that
//! says where Strata looked.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use object_store::aws::{AmazonS3Builder, AwsCredential, AwsCredentialProvider};
use object_store::CredentialProvider;
use strata_remote::{BoxError, RemoteError, Result};

use crate::classify::{classify, CredentialError};
use crate::config::{client_and_retry, BucketOptions, Env};
use crate::url::BucketUrl;

/// Variables that give credentials, or a way to fetch them, without any file.
const CREDENTIAL_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

/// Profile keys that need a sign-in flow Strata does not implement, in the order the AWS CLI
/// considers them, with what they do.
const UNSUPPORTED_KEYS: &[(&str, &str)] = &[
    ("role_arn", "assumes an IAM role"),
    ("source_profile", "assumes an IAM role"),
    ("credential_source", "assumes an IAM role"),
    ("web_identity_token_file", "uses a web identity token"),
    ("sso_session", "signs in with IAM Identity Center (SSO)"),
    ("sso_start_url", "signs in with IAM Identity Center (SSO)"),
    ("sso_account_id", "signs in with IAM Identity Center (SSO)"),
    ("sso_role_name", "signs in with IAM Identity Center (SSO)"),
    ("login_session", "signs in with `aws login`"),
];

/// A process's credentials are fetched again this long before they expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// What an AWS profile gives.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct AwsProfile {
    pub(crate) name: String,
    pub(crate) credentials: ProfileCredentials,
    pub(crate) region: Option<String>,
    pub(crate) endpoint_url: Option<String>,
}

/// The credentials a profile names.
#[derive(Default, PartialEq, Eq)]
pub(crate) enum ProfileCredentials {
    /// None: the profile only sets other things (a region…).
    #[default]
    None,
    /// `aws_access_key_id`, `aws_secret_access_key` and maybe `aws_session_token`.
    Static {
        key_id: String,
        secret_key: String,
        token: Option<String>,
    },
    /// `credential_process`: a command that prints credentials as JSON.
    Process(String),
}

impl fmt::Debug for ProfileCredentials {
    // Never the secret key, the token or the command (which may carry a secret in an argument).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileCredentials::None => f.write_str("None"),
            ProfileCredentials::Static { key_id, .. } => f
                .debug_struct("Static")
                .field("key_id", key_id)
                .finish_non_exhaustive(),
            ProfileCredentials::Process(_) => f.write_str("Process(..)"),
        }
    }
}

/// The shared credentials file and the config file (`AWS_SHARED_CREDENTIALS_FILE`,
/// `AWS_CONFIG_FILE`, defaults under `~/.aws/`).
fn profile_files(env: &Env) -> (Option<PathBuf>, Option<PathBuf>) {
    let home = env.get("HOME").map(PathBuf::from);
    let file = |var: &str, rel: &str| {
        env.get(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(rel)))
    };
    (
        file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
        file("AWS_CONFIG_FILE", ".aws/config"),
    )
}

fn show(p: &Option<PathBuf>, default: &str) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| default.to_string())
}

/// Reads the profile named by `AWS_PROFILE` (default `default`) from the shared credentials file and
/// the config file, as the AWS CLI does. A profile named explicitly but found in neither file is an
/// error, and so is a profile that needs an unsupported sign-in (naming the key); the absent default
/// profile is not.
pub(crate) fn aws_profile(env: &Env) -> Result<Option<AwsProfile>> {
    let explicit = env.get("AWS_PROFILE");
    let name = explicit.clone().unwrap_or_else(|| "default".to_string());
    let (creds_file, config_file) = profile_files(env);
    let read = |p: &Option<PathBuf>| p.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
    let creds = read(&creds_file).and_then(|t| ini_section(&t, &name));
    let config_section = if name == "default" {
        "default".to_string()
    } else {
        format!("profile {name}")
    };
    let config = read(&config_file).and_then(|t| ini_section(&t, &config_section));
    if creds.is_none() && config.is_none() {
        return match explicit {
            Some(_) => Err(RemoteError::Invalid(
                format!(
                    "AWS_PROFILE={name:?} names a profile found neither in {} nor in {}",
                    show(&creds_file, "~/.aws/credentials"),
                    show(&config_file, "~/.aws/config"),
                )
                .into(),
            )),
            None => Ok(None),
        };
    }
    let (creds, config) = (creds.unwrap_or_default(), config.unwrap_or_default());
    let pick = |k: &str| creds.get(k).or_else(|| config.get(k)).cloned();
    if let Some((key, what)) = UNSUPPORTED_KEYS
        .iter()
        .find(|(k, _)| creds.contains_key(*k) || config.contains_key(*k))
    {
        return Err(RemoteError::Invalid(
            format!(
                "AWS profile {name:?} sets {key} (it {what}), which Strata cannot use. Export its \
                 credentials instead: run `aws configure export-credentials --profile {name} \
                 --format env` and export the variables it prints, or give Strata a profile with \
                 `credential_process = aws configure export-credentials --profile {name} --format \
                 process`"
            )
            .into(),
        ));
    }
    // The AWS CLI's order: static keys in the credentials file, then credential_process, then
    // static keys in the config file.
    let static_keys = |m: &BTreeMap<String, String>| match (
        m.get("aws_access_key_id"),
        m.get("aws_secret_access_key"),
    ) {
        (Some(id), Some(secret)) => Some(ProfileCredentials::Static {
            key_id: id.clone(),
            secret_key: secret.clone(),
            token: m.get("aws_session_token").cloned(),
        }),
        _ => None,
    };
    let credentials = if let Some(c) = static_keys(&creds) {
        c
    } else if let Some(cmd) = pick("credential_process") {
        ProfileCredentials::Process(cmd)
    } else if let Some(c) = static_keys(&config) {
        c
    } else {
        for (have, lacks) in [
            ("aws_access_key_id", "aws_secret_access_key"),
            ("aws_secret_access_key", "aws_access_key_id"),
        ] {
            if pick(have).is_some() {
                return Err(RemoteError::Invalid(
                    format!("AWS profile {name:?} sets {have} but not {lacks}").into(),
                ));
            }
        }
        ProfileCredentials::None
    };
    Ok(Some(AwsProfile {
        name,
        credentials,
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

/// Sets the credentials (and the profile's region and endpoint, unless set otherwise) on `b`, which
/// already has every `AWS_*` variable and every option applied.
pub(crate) fn configure(
    mut b: AmazonS3Builder,
    url: &BucketUrl,
    opts: &BucketOptions,
    env: &Env,
) -> Result<AmazonS3Builder> {
    if opts.skip_signature || env.get("AWS_ACCESS_KEY_ID").is_some() {
        return Ok(b);
    }
    let profile = aws_profile(env)?;
    let mut has_credentials = false;
    if let Some(p) = profile {
        if opts.region.is_none()
            && env.get("AWS_REGION").is_none()
            && env.get("AWS_DEFAULT_REGION").is_none()
        {
            if let Some(r) = p.region {
                b = b.with_region(r);
            }
        }
        if opts.endpoint.is_none()
            && env.get("AWS_ENDPOINT_URL").is_none()
            && env.get("AWS_ENDPOINT").is_none()
        {
            if let Some(e) = p.endpoint_url {
                b = b.with_endpoint(e);
            }
        }
        match p.credentials {
            ProfileCredentials::None => {}
            ProfileCredentials::Static {
                key_id,
                secret_key,
                token,
            } => {
                has_credentials = true;
                b = b
                    .with_access_key_id(key_id)
                    .with_secret_access_key(secret_key);
                if let Some(t) = token {
                    b = b.with_token(t);
                }
            }
            ProfileCredentials::Process(command) => {
                has_credentials = true;
                b = b.with_credentials(Arc::new(ProcessCredentialProvider::new(p.name, command)));
            }
        }
    }
    if has_credentials || CREDENTIAL_VARS.iter().any(|v| env.get(v).is_some()) {
        return Ok(b);
    }
    // Nothing but the instance metadata service is left. Take object_store's provider for it (from
    // a store built with no credentials, with a short retry budget: everything else is already
    // known to be absent) and explain its failure.
    let (_, mut retry) = client_and_retry(opts);
    retry.max_retries = retry.max_retries.min(2);
    retry.retry_timeout = retry.retry_timeout.min(Duration::from_secs(10));
    let Ok(probe) = b.clone().with_retry(retry).build() else {
        // The real build reports what is wrong.
        return Ok(b);
    };
    let (creds_file, config_file) = profile_files(env);
    let profile = env
        .get("AWS_PROFILE")
        .unwrap_or_else(|| "default".to_string());
    let metadata = env
        .get("AWS_METADATA_ENDPOINT")
        .unwrap_or_else(|| "http://169.254.169.254".to_string());
    let looked = format!(
        "no AWS credentials found for {url}. Strata looked at the variables AWS_ACCESS_KEY_ID / \
         AWS_SECRET_ACCESS_KEY, AWS_WEB_IDENTITY_TOKEN_FILE and AWS_CONTAINER_CREDENTIALS_* (none \
         is set), at profile {profile:?} in {} and {} (no credentials there), and at the EC2 \
         instance metadata service {metadata}",
        show(&creds_file, "~/.aws/credentials"),
        show(&config_file, "~/.aws/config"),
    );
    Ok(b.with_credentials(Arc::new(ExplainedInstanceProvider {
        inner: probe.credentials().clone(),
        looked,
    })))
}

/// The instance metadata provider of `object_store`, whose failure (not an EC2 instance, no role,
/// an address that answers 403) becomes a [`CredentialError`] saying where Strata looked.
#[derive(Debug)]
struct ExplainedInstanceProvider {
    inner: AwsCredentialProvider,
    looked: String,
}

#[async_trait]
impl CredentialProvider for ExplainedInstanceProvider {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        self.inner.get_credential().await.map_err(|e| {
            let c = classify(&e);
            let how = match (c.status, c.transport) {
                (Some(_), _) => format!("answered {}", c.note()),
                (None, Some(t)) => t.to_string(),
                (None, None) => "gave no credentials".to_string(),
            };
            let message = format!(
                "{} ({how}: this is not an EC2 instance, or it has no role). Set AWS_ACCESS_KEY_ID \
                 and AWS_SECRET_ACCESS_KEY, or set up a profile with `aws configure` (or \
                 credential_process)",
                self.looked
            );
            object_store::Error::Generic {
                store: "S3",
                source: Box::new(CredentialError::new(message, Some(Box::new(e)))),
            }
        })
    }
}

/// Credentials from a profile's `credential_process`, run as the AWS CLI runs it: the command line
/// split like a shell would (no shell is started), its standard output parsed as
/// `{"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}`. Credentials
/// with an `Expiration` are fetched again shortly before it; others are kept.
pub(crate) struct ProcessCredentialProvider {
    profile: String,
    command: String,
    cached: tokio::sync::Mutex<Option<Fetched>>,
}

/// Credentials from a process, and when they expire.
type Fetched = (Arc<AwsCredential>, Option<DateTime<Utc>>);

impl fmt::Debug for ProcessCredentialProvider {
    // Not the command: it may carry a secret in an argument.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessCredentialProvider")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl ProcessCredentialProvider {
    pub(crate) fn new(profile: String, command: String) -> ProcessCredentialProvider {
        ProcessCredentialProvider {
            profile,
            command,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// Runs the command once.
    pub(crate) async fn fetch(
        &self,
    ) -> std::result::Result<(AwsCredential, Option<DateTime<Utc>>), CredentialError> {
        let profile = self.profile.clone();
        let command = self.command.clone();
        tokio::task::spawn_blocking(move || run_credential_process(&profile, &command))
            .await
            .map_err(|e| {
                CredentialError::new(
                    "the credential_process task failed",
                    Some(Box::new(e) as BoxError),
                )
            })?
    }
}

#[async_trait]
impl CredentialProvider for ProcessCredentialProvider {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((c, expires)) = cached.as_ref() {
            let fresh = expires.is_none_or(|e| {
                Utc::now() + chrono::Duration::from_std(REFRESH_MARGIN).unwrap_or_default() < e
            });
            if fresh {
                return Ok(c.clone());
            }
        }
        let (credential, expires) =
            self.fetch()
                .await
                .map_err(|e| object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(e),
                })?;
        let credential = Arc::new(credential);
        *cached = Some((credential.clone(), expires));
        Ok(credential)
    }
}

/// Runs a `credential_process` command and parses what it prints. Errors name the profile and the
/// program, never the output (it holds secrets) nor the arguments.
fn run_credential_process(
    profile: &str,
    command: &str,
) -> std::result::Result<(AwsCredential, Option<DateTime<Utc>>), CredentialError> {
    let fail = |what: String, source: Option<BoxError>| {
        CredentialError::new(
            format!("the credential_process of AWS profile {profile:?} {what}"),
            source,
        )
    };
    let argv = shlex::split(command)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| fail("is empty or badly quoted".into(), None))?;
    let program = &argv[0];
    let out = std::process::Command::new(program)
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            fail(
                format!("could not be started ({program})"),
                Some(Box::new(e)),
            )
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr = stderr.trim();
        let source: Option<BoxError> =
            (!stderr.is_empty()).then(|| stderr.chars().take(500).collect::<String>().into());
        return Err(fail(format!("({program}) failed: {}", out.status), source));
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        // serde_json's syntax errors give a position, never the text.
        fail(format!("({program}) did not print JSON"), Some(Box::new(e)))
    })?;
    let field = |k: &str| {
        json.get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    match json.get("Version").and_then(|v| v.as_u64()) {
        Some(1) => {}
        other => {
            return Err(fail(
                format!(
                    "({program}) printed Version {} (want 1)",
                    other.map_or_else(|| "none".to_string(), |v| v.to_string())
                ),
                None,
            ))
        }
    }
    let (Some(key_id), Some(secret_key)) = (field("AccessKeyId"), field("SecretAccessKey")) else {
        let missing = if field("AccessKeyId").is_none() {
            "AccessKeyId"
        } else {
            "SecretAccessKey"
        };
        return Err(fail(format!("({program}) printed no {missing}"), None));
    };
    let expires = match field("Expiration") {
        None => None,
        Some(t) => Some(
            DateTime::parse_from_rfc3339(t)
                .map_err(|e| {
                    fail(
                        format!(
                            "({program}) printed an Expiration that is not an RFC 3339 time: {t:?}"
                        ),
                        Some(Box::new(e)),
                    )
                })?
                .with_timezone(&Utc),
        ),
    };
    Ok((
        AwsCredential {
            key_id: key_id.to_string(),
            secret_key: secret_key.to_string(),
            token: field("SessionToken").map(str::to_string),
        },
        expires,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY";
    const TOKEN: &str = "IQoJb3JpZ2luX2VjEJr//////////SESSIONTOKEN";

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new(credentials: &str, config: &str) -> Files {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("credentials"), credentials).unwrap();
            std::fs::write(dir.path().join("config"), config).unwrap();
            Files { dir }
        }

        fn env(&self, profile: Option<&str>) -> Env {
            let mut m = BTreeMap::from([
                (
                    "AWS_SHARED_CREDENTIALS_FILE".to_string(),
                    self.path("credentials"),
                ),
                ("AWS_CONFIG_FILE".to_string(), self.path("config")),
            ]);
            if let Some(p) = profile {
                m.insert("AWS_PROFILE".into(), p.into());
            }
            Env::from_map(m)
        }

        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).to_str().unwrap().to_string()
        }

        /// A shell script `name` with `body`.
        fn script(&self, name: &str, body: &str) -> String {
            let path = self.path(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            path
        }
    }

    fn invalid(r: Result<Option<AwsProfile>>) -> String {
        match r {
            Err(RemoteError::Invalid(m)) => m.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn aws_profiles_are_read_like_the_cli_does() {
        let f = Files::new(
            "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = s1\n\n\
             # comment\n[work]\naws_access_key_id=AKWORK\naws_secret_access_key = s2\naws_session_token = t2\n",
            "[default]\nregion = eu-west-1\n[profile work]\nregion = us-west-2\ns3 =\n  addressing_style = path\nendpoint_url = http://minio:9000\n",
        );
        let d = aws_profile(&f.env(None)).unwrap().unwrap();
        assert_eq!(
            d.credentials,
            ProfileCredentials::Static {
                key_id: "AKDEFAULT".into(),
                secret_key: "s1".into(),
                token: None
            }
        );
        assert_eq!(d.region.as_deref(), Some("eu-west-1"));
        let w = aws_profile(&f.env(Some("work"))).unwrap().unwrap();
        assert_eq!(
            w,
            AwsProfile {
                name: "work".into(),
                credentials: ProfileCredentials::Static {
                    key_id: "AKWORK".into(),
                    secret_key: "s2".into(),
                    token: Some("t2".into()),
                },
                region: Some("us-west-2".into()),
                endpoint_url: Some("http://minio:9000".into()),
            }
        );
        assert!(invalid(aws_profile(&f.env(Some("nope")))).contains("\"nope\""));
        assert_eq!(aws_profile(&Env::from_map(BTreeMap::new())).unwrap(), None);
    }

    #[test]
    fn credential_process_takes_its_place_in_the_cli_order() {
        let f = Files::new(
            "[both]\naws_access_key_id = AKFILE\naws_secret_access_key = s\n",
            "[profile both]\ncredential_process = /bin/proc\n\
             [profile proc]\ncredential_process = /bin/proc --flag 'a b'\naws_access_key_id = AKCONF\naws_secret_access_key = s\n\
             [profile half]\naws_access_key_id = AKHALF\n\
             [profile regiononly]\nregion = eu-north-1\n",
        );
        // Static keys in the credentials file come first...
        let both = aws_profile(&f.env(Some("both"))).unwrap().unwrap();
        assert!(
            matches!(both.credentials, ProfileCredentials::Static { ref key_id, .. } if key_id == "AKFILE")
        );
        // ...then credential_process, before static keys in the config file.
        let proc = aws_profile(&f.env(Some("proc"))).unwrap().unwrap();
        assert_eq!(
            proc.credentials,
            ProfileCredentials::Process("/bin/proc --flag 'a b'".into())
        );
        let m = invalid(aws_profile(&f.env(Some("half"))));
        assert!(
            m.contains("aws_access_key_id but not aws_secret_access_key"),
            "{m}"
        );
        let r = aws_profile(&f.env(Some("regiononly"))).unwrap().unwrap();
        assert_eq!(r.credentials, ProfileCredentials::None);
    }

    #[test]
    fn profiles_that_need_a_sign_in_are_refused_naming_the_key() {
        let f = Files::new(
            "[keyed]\naws_access_key_id = AK\naws_secret_access_key = s\n",
            "[profile sso]\nsso_start_url = https://x.awsapps.com/start\nsso_account_id = 1\n\
             [profile ssosession]\nsso_session = corp\n\
             [profile role]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = keyed\n\
             [profile web]\nweb_identity_token_file = /var/token\nrole_arn = arn:aws:iam::1:role/r\n\
             [profile onlyweb]\nweb_identity_token_file = /var/token\n\
             [profile keyed]\nrole_arn = arn:aws:iam::1:role/r\n",
        );
        for (profile, key) in [
            ("sso", "sso_start_url"),
            ("ssosession", "sso_session"),
            ("role", "role_arn"),
            ("web", "role_arn"),
            ("onlyweb", "web_identity_token_file"),
            // An assumed role wins over the static keys next to it, as in the AWS CLI.
            ("keyed", "role_arn"),
        ] {
            let m = invalid(aws_profile(&f.env(Some(profile))));
            assert!(m.contains(&format!("sets {key} ")), "{profile}: {m}");
            assert!(
                m.contains(&format!(
                    "aws configure export-credentials --profile {profile} --format env"
                )),
                "{profile}: {m}"
            );
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn credential_process_output_is_parsed_and_cached_until_it_expires() {
        let f = Files::new("", "");
        let count = f.path("count");
        let expiring = |expiration: &str| {
            format!(
                "echo run >> '{count}'\ncat <<'JSON'\n{{\"Version\": 1, \"AccessKeyId\": \"AKPROC\", \
                 \"SecretAccessKey\": \"{SECRET}\", \"SessionToken\": \"{TOKEN}\"{expiration}}}\nJSON"
            )
        };
        let runs = || {
            std::fs::read_to_string(&count)
                .map(|s| s.lines().count())
                .unwrap_or(0)
        };
        let rt = runtime();

        // No Expiration: run once, then kept.
        let script = f.script("static.sh", &expiring(""));
        let p = ProcessCredentialProvider::new(
            "proc".into(),
            format!("/bin/sh {script} --ignored 'x y'"),
        );
        let c = rt.block_on(p.get_credential()).unwrap();
        assert_eq!(c.key_id, "AKPROC");
        assert_eq!(c.secret_key, SECRET);
        assert_eq!(c.token.as_deref(), Some(TOKEN));
        rt.block_on(p.get_credential()).unwrap();
        assert_eq!(runs(), 1);
        // Debug output names the profile only.
        let dbg = format!("{p:?}");
        assert!(dbg.contains("proc") && !dbg.contains(&script), "{dbg}");

        // Expiring in an hour: kept.
        std::fs::remove_file(&count).unwrap();
        let later = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let script = f.script(
            "later.sh",
            &expiring(&format!(", \"Expiration\": \"{later}\"")),
        );
        let p = ProcessCredentialProvider::new("proc".into(), format!("/bin/sh {script}"));
        rt.block_on(p.get_credential()).unwrap();
        rt.block_on(p.get_credential()).unwrap();
        assert_eq!(runs(), 1);

        // Expiring within the refresh margin: fetched again each time.
        std::fs::remove_file(&count).unwrap();
        let soon = (Utc::now() + chrono::Duration::seconds(30)).to_rfc3339();
        let script = f.script(
            "soon.sh",
            &expiring(&format!(", \"Expiration\": \"{soon}\"")),
        );
        let p = ProcessCredentialProvider::new("proc".into(), format!("/bin/sh {script}"));
        rt.block_on(p.get_credential()).unwrap();
        rt.block_on(p.get_credential()).unwrap();
        assert_eq!(runs(), 2);
    }

    #[test]
    fn credential_process_failures_say_what_without_printing_secrets() {
        let f = Files::new("", "");
        let rt = runtime();
        let fails = |body: &str, args: &str| {
            let script = f.script(&format!("s{}.sh", uuid::Uuid::new_v4().simple()), body);
            // Through /bin/sh: executing a file just written can fail with ETXTBSY while another
            // test thread forks.
            let p =
                ProcessCredentialProvider::new("proc".into(), format!("/bin/sh {script}{args}"));
            let e = rt.block_on(p.fetch()).unwrap_err();
            let text = strata_remote::report(&e);
            assert!(
                text.contains("credential_process of AWS profile \"proc\""),
                "{text}"
            );
            assert!(
                !text.contains(SECRET) && !text.contains(TOKEN) && !text.contains("hunter2"),
                "a secret was printed: {text}"
            );
            text
        };
        let t = fails(
            "echo 'token expired, run aws sso login' >&2; exit 3",
            " --password hunter2",
        );
        assert!(
            t.contains("failed: exit status: 3") && t.contains("run aws sso login"),
            "{t}"
        );
        let t = fails(&format!("echo 'AccessKeyId={SECRET} {TOKEN}'"), "");
        assert!(t.contains("did not print JSON"), "{t}");
        let t = fails(
            &format!("echo '{{\"Version\": 2, \"AccessKeyId\": \"AK\", \"SecretAccessKey\": \"{SECRET}\"}}'"),
            "",
        );
        assert!(t.contains("Version 2 (want 1)"), "{t}");
        let t = fails("echo '{\"Version\": 1, \"AccessKeyId\": \"AK\"}'", "");
        assert!(t.contains("printed no SecretAccessKey"), "{t}");
        let t = fails(
            &format!("echo '{{\"Version\": 1, \"AccessKeyId\": \"AK\", \"SecretAccessKey\": \"{SECRET}\", \"Expiration\": \"tomorrow\"}}'"),
            "",
        );
        assert!(t.contains("Expiration that is not an RFC 3339 time"), "{t}");

        let p = ProcessCredentialProvider::new(
            "proc".into(),
            "/no/such/program --password hunter2".into(),
        );
        let t = strata_remote::report(&rt.block_on(p.fetch()).unwrap_err());
        assert!(
            t.contains("could not be started (/no/such/program)") && !t.contains("hunter2"),
            "{t}"
        );
        let p = ProcessCredentialProvider::new("proc".into(), "'unterminated".into());
        let t = rt.block_on(p.fetch()).unwrap_err().to_string();
        assert!(t.contains("badly quoted"), "{t}");
    }

    #[test]
    fn a_profile_never_prints_its_secrets() {
        let f = Files::new(
            &format!("[default]\naws_access_key_id = AKID\naws_secret_access_key = {SECRET}\naws_session_token = {TOKEN}\n"),
            "[profile p]\ncredential_process = /bin/tool --password hunter2\n",
        );
        let d = format!("{:?}", aws_profile(&f.env(None)).unwrap().unwrap());
        let p = format!("{:?}", aws_profile(&f.env(Some("p"))).unwrap().unwrap());
        for text in [d, p] {
            assert!(
                !text.contains(SECRET) && !text.contains(TOKEN) && !text.contains("hunter2"),
                "{text}"
            );
        }
    }
}
