//! # strata-remotes
//!
//! Opens a Strata [`Remote`] from the URL a user gives: [`Remotes`] implements
//! [`strata_remote::Connector`], so sync (and later the HTTP hub server) open remotes through it
//! without depending on any backend. This crate depends only on the trait crate and the backends;
//! it knows nothing of the engine or of sync.
//!
//! ## URLs
//!
//! | URL | Backend | Cargo feature | Options |
//! |---|---|---|---|
//! | a folder path (`/srv/remote`, `./remote`), `file:///abs/path`, `file://localhost/abs/path` | [`FsRemote`] | always | none |
//! | `memory://name` | [`InMemoryRemote`], shared by name within the process | always ([`Remotes::new`] only) | none |
//! | `s3://bucket/prefix` (also `s3a://`) | `strata_remote_s3::ObjectStoreRemote` | `s3` | `BucketOptions` |
//! | `gs://bucket/prefix` (also `gcs://`) | the same | `gcs` | the same |
//! | `az://container/prefix` (also `azure://`) | the same | `azure` | the same |
//! | `http://host[:port]/owner/project`, `https://…` (a StrataHub project) | `strata_remote_http::HttpRemote` | `http` | `token` (else `STRATA_TOKEN`), `timeout`, `connect_timeout`, `max_retries` |
//!
//! The default features are `s3`, `gcs`, `azure` and `http`. With none of them the crate compiles no bucket
//! code at all (no `object_store`), and a bucket URL is refused with an error naming the feature
//! that would open it.
//!
//! A scheme is `letters:` followed by `//` (and `file:` alone), as the folder backend reads it, so
//! `C:\data` and `my:folder` are folder paths. A known scheme without its `//` (`s3:bucket/x`) is
//! refused rather than taken for a folder of that name.
//!
//! ## Checking is opening without the I/O
//! [`Connector::check`] runs exactly the parsing and validation that [`Connector::open`] runs (one
//! function does both), and touches nothing, so a URL that passes `check` when it is stored does
//! not fail to parse at every later use. Opening touches nothing either: a folder remote is created
//! by its first write, never by an open or a read.
//!
//! ## Options
//! - Bucket remotes take exactly `strata_remote_s3::BucketOptions` (endpoint, region, timeouts…);
//!   unknown keys, and keys that look like credentials, are refused. Credentials come only from
//!   each cloud's environment variables and files.
//! - Folder and memory remotes take none, and **refuse any option given**: a mistyped or misplaced
//!   option (`endpoint=` on a folder) would otherwise be stored and silently ignored.
//!
//! ## Errors
//! Every error is [`RemoteError::Invalid`] (or, from a backend's constructor, its own variant) and
//! names the URL as the user gave it.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use strata_remote::{Connector, InMemoryRemote, Remote, RemoteError, Result};
use strata_remote_fs::FsRemote;

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
use strata_remote_s3::{BucketOptions, BucketUrl, ObjectStoreRemote};

#[cfg(feature = "http")]
use strata_remote_http::{HttpConfig, HttpRemote};

/// Why [`Remotes::persistent`] refuses `memory://` URLs.
pub const MEMORY_IS_NOT_PERSISTENT: &str = "memory:// remotes live only inside one process and \
     vanish when it exits; use a folder path or a bucket URL";

/// Opens remotes from their URLs (see the crate documentation): every backend compiled in, and
/// `memory://` unless made with [`Remotes::persistent`]. Use it through [`Connector`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remotes {
    allow_memory: bool,
}

impl Remotes {
    /// Every backend compiled in, plus `memory://name`: the process-wide in-memory registry, where
    /// every open of one name shares one remote (for tests and in-process use).
    pub fn new() -> Remotes {
        Remotes { allow_memory: true }
    }

