//! # strata-remotes
//!
//! Opens a Strata remote from its URL: the one place that maps URLs to backends, with one cargo
//! feature per backend so that a build carries only the backends it needs.
//!
//! | URL | backend | feature |
//! |---|---|---|
//! | a folder path, `file:///path` | [`strata_remote_fs::FsRemote`] | always |
//! | `s3://bucket/prefix` | `strata_remote_s3` | `s3` |
//! | `gs://bucket/prefix` (`gcs://`) | `strata_remote_s3` | `gcs` |
//! | `az://container/prefix` (`azure://`) | `strata_remote_s3` | `azure` |
//! | `memory://name` | [`strata_remote::InMemoryRemote`], shared in this process | always, unless refused |
//!
//! [`Remotes`] implements [`strata_remote::Connector`], which sync takes; it depends on the trait
//! crate and the backends only, never on the engine or on sync (the hub uses it too).
//!
//! `check` validates a URL and its options exactly as `open` would, without any I/O, and opening
//! changes nothing at the location.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use strata_remote::{Connector, InMemoryRemote, Remote, RemoteError, Result};
use strata_remote_fs::FsRemote;

/// What this build can open, for messages.
fn supported() -> String {
    let mut s = vec!["a folder path", "file:///path"];
    if cfg!(feature = "s3") {
        s.push("s3://bucket/prefix");
    }
    if cfg!(feature = "gcs") {
        s.push("gs://bucket/prefix");
    }
    if cfg!(feature = "azure") {
        s.push("az://container/prefix");
    }
    s.join(", ")
}

/// The URL scheme, lower-cased, if the URL has one (`scheme://…`).
fn scheme(url: &str) -> Option<String> {
    let (s, _) = url.split_once("://")?;
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    ok.then(|| s.to_ascii_lowercase())
}

/// Which backend a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Folder,
    Memory,
    Bucket(&'static str),
}

fn kind_of(url: &str) -> Result<Kind> {
    if url.trim().is_empty() {
        return Err(RemoteError::Invalid("the remote URL is empty".into()));
    }
    match scheme(url).as_deref() {
        None | Some("file") => Ok(Kind::Folder),
        Some("memory") => Ok(Kind::Memory),
        Some("s3" | "s3a") => Ok(Kind::Bucket("s3")),
        Some("gs" | "gcs") => Ok(Kind::Bucket("gcs")),
        Some("az" | "azure") => Ok(Kind::Bucket("azure")),
        Some(other) => Err(RemoteError::Invalid(format!(
            "unsupported remote URL scheme {other:?} in {url:?} (this build supports: {})",
            supported()
        ))),
    }
}

fn feature_enabled(feature: &str) -> bool {
    match feature {
        "s3" => cfg!(feature = "s3"),
        "gcs" => cfg!(feature = "gcs"),
        "azure" => cfg!(feature = "azure"),
        _ => false,
    }
}

/// In-process memory remotes by name, so that several databases in one process (tests, demos) can
/// share one.
fn memory_registry() -> &'static Mutex<HashMap<String, InMemoryRemote>> {
    static REG: OnceLock<Mutex<HashMap<String, InMemoryRemote>>> = OnceLock::new();
    REG.get_or_init(Default::default)
}

/// Opens remotes by URL with every backend this build has. See the [crate docs](crate).
#[derive(Clone, Debug)]
pub struct Remotes {
    allow_memory: bool,
}

impl Default for Remotes {
    fn default() -> Self {
        Remotes::new()
    }
}

impl Remotes {
    /// Every compiled backend, plus `memory://name` (process-wide, for tests and in-process use).
    pub fn new() -> Remotes {
        Remotes { allow_memory: true }
    }

    /// Every compiled backend except `memory://`, which is refused with a message saying why: a
    /// memory remote lives only inside one process, so a command-line tool would lose every push.
    pub fn persistent() -> Remotes {
        Remotes {
            allow_memory: false,
        }
    }

    fn no_options(url: &str, what: &str, options: &BTreeMap<String, String>) -> Result<()> {
        match options.keys().next() {
            None => Ok(()),
            Some(k) => Err(RemoteError::Invalid(format!(
                "{what} remote {url:?} takes no options, but {k:?} was given (options such as \
                 endpoint or region apply to bucket URLs)"
            ))),
        }
    }

    fn checked(&self, url: &str, options: &BTreeMap<String, String>) -> Result<Kind> {
        let kind = kind_of(url)?;
        match kind {
            Kind::Folder => {
                FsRemote::parse_url(url)?;
                Self::no_options(url, "folder", options)?;
            }
            Kind::Memory => {
                if !self.allow_memory {
                    return Err(RemoteError::Invalid(format!(
                        "{url:?}: memory:// remotes live only inside one process and vanish when it \
                         exits; use a folder path or a bucket URL ({})",
                        supported()
                    )));
                }
                if url["memory://".len()..].is_empty() {
                    return Err(RemoteError::Invalid(format!(
                        "{url:?}: a memory remote needs a name (memory://name)"
                    )));
                }
                Self::no_options(url, "memory", options)?;
            }
            Kind::Bucket(feature) => {
                if !feature_enabled(feature) {
                    return Err(RemoteError::Invalid(format!(
                        "{url:?}: this build of Strata has no {feature} support; rebuild with the \
                         cargo feature {feature:?} (this build supports: {})",
                        supported()
                    )));
                }
                check_bucket(url, options)?;
            }
        }
        Ok(kind)
    }
}

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn check_bucket(url: &str, options: &BTreeMap<String, String>) -> Result<()> {
    strata_remote_s3::BucketUrl::parse(url)?;
    strata_remote_s3::BucketOptions::from_map(options)?;
    Ok(())
}

