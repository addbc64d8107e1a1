//! Bucket URLs: `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`.

use std::fmt;

use strata_remote::{RemoteError, RemotePath, Result};

/// The cloud a bucket lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Amazon S3, or an S3-compatible store (MinIO, R2, moto…) through the `endpoint` option.
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
}

impl Provider {
    /// The URL scheme (`s3`, `gs`, `az`).
    pub fn scheme(self) -> &'static str {
        match self {
            Provider::S3 => "s3",
            Provider::Gcs => "gs",
            Provider::Azure => "az",
        }
    }

    /// What the provider calls a bucket.
    pub(crate) fn bucket_word(self) -> &'static str {
        match self {
            Provider::Azure => "container",
            _ => "bucket",
        }
    }

    /// The environment variables that carry this provider's credentials, for error messages.
    pub(crate) fn credential_hint(self) -> &'static str {
        match self {
            Provider::S3 => {
                "credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), \
                 or the profile named by AWS_PROFILE in ~/.aws/credentials and ~/.aws/config (static \
                 keys or credential_process)"
            }
            Provider::Gcs => {
                "credentials come from GOOGLE_APPLICATION_CREDENTIALS or GOOGLE_SERVICE_ACCOUNT \
                 (a service account key file)"
            }
            Provider::Azure => {
                "credentials come from AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY \
                 (or AZURE_STORAGE_SAS_KEY, or AZURE_CLIENT_ID / AZURE_CLIENT_SECRET / AZURE_TENANT_ID)"
            }
        }
    }
}

/// Whether `url` has a bucket scheme this crate opens (`s3`, `gs`, `az`; also `gcs` and `azure`).
pub fn is_bucket_url(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(s, _)| provider_of(s).is_some())
}

fn provider_of(scheme: &str) -> Option<Provider> {
    match scheme.to_ascii_lowercase().as_str() {
        "s3" | "s3a" => Some(Provider::S3),
        "gs" | "gcs" => Some(Provider::Gcs),
        "az" | "azure" => Some(Provider::Azure),
        _ => None,
    }
}

/// A parsed bucket URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketUrl {
    /// Which cloud.
    pub provider: Provider,
    /// The bucket (or Azure container).
    pub bucket: String,
    /// The folder inside the bucket that holds the remote; `None` for the bucket's root.
    pub prefix: Option<RemotePath>,
}

impl BucketUrl {
    /// Parses `s3://bucket[/prefix]`, `gs://bucket[/prefix]` or `az://container[/prefix]`. A trailing
    /// `/` is ignored. Fails with [`RemoteError::Invalid`] naming what is wrong.
    pub fn parse(url: &str) -> Result<BucketUrl> {
        let bad = |why: String| RemoteError::Invalid(format!("bucket URL {url:?}: {why}").into());
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("has no scheme (want s3://, gs:// or az://)".into()))?;
        let provider = provider_of(scheme).ok_or_else(|| {
            bad(format!(
                "unsupported scheme {scheme:?} (want s3://, gs:// or az://)"
            ))
        })?;
        if rest.contains(['?', '#']) {
            return Err(bad(
                "has a query or fragment; pass settings as options (-o endpoint=…)".into(),
            ));
        }
        let (bucket, prefix) = match rest.split_once('/') {
            Some((b, p)) => (b, p.trim_end_matches('/')),
            None => (rest, ""),
        };
        let word = provider.bucket_word();
        if bucket.is_empty() {
            return Err(bad(format!("names no {word}")));
        }
        if bucket.len() > 255
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(bad(format!(
                "{word} name {bucket:?} may hold only letters, digits, '-', '_' and '.'"
            )));
        }
        let prefix = if prefix.is_empty() {
            None
        } else {
            Some(RemotePath::parse(prefix).map_err(|e| bad(format!("bad prefix: {e}")))?)
        };
        Ok(BucketUrl {
            provider,
            bucket: bucket.to_string(),
            prefix,
        })
    }
}

impl fmt::Display for BucketUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.provider.scheme(), self.bucket)?;
        if let Some(p) = &self.prefix {
            write!(f, "/{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        for (url, provider, bucket, prefix, back) in [
            ("s3://b", Provider::S3, "b", None, "s3://b"),
            ("s3://b/", Provider::S3, "b", None, "s3://b"),
            (
                "s3://my-bucket/team/proj/",
                Provider::S3,
                "my-bucket",
                Some("team/proj"),
                "s3://my-bucket/team/proj",
            ),
            ("gs://g.b/x", Provider::Gcs, "g.b", Some("x"), "gs://g.b/x"),
            ("gcs://g/x", Provider::Gcs, "g", Some("x"), "gs://g/x"),
            ("az://c/p", Provider::Azure, "c", Some("p"), "az://c/p"),
            ("AZURE://c", Provider::Azure, "c", None, "az://c"),
        ] {
            let u = BucketUrl::parse(url).unwrap();
            assert_eq!(u.provider, provider, "{url}");
            assert_eq!(u.bucket, bucket, "{url}");
            assert_eq!(u.prefix.as_ref().map(|p| p.as_str()), prefix, "{url}");
            assert_eq!(u.to_string(), back);
            assert!(is_bucket_url(url));
        }
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, needle) in [
            ("s3://", "names no bucket"),
            ("az:///x", "names no container"),
            ("s3://b/../x", "bad prefix"),
            ("s3://b/a//c", "bad prefix"),
            ("s3://b?endpoint=x", "query"),
            ("s3://my bucket/x", "may hold only"),
            ("ftp://b/x", "unsupported scheme"),
            ("b/x", "no scheme"),
        ] {
            match BucketUrl::parse(url) {
                Err(RemoteError::Invalid(m)) => assert!(m.contains(needle), "{url}: {m}"),
                other => panic!("{url}: {other:?}"),
            }
        }
        assert!(!is_bucket_url("file:///x"));
        assert!(!is_bucket_url("/x"));
    }
}