    /// Every backend compiled in, but not `memory://`, which is refused by [`Connector::check`] and
    /// [`Connector::open`] with [`MEMORY_IS_NOT_PERSISTENT`]: for configuration that outlives the
    /// process, such as a CLI's remotes.
    pub fn persistent() -> Remotes {
        Remotes {
            allow_memory: false,
        }
    }

    /// Whether `memory://` URLs are accepted.
    pub fn allows_memory(&self) -> bool {
        self.allow_memory
    }

    /// The URL forms accepted, for help texts and error messages.
    pub fn supported_urls(&self) -> String {
        let mut forms = vec!["a folder path", "file:///path"];
        for kind in BucketKind::ALL {
            if kind.compiled() {
                forms.push(kind.example());
            }
        }
        if cfg!(feature = "http") {
            forms.push("http(s)://host/owner/project");
        }
        if self.allow_memory {
            forms.push("memory://name");
        }
        forms.join(", ")
    }

    /// Parses and validates `url` and `options`: everything [`Connector::open`] does before it
    /// builds the remote, and no I/O.
    fn resolve(&self, url: &str, options: &BTreeMap<String, String>) -> Result<Target> {
        let bad = |why: String| RemoteError::Invalid(format!("remote URL {url:?}: {why}").into());
        if url.is_empty() {
            return Err(bad("is empty".into()));
        }
        match classify(url).map_err(bad)? {
            Kind::Folder => {
                let root = strata_remote_fs::parse_url(url)?;
                no_options(url, options, "folder")?;
                Ok(Target::Folder(root))
            }
            Kind::Memory(name) => {
                if !self.allow_memory {
                    return Err(bad(MEMORY_IS_NOT_PERSISTENT.into()));
                }
                if name.is_empty() {
                    return Err(bad("names no remote (memory://name)".into()));
                }
                no_options(url, options, "memory")?;
                Ok(Target::Memory(name.to_string()))
            }
            Kind::Bucket(kind) => resolve_bucket(kind, url, options),
            Kind::Http => resolve_http(url, options),
            Kind::Unsupported(scheme) => Err(bad(format!(
                "unsupported scheme {scheme:?} (supported: {})",
                self.supported_urls()
            ))),
        }
    }
}

impl Default for Remotes {
    /// [`Remotes::new`].
    fn default() -> Remotes {
        Remotes::new()
    }
}

impl Connector for Remotes {
    fn check(&self, url: &str, options: &BTreeMap<String, String>) -> Result<()> {
        self.resolve(url, options).map(|_| ())
    }

    fn open(&self, url: &str, options: &BTreeMap<String, String>) -> Result<Arc<dyn Remote>> {
        Ok(match self.resolve(url, options)? {
            Target::Folder(root) => Arc::new(FsRemote::new(root).map_err(|e| name_url(url, e))?),
            Target::Memory(name) => {
                let mut reg = memory_registry().lock().unwrap_or_else(|e| e.into_inner());
                Arc::new(reg.entry(name).or_default().clone())
            }
            #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
            Target::Bucket(options) => {
                Arc::new(ObjectStoreRemote::open(url, &options).map_err(|e| name_url(url, e))?)
            }
            #[cfg(feature = "http")]
            Target::Http(cfg) => {
                Arc::new(HttpRemote::from_config(*cfg, url).map_err(|e| name_url(url, e))?)
            }
        })
    }
}

/// Opens the remote `url` names with [`Remotes::new`] (every compiled backend, and `memory://`).
pub fn open_url(url: &str, options: &BTreeMap<String, String>) -> Result<Arc<dyn Remote>> {
    Remotes::new().open(url, options)
}

/// Checks `url` and `options` with [`Remotes::new`], exactly as [`open_url`] would, touching nothing.
pub fn check_url(url: &str, options: &BTreeMap<String, String>) -> Result<()> {
    Remotes::new().check(url, options)
}

/// What a URL resolved to, ready to open.
enum Target {
    Folder(PathBuf),
    Memory(String),
    #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
    Bucket(BucketOptions),
    #[cfg(feature = "http")]
    Http(Box<HttpConfig>),
}