#[cfg(not(any(feature = "s3", feature = "gcs", feature = "azure")))]
fn check_bucket(url: &str, _: &BTreeMap<String, String>) -> Result<()> {
    Err(RemoteError::Invalid(format!(
        "{url:?}: this build of Strata has no bucket support"
    )))
}

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn open_bucket(url: &str, options: &BTreeMap<String, String>) -> Result<Arc<dyn Remote>> {
    let opts = strata_remote_s3::BucketOptions::from_map(options)?;
    Ok(Arc::new(strata_remote_s3::ObjectStoreRemote::open(
        url, &opts,
    )?))
}

#[cfg(not(any(feature = "s3", feature = "gcs", feature = "azure")))]
fn open_bucket(url: &str, options: &BTreeMap<String, String>) -> Result<Arc<dyn Remote>> {
    check_bucket(url, options).map(|_| unreachable!("refused above"))
}

impl Connector for Remotes {
    fn check(&self, url: &str, options: &BTreeMap<String, String>) -> Result<()> {
        self.checked(url, options).map(|_| ())
    }

    fn open(&self, url: &str, options: &BTreeMap<String, String>) -> Result<Arc<dyn Remote>> {
        match self.checked(url, options)? {
            Kind::Folder => Ok(Arc::new(FsRemote::from_url(url)?)),
            Kind::Memory => {
                let name = &url["memory://".len()..];
                let mut reg = memory_registry().lock().unwrap_or_else(|e| e.into_inner());
                Ok(Arc::new(reg.entry(name.to_string()).or_default().clone()))
            }
            Kind::Bucket(_) => open_bucket(url, options),
        }
    }
}

/// Opens the remote a URL names with every backend this build has (see [`Remotes::new`]).
pub fn open_url(url: &str, options: &BTreeMap<String, String>) -> Result<Arc<dyn Remote>> {
    Remotes::new().open(url, options)
}

/// Checks a URL and its options as [`open_url`] would, without any I/O.
pub fn check_url(url: &str, options: &BTreeMap<String, String>) -> Result<()> {
    Remotes::new().check(url, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    fn invalid(r: Result<()>) -> String {
        match r {
            Err(RemoteError::Invalid(m)) => m.to_string(),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn folder_urls_are_checked_like_open_checks_them() {
        let r = Remotes::new();
        r.check("/tmp/x", &none()).unwrap();
        r.check("relative/x", &none()).unwrap();
        r.check("file:///tmp/x", &none()).unwrap();
        for bad in ["file://", "file://host/x", "file:relative", ""] {
            let m = invalid(r.check(bad, &none()));
            assert!(m.contains(bad) || bad.is_empty(), "{bad}: {m}");
        }
        let opts: BTreeMap<_, _> = [("endpoint".to_string(), "x".to_string())].into();
        assert!(invalid(r.check("/tmp/x", &opts)).contains("endpoint"));
    }

    #[test]
    fn memory_is_refused_by_persistent_and_shared_by_name_otherwise() {
        let m = invalid(Remotes::persistent().check("memory://x", &none()));
        assert!(m.contains("memory://x") && m.contains("vanish"), "{m}");
        assert!(matches!(
            Remotes::persistent().open("memory://x", &none()),
            Err(RemoteError::Invalid(_))
        ));
        let a = Remotes::new().open("memory://shared-test", &none()).unwrap();
        let b = Remotes::new().open("memory://shared-test", &none()).unwrap();
        assert_eq!(a.to_string(), b.to_string());
        invalid(Remotes::new().check("memory://", &none()));
    }

    #[test]
    fn unknown_schemes_name_the_url_and_what_is_supported() {
        let m = invalid(Remotes::new().check("ftp://host/x", &none()));
        assert!(m.contains("ftp") && m.contains("file:///path"), "{m}");
    }

    #[test]
    fn bucket_urls_follow_the_features_of_this_build() {
        for (url, feature) in [
            ("s3://bucket/x", "s3"),
            ("gs://bucket/x", "gcs"),
            ("az://container/x", "azure"),
        ] {
            let r = Remotes::new().check(url, &none());
            if feature_enabled(feature) {
                r.unwrap();
                let bad: BTreeMap<_, _> = [("nope".to_string(), "1".to_string())].into();
                assert!(invalid(Remotes::new().check(url, &bad)).contains("nope"));
            } else {
                let m = invalid(r);
                assert!(m.contains("rebuild") && m.contains(feature), "{m}");
            }
        }
        invalid(Remotes::new().check("s3://", &none()));
    }

    #[test]
    fn check_and_open_create_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("not-yet");
        let url = target.to_str().unwrap();
        Remotes::new().check(url, &none()).unwrap();
        assert!(!target.exists(), "check created {url}");
    }
}