/// Which backend a URL's scheme selects.
#[derive(Debug, PartialEq, Eq)]
enum Kind<'a> {
    Folder,
    Memory(&'a str),
    Bucket(BucketKind),
    Http,
    Unsupported(&'a str),
}

/// The bucket backends, each behind its own cargo feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BucketKind {
    S3,
    Gcs,
    Azure,
}

impl BucketKind {
    const ALL: [BucketKind; 3] = [BucketKind::S3, BucketKind::Gcs, BucketKind::Azure];

    fn of_scheme(scheme: &str) -> Option<BucketKind> {
        match scheme {
            "s3" | "s3a" => Some(BucketKind::S3),
            "gs" | "gcs" => Some(BucketKind::Gcs),
            "az" | "azure" => Some(BucketKind::Azure),
            _ => None,
        }
    }

    /// The cargo feature of this crate that compiles the backend.
    fn feature(self) -> &'static str {
        match self {
            BucketKind::S3 => "s3",
            BucketKind::Gcs => "gcs",
            BucketKind::Azure => "azure",
        }
    }

    fn example(self) -> &'static str {
        match self {
            BucketKind::S3 => "s3://bucket/prefix",
            BucketKind::Gcs => "gs://bucket/prefix",
            BucketKind::Azure => "az://container/prefix",
        }
    }

    fn store(self) -> &'static str {
        match self {
            BucketKind::S3 => "S3",
            BucketKind::Gcs => "Google Cloud Storage",
            BucketKind::Azure => "Azure Blob Storage",
        }
    }

    fn compiled(self) -> bool {
        match self {
            BucketKind::S3 => cfg!(feature = "s3"),
            BucketKind::Gcs => cfg!(feature = "gcs"),
            BucketKind::Azure => cfg!(feature = "azure"),
        }
    }
}

/// Schemes that name a remote only with `//` after them; without it (`s3:bucket`) the URL is a
/// mistake, not a folder of that name.
const URL_SCHEMES: &[&str] = &[
    "file", "memory", "s3", "s3a", "gs", "gcs", "az", "azure", "http", "https",
];

/// The backend `url`'s scheme selects, by the folder backend's rule for what a scheme is: `name:`
/// then `//` (or `file:` alone), where `name` is a letter then letters, digits, `+`, `-` or `.`, and
/// is longer than one letter (`C:` is a Windows drive). Schemes are case-insensitive.
fn classify(url: &str) -> std::result::Result<Kind<'_>, String> {
    let Some((name, rest)) = url.split_once(':') else {
        return Ok(Kind::Folder);
    };
    let mut chars = name.chars();
    let is_scheme = name.len() > 1
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_scheme {
        return Ok(Kind::Folder);
    }
    let lower = name.to_ascii_lowercase();
    if lower == "file" {
        return Ok(Kind::Folder);
    }
    let Some(after) = rest.strip_prefix("//") else {
        if URL_SCHEMES.contains(&lower.as_str()) {
            return Err(format!(
                "{lower}: must be followed by // ({lower}://…); write ./{url} for a folder of that name"
            ));
        }
        return Ok(Kind::Folder);
    };
    if lower == "memory" {
        return Ok(Kind::Memory(after));
    }
    if lower == "http" || lower == "https" {
        return Ok(Kind::Http);
    }
    Ok(match BucketKind::of_scheme(&lower) {
        Some(kind) => Kind::Bucket(kind),
        None => Kind::Unsupported(name),
    })
}

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn resolve_bucket(
    kind: BucketKind,
    url: &str,
    options: &BTreeMap<String, String>,
) -> Result<Target> {
    if !kind.compiled() {
        return Err(not_compiled(kind, url));
    }
    BucketUrl::parse(url).map_err(|e| name_url(url, e))?;
    let options = BucketOptions::from_map(options).map_err(|e| name_url(url, e))?;
    Ok(Target::Bucket(options))
}

#[cfg(not(any(feature = "s3", feature = "gcs", feature = "azure")))]
fn resolve_bucket(
    kind: BucketKind,
    url: &str,
    _options: &BTreeMap<String, String>,
) -> Result<Target> {
    Err(not_compiled(kind, url))
}

#[cfg(feature = "http")]
fn resolve_http(url: &str, options: &BTreeMap<String, String>) -> Result<Target> {
    Ok(Target::Http(Box::new(
        HttpConfig::parse(url, options).map_err(|e| name_url(url, e))?,
    )))
}

#[cfg(not(feature = "http"))]
fn resolve_http(url: &str, _options: &BTreeMap<String, String>) -> Result<Target> {
    Err(RemoteError::Invalid(
        format!(
            "remote URL {url:?}: StrataHub (http/https) remotes are not compiled into this build \
             (enable the cargo feature \"http\" of strata-remotes)"
        )
        .into(),
    ))
}

fn not_compiled(kind: BucketKind, url: &str) -> RemoteError {
    RemoteError::Invalid(
        format!(
        "remote URL {url:?}: {} remotes are not compiled into this build (enable the cargo feature \
         {:?} of strata-remotes)",
        kind.store(),
        kind.feature()
    )
        .into(),
    )
}

/// Refuses any option for a backend that takes none.
fn no_options(url: &str, options: &BTreeMap<String, String>, backend: &str) -> Result<()> {
    let Some(key) = options.keys().next() else {
        return Ok(());
    };
    #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
    let hint = format!(
        "; bucket remotes take {}",
        strata_remote_s3::OPTION_KEYS.join(", ")
    );
    #[cfg(not(any(feature = "s3", feature = "gcs", feature = "azure")))]
    let hint = "";
    Err(RemoteError::Invalid(
        format!("remote URL {url:?}: option {key:?}: {backend} remotes take no options{hint}")
            .into(),
    ))
}

/// Makes sure an error from a backend names the URL the user gave.
fn name_url(url: &str, e: RemoteError) -> RemoteError {
    let quoted = format!("{url:?}");
    e.map_message(|m| {
        if m.contains(&quoted) {
            m
        } else {
            format!("remote URL {quoted}: {m}")
        }
    })
}

/// In-process memory remotes by name, so that several databases in one process (tests, demos) can
/// share one.
fn memory_registry() -> &'static Mutex<HashMap<String, InMemoryRemote>> {
    static REG: OnceLock<Mutex<HashMap<String, InMemoryRemote>>> = OnceLock::new();
    REG.get_or_init(Default::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_read_as_the_folder_backend_reads_them() {
        use Kind::*;
        for (url, kind) in [
            ("/abs/path", Folder),
            ("rel/path", Folder),
            ("my:folder", Folder),
            ("C:\\data", Folder),
            ("c://data", Folder),
            ("./s3://x", Folder),
            ("file:///x", Folder),
            ("FILE:/x", Folder),
            ("file://", Folder),
            ("memory://a", Memory("a")),
            ("MEMORY://", Memory("")),
            ("s3://b/p", Bucket(BucketKind::S3)),
            ("S3A://b", Bucket(BucketKind::S3)),
            ("gs://b", Bucket(BucketKind::Gcs)),
            ("gcs://b", Bucket(BucketKind::Gcs)),
            ("az://c", Bucket(BucketKind::Azure)),
            ("Azure://c", Bucket(BucketKind::Azure)),
            ("ftp://h/x", Unsupported("ftp")),
            ("http://h/x", Http),
            ("HTTPS://h/x", Http),
        ] {
            assert_eq!(classify(url), Ok(kind), "{url}");
        }
        for url in ["s3:bucket/x", "memory:x", "gs:/b", "https:h"] {
            assert!(classify(url).is_err(), "{url}");
        }
    }
}
